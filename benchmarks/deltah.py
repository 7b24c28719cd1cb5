"""One annual delta-h update of the whole Alps (3,927 glaciers, Farinotti 25 m) against two baselines.

Contenders, each in its own subprocess on the same arrays (peak memory = the child's max RSS):

- ``glacgrid``: :func:`glacgrid.geometry.deltah_update` on the numpy-backed state (xarray layer + the
  fused numba kernel :func:`glacgrid.geometry._fused.deltah_update_fused`); best of 3 calls, with the
  first call of a process (numba cache load) reported as ``first_call_s``;
- ``glacgrid-cold``: one call in a process with an empty numba cache (``NUMBA_CACHE_DIR`` a fresh
  folder): the one-off compilation cost, reported separately (``compile_s`` = first call - best call);
- ``glacgrid-dask``: the same on dask chunks (``--chunk`` rows of the packed state), threads
  (one gather pass over the blocks, the fused kernel on the gathered pixels, a lazy scatter back);
- ``fused``: the fused kernel alone, without the xarray layer;
- ``kernel``: the numpy kernel :func:`glacgrid.geometry._kernels.deltah_update_arrays` (for reference);
- ``loop`` (a): a per-glacier Python loop of the same algorithm (mask ``glacier_id == g``, Huss weights,
  redistribution rounds) over the same arrays;
- ``floor`` (b): one numpy pass reading the four input arrays and writing the two outputs
  (the memory-bandwidth floor).

The state is the packed glacier pixels (``glacgrid.geometry.pack_state``) of the Alps mosaic
stores of the grids stage (``--mosaic DIR``, default ``/tmp/glacgrid-shared/alps`` when present), or of
the per-glacier tiles (``--tiles``: ``../shared/data/alps/farinotti_*``). Targets: glacgrid at least
100x faster than (a) and within 5x of (b). ``--closure N`` also evolves N years under a prescribed SMB
series and prints the mass-balance closure.

Usage: python benchmarks/deltah.py [--quick] [--tiles] [--closure 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ALPS = REPO.parent / "shared" / "data" / "alps"
MOSAIC = Path("/tmp/glacgrid-shared/alps")
NAMES = ("glacier_id", "thickness", "surface", "pixel_area")


# --------------------------------------------------------------------------- the state
def build_state(cache: Path, use_tiles: bool, mosaic: Path) -> dict:
    """Pack the Alps into ``cache/*.npy`` (once) and return facts about it."""
    import xarray as xr

    from glacgrid.geometry import pack_state, pack_tiles
    from glacgrid.units import m2_to_km2, m3_to_km3

    t0 = time.perf_counter()
    if use_tiles or not mosaic.exists():
        st = pack_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem")
        source = f"tiles {ALPS}"
        dropped = int(st.attrs["ice_pixels_without_surface"])
    else:
        from glacgrid.mosaic import open_mosaic

        flat, dropped = {k: [] for k in NAMES}, 0
        stores = sorted(mosaic.glob("alps_*.zarr"))
        for store in stores:
            ds = open_mosaic(store)[list(NAMES)]
            p, index = pack_state(ds)
            bad = (p.glacier_id > 0) & (p.thickness > 0) & ~np.isfinite(p.surface)
            dropped += int(bad.sum())  # a data trap: ice without surface elevation
            p["thickness"] = p.thickness.where(~bad, 0.0)
            p["surface"] = p.surface.fillna(0.0)
            for k in NAMES:
                flat[k].append(p[k].values.ravel()[: index.size])
        # one packed state of all stores, grouped by glacier (the numbers interleave across zones)
        flat = {k: np.concatenate(v) for k, v in flat.items()}
        order = np.argsort(flat["glacier_id"], kind="stable")
        width = 4096
        rows = -(-order.size // width)
        fills = {"glacier_id": 0, "thickness": 0.0, "surface": 0.0, "pixel_area": 1.0}
        out = {}
        for k, v in flat.items():
            full = np.full(rows * width, fills[k], dtype=v.dtype)
            full[: order.size] = v[order]
            out[k] = (("y", "x"), full.reshape(rows, width))
        st = xr.Dataset(out)
        source = f"mosaic {mosaic} ({len(stores)} stores)"
    for k in NAMES:
        np.save(cache / f"{k}.npy", np.ascontiguousarray(st[k].values))
    gid = st.glacier_id.values
    ice = (gid > 0) & (st.thickness.values > 0)
    return {"source": source, "pack_s": time.perf_counter() - t0, "shape": list(gid.shape),
            "glaciers": int(np.unique(gid[gid > 0]).size), "ice_pixels": int(ice.sum()),
            "area_km2": float(m2_to_km2((st.pixel_area.values * ice).sum())),
            "volume_km3": float(m3_to_km3((st.pixel_area.values * st.thickness.values).sum())),
            "ice_pixels_without_surface_dropped": dropped}


def load(cache: Path) -> dict:
    return {k: np.load(cache / f"{k}.npy") for k in NAMES}


def smb_for(ids: np.ndarray, year: int = 0) -> np.ndarray:
    """The prescribed SMB (m w.e.): seeded, glacier-specific, mean -1 m w.e., some glaciers positive."""
    rng = np.random.default_rng(1000 + year)
    return rng.normal(-1.0, 0.6, ids.size)


# --------------------------------------------------------------------------- baseline (a): python loop
def loop_update(gid, h, z, a, ids, smb, rho_ice=900.0, rho_water=1000.0):
    """The delta-h update as a loop over glaciers (the pattern glacgrid replaces)."""
    from glacgrid.testing._deltah import reference_deltah_loop

    return reference_deltah_loop(gid, h, z, a, dict(zip(ids.tolist(), smb.tolist())), rho_ice, rho_water,
                                 tol=1e-9, max_rounds=1000)


# --------------------------------------------------------------------------- one contender (child)
def run_child(name: str, cache: Path, out: Path, quick: bool, chunk: int, repeat: int = 3) -> None:
    arr = load(cache)
    gid, h, z, a = (arr[k] for k in NAMES)
    ids = np.unique(gid[gid > 0])
    smb = smb_for(ids)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info: dict = {}
    t0 = time.perf_counter()
    best = once = None
    if name in ("glacgrid", "glacgrid-dask", "glacgrid-cold"):
        import xarray as xr

        from glacgrid.geometry import deltah_update

        st = xr.Dataset({k: (("y", "x"), v) for k, v in arr.items()})
        if name == "glacgrid-dask":
            st = st.chunk({"y": chunk, "x": -1})
        best, calls = np.inf, []
        for _ in range(1 if name == "glacgrid-cold" else repeat):  # best of `repeat`: the machine is noisy
            t0 = time.perf_counter()
            new, rep = deltah_update(st, xr.DataArray(smb, dims="glacier", coords={"glacier": ids}))
            h_new = new.thickness.values
            calls.append(time.perf_counter() - t0)
            best = min(best, calls[-1])
        info["passes"] = rep.attrs["solver_passes"]
        info["first_call_s"] = round(calls[0], 4)
        once = lambda: deltah_update(st, xr.DataArray(smb, dims="glacier", coords={"glacier": ids}))  # noqa: E731
    elif name == "fused":
        from glacgrid.geometry._fused import deltah_update_fused

        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            h_new = deltah_update_fused(gid, h, z, a, ids, smb)[0]
            best = min(best, time.perf_counter() - t0)
        once = lambda: deltah_update_fused(gid, h, z, a, ids, smb)  # noqa: E731
    elif name == "kernel":
        from glacgrid.geometry._kernels import deltah_update_arrays

        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            h_new = deltah_update_arrays(gid, h, z, a, ids, smb)[0]
            best = min(best, time.perf_counter() - t0)
        once = lambda: deltah_update_arrays(gid, h, z, a, ids, smb)  # noqa: E731
    elif name == "loop":
        sel = ids
        if quick:  # a sample of glaciers, time extrapolated to all of them
            sel = np.sort(np.random.default_rng(0).choice(ids, 300, replace=False))
        keep = np.isin(ids, sel)
        t0 = time.perf_counter()
        h_new = loop_update(gid, h, z, a, ids[keep], smb[keep])
        info["glaciers_timed"] = int(sel.size)
        info["ids"] = sel.tolist()
        info["extrapolation"] = ids.size / sel.size
    elif name == "floor":
        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            h_new = np.maximum(h + (z * 0.0 + a * -1e-9) * (gid > 0), 0.0)  # reads gid, h, z, a
            z_new = z + (h_new - h)                                        # writes h_new, z_new
            best = min(best, time.perf_counter() - t0)
        info["checksum"] = float(z_new[0, 0])

        def once():
            h_new = np.maximum(h + (z * 0.0 + a * -1e-9) * (gid > 0), 0.0)
            return h_new, z + (h_new - h)
    seconds = (time.perf_counter() - t0) * info.get("extrapolation", 1.0) if best is None else best
    info["repeats"] = 1 if best is None else repeat
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if once is not None and name != "glacgrid-dask":
        # the arrays one call allocates at its peak (numpy reports to tracemalloc; imports excluded)
        import tracemalloc

        tracemalloc.start()
        result = once()
        info["traced_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
        del result
    np.save(out.with_suffix(".npy"), h_new)
    out.write_text(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024,
                               "extra_rss_mb": (peak - rss_loaded) / 1024, **info}))


def child(name: str, cache: Path, *args: str) -> None:
    cmd = [sys.executable, __file__, "--child", name, "--cache", str(cache), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as cold:
        if name == "glacgrid-cold":  # an empty numba cache: the first call compiles the fused kernel
            env["NUMBA_CACHE_DIR"] = cold
        subprocess.run(cmd, check=True, env=env)


def contender(name: str, cache: Path, quick: bool, chunk: int) -> dict:
    out = cache / f"result_{name}.json"
    child(name, cache, "--chunk", str(chunk), *(["--quick"] if quick else []))
    res = json.loads(out.read_text())
    res["h"] = np.load(out.with_suffix(".npy"))
    return res


# --------------------------------------------------------------------------- closure
def closure(cache: Path, years: int) -> dict:
    import xarray as xr

    from glacgrid.geometry import evolve

    arr = load(cache)
    st = xr.Dataset({k: (("y", "x"), v) for k, v in arr.items()})
    gid = arr["glacier_id"]
    ids = np.unique(gid[gid > 0])
    smb = xr.DataArray(np.stack([smb_for(ids, y) for y in range(years)]), dims=("year", "glacier"),
                       coords={"year": 2011 + np.arange(years), "glacier": ids})
    t0 = time.perf_counter()
    final, rep = evolve(st, smb)
    seconds = time.perf_counter() - t0
    dv = float(((final.thickness - st.thickness) * st.pixel_area).sum())
    target = float(rep.volume_change_target.sum())
    unmet = float(rep.volume_change_unmet.sum())
    return {"years": years, "seconds": seconds, "dV_m3": dv, "sum_smb_area_rho_m3": target, "unmet_m3": unmet,
            "closure_rel_error": (dv - (target - unmet)) / abs(target), "raw_rel_mismatch": (dv - target) / abs(target),
            "disappeared": int((rep.disappeared_year > 0).sum()), "passes": rep.attrs["solver_passes"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="time the loop on 300 glaciers and extrapolate")
    p.add_argument("--tiles", action="store_true", help="pack the tiles instead of the mosaic stores")
    p.add_argument("--mosaic", type=Path, default=MOSAIC)
    p.add_argument("--chunk", type=int, default=200, help="rows of the packed state per dask chunk")
    p.add_argument("--closure", type=int, default=0, help="also evolve this many years and check closure")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the fast contenders (best counts)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child == "build":
        (a.cache / "facts.json").write_text(json.dumps(build_state(a.cache, a.tiles, a.mosaic)))
        return
    if a.child == "closure":
        (a.cache / "closure.json").write_text(json.dumps(closure(a.cache, a.closure)))
        return
    if a.child:
        run_child(a.child, a.cache, a.cache / f"result_{a.child}.json", a.quick, a.chunk)
        return
    # every step in its own subprocess: this parent stays small, so each child's peak RSS is its own
    with tempfile.TemporaryDirectory(prefix="deltah-bench-") as tmp:
        cache = Path(tmp)
        child("build", cache, "--mosaic", str(a.mosaic), *(["--tiles"] if a.tiles else []))
        facts = json.loads((cache / "facts.json").read_text())
        print(json.dumps(facts, indent=1))
        # the fast contenders take turns for `--rounds` rounds (best of 3 calls each time) and the best
        # time counts: the machine is shared, and a burst of load must not decide a ratio
        res: dict = {}
        for _ in range(a.rounds):
            for n in ("floor", "glacgrid", "fused", "glacgrid-dask", "kernel"):
                r = contender(n, cache, a.quick, a.chunk)
                if n not in res or r["seconds"] < res[n]["seconds"]:
                    res[n] = r
        res["loop"] = contender("loop", cache, a.quick, a.chunk)
        res["glacgrid-cold"] = contender("glacgrid-cold", cache, a.quick, a.chunk)
        ref = res["glacgrid"]["h"]
        gid = np.load(cache / "glacier_id.npy")
        for n, r in res.items():
            on = np.isin(gid, r["ids"]) if "ids" in r else np.ones(gid.shape, bool)
            diff = float(np.nanmax(np.abs(r["h"] - ref)[on])) if n != "floor" else float("nan")
            extra = {k: v for k, v in r.items() if k not in ("seconds", "peak_rss_mb", "extra_rss_mb", "h", "ids")}
            print(f"{n:14s} {r['seconds']:9.3f} s  peak RSS {r['peak_rss_mb']:7.0f} MB (+{r['extra_rss_mb']:6.0f} MB "
                  f"over the loaded arrays)  max|dh - glacgrid| {diff:.2e}  {extra}")
        g = res["glacgrid"]["seconds"]
        print(f"speed-up over the per-glacier loop (a): {res['loop']['seconds'] / g:8.1f} x  (target >= 100)")
        print(f"glacgrid / numpy floor (b)            : {g / res['floor']['seconds']:8.1f} x  (target <= 5)")
        floor = res["floor"]["seconds"]
        print(f"glacgrid-dask / floor (b)             : {res['glacgrid-dask']['seconds'] / floor:8.1f} x")
        print(f"fused kernel alone / floor (b)        : {res['fused']['seconds'] / floor:8.1f} x")
        print(f"numpy kernel / floor (b)              : {res['kernel']['seconds'] / floor:8.1f} x")
        cold = res["glacgrid-cold"]["seconds"]
        print(f"first call, empty numba cache         : {cold:8.2f} s  (compilation ~{cold - g:.2f} s, once "
              f"per machine; a new process with the cache: {res['glacgrid']['first_call_s']:.3f} s)")
        mem = res["glacgrid"]["peak_rss_mb"] / res["floor"]["peak_rss_mb"]
        print(f"memory glacgrid / floor (peak RSS)    : {mem:8.2f} x  (includes importing xarray, dask, numba)")
        mem = res["glacgrid"]["traced_peak_mb"] / res["floor"]["traced_peak_mb"]
        print(f"memory glacgrid / floor (traced arrays): {mem:7.2f} x  ({res['glacgrid']['traced_peak_mb']} MB "
              f"vs {res['floor']['traced_peak_mb']} MB allocated by one call)")
        if a.closure:
            child("closure", cache, "--closure", str(a.closure))
            print("closure:", (cache / "closure.json").read_text())


if __name__ == "__main__":
    main()
