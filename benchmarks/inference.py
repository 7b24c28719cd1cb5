"""Batched inference: blockwise ``infer`` against a bare torch forward pass, and peak memory vs region size.

A synthetic region (:func:`glacgrid.testing._inference.region_with_pixels`: lazy dask climate, surface and
glacier rasters generated block by block) of N glacier pixels and two hydrological years, and an ANN of
the ALPGM preset fitted in a few epochs on a small sample of the region's features (saved as an artifact).
For each region size, each contender runs in its own subprocess; its peak memory is the VmHWM of that
process, reset (``/proc/self/clear_refs``) after imports, model loading and glacier constants:

* ``blockwise``: ``infer(artifact, ...)`` -- monthly climate, surface with halo, glacier rasters ->
  features inside each block -> ANN -> gridded SMB, reduced to the glacier means and a total (so nothing
  region-sized is kept); dask threads with one torch thread each;
* ``features``: the same graph with a model that returns 0 (features, graph and reductions only);
* ``inputs``: generating the synthetic climate, surface and glacier rasters only (part of the two above;
  a real run reads them from a store);
* ``bare``: the same ANN's network on a preassembled, standardised float32 tensor of every glacier
  pixel-year (assembled before the clock starts), in batches of 65,536 rows over the same number of
  threads, one torch thread each (after one warm-up batch).

Throughput is pixel-years per second; the ratio blockwise / bare time is the target (<= 1.3).
Glacier constants are computed before timing (a run passes them to ``infer``). Each child also reports
its process CPU seconds (``cpu_s``: the ratio that holds however loaded the machine is) and ``blockwise``
the thread CPU seconds of each part of its blocks (``parts_cpu_s``): the year-independent features (lon/lat
projected per pixel, slope/aspect, glacier constants), the compiled feature pass, the network; the rest is
the graph, the NaN-filled dense output and the glacier means (flox).

Usage: python benchmarks/inference.py [--quick] [--sizes 5e6 10e6] [--chunk 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

YEARS = (2001, 2002)


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is that of what follows only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _region(n: float, chunk: int):
    from glacgrid.testing._inference import region_with_pixels

    # both years in one block: the year-independent features of a block are computed once
    return region_with_pixels(n, chunks=(chunk, chunk), start=YEARS[0], end=YEARS[1], glacier_size=40, gap=2,
                              time_chunk=12 * (YEARS[1] - YEARS[0] + 1))


def _constants(r):
    from glacgrid import features as feat

    return feat.glacier_constants(r.glacier_id, r.surface, r.active, r.pixel_area, r.index).compute()


class _Zero:
    """A model that predicts 0 for every row: the cost of everything but the network."""

    def predict(self, X):
        return np.zeros(X.shape[0])


def child(kind: str, n: float, chunk: int, threads: int, model_dir: str) -> dict:
    import dask
    import torch

    from glacgrid.config import DownscaleParams
    from glacgrid.glaciers import FEATURES, GlacierGeometry
    from glacgrid.inference import infer
    from glacgrid.models import load_model

    torch.set_num_threads(1)
    r = _region(n, chunk)
    const = _constants(r)
    timer = None
    if kind == "blockwise":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from evolve import PartTimer

        from glacgrid.inference import _kernels
        from glacgrid.models.ann import ANNModel

        timer = PartTimer()
        timer.wrap(_kernels, "_static_features", "year-independent features (lon/lat, slope/aspect, constants)")
        timer.wrap(_kernels, "assemble_rows", "compiled feature pass (climate, standardised rows)")
        timer.wrap(ANNModel, "_predict_standardised", "network forward pass")
    feats = list(FEATURES)
    model = load_model(model_dir)
    pixel_years = r.n_glacier_pixels * (YEARS[1] - YEARS[0] + 1)
    out = {"kind": kind, "glacier_pixels": r.n_glacier_pixels, "pixel_years": pixel_years, "chunk": chunk,
           "threads": threads, "grid": list(r.grid.shape)}
    if kind in ("blockwise", "features"):
        # warm-up on a 64 x 64 corner: loads the artifact into this process's cache, torch's first call and
        # the compiled kernels (numba, from its on-disk cache), as a long-running worker has them; the bare
        # contender gets one warm-up batch likewise
        w = dict(y=slice(0, 64), x=slice(0, 64))
        corner = GlacierGeometry(r.glacier_id.isel(**w), r.surface.isel(**w), r.pixel_area.isel(**w), r.index,
                                 r.grid)
        infer(model_dir if kind == "blockwise" else _Zero(), r.down.isel(**w), corner, active=r.active.isel(**w),
              features=feats, downscale=DownscaleParams(), start=YEARS[0], end=YEARS[1],
              constants=const)["smb"].compute(scheduler="sync")
    # the peak is measured from here: imports, the model and the glacier constants (a flox reduction over
    # the region that a run does once per geometry) are left out
    out["rss_before_mib"] = _status_mib("VmRSS")
    out["peak_reset"] = _reset_peak()
    if timer is not None:
        timer.reset()
    c0 = time.process_time()
    if kind == "inputs":  # generating the synthetic inputs only (a run reads them from a store instead)
        t = time.perf_counter()
        sums = dask.compute(r.down["temp"].sum(), r.down["prcp"].sum(), r.surface.sum(), r.glacier_id.sum(),
                            r.down["reference_elevation"].sum(), scheduler="threads", num_workers=threads)
        out["seconds"] = time.perf_counter() - t
        out["smb_total"] = float(sum(float(v) for v in sums))
    elif kind in ("blockwise", "features"):
        m = model_dir if kind == "blockwise" else _Zero()
        res = infer(m, r.down, r.glaciers, active=r.active, features=feats, downscale=DownscaleParams(),
                    start=YEARS[0], end=YEARS[1], constants=const)
        t = time.perf_counter()
        gl, total = dask.compute(res["smb_glacier"], res["smb"].sum(), scheduler="threads", num_workers=threads)
        out["seconds"] = time.perf_counter() - t
        out["smb_total"] = float(total)
        out["glaciers_finite"] = int(np.isfinite(gl.values).all(axis=0).sum())
    else:
        from concurrent.futures import ThreadPoolExecutor

        from glacgrid.inference import block_features, block_spec
        from glacgrid import features as feat

        spec = block_spec(feats, const, r.index, r.grid, DownscaleParams(), lapse_rate=r.down.attrs["lapse_rate"])
        mean = np.asarray(model.norm_["x_mean"])
        std = np.asarray(model.norm_["x_std"])
        Z = np.empty((pixel_years, len(feats)), dtype="float32")
        ny, nx = r.grid.shape
        filled = 0
        hy, days = feat.hydrological_years(r.down[["temp", "prcp"]], YEARS[0], YEARS[1])
        for y0 in range(0, ny, chunk):  # assemble every pixel-year's features (not timed)
            for x0 in range(0, nx, chunk):
                sub = dict(y=slice(y0, y0 + chunk), x=slice(x0, x0 + chunk))
                pad = dict(y=slice(max(y0 - 1, 0), y0 + chunk + 1), x=slice(max(x0 - 1, 0), x0 + chunk + 1))
                zp = r.surface.isel(**pad).values
                edge = ((int(y0 == 0), int(y0 + chunk >= ny)), (int(x0 == 0), int(x0 + chunk >= nx)))
                zp = np.pad(zp, edge, mode="edge")
                X, _, _ = block_features(
                    spec, hy["temp"].isel(**sub).transpose("year", "month", "y", "x").values,
                    hy["prcp"].isel(**sub).transpose("year", "month", "y", "x").values, days.values,
                    r.down["reference_elevation"].isel(**sub).values, zp, r.glacier_id.isel(**sub).values,
                    r.active.isel(**sub).values, r.grid.y[sub["y"]], r.grid.x[sub["x"]])
                Z[filled:filled + X.shape[0]] = ((X - mean) / std).astype("float32")
                filled += X.shape[0]
        if filled != pixel_years:
            raise RuntimeError(f"assembled {filled} feature rows, expected {pixel_years}")
        tensor = torch.from_numpy(Z)
        batch = 65_536
        starts = list(range(0, pixel_years, batch))
        res = np.empty(pixel_years, dtype="float32")
        net = model._net_for("cpu")

        import threading

        lock, thread_cpu = threading.Lock(), [0.0]

        def run(i0):
            c = time.thread_time()
            with torch.inference_mode():
                res[i0:i0 + batch] = net(tensor[i0:i0 + batch]).squeeze(1).numpy()
            with lock:
                thread_cpu[0] += time.thread_time() - c

        run(0)  # warm the network up (torch's first call), as blockwise's first block does
        thread_cpu[0] = 0.0
        t = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, starts))
        out["seconds"] = time.perf_counter() - t
        out["thread_cpu_s"] = thread_cpu[0]  # the batches' own CPU (the process's also counts idle pool threads)
        out["smb_total"] = float((res.astype("float64") * model.norm_["y_std"] + model.norm_["y_mean"]).sum())
    out["cpu_s"] = time.process_time() - c0
    if timer is not None:
        out["parts_cpu_s"] = dict(timer.cpu)
    out["pixel_years_per_s"] = pixel_years / out["seconds"]
    out["vmhwm_mib"] = _status_mib("VmHWM")
    return out


def _spawn(kind, n, chunk, threads, model_dir) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--n", str(n), "--chunk", str(chunk), "--threads",
           str(threads), "--model", model_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} at {n:g} pixels failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="0.5 and 1 million pixels instead of 5 and 10 million")
    p.add_argument("--sizes", type=float, nargs="*", default=None, help="glacier pixels of each region")
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--threads", type=int, default=2, help="dask threads (one torch thread each)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--child", default=None)
    p.add_argument("--n", type=float, default=None)
    p.add_argument("--model", default=None)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.n, a.chunk, a.threads, a.model)))
        return
    sizes = a.sizes or ([5e5, 1e6] if a.quick else [5e6, 10e6])
    import torch

    from glacgrid.glaciers import FEATURES
    from glacgrid.testing._inference import fit_ann

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        model = fit_ann(_region(2e5, a.chunk), list(FEATURES), epochs=a.epochs, n_rows=5000)
        model.to_artifact(Path(tmp) / "ann")
        print(f"ANN (alpgm preset, {model.training_['epochs_run']} epochs, {len(FEATURES)} features) fitted in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        rows = []
        for n in sizes:
            for kind in ("bare", "blockwise", "features", "inputs"):
                res = _spawn(kind, n, a.chunk, a.threads, str(Path(tmp) / "ann"))
                rows.append(res)
                print(json.dumps(res), flush=True)
    print(f"\nthreads={a.threads}, chunk={a.chunk}x{a.chunk}, {YEARS[1] - YEARS[0] + 1} hydrological years")
    print(f"{'glacier px':>11} {'contender':>10} {'s':>8} {'CPU s':>7} {'pixel-years/s':>14} {'peak MiB':>9} "
          f"{'RSS before':>10}")
    for r in rows:
        print(f"{r['glacier_pixels']:>11,} {r['kind']:>10} {r['seconds']:>8.2f} {r['cpu_s']:>7.2f} "
              f"{r['pixel_years_per_s']:>14,.0f} {r['vmhwm_mib']:>9.0f} {r['rss_before_mib']:>10.0f}")
    for n in sorted({r["glacier_pixels"] for r in rows}):
        by = {r["kind"]: r for r in rows if r["glacier_pixels"] == n}
        rel = abs(by["blockwise"]["smb_total"] - by["bare"]["smb_total"]) / abs(by["bare"]["smb_total"])
        print(f"{n:,} px: blockwise / bare time = {by['blockwise']['seconds'] / by['bare']['seconds']:.2f} "
              f"(target <= 1.3); features-only share of blockwise = "
              f"{by['features']['seconds'] / by['blockwise']['seconds']:.0%}, of which generating the synthetic "
              f"inputs {by['inputs']['seconds'] / by['blockwise']['seconds']:.0%}; total SMB rel. diff {rel:.1e}")
        bw, bare = by["blockwise"], by["bare"]["thread_cpu_s"]
        print(f"  CPU seconds (x the bare forward passes' thread CPU {bare:.2f} s): blockwise {bw['cpu_s']:.2f} "
              f"({bw['cpu_s'] / bare:.2f}x) = generating the inputs {by['inputs']['cpu_s']:.2f} "
              f"({by['inputs']['cpu_s'] / bare:.2f}x)")
        parts = sum(bw["parts_cpu_s"].values())
        for label, sec in bw["parts_cpu_s"].items():
            print(f"    + {label:62s} {sec:6.2f} ({sec / bare:.2f}x)")
        rest = bw["cpu_s"] - by["inputs"]["cpu_s"] - parts
        print(f"    + {'the rest: graph, dense NaN-filled output, glacier means (flox)':62s} {rest:6.2f} "
              f"({rest / bare:.2f}x)")
    small, large = sorted({r["glacier_pixels"] for r in rows})[:1] + sorted({r["glacier_pixels"] for r in rows})[-1:]
    for kind in ("blockwise", "bare"):
        a_, b_ = ([r["vmhwm_mib"] for r in rows if r["kind"] == kind and r["glacier_pixels"] == s][0]
                  for s in (small, large))
        print(f"peak memory {kind}: {a_:.0f} MiB at {small:,} px -> {b_:.0f} MiB at {large:,} px "
              f"(x{b_ / a_:.2f} for x{large / small:.2f} pixels)")


if __name__ == "__main__":
    main()
