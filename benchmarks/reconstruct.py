"""Reconstruct mode on the whole Alps glacier domain: pixel-years per second, and the ANN inference ratio.

Inputs (see ``domain_floor.py``): the Alps glacier domain (3,927 glaciers, 3.2 M pixels at 25 m, built
once from the Farinotti tiles and cached in ``/tmp/glacgrid-shared``), a seeded synthetic monthly climate
cube of ``--years`` hydrological years over it (Zarr store, written once), and the models of ``evolve.py``
(the lasso of ``fit_model``) or an ANN of the ALPGM preset fitted in a few epochs on a synthetic table of
the same features.

Contenders, each in its own subprocess (peak memory = the child's VmHWM):

* ``reconstruct``: :func:`glacgrid.simulate.simulate_domain` in mode ``"reconstruct"`` for N years (lasso),
  the results-store writes included, dask threads (``--threads``, default 2, ``NUMBA_NUM_THREADS`` the same),
  timed after a warm-up on one group; the time of each part of the group tasks is printed.
* ``floor``: the same science without stores or tasks -- one numba pass (``prange``) over in-memory arrays
  of every pixel: bilinear sampling of the monthly fields with the lapse-rate correction, yearly CPDD and
  snowfall, the linear model, per-glacier area-weighted means (``np.bincount``) of each year.
* ``ann``: the same reconstruct run with the ANN, one thread (dask ``sync``, one torch and numba thread);
  the time inside :func:`glacgrid.inference.pixel_smb` (features + network) is the engine's inference.
* ``bare``: the same network's forward pass on the same standardised feature matrix (every pixel-year,
  assembled before the clock starts with the engine's public kernels), batches of 65,536 rows, one thread.

Targets: reconstruct >= 3 M pixel-years per second; ANN (pixel_smb) <= 1.3 x the bare forward pass.

Usage: python benchmarks/reconstruct.py [--years 10] [--ann-years 2] [--threads 2] [--year-batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from domain_floor import status_mb  # noqa: E402

LAST_YEAR = 2015
from evolve import FEATURES, fit_model, instrument_domain_engine  # noqa: E402



def fit_ann(seed: int = 0, epochs: int = 5):
    """An ANN (ALPGM preset, a few epochs) on the synthetic table of ``evolve.fit_model``."""
    from glacgrid.testing import domain_model

    return domain_model(FEATURES, seed, kind="ann", preset="alpgm", epochs=epochs)


# --------------------------------------------------------------------------- children
def run_engine(domain_path: Path, cube_path: Path, model, years: np.ndarray, threads: int, tmp: Path,
               year_batch: int) -> dict:
    import dask

    from glacgrid.domain import open_domain
    from glacgrid.simulate import DomainRun, simulate_domain

    dask.config.set(scheduler="threads" if threads > 1 else "sync", num_workers=threads)
    timer = instrument_domain_engine()
    dom = open_domain(domain_path)
    run = DomainRun("reconstruct", years, FEATURES, year_batch=year_batch)
    simulate_domain(dom, cube_path, model, tmp / "warm.zarr", run, groups=[dom.n_groups - 1])  # warm-up
    timer.reset()
    rss0 = status_mb("VmRSS")
    t0 = time.perf_counter()
    simulate_domain(dom, cube_path, model, tmp / "results.zarr", run)
    seconds = time.perf_counter() - t0
    peak = status_mb("VmHWM")
    npx = int(dom.glaciers["n_pixels"].values.sum())
    from glacgrid.cube import open_store

    res = open_store(tmp / "results.zarr", chunks=None)
    real = dom.glaciers["rgi_id"].values.astype(object) != ""  # padding slots are not glaciers
    smb = res["smb_glacier"].values[:, real]
    return {"seconds": seconds, "pixels": npx, "years": int(years.size), "pixel_years_per_s": npx * years.size / seconds,
            "parts_s": dict(timer.seconds), "parts_cpu_s": dict(timer.cpu), "peak_rss_mb": peak, "rss_before_mb": rss0,
            "groups": dom.n_groups,
            "failed": int(res["failed"].values[:, real].max(axis=0).sum()), "mean_smb_glacier": float(np.nanmean(smb))}


def run_floor(domain_path: Path, cube_path: Path, repeats: int = 3) -> dict:
    import xarray as xr

    import domain_floor as floor
    from glacgrid.config import DownscaleParams
    from glacgrid.domain import open_domain

    dom = open_domain(domain_path)
    p = floor.load_packed(dom)
    clim = floor.floor_climate(xr.open_zarr(cube_path))
    model = fit_model()
    coef, icpt = np.asarray(model.coef_, dtype="float64"), float(model.intercept_)
    floor.floor_smb(p, p.thickness, p.surface, clim, coef, icpt, False, DownscaleParams())  # compile / load
    rss0 = status_mb("VmRSS")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, gl = floor.floor_smb(p, p.thickness, p.surface, clim, coef, icpt, False, DownscaleParams())
        times.append(time.perf_counter() - t0)
    ny = clim["t2m"].shape[0]
    s = float(np.median(times))
    return {"seconds": s, "times_s": times, "pixels": p.n, "years": ny, "pixel_years_per_s": p.n * ny / s,
            "peak_rss_mb": status_mb("VmHWM"), "rss_before_mb": rss0, "mean_smb_glacier": float(np.nanmean(gl))}


def feature_matrix(dom, cube, model, years: np.ndarray, inputs: list | None = None) -> np.ndarray:
    """The standardised float32 feature rows of every pixel-year, with the engine's public kernels (not timed).
    ``inputs`` collects each group's arguments of ``pixel_smb`` with the climate already downscaled (the
    inference given a downscaled cube, as the dense path's blockwise ``infer`` gets it)."""
    from glacgrid.config import DownscaleParams
    from glacgrid.downscale import downscale_pixels, pixel_weights
    from glacgrid.features import hydrological_years
    from glacgrid.inference import assemble_rows, spec_of, static_at

    mean, std = np.asarray(model.norm_["x_mean"]), np.asarray(model.norm_["x_std"])
    hy, days = hydrological_years(cube[["t2m", "tp"]], int(years[0]), int(years[-1]))
    hy = hy.transpose("year", "month", "lat", "lon").compute()
    t2m, tp, orog = hy["t2m"].values.astype("float32"), hy["tp"].values.astype("float32"), cube["orog"].values
    ny = years.size
    parts = []
    for k in range(dom.n_groups):  # a loop over the 13 groups (not timed)
        g = dom.group(k)
        n = g.n_real_pixels
        z = g.surface[:n].astype("float64")
        pos = g.glacier_id[:n].astype("int64") - int(g.glacier[0])
        G = g.glacier.size
        a = g.pixel_area[:n]
        zmax = np.full(G, -np.inf)
        np.maximum.at(zmax, pos, z)
        const = {"area": np.bincount(pos, weights=a, minlength=G) / 1e6, "max_elevation": zmax,
                 "min_elevation": zmax}
        w = pixel_weights(cube["lat"].values, cube["lon"].values, g.lat[:n], g.lon[:n])
        win = (slice(None), slice(None), w.lat_window, w.lon_window)
        temp, prcp = downscale_pixels(t2m[win].reshape(ny * 12, *t2m[win].shape[2:]),
                                      tp[win].reshape(ny * 12, *tp[win].shape[2:]), orog[w.lat_window, w.lon_window],
                                      w, z.astype("float32"), DownscaleParams())
        spec = spec_of(FEATURES, const, g.glacier, DownscaleParams())
        sa = np.stack([g.slope[:n], g.aspect_cos[:n], g.aspect_sin[:n]], axis=1).astype("float32")
        static = static_at(spec, z, g.glacier_id[:n], g.lon[:n], g.lat[:n], sa)
        corr = spec.lapse_rate * (z - z.astype("float32")).astype("float32")
        X, _ = assemble_rows(spec, temp.reshape(ny, 12, n), prcp.reshape(ny, 12, n), days.values, corr,
                             np.arange(n, dtype="int64"), static, mean=mean, std=std, zero_bad=True)
        parts.append(X)
        if inputs is not None:
            key = k * g.glacier_id.size + np.arange(n, dtype="int64")
            inputs.append(((temp.reshape(ny, 12, n), prcp.reshape(ny, 12, n)), days.values, corr, static, spec, key))
    return np.concatenate(parts)


