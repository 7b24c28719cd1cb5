"""Ingest throughput and peak memory: glacgrid ingest vs a plain open_mfdataset(...).to_zarr(...).

Writes synthetic ERA5-Land monthly files (one per year, int16 packed, ``time`` layout) on a 0.1 deg
Alps-sized grid (43.5-48.5 N, 4-17 E: 51 x 131 cells), then, for each number of months, runs every
contender in its own subprocess on the same files and reports wall time, throughput (MB of input
files per second), the subprocess's peak resident memory (``VmHWM``, imports and open files
included) and, from a second subprocess under ``tracemalloc``, the peak of the Python and numpy
allocations made by the ingest itself (what grows with the data). Ratios are against the
plain xarray baseline measured in the same run. The baseline writes no invariant, does no unit
conversion or checks, and keeps the files' chunks (one year per chunk); glacgrid writes the
time-series chunks (all months per tile of at most 2 MiB: 64 x 64 up to 128 months, 33 x 33 at 480),
each computed by one task that reads only its tile from every file, and checks everything.

Usage::

    python benchmarks/ingest.py                 # 12, 120 and 480 months, all 14 variables
    python benchmarks/ingest.py --quick         # 12 and 120 months
    python benchmarks/ingest.py --variables 2 --beam
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

LAT = np.round(np.arange(43.5, 48.55, 0.1), 1)  # 51
LON = np.round(np.arange(4.0, 17.05, 0.1), 1)  # 131


def make_files(directory: Path, months: int, nvars: int) -> dict:
    from glacgrid.testing._era5 import MONTHLY, era5land_fields, write_era5land_monthly

    time_ = pd.date_range("1981-01-01", periods=months, freq="MS")
    f = era5land_fields(LAT, LON, time_, seed=0, variables=MONTHLY[:nvars])
    extra = {k: f[k] for k in MONTHLY[2:nvars]}
    return write_era5land_monthly(directory, lat=LAT, lon=LON, time=time_, t2m=f["t2m"], tp=f["tp"], z=f["z"],
                                  lsm=f["lsm"], extra=extra, split="year")


def run_one(contender: str, src: Path, store: Path, trace: bool = False) -> None:
    """In a subprocess: ingest, then print wall time and own peak RSS (or traced peak) as JSON."""
    import xarray as xr

    from glacgrid.ingest import ingest  # imports before the clock starts, for both contenders

    files = sorted(p for p in src.glob("era5land_monthly_*.nc"))
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    if contender == "xarray":
        ds = xr.open_mfdataset(files, engine="netcdf4", combine="by_coords")
        ds.to_zarr(store, mode="w", zarr_format=3, consolidated=True)
    else:
        engine = "beam" if contender == "glacgrid-beam" else "dask"
        ingest(files, store, invariant=src / "era5land_invariant.nc", engine=engine,
               beam_options=["--runner=DirectRunner", "--direct_num_workers=1"])
    wall = time.perf_counter() - t0
    if trace:
        print(json.dumps({"traced_mib": tracemalloc.get_traced_memory()[1] / 2**20}))
        return
    # VmHWM: this process's own peak RSS. (ru_maxrss would not do: Linux carries the parent's peak
    # across fork + exec into it, so every child reported the benchmark driver's peak.)
    status = Path("/proc/self/status").read_text().splitlines()
    rss_mib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024.0  # kB
    print(json.dumps({"wall_s": wall, "rss_mib": rss_mib}))


def measure(contender: str, src: Path, store: Path) -> dict:
    """Two fresh subprocesses: one timed (wall, VmHWM), one under tracemalloc (Python + numpy peak)."""
    res = {}
    for extra in ([], ["--trace"]):
        out = subprocess.run([sys.executable, __file__, "--run", contender, str(src), str(store), *extra],
                             capture_output=True, text=True, check=True)
        res.update(json.loads(out.stdout.strip().splitlines()[-1]))
        shutil.rmtree(store, ignore_errors=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--months", type=int, nargs="+", default=[12, 120, 480])
    p.add_argument("--quick", action="store_true", help="12 and 120 months only")
    p.add_argument("--variables", type=int, default=14, help="how many of the 14 monthly variables (2..14)")
    p.add_argument("--beam", action="store_true", help="also run the Beam engine (DirectRunner)")
    p.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.run:
        run_one(a.run[0], Path(a.run[1]), Path(a.run[2]), trace=a.trace)
        return
    months = [12, 120] if a.quick else a.months
    contenders = ["xarray", "glacgrid"] + (["glacgrid-beam"] if a.beam else [])
    print(f"grid {LAT.size} x {LON.size} (0.1 deg Alps), {a.variables} variables, one file per year, int16")
    print(f"{'months':>6} {'files':>5} {'input MB':>9} {'contender':>14} {'wall s':>7} {'MB/s':>7} {'RSS MiB':>8} "
          f"{'traced MiB':>10} {'time ratio':>10} {'RSS ratio':>9}")
    with tempfile.TemporaryDirectory(prefix="glacgrid-bench-") as tmp:
        for n in months:
            src = Path(tmp) / f"src{n}"
            files = make_files(src, n, a.variables)
            mb = sum(f.stat().st_size for f in files["files"]) / 1e6
            res = {}
            for c in contenders:
                store = Path(tmp) / f"{c}{n}.zarr"
                res[c] = measure(c, src, store)
            base = res["xarray"]
            for c in contenders:
                r = res[c]
                print(f"{n:>6} {len(files['files']):>5} {mb:>9.2f} {c:>14} {r['wall_s']:>7.2f} {mb / r['wall_s']:>7.2f} "
                      f"{r['rss_mib']:>8.0f} {r['traced_mib']:>10.1f} {r['wall_s'] / base['wall_s']:>10.2f} "
                      f"{r['rss_mib'] / base['rss_mib']:>9.2f}", flush=True)
            shutil.rmtree(src)


if __name__ == "__main__":
    main()
