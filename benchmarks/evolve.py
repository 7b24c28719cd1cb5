"""One full annual evolution step (features + SMB + delta-h) of the 3,927-glacier Alps mosaic: time and peak memory.

The Alps mosaic of the grids stage (Farinotti 25 m, five UTM zones, 676 million pixels of which 0.5 %
are glacier) is evolved by one hydrological year with :func:`glacgrid.simulate.annual_step`: glacier
checks, topography from the current surface, blockwise features and SMB (:func:`glacgrid.inference.infer`
with a lasso model), the delta-h update (:func:`glacgrid.geometry.deltah_update`) and the new geometry.
Climate: a seeded synthetic ERA5-Land-like monthly cube (``t2m``, ``tp``, ``orog``) at 0.1 degree over the
zones, downscaled lazily to each grid with :func:`glacgrid.downscale.downscale` (there is no real
ERA5-Land cube of the whole Alps here). Model: :func:`glacgrid.models.make_model` ``"lasso"`` fitted on
a synthetic table of the demo's features (a temperature-index target).

How the step is run (contender ``tiled``): each zone is cut into windows around the connected groups of
``--chunk`` x ``--chunk`` blocks that share glaciers (the layout of :func:`glacgrid.masks.plan_tiles`; every
glacier lies whole in one window, the window adds a 2-pixel halo for slope and aspect), and each window
is one dask-backed ``annual_step``. The windows hold 90 million pixels instead of 676 million.

Baseline (contender ``dense``), measured in the same run: the same step on the whole zone grid as one
dask state (what ``glacgrid run`` does on a zone today), on the zones small enough for it (EPSG 32630
and 32634; a dense step of the large zones would hold their 200-270 million pixel states in memory,
see the README). ``tiled`` runs the same zones again so that the ratio compares like with like. The
``dense`` child also times the delta-h update alone on the zone's dask state with both engines
(``fused``: gathered pixels, the default; ``flox``: the earlier per-pass flox path) and checks they agree.

Each contender runs in its own subprocess; its peak memory is the child's VmHWM. Numbers printed:
seconds per annual step and per part (delta-h = the ``deltah_update`` call inside the step, gather
included; the rest = checks, downscaling, features, SMB, glacier means, writing the new geometry in
memory), pixels and glaciers processed, glaciers isolated (with reasons), mass closure.

Usage: python benchmarks/evolve.py [--quick] [--mosaic DIR] [--chunk 512]
``--quick`` runs only the small zones (both contenders). Builds the mosaic stores when missing
(``glacgrid.mosaic.build_mosaic`` from ``../shared/data/alps``, about 100 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from domain_floor import status_mb  # noqa: E402
ALPS = REPO.parent / "shared" / "data" / "alps"
MOSAIC = Path("/tmp/glacgrid-shared/alps")
SMALL = (32630, 32634)
ALL = (32630, 32631, 32632, 32633, 32634)
YEAR = 2015
HALO = 2
#: The features of the demo configuration (glacgrid.testing.write_config).
FEATURES = ("cpdd", "snow_winter", "snow_summer", "mean_elevation", "max_elevation", "area", "slope", "lat", "lon",
            "aspect_cos", "aspect_sin")


# --------------------------------------------------------------------------- inputs
def ensure_mosaic(mosaic: Path) -> None:
    if all((mosaic / f"alps_{e}.zarr").exists() for e in ALL):
        return
    from glacgrid.mosaic import build_mosaic

    t0 = time.perf_counter()
    build_mosaic(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", mosaic, name="alps")
    print(f"built the mosaic stores in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def grid_of(ds, chunk: int, ys: slice | None = None, xs: slice | None = None):
    """The TargetGrid of a mosaic store (or of a window of it)."""
    from glacgrid.grid import TargetGrid

    a, _, x0, _, e, ytop = ds.attrs["transform_gdal"]
    ys = ys or slice(0, ds.sizes["y"])
    xs = xs or slice(0, ds.sizes["x"])
    left, top = x0 + a * xs.start, ytop + e * ys.start
    ny, nx = ys.stop - ys.start, xs.stop - xs.start
    return TargetGrid.from_spec(f"EPSG:{ds.attrs['epsg']}", a, (left, top + e * ny, left + a * nx, top), chunks=chunk)


def climate_cube(grids, seed: int = 0):
    """Synthetic ERA5-Land-like monthly cube for hydrological year YEAR over the grids (t2m K, tp kg m-2, orog m)."""
    from pyproj import Transformer

    from glacgrid.testing import climate_box, synthetic_cube

    lons, lats = [], []
    for g in grids:  # the outer ring of every grid, in lon/lat
        ring_y = np.concatenate([np.full(g.x.size, g.y[0]), np.full(g.x.size, g.y[-1]), g.y, g.y])
        ring_x = np.concatenate([g.x, g.x, np.full(g.y.size, g.x[0]), np.full(g.y.size, g.x[-1])])
        lo, la = Transformer.from_crs(g.crs, "EPSG:4326", always_xy=True).transform(ring_x, ring_y)
        lons.append(lo)
        lats.append(la)
    return synthetic_cube(climate_box(np.concatenate(lons), np.concatenate(lats)), YEAR, 1, seed)


def fit_model(seed: int = 0):
    """Lasso on a synthetic table of the demo features: SMB = (snowfall - 4 mm K-1 d-1 CPDD) / 1000 + noise."""
    from glacgrid.testing import domain_model

    return domain_model(FEATURES, seed)


# --------------------------------------------------------------------------- windows (tiles)
def _block_ids(g, block_info=None):
    out = np.empty((1, 1), dtype=object)
    u = np.unique(g)
    out[0, 0] = (u[u > 0], int(np.count_nonzero(g)))
    return out


def windows(gid_da, chunk: int) -> list[tuple[slice, slice, np.ndarray]]:
    """Windows (rows, cols, glaciers) around the connected groups of blocks that share glaciers (one pass)."""
    import dask.array as dsa
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = gid_da.data.rechunk(chunk)
    nby, nbx = g.numblocks
    parts = dsa.map_blocks(_block_ids, g, dtype=object, chunks=((1,) * nby, (1,) * nbx)).compute().ravel()
    rows = np.concatenate([np.full(p[0].size, k) for k, p in enumerate(parts)])
    ids = np.concatenate([p[0] for p in parts]).astype("int64")
    nb, top = nby * nbx, int(ids.max()) + 1
    graph = coo_matrix((np.ones(rows.size), (rows, nb + ids)), shape=(nb + top, nb + top))
    _, label = connected_components(graph, directed=False)
    ny, nx = gid_da.shape
    out = []
    for comp in np.unique(label[rows]):  # glaciated components only (Python loop over ~100 windows)
        blocks = np.flatnonzero(label[:nb] == comp)
        by, bx = blocks // nbx, blocks % nbx
        ys = slice(max(by.min() * chunk - HALO, 0), min((by.max() + 1) * chunk + HALO, ny))
        xs = slice(max(bx.min() * chunk - HALO, 0), min((bx.max() + 1) * chunk + HALO, nx))
        out.append((ys, xs, np.unique(ids[label[nb + ids] == comp])))
    return out


# --------------------------------------------------------------------------- one contender (child)

def run_child(which: str, zones: tuple[int, ...], mosaic: Path, chunk: int) -> dict:
    import dask
    import xarray as xr

    from glacgrid.config import DownscaleParams, GeometryParams
    from glacgrid.downscale import downscale
    from glacgrid.geometry import deltah_update
    from glacgrid.glaciers import GlacierGeometry
    from glacgrid.mosaic import open_mosaic
    from glacgrid.simulate import _step, annual_step

    timer = {"deltah_s": 0.0, "target_m3": 0.0, "unmet_m3": 0.0}
    original = _step.deltah_update

    def timed(*args, **kwargs):  # the delta-h part of the step (gather + fused kernel), and its mass targets
        t0 = time.perf_counter()
        new, report = original(*args, **kwargs)
        timer["deltah_s"] += time.perf_counter() - t0
        timer["target_m3"] += float(np.nansum(report["volume_change_target"].values))
        timer["unmet_m3"] += float(np.nansum(report["volume_change_unmet"].values))
        return new, report

    _step.deltah_update = timed
    dask.config.set(scheduler="threads", num_workers=2)
    t_setup = time.perf_counter()
    model = fit_model()
    stores = {e: open_mosaic(mosaic / f"alps_{e}.zarr") for e in zones}
    cube = climate_cube([grid_of(ds, chunk) for ds in stores.values()])
    setup_s = time.perf_counter() - t_setup
    res: dict = {"which": which, "zones": {}, "setup_s": setup_s}
    reasons: Counter = Counter()
    for epsg, ds in stores.items():
        t0 = time.perf_counter()
        timer.update(deltah_s=0.0, target_m3=0.0, unmet_m3=0.0)
        if which == "dense":
            wins = [(slice(0, ds.sizes["y"]), slice(0, ds.sizes["x"]), np.asarray(ds["glacier"].values, "int64"))]
        else:
            wins = windows(ds["glacier_id"], chunk)
        layout_s = time.perf_counter() - t0
        z = {"windows": len(wins), "window_pixels": 0, "glacier_pixels": 0, "glaciers": 0, "failed": 0,
             "disappeared": 0, "dV_m3": 0.0, "smb_area_sum": 0.0, "area_km2": 0.0}
        for ys, xs, mine in wins:
            sub = ds.isel(y=ys, x=xs)
            grid = grid_of(ds, chunk, ys, xs)
            gid = sub["glacier_id"]
            gid = gid.where(gid.isin(mine), 0).astype("int32")  # another window's glaciers: not ours
            state = xr.Dataset({"glacier_id": gid, "thickness": sub["thickness"].fillna(0.0),
                                "surface": sub["surface"],
                                "pixel_area": xr.full_like(sub["surface"], float(sub["pixel_area"]), dtype="float64")})
            state = state.chunk({"y": chunk, "x": chunk})
            down = downscale(cube, grid, state["surface"])
            glaciers = GlacierGeometry.from_dataset(state, mine, grid)
            new, year = annual_step(glaciers, down, model, year=YEAR, features=FEATURES, downscale=DownscaleParams(),
                                    geometry=GeometryParams())
            year = year.compute()
            h0 = state["thickness"].astype("float64").where(state["glacier_id"] > 0, 0.0)
            h1 = new.thickness.where(state["glacier_id"] > 0, 0.0)
            dv, npx = dask.compute(((h1 - h0) * state["pixel_area"]).sum(), (state["glacier_id"] > 0).sum())
            ok = year["failed"].values == 0
            area0 = year["glacier_area"].values  # after the update; the target uses the area before
            reasons.update(str(r) for r in year["failure_reason"].values if r)
            z["window_pixels"] += int(state.sizes["y"] * state.sizes["x"])
            z["glacier_pixels"] += int(npx)
            z["glaciers"] += int(mine.size)
            z["failed"] += int((~ok).sum())
            z["disappeared"] += int(year["disappeared"].values.sum())
            z["dV_m3"] += float(dv)
            z["area_km2"] += float(np.nansum(area0[ok]))
            z["smb_area_sum"] += float(np.nansum(year["smb_glacier"].values[ok] * area0[ok]))
        z["step_s"] = time.perf_counter() - t0
        z["layout_s"] = layout_s
        z["deltah_s"] = timer["deltah_s"]
        z["target_m3"], z["unmet_m3"] = timer["target_m3"], timer["unmet_m3"]
        z["features_smb_rest_s"] = z["step_s"] - layout_s - timer["deltah_s"]
        if which == "dense":  # the delta-h update alone on the zone's dask state: both engines
            z.update(engines(ds, chunk, deltah_update))
        res["zones"][epsg] = z
        print(f"  [{which}] EPSG:{epsg}: {len(wins)} window(s), {z['window_pixels'] / 1e6:.1f} M px, "
              f"{z['glaciers']} glaciers, {z['step_s']:.1f} s (delta-h {z['deltah_s']:.1f} s)", file=sys.stderr)
    res["failure_reasons"] = dict(reasons)
    res["peak_rss_mb"] = status_mb("VmHWM")
    return res


def engines(ds, chunk: int, deltah_update) -> dict:
    """deltah_update on the whole zone as one dask state: fused (gathered pixels) vs flox; same numbers?"""
    import xarray as xr

    state = xr.Dataset({"glacier_id": ds["glacier_id"], "thickness": ds["thickness"].fillna(0.0),
                        "surface": ds["surface"],
                        "pixel_area": xr.full_like(ds["surface"], float(ds["pixel_area"]), dtype="float64")})
    state = state.chunk({"y": chunk, "x": chunk})
    gid = state["glacier_id"].values
    bad = np.unique(gid[(gid > 0) & (state["thickness"].values > 0) & ~np.isfinite(state["surface"].values)])
    ids = np.setdiff1d(np.unique(gid[gid > 0]), bad)  # (ice without surface: a data trap, see the report)
    smb = xr.DataArray(np.random.default_rng(1).normal(-1.0, 0.6, ids.size), dims="glacier", coords={"glacier": ids})
    state = state.assign(glacier_id=state["glacier_id"].where(~state["glacier_id"].isin(bad), 0))
    out = {}
    for engine in ("fused", "flox"):
        t0 = time.perf_counter()
        new, rep = deltah_update(state, smb, engine=engine)
        h = new["thickness"].values
        out[f"deltah_{engine}_s"] = time.perf_counter() - t0
        out[f"_h_{engine}"] = h
    diff = np.nanmax(np.abs(out.pop("_h_fused") - out.pop("_h_flox")))
    out["deltah_engines_max_abs_diff_m"] = float(diff)
    return out


# --------------------------------------------------------------------------- the glacier domain
class PartTimer:
    """Seconds spent in named functions of a module (summed over the threads that call them)."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()
        self.seconds: Counter = Counter()
        self.cpu: Counter = Counter()  # thread CPU seconds (what a part costs whatever else loads the machine)
        self.calls: Counter = Counter()

    def wrap(self, owner, name: str, label: str | None = None) -> None:
        original = getattr(owner, name)
        label = label or name

        def timed(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[label] += time.perf_counter() - t0
                    self.cpu[label] += time.thread_time() - c0
                    self.calls[label] += 1

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.seconds.clear()
        self.cpu.clear()
        self.calls.clear()


def instrument_domain_engine() -> PartTimer:
    """Time the parts of a domain group task (functions of glacgrid.simulate.domain, patched in place)."""
    from glacgrid.domain import Domain
    from glacgrid.simulate import domain as engine

    timer = PartTimer()
    timer.wrap(engine, "open_domain", "open domain")
    timer.wrap(Domain, "group", "read group arrays")
    timer.wrap(engine, "pixel_weights", "bilinear weights")
    timer.wrap(engine, "_group_climate", "read climate window")
    timer.wrap(engine, "_checks", "glacier checks")
    timer.wrap(engine, "pixel_climate", "downscaling terms (orography, weights applied in the feature pass)")
    timer.wrap(engine, "_slope_aspect", "slope/aspect")
    timer.wrap(engine, "_constants", "glacier constants")
    timer.wrap(engine, "spec_of", "spec")
    timer.wrap(engine, "static_at", "static features")
    timer.wrap(engine, "pixel_smb", "downscaling + features + model (pixel_smb, one compiled pass + predict)")
    timer.wrap(engine, "perturbed_curves", "delta-h curves")
    timer.wrap(engine, "deltah_update", "delta-h update")
    timer.wrap(engine, "_write", "store writes + done mark")
    timer.wrap(engine, "_run_group", "group task (total)")
    return timer



def run_domain_child(domain_path: Path, cube_path: Path, threads: int, tmp: Path) -> dict:
    """One annual evolve step of every glacier of the domain with simulate_domain (timed after a warm-up)."""
    import dask

    from glacgrid.config import GeometryParams
    from glacgrid.domain import open_domain
    from glacgrid.simulate import REASONS, DomainRun, simulate_domain

    dask.config.set(scheduler="threads", num_workers=threads)
    timer = instrument_domain_engine()
    dom = open_domain(domain_path)
    model = fit_model()
    run = DomainRun("evolve", np.array([YEAR]), FEATURES)
    # warm-up on the last group (imports done on first use, numba kernels loaded from their cache)
    simulate_domain(dom, cube_path, model, tmp / "warm.zarr", run, groups=[dom.n_groups - 1])
    timer.reset()
    rss0 = status_mb("VmRSS")
    store = tmp / "results.zarr"
    t0 = time.perf_counter()
    simulate_domain(dom, cube_path, model, store, run)
    step_s = time.perf_counter() - t0
    peak = status_mb("VmHWM")
    parts = dict(timer.seconds)
    # the same run over three years: what each year after the first costs (the domain and the climate
    # windows are read, and the weights computed, once per group task)
    run3 = DomainRun("evolve", np.arange(YEAR, YEAR + 3), FEATURES)
    t0 = time.perf_counter()
    simulate_domain(dom, cube_path, model, tmp / "results-3.zarr", run3)
    further_s = (time.perf_counter() - t0 - step_s) / 2
    res = {"step_s": step_s, "further_year_s": further_s, "peak_rss_mb": peak, "rss_before_mb": rss0,
           "parts_s": parts, "groups": dom.n_groups, "group_pixels": dom.group_pixels}
    res.update(domain_summary(dom, store, GeometryParams(), REASONS))
    np.save(tmp / "domain-smb-glacier.npy", res.pop("_smb_glacier"))
    return res


def domain_summary(dom, store: Path, geometry, reasons) -> dict:
    """Pixels, glaciers, isolated glaciers and reasons, and the mass closure of one evolve year (not timed)."""
    from glacgrid.cube import open_store

    r = open_store(store, chunks=None).isel(year=0)
    px = dom.pixels[["glacier_id", "thickness", "pixel_area"]].compute()
    gid = px["glacier_id"].values.astype("int64")
    real = gid > 0
    h0 = np.nan_to_num(px["thickness"].values)[real]
    a = px["pixel_area"].values[real]
    h1 = np.asarray(r["thickness"].values)[real]
    g = gid[real]
    slots = dom.glaciers["glacier"].values
    G = slots.max() + 1
    dv = np.bincount(g, weights=(h1 - h0) * a, minlength=G)[slots]
    area0 = np.bincount(g, weights=np.where(h0 > 0, a, 0.0), minlength=G)[slots]
    failed = r["failed"].values.astype(bool)
    gone = r["disappeared"].values.astype(bool)
    smb = r["smb_glacier"].values
    present = dom.glaciers["rgi_id"].values.astype(object) != ""
    ok = present & ~failed
    keep = ok & ~gone & np.isfinite(smb)
    target = smb * area0 * geometry.rho_water / geometry.rho_ice
    codes = r["failure"].values[present & failed]
    return {"glacier_pixels": int(real.sum()), "glaciers": int(present.sum()), "failed": int((present & failed).sum()),
            "failure_reasons": dict(Counter(reasons[c] for c in codes)), "disappeared": int((ok & gone).sum()),
            "dV_m3": float(dv[keep].sum()), "target_m3": float(target[keep].sum()),
            "dV_disappeared_m3": float(dv[ok & gone].sum()),
            "mean_smb": float(np.nansum(smb[keep] * area0[keep]) / area0[keep].sum()),
            "_smb_glacier": np.where(ok, smb, np.nan)}


def run_floor_child(domain_path: Path, cube_path: Path, tmp: Path, repeats: int = 3) -> dict:
    """The floor: the same science as plain numba/numpy on in-memory arrays of every pixel (2 threads)."""
    import xarray as xr

    import domain_floor as floor
    from glacgrid.config import DownscaleParams, GeometryParams
    from glacgrid.domain import open_domain

    dom = open_domain(domain_path)
    packed = floor.load_packed(dom)
    clim = floor.floor_climate(xr.open_zarr(cube_path).isel(time=slice(0, 12)))  # the step's one year
    model = fit_model()
    coef, icpt = np.asarray(model.coef_, dtype="float64"), float(model.intercept_)
    args = (packed, packed.thickness, packed.surface, clim, coef, icpt, DownscaleParams(), GeometryParams())
    floor.floor_year(*args)  # compile / load the kernels
    rss0 = status_mb("VmRSS")
    times, parts = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = floor.floor_year(*args)
        times.append(time.perf_counter() - t0)
        parts.append((out["smb_s"], out["deltah_s"]))
    rep = out["report"]
    best = int(np.argsort(times)[len(times) // 2])
    G = dom.glaciers.sizes["glacier"]
    smb = np.full(G, np.nan)
    smb[packed.glacier - 1] = out["smb_glacier"]
    np.save(tmp / "floor-smb-glacier.npy", smb)
    target = float(np.nansum(rep["volume_change_target"].values))
    unmet = float(np.nansum(rep["volume_change_unmet"].values))
    dv = float(((out["h"] - packed.thickness) * packed.area).sum())
    return {"step_s": float(np.median(times)), "times_s": times, "smb_s": parts[best][0], "deltah_s": parts[best][1],
            "glacier_pixels": packed.n, "glaciers": int(packed.glacier.size), "peak_rss_mb": status_mb("VmHWM"),
            "rss_before_mb": rss0, "dV_m3": dv, "target_m3": target, "unmet_m3": unmet,
            "disappeared": int(rep["disappeared"].values.sum())}


# --------------------------------------------------------------------------- driver
def child(which: str, zones, mosaic: Path, chunk: int, tmp: Path, threads: int = 2, domain: Path | None = None,
          cube: Path | None = None, tag: str = "") -> dict:
    import os

    out = tmp / f"{which}-{tag or '-'.join(map(str, zones))}.json"
    cmd = [sys.executable, __file__, "--child", which, "--zones", ",".join(map(str, zones)), "--mosaic", str(mosaic),
           "--chunk", str(chunk), "--out", str(out), "--threads", str(threads)]
    if domain is not None:
        cmd += ["--domain", str(domain), "--cube", str(cube)]
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text())


def totals(r: dict) -> dict:
    zs = r["zones"].values()
    keys = ("windows", "window_pixels", "glacier_pixels", "glaciers", "failed", "disappeared", "step_s", "deltah_s",
            "features_smb_rest_s", "layout_s", "dV_m3", "target_m3", "unmet_m3", "smb_area_sum", "area_km2")
    return {k: sum(z[k] for z in zs) for k in keys}


def print_windows(dense, small, full) -> None:
    from glacgrid.units import m3_to_km3

    rows = ([("dense, small zones", dense)] if dense else []) + ([("tiled, small zones", small)] if small else [])
    rows += [("tiled, whole Alps", full)] if full else []
    print(f"{'run':22s} {'windows':>7s} {'pixels':>9s} {'glacier px':>10s} {'glaciers':>8s} {'failed':>6s} "
          f"{'step s':>8s} {'delta-h s':>9s} {'rest s':>7s} {'layout s':>8s} {'peak MB':>8s}")
    for name, r in rows:
        t = totals(r)
        print(f"{name:22s} {t['windows']:7d} {t['window_pixels'] / 1e6:8.1f}M {t['glacier_pixels']:10d} "
              f"{t['glaciers']:8d} {t['failed']:6d} {t['step_s']:8.2f} {t['deltah_s']:9.2f} "
              f"{t['features_smb_rest_s']:7.2f} {t['layout_s']:8.2f} {r['peak_rss_mb']:8.0f}")
    if dense and small:
        td, ts = totals(dense), totals(small)
        print(f"dense / tiled step time on the small zones : {td['step_s'] / ts['step_s']:6.2f} x "
              f"(peak memory {dense['peak_rss_mb'] / small['peak_rss_mb']:.2f} x)")
        for epsg, z in dense["zones"].items():
            print(f"delta-h alone, whole zone {epsg} as one dask state: fused {z['deltah_fused_s']:.2f} s, flox "
                  f"{z['deltah_flox_s']:.2f} s ({z['deltah_flox_s'] / z['deltah_fused_s']:.1f} x), max |dh| "
                  f"difference {z['deltah_engines_max_abs_diff_m']:.1e} m")
    if full:
        t = totals(full)
        mean_smb = t["smb_area_sum"] / t["area_km2"] if t["area_km2"] else float("nan")
        print(f"windows, whole Alps: {t['step_s']:.1f} s per annual step ({t['deltah_s']:.1f} s delta-h, "
              f"{t['features_smb_rest_s']:.1f} s checks + downscaling + features + SMB + new geometry, "
              f"{t['layout_s']:.1f} s window layout), peak {full['peak_rss_mb'] / 1024:.2f} GiB, "
              f"{t['glaciers']} glaciers ({t['failed']} isolated: {full['failure_reasons']}), "
              f"{t['glacier_pixels']} glacier pixels in {t['windows']} windows of {t['window_pixels'] / 1e6:.0f} M "
              f"pixels; area-weighted mean SMB {mean_smb:.2f} m w.e., volume change {m3_to_km3(t['dV_m3']):.4f} km3 "
              f"(SMB x area x rho_w / rho_i - unmet: {m3_to_km3(t['target_m3'] - t['unmet_m3']):.4f} km3, relative "
              f"closure error {abs(t['dV_m3'] - (t['target_m3'] - t['unmet_m3'])) / abs(t['target_m3']):.1e}); "
              f"setup {full['setup_s']:.1f} s")


def print_domain(floor: dict | None, doms: dict, full: dict | None, tmp: Path) -> None:
    from glacgrid.units import m3_to_km3

    print("\nOne annual evolve step of the whole Alps (2 threads; seconds per Alps year)")
    print(f"{'contender':24s} {'s / Alps year':>13s} {'x floor':>8s} {'windows/this':>12s} {'peak MiB':>9s} "
          f"{'glacier px':>11s}")
    win_s = totals(full)["step_s"] if full else float("nan")
    fl = floor["step_s"] if floor else float("nan")
    rows = ([("floor (numba, in memory)", floor, 1)] if floor else [])
    rows += [(f"domain x{k}" if k > 1 else "domain", r, k) for k, r in sorted(doms.items())]
    for name, r, k in rows:
        per_year = r["step_s"] / k
        print(f"{name:24s} {per_year:13.2f} {per_year / fl:8.1f} {win_s / per_year:12.1f} {r['peak_rss_mb']:9.0f} "
              f"{r['glacier_pixels']:11,d}")
    if 1 in doms and "further_year_s" in doms[1]:
        per_year = doms[1]["further_year_s"]
        print(f"{'domain, each further yr':24s} {per_year:13.2f} {per_year / fl:8.1f} {win_s / per_year:12.1f} "
              f"{'':>9s} {doms[1]['glacier_pixels']:11,d}")
    if full:
        t = totals(full)
        print(f"{'windows (tiled)':24s} {t['step_s']:13.2f} {t['step_s'] / fl:8.1f} {1.0:12.1f} "
              f"{full['peak_rss_mb']:9.0f} {t['glacier_pixels']:11,d}")
    if 1 in doms:
        d = doms[1]
        print(f"domain: {d['groups']} groups of {d['group_pixels']:,} pixels, {d['glaciers']} glaciers, "
              f"{d['failed']} isolated {d['failure_reasons']}, {d['disappeared']} disappeared; area-weighted mean "
              f"SMB {d['mean_smb']:.3f} m w.e.; volume change of the glaciers left {m3_to_km3(d['dV_m3']):.5f} km3 vs "
              f"SMB x area x rho_w / rho_i {m3_to_km3(d['target_m3']):.5f} km3 (relative closure error "
              f"{abs(d['dV_m3'] - d['target_m3']) / abs(d['target_m3']):.1e}); RSS before the step "
              f"{d['rss_before_mb']:.0f} MiB")
        wall = d["step_s"]
        print(f"domain step, time per part (thread-seconds over {d['groups']} group tasks on 2 threads; wall "
              f"{wall:.2f} s):")
        for name, sec in sorted(d["parts_s"].items(), key=lambda kv: -kv[1]):
            print(f"  {name:32s} {sec:7.2f}")
    if floor:
        print(f"floor: median of {len(floor['times_s'])} = {floor['step_s']:.3f} s ({floor['smb_s']:.3f} s pixel SMB + "
              f"glacier sums, {floor['deltah_s']:.3f} s delta-h); volume change {m3_to_km3(floor['dV_m3']):.5f} km3 vs "
              f"target - unmet {m3_to_km3(floor['target_m3'] - floor['unmet_m3']):.5f} km3")
        a, b = tmp / "domain-smb-glacier.npy", tmp / "floor-smb-glacier.npy"
        if a.exists() and b.exists():
            ds_, fs_ = np.load(a), np.load(b)
            both = np.isfinite(ds_) & np.isfinite(fs_)
            print(f"same science? glacier SMB domain vs floor on {both.sum()} glaciers: max |diff| "
                  f"{np.abs(ds_[both] - fs_[both]).max():.2e} m w.e., mean diff {np.mean(ds_[both] - fs_[both]):.1e}")
    if len(doms) > 1:
        ks = sorted(doms)
        print("memory vs region size (domain contender): " + ", ".join(
            f"x{k}: {doms[k]['glacier_pixels'] / 1e6:.1f} M px, {doms[k]['step_s']:.1f} s, peak {doms[k]['peak_rss_mb']:.0f}"
            f" MiB (RSS before {doms[k]['rss_before_mb']:.0f})" for k in ks))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="windows only on the small zones (EPSG 32630 and 32634), with the dense baseline")
    p.add_argument("--no-windows", action="store_true", help="skip the windows contender (about 2 min)")
    p.add_argument("--dense", action="store_true", help="also the dense baseline on the small zones")
    p.add_argument("--scales", default="1,2,4", help="region sizes of the domain contender (replicated domains)")
    p.add_argument("--mosaic", type=Path, default=MOSAIC)
    p.add_argument("--chunk", type=int, default=512, help="block size (pixels) of the dask states and windows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--zones", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--domain", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cube", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        if a.child == "domain":
            res = run_domain_child(a.domain, a.cube, a.threads, a.out.parent / a.out.stem)
        elif a.child == "floor":
            res = run_floor_child(a.domain, a.cube, a.out.parent)
        else:
            zones = tuple(int(z) for z in a.zones.split(","))
            res = run_child(a.child, zones, a.mosaic, a.chunk)
        a.out.write_text(json.dumps(res))
        return
    import domain_floor

    t_all = time.perf_counter()
    dom = domain_floor.ensure_domain()
    cube = domain_floor.ensure_cube(dom, YEAR, 3)  # (the first year is the step; three for the further years)
    scales = [int(k) for k in a.scales.split(",") if k]
    stores = {k: domain_floor.replicate(dom, k) for k in scales}
    with tempfile.TemporaryDirectory(prefix="evolve-bench-", dir="/tmp") as tmp:
        tmp = Path(tmp)
        floor = child("floor", (), a.mosaic, a.chunk, tmp, a.threads, Path(dom.path), cube, "floor")
        doms = {}
        for k, store in stores.items():
            (tmp / f"domain-x{k}").mkdir()
            doms[k] = child("domain", (), a.mosaic, a.chunk, tmp, a.threads, store, cube, f"x{k}")
            if k == 1:
                for f in ("domain-smb-glacier.npy",):
                    (tmp / f"domain-x{k}" / f).rename(tmp / f)
            print(f"  [domain x{k}] {doms[k]['step_s']:.2f} s, peak {doms[k]['peak_rss_mb']:.0f} MiB", file=sys.stderr)
        dense = small = full = None
        if not a.no_windows or a.quick:
            ensure_mosaic(a.mosaic)
        if a.quick or a.dense:
            dense = child("dense", SMALL, a.mosaic, a.chunk, tmp)
            small = child("tiled", SMALL, a.mosaic, a.chunk, tmp)
        if not a.no_windows and not a.quick:
            full = child("tiled", ALL, a.mosaic, a.chunk, tmp)
        print_windows(dense, small, full)
        print_domain(floor, doms, full, tmp)
    print(f"benchmark wall time {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