def run_bare(domain_path: Path, cube_path: Path, model_dir: Path, years: np.ndarray) -> dict:
    import torch
    import xarray as xr

    from glacgrid.domain import open_domain
    from glacgrid.models import load_model

    torch.set_num_threads(1)
    dom = open_domain(domain_path)
    model = load_model(model_dir)
    inputs: list = []
    X = feature_matrix(dom, xr.open_zarr(cube_path), model, years, inputs)
    tensor = torch.from_numpy(X)
    net = model._net_for("cpu")
    out = np.empty(X.shape[0], dtype="float32")
    batch = 65_536

    def run(i0):
        with torch.inference_mode():
            out[i0:i0 + batch] = net(tensor[i0:i0 + batch]).squeeze(1).numpy()

    run(0)  # torch's first call
    rss0 = status_mb("VmRSS")
    t0, c0 = time.perf_counter(), time.thread_time()
    for i0 in range(0, X.shape[0], batch):
        run(i0)
    seconds, cpu_s = time.perf_counter() - t0, time.thread_time() - c0
    from glacgrid.inference import pixel_smb

    t0, c0 = time.perf_counter(), time.thread_time()  # the engine's inference given the downscaled climate
    for climate, days, corr, static, spec, key in inputs:
        pixel_smb(model, climate, days, corr, static, spec, key=key)
    inference_s, inference_cpu_s = time.perf_counter() - t0, time.thread_time() - c0
    return {"seconds": seconds, "cpu_s": cpu_s, "inference_s": inference_s, "inference_cpu_s": inference_cpu_s,
            "rows": int(X.shape[0]), "rows_per_s": X.shape[0] / seconds,
            "peak_rss_mb": status_mb("VmHWM"), "rss_before_mb": rss0,
            "mean_smb": float((out.astype("float64") * model.norm_["y_std"] + model.norm_["y_mean"]).mean())}


