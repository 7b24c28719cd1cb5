"""The globe, simulated and on paper: a 1 % sample of a synthetic RGI 6.0 inventory run on the domain engine,
and the cost of every glacier on Earth extrapolated from it.

Steps (everything seeded; see :mod:`glacgrid.testing._globe`):

1. the synthetic global inventory (19 RGI 6.0 regions, 215,547 glaciers, their real counts and areas);
2. the domain of ``--fraction`` of every region's glaciers at 100 m and at 25 m
   (:func:`glacgrid.domain.domain_from_windows`): build time, pixels, glaciers, groups;
3. a synthetic global climate cube at ``--cube-res`` degrees over the sampled glaciers (``--years`` years);
4. after a warm-up on a tiny domain (numba compilation), :func:`glacgrid.simulate.simulate_domain` with
   ``--threads`` dask threads (``NUMBA_NUM_THREADS`` the same): 1 evolve year and ``--years`` reconstruct
   years on each domain, results-store writes included -> seconds per pixel-year;
5. one group task alone: VmHWM and wall time of a child process running the domain's largest group for
   ``--years`` years (dask ``sync``; numba kernels from their on-disk cache), and the VmHWM of a child that
   only imports and opens the domain (the base);
6. the extrapolation to the full inventory (pixels = area / resolution^2; groups from
   :func:`glacgrid.domain.group_layout` on each region's glaciers): one global year and a 100-year evolve
   projection on one 2-core node and on 100 nodes x 32 cores **assuming linear scaling in cores**, and a
   per-region table (markdown).

Usage: nice python benchmarks/globe.py [--fraction 0.01] [--years 4] [--threads 2] [--skip-25]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ARGS.add_argument("--fraction", type=float, default=0.01)
ARGS.add_argument("--years", type=int, default=4, help="reconstruct years (evolve runs the first one)")
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--cube-res", type=float, default=0.25)
ARGS.add_argument("--workdir", default="/tmp/glacgrid-globe")
ARGS.add_argument("--skip-25", action="store_true", help="only the 100 m domain")
ARGS.add_argument("--groups-per-task", type=int, default=16)
ARGS.add_argument("--nodes", type=int, default=100)
ARGS.add_argument("--cores", type=int, default=32)
ARGS.add_argument("--extrapolate", help="only the extrapolation, from a measured.json of an earlier run")
ARGS.add_argument("--child", help=argparse.SUPPRESS)  # internal: JSON of a one-group run

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from domain_floor import status_mb  # noqa: E402
FIRST_YEAR = 2001



def child(spec: dict) -> None:
    """One group of a domain alone in this process (dask sync), or only the imports (``group`` None)."""
    import dask
    import numpy as np

    from glacgrid.domain import open_domain
    from glacgrid.simulate import DomainRun, simulate_domain
    from glacgrid.testing._domain import DOMAIN_FEATURES, domain_model

    dom = open_domain(spec["domain"])
    model = domain_model()
    out = {"base_mb": status_mb("VmHWM")}
    if spec["group"] is not None:
        years = np.arange(FIRST_YEAR, FIRST_YEAR + spec["years"])
        run = DomainRun(spec["mode"], years, DOMAIN_FEATURES)
        t0 = time.perf_counter()
        with dask.config.set(scheduler="sync"):
            simulate_domain(dom, spec["cube"], model, spec["store"], run, groups=[spec["group"]])
        out["seconds"] = time.perf_counter() - t0
    out["vmhwm_mb"] = status_mb("VmHWM")
    print("CHILD " + json.dumps(out))


def run_child(spec: dict, threads: int) -> dict:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                         env=env, check=False)
    for line in res.stdout.splitlines():
        if line.startswith("CHILD "):
            return json.loads(line[6:])
    raise RuntimeError(f"child failed:\n{res.stderr[-3000:]}")


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_h(seconds: float) -> str:
    h = seconds / 3600
    if seconds < 120:
        return f"{seconds:,.1f} s"
    if h < 1:
        return f"{seconds / 60:,.1f} min"
    return f"{h:,.1f} h" if h < 48 else f"{h / 24:,.1f} d"


def main() -> None:
    a = ARGS.parse_args()
    if a.child:
        child(json.loads(a.child))
        return
    if a.extrapolate:
        extrapolate(json.loads(Path(a.extrapolate).read_text()), a)
        return
    os.environ["NUMBA_NUM_THREADS"] = str(a.threads)
    import dask
    import numpy as np

    from glacgrid import cube as cube_mod
    from glacgrid.simulate import DomainRun, simulate_domain
    from glacgrid.testing._domain import DOMAIN_FEATURES, domain_model
    from glacgrid.testing._globe import global_cube, global_domain, global_inventory

    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"# globe benchmark: fraction {a.fraction}, {a.years} reconstruct years, {a.threads} threads, "
          f"{os.cpu_count()} CPUs, load average at start {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}\n")
    t0 = time.perf_counter()
    inv = global_inventory(seed=0)
    print(f"inventory: {len(inv):,} glaciers, {inv['area_km2'].sum():,.0f} km2 ({time.perf_counter() - t0:.1f} s)")

    # ------------------------------------------------------------------ domains
    resolutions = [100.0] if a.skip_25 else [100.0, 25.0]
    doms, build = {}, []
    for res in resolutions:
        t0 = time.perf_counter()
        dom = global_domain(work / f"globe-{int(res)}m.zarr", fraction=a.fraction, resolution=res)
        dt = time.perf_counter() - t0
        tab = dom.table
        doms[res] = dom
        build.append([f"{res:.0f} m", f"{dt:.1f}", f"{len(tab):,}", f"{int(tab['n_pixels'].sum()):,}", dom.n_groups,
                      f"{dom.group_pixels:,}", tab["epsg"].nunique(), f"{tab['area_km2'].sum():,.0f}"])
    print("\n## Build of the sampled domain\n")
    print(md_table(["resolution", "build (s)", "glaciers", "pixels", "groups", "pixels per group (C)", "CRSs",
                    "area (km2)"], build))

    # ------------------------------------------------------------------ climate
    t0 = time.perf_counter()
    px = doms[resolutions[-1]].pixels[["lon", "lat", "glacier_id"]].compute()
    real = px["glacier_id"].values > 0
    cube = global_cube(px["lon"].values[real], px["lat"].values[real], work / "globe-cube.zarr", start=FIRST_YEAR,
                       end=FIRST_YEAR + a.years - 1, resolution=a.cube_res)
    c = cube_mod.open_store(cube, chunks=None)
    print(f"\ncube: {a.years} years, {c.sizes['lat']} x {c.sizes['lon']} cells at {a.cube_res} deg "
          f"({time.perf_counter() - t0:.1f} s)")
    del px

    # ------------------------------------------------------------------ warm-up (numba compilation)
    model = domain_model()
    t0 = time.perf_counter()
    tiny = global_domain(work / "globe-tiny.zarr", fraction=1e-4, resolution=100.0)
    with dask.config.set(scheduler="threads", num_workers=a.threads):
        for mode in ("reconstruct", "evolve"):
            simulate_domain(tiny, cube, model, work / f"warm-{mode}.zarr",
                            DomainRun(mode, np.arange(FIRST_YEAR, FIRST_YEAR + 1), DOMAIN_FEATURES))
    print(f"warm-up: {time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ timed runs
    cost, runs = {}, []
    for res, dom in doms.items():
        n_pix = int(dom.table["n_pixels"].sum())
        for mode, ny in (("evolve", 1), ("reconstruct", a.years)):
            store = work / f"res-{int(res)}m-{mode}.zarr"
            run = DomainRun(mode, np.arange(FIRST_YEAR, FIRST_YEAR + ny), DOMAIN_FEATURES)
            shutil.rmtree(store, ignore_errors=True)
            t0 = time.perf_counter()
            with dask.config.set(scheduler="threads", num_workers=a.threads):
                simulate_domain(dom, cube, model, store, run)
            dt = time.perf_counter() - t0
            r = cube_mod.open_store(store, chunks=None)
            sel = dom.table.index.to_numpy()
            smb = r["smb_glacier"].sel(glacier=sel).values
            failed = int(r["failed"].sel(glacier=sel).values.sum())
            cost[(res, mode)] = dt / (n_pix * ny)
            runs.append([f"{res:.0f} m", mode, ny, f"{n_pix:,}", f"{dt:.1f}", f"{n_pix * ny / dt / 1e6:.2f}",
                         f"{cost[(res, mode)] * 1e6:.3f}", f"{np.nanmean(smb):.2f}", failed])
    print("\n## Domain runs (simulate_domain, results-store writes included)\n")
    print(md_table(["resolution", "mode", "years", "pixels", "wall (s)", "M pixel-years/s",
                    f"us per pixel-year ({a.threads} threads)", "mean SMB (m w.e.)", "failed glacier-years"], runs))

    # ------------------------------------------------------------------ memory per task
    mem, gcost = {}, {}
    rows = []
    for res, dom in doms.items():
        tab = dom.table
        k = int(tab.groupby("group")["n_pixels"].sum().idxmax())
        base = run_child({"domain": str(dom.path), "group": None}, a.threads)
        for mode in ("evolve", "reconstruct"):
            ny = a.years  # several years: the per-year cost of a long task, start-up spread over them
            spec = {"domain": str(dom.path), "group": k, "mode": mode, "years": ny, "cube": str(cube),
                    "store": str(work / f"child-{int(res)}m-{mode}.zarr")}
            shutil.rmtree(spec["store"], ignore_errors=True)
            out = run_child(spec, a.threads)
            n_k = int(tab[tab["group"] == k]["n_pixels"].sum())
            mem[(res, mode)] = (base["vmhwm_mb"], out["vmhwm_mb"], n_k, dom.group_pixels)
            gcost[(res, mode)] = out["seconds"] / (n_k * ny)
            per_px = (out["vmhwm_mb"] - base["vmhwm_mb"]) * 2**20 / dom.group_pixels
            rows.append([f"{res:.0f} m", mode, k, f"{n_k:,}", f"{dom.group_pixels:,}", f"{base['vmhwm_mb']:.0f}",
                         f"{out['vmhwm_mb']:.0f}", f"{per_px:.0f}",
                         f"{out['seconds']:.1f}", f"{gcost[(res, mode)] * 1e6:.2f}"])
    print("\n## One group task alone (child process, dask sync, numba on the threads): peak memory and time\n")
    print(md_table(["resolution", "mode", "group", "pixels in group", "C", "base VmHWM (MB)", "VmHWM (MB)",
                    "bytes per pixel of C", "wall (s)", "us per pixel-year"], rows))

    # ------------------------------------------------------------------ extrapolation
    lo = min(doms)  # the finest measured resolution: its costs stand for 25 m when 25 m was skipped
    hi = max(doms)
    measured = {"threads": a.threads,
                "cost_us": {"evolve": {"100": cost[(hi, "evolve")] * 1e6, "25": cost[(lo, "evolve")] * 1e6},
                            "reconstruct": {"100": cost[(hi, "reconstruct")] * 1e6,
                                            "25": cost[(lo, "reconstruct")] * 1e6}},
                "group_cost_us": {"evolve": gcost[(lo, "evolve")] * 1e6,
                                  "reconstruct": gcost[(lo, "reconstruct")] * 1e6},
                "base_mb": mem[(lo, "evolve")][0],
                "bytes_per_pixel": max((m[1] - m[0]) * 2**20 / m[3] for (res, _), m in mem.items() if res == lo),
                "load_end": os.getloadavg()[0]}
    (work / "measured.json").write_text(json.dumps(measured, indent=1))
    extrapolate(measured, a)
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")


def extrapolate(measured: dict, a) -> None:
    """The full inventory's pixels, groups, tasks, memory and times from the measured costs (markdown tables)."""
    import numpy as np

    from glacgrid.domain import DEFAULT_GROUP_PIXELS, group_layout
    from glacgrid.testing._globe import RGI6_REGIONS, global_inventory

    threads = measured["threads"]
    c_ev = {float(k): v * 1e-6 for k, v in measured["cost_us"]["evolve"].items()}
    c_re = {float(k): v * 1e-6 for k, v in measured["cost_us"]["reconstruct"].items()}
    base_mb, bpp = measured["base_mb"], measured["bytes_per_pixel"]
    g_ev, g_re = (measured["group_cost_us"][m] * 1e-6 for m in ("evolve", "reconstruct"))
    cores = a.nodes * a.cores
    slots = cores // threads  # array tasks running at once
    per = a.groups_per_task
    inv = global_inventory(seed=0).sort_values(["region", "lon"])
    # per region and resolution: groups (group_layout on the region's glaciers), group and task pixel sums
    lay = {}
    for r, sub in inv.groupby("region", sort=True):  # a loop over the 19 regions
        for res in (25.0, 100.0):
            n = np.maximum(1, np.round(sub["area_km2"].to_numpy() * 1e6 / res**2)).astype("int64")
            group, C, _ = group_layout(n, DEFAULT_GROUP_PIXELS)
            gpix = np.bincount(group, weights=n).astype("int64")
            tpix = np.add.reduceat(gpix, np.arange(0, gpix.size, per))
            lay[(r, res)] = {"n": int(n.sum()), "groups": gpix.size, "C": C, "gpix": gpix, "tpix": tpix}
    print(f"\n## Extrapolation to the full inventory ({len(inv):,} glaciers)\n")
    print(f"Measured costs (wall time on {threads} threads, store writes included): evolve "
          f"{c_ev[100.0] * 1e6:.2f} / {c_ev[25.0] * 1e6:.2f} us per pixel-year, reconstruct "
          f"{c_re[100.0] * 1e6:.2f} / {c_re[25.0] * 1e6:.2f} us per pixel-year (100 m / 25 m). Pixels = area / "
          f"resolution^2. **Linear scaling in cores is assumed**: {a.nodes} nodes x {a.cores} cores = {slots:,} "
          f"array tasks of {threads} cores at once, ideal time = pixel-years x cost x {threads} / {cores:,}; the "
          "array's real time is at least that of its largest task (its groups run one after the other), from the "
          f"cost of one group alone ({g_ev * 1e6:.2f} / {g_re * 1e6:.2f} us per pixel-year, evolve / reconstruct), "
          "given for one group per task and for "
          f"{per} groups per task. Memory per task ({threads} groups in flight) = {base_mb:.0f} MB + {threads} x "
          f"{bpp:.0f} B x C (C: the region's pixels per group).\n")
    glob = []
    for res in (100.0, 25.0):
        P = sum(lay[(r, res)]["n"] for r in RGI6_REGIONS.index)
        big_group = max(lay[(r, res)]["gpix"].max() for r in RGI6_REGIONS.index)
        big_task = max(lay[(r, res)]["tpix"].max() for r in RGI6_REGIONS.index)
        ntask = sum(lay[(r, res)]["tpix"].size for r in RGI6_REGIONS.index)
        ngroup = sum(lay[(r, res)]["groups"] for r in RGI6_REGIONS.index)
        for mode, cc, gc, years in (("evolve", c_ev, g_ev, 100), ("reconstruct", c_re, g_re, 1)):
            one = P * cc[res]
            glob.append([f"{res:.0f} m", mode, years, f"{P / 1e9:.3f} G", fmt_h(one), fmt_h(years * one),
                         fmt_h(years * one * threads / cores),
                         f"{fmt_h(years * big_group * gc)} ({ngroup:,} tasks)",
                         f"{fmt_h(years * big_task * gc)} ({ntask:,} tasks)",
                         f"{years * one * threads / 3600 / a.cores:,.2f}"])
    print(md_table(["resolution", "mode", "years", "pixels", f"1 year, one {threads}-core node",
                    f"all years, one {threads}-core node", f"all years, {a.nodes} x {a.cores} cores, ideal",
                    "largest task, 1 group/task", f"largest task, {per} groups/task",
                    f"node-hours ({a.cores} cores)"], glob))
    rows, tot = [], np.zeros(9)
    for r in RGI6_REGIONS.index:
        l25, l100 = lay[(r, 25.0)], lay[(r, 100.0)]
        mem_task = base_mb + threads * bpp * l25["C"] / 2**20
        nh25 = l25["n"] * 100 * c_ev[25.0] * threads / 3600 / a.cores
        nh100 = l100["n"] * 100 * c_ev[100.0] * threads / 3600 / a.cores
        glaciers = int(RGI6_REGIONS.loc[r, "count"])
        rows.append([r, RGI6_REGIONS.loc[r, "name"], f"{glaciers:,}", f"{l25['n'] / 1e6:,.1f} M",
                     f"{l100['n'] / 1e6:,.2f} M", l25["groups"], l100["groups"], f"{l25['C'] / 1e6:.2f} M",
                     l25["tpix"].size, f"{mem_task / 1024:.1f} GB",
                     fmt_h(100 * l25["tpix"].max() * g_ev), f"{nh25:,.2f}", f"{nh100:,.3f}"])
        tot += [glaciers, l25["n"], l100["n"], l25["groups"], l100["groups"], l25["tpix"].size, nh25, nh100, 0]
    rows.append(["", "**total**", f"{int(tot[0]):,}", f"{tot[1] / 1e6:,.0f} M", f"{tot[2] / 1e6:,.1f} M",
                 int(tot[3]), int(tot[4]), "", int(tot[5]), "", "", f"{tot[6]:,.2f}", f"{tot[7]:,.3f}"])
    print(f"\n### Per RGI region (groups of {DEFAULT_GROUP_PIXELS:,} pixels, raised to the region's largest "
          f"glacier; array tasks of {per} groups at 25 m; 100-year evolve)\n")
    print(md_table(["RGI", "region", "glaciers", "pixels 25 m", "pixels 100 m", "groups 25 m", "groups 100 m",
                    "C 25 m", "array tasks 25 m", "memory per task 25 m", "largest task 25 m, 100 years",
                    f"node-hours 25 m ({a.cores} cores)", "node-hours 100 m"], rows))


if __name__ == "__main__":
    main()