def child(which: str, tmp: Path, args: argparse.Namespace, domain: Path, cube: Path, cube_ann: Path,
          model_dir: Path, threads: int) -> dict:
    out = tmp / f"{which}.json"
    cmd = [sys.executable, __file__, "--child", which, "--out", str(out), "--domain", str(domain), "--cube", str(cube),
           "--cube-ann", str(cube_ann), "--model", str(model_dir), "--threads", str(threads), "--years",
           str(args.years), "--ann-years", str(args.ann_years), "--year-batch", str(args.year_batch)]
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--years", type=int, default=10, help="hydrological years of the lasso run (and the floor)")
    p.add_argument("--ann-years", type=int, default=2, help="hydrological years of the ANN runs")
    p.add_argument("--threads", type=int, default=2, help="threads of the reconstruct and floor contenders")
    p.add_argument("--year-batch", type=int, default=4, help="DomainRun.year_batch")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--skip-ann", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--domain", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cube", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cube-ann", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    years = np.arange(LAST_YEAR - a.years + 1, LAST_YEAR + 1)
    ann_years = np.arange(LAST_YEAR - a.ann_years + 1, LAST_YEAR + 1)
    if a.child:
        tmp = a.out.parent / a.child
        tmp.mkdir(exist_ok=True)
        if a.child == "reconstruct":
            res = run_engine(a.domain, a.cube, fit_model(), years, a.threads, tmp, a.year_batch)
        elif a.child == "floor":
            res = run_floor(a.domain, a.cube)
        elif a.child == "ann":
            import torch

            torch.set_num_threads(1)
            res = run_engine(a.domain, a.cube_ann, str(a.model), ann_years, 1, tmp, a.year_batch)
        else:
            res = run_bare(a.domain, a.cube_ann, a.model, ann_years)
        a.out.write_text(json.dumps(res))
        return
    import domain_floor

    t_all = time.perf_counter()
    dom = domain_floor.ensure_domain()
    cube = domain_floor.ensure_cube(dom, int(years[0]), int(years.size))
    cube_ann = domain_floor.ensure_cube(dom, int(ann_years[0]), int(ann_years.size))
    with tempfile.TemporaryDirectory(prefix="reconstruct-bench-", dir="/tmp") as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "ann"
        if not a.skip_ann:
            import torch

            torch.set_num_threads(1)
            t = time.perf_counter()
            fit_ann(epochs=a.epochs).to_artifact(model_dir)
            print(f"ANN (alpgm preset, {a.epochs} epochs) fitted in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        rows = {}
        for which, threads in (("floor", a.threads), ("reconstruct", a.threads)) + (
                () if a.skip_ann else (("bare", 1), ("ann", 1))):
            rows[which] = child(which, tmp, a, Path(dom.path), cube, cube_ann, model_dir, threads)
            print(f"  [{which}] {json.dumps({k: v for k, v in rows[which].items() if not k.startswith('parts')})}",
                  file=sys.stderr)
    r, f = rows["reconstruct"], rows["floor"]
    print(f"\nReconstruct, whole Alps domain: {r['pixels']:,} pixels x {r['years']} years, {a.threads} threads, "
          f"year_batch {a.year_batch}")
    print(f"{'contender':26s} {'seconds':>8s} {'M px-yr/s':>10s} {'x floor':>8s} {'peak MiB':>9s}")
    print(f"{'floor (numba, no writes)':26s} {f['seconds']:8.2f} {f['pixel_years_per_s'] / 1e6:10.2f} {1.0:8.1f} "
          f"{f['peak_rss_mb']:9.0f}")
    print(f"{'domain engine + writes':26s} {r['seconds']:8.2f} {r['pixel_years_per_s'] / 1e6:10.2f} "
          f"{r['seconds'] / f['seconds']:8.1f} {r['peak_rss_mb']:9.0f}")
    print(f"target >= 3 M px-yr/s: {'met' if r['pixel_years_per_s'] >= 3e6 else 'missed'}; mean glacier SMB "
          f"engine {r['mean_smb_glacier']:.4f}, floor {f['mean_smb_glacier']:.4f} m w.e.; {r['failed']} isolated")
    print(f"reconstruct, time per part (thread-seconds over {r['groups']} group tasks; wall {r['seconds']:.2f} s):")
    for name, sec in sorted(r["parts_s"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:32s} {sec:7.2f}")
    if "ann" in rows:
        n, b = rows["ann"], rows["bare"]
        label = "downscaling + features + model (pixel_smb, one compiled pass + predict)"
        inf, inf_cpu = n["parts_s"].get(label, float("nan")), n["parts_cpu_s"].get(label, float("nan"))
        print(f"\nANN, {n['years']} years x {n['pixels']:,} pixels = {b['rows']:,} rows, one thread "
              "(wall s; CPU s of the thread in brackets: the ratio that holds however loaded the machine is):")
        print(f"  bare torch forward pass on the prebuilt feature matrix : {b['seconds']:7.2f} s ({b['cpu_s']:.2f}) "
              f"({b['rows_per_s'] / 1e6:.2f} M rows/s)")
        print(f"  engine inference, climate downscaled (features + ANN)  : {b['inference_s']:7.2f} s "
              f"({b['inference_cpu_s']:.2f}) -> ratio {b['inference_s'] / b['seconds']:.2f} "
              f"({b['inference_cpu_s'] / b['cpu_s']:.2f}) (target <= 1.3; the dense blockwise infer's comparison)")
        print(f"  engine pixel_smb in a run (downscaling + features + ANN): {inf:7.2f} s ({inf_cpu:.2f}) -> ratio "
              f"{inf / b['seconds']:.2f} ({inf_cpu / b['cpu_s']:.2f})")
        print(f"  whole reconstruct run with the ANN (writes included)   : {n['seconds']:7.2f} s "
              f"({n['pixel_years_per_s'] / 1e6:.2f} M px-yr/s), ratio {n['seconds'] / b['seconds']:.2f}")
        print("  ann run, time per part (s): " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(n["parts_s"].items(), key=lambda kv: -kv[1])))
    print(f"benchmark wall time {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
