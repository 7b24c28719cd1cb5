"""Benchmark: one year of monthly t2m and tp downscaled onto a 100 m grid of 500 x 300 km.

Contenders (each in its own subprocess, so that peak RSS is its own):

* ``interp`` (baseline): ``DataArray.interp`` of the coarse fields at every pixel's lon/lat (numpy, the
  whole region in memory), then the same lapse-rate and precipitation corrections in numpy;
* ``glacgrid``: :func:`glacgrid.downscale.downscale` (bilinear, blockwise kernels), chunks ``--chunk``;
* ``glacgrid-conservative``: the same with ``method="conservative"``;
* ``odc-geo``: :func:`glacgrid.downscale.downscale` with ``engine="odc-geo"`` (GDAL bilinear).

Every contender writes ``temp`` and ``prcp`` to a Zarr store in a temporary folder (deleted), so the
work includes the sink. Printed: seconds, megapixel-months per second, peak RSS, and ratios against
the baseline measured in the same run; plus a check that all contenders agree with the baseline.

Usage::

    python benchmarks/downscale.py            # 500 x 300 km at 100 m (15 Mpx x 12 months x 2 vars)
    python benchmarks/downscale.py --quick    # 60 x 40 km (a few seconds)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

X0, Y0 = 300_000.0, 5_000_000.0  # UTM 32N lower-left corner (about 6.4 E, 45.1 N)


def synthetic_cube(width_km: float, height_km: float, seed: int = 0):
    """Monthly ERA5-Land-like t2m (K), tp (kg m-2) and orog (m) at 0.1 deg covering the region + 2 cells."""
    import pandas as pd
    import xarray as xr
    from pyproj import Transformer

    from glacgrid.units import convert

    tr = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    xs = np.array([X0, X0 + convert(width_km, "km", "m")])
    ys = np.array([Y0, Y0 + convert(height_km, "km", "m")])
    lon, lat = tr.transform(*np.meshgrid(xs, ys))
    lat_c = np.arange(np.floor(lat.min() * 10) / 10 - 0.2, lat.max() + 0.25, 0.1)
    lon_c = np.arange(np.floor(lon.min() * 10) / 10 - 0.2, lon.max() + 0.25, 0.1)
    rng = np.random.default_rng(seed)
    la, lo = np.meshgrid(lat_c, lon_c, indexing="ij")
    orog = 1500 + 800 * np.sin(la * 3.1) * np.cos(lo * 2.3) + 50 * rng.standard_normal(la.shape)
    time_ = pd.date_range("2001-01-01", periods=12, freq="MS")
    season = 8 * np.sin((np.arange(12) - 3.5) * np.pi / 6)
    t2m = 283 + season[:, None, None] - 0.0065 * orog[None] + rng.standard_normal((12, *la.shape))
    tp = np.maximum(80 + 30 * np.cos(la * 5)[None] + 10 * rng.standard_normal((12, *la.shape)), 0)
    return xr.Dataset({"t2m": (("time", "lat", "lon"), t2m.astype("float32")),
                       "tp": (("time", "lat", "lon"), tp.astype("float32")),
                       "orog": (("lat", "lon"), orog.astype("float32"))},
                      coords={"time": time_, "lat": lat_c, "lon": lon_c})


def _dem_block(x, y):
    return (2000 + 1200 * np.sin(x / 7_000.0) * np.cos(y / 9_000.0)).astype("float32")


def run_one(name: str, width_km: float, height_km: float, res: float, chunk: int, out: Path) -> dict:
    import dask
    import dask.array as dsa
    import xarray as xr

    from glacgrid.config import DownscaleParams
    from glacgrid.downscale import downscale
    from glacgrid.grid import TargetGrid
    from glacgrid.units import T0, convert

    dask.config.set(scheduler="threads", num_workers=2)
    cube = synthetic_cube(width_km, height_km)
    width, height = convert(width_km, "km", "m"), convert(height_km, "km", "m")
    grid = TargetGrid.from_spec("EPSG:32632", res, (X0, Y0, X0 + width, Y0 + height),
                                chunks=chunk)
    params = DownscaleParams(lapse_rate=-0.0065, precip_factor=1.2, precip_gradient=2e-4)
    t0 = time.perf_counter()
    if name == "interp":
        ll = grid.lonlat().compute()
        y2, x2 = np.meshgrid(grid.y, grid.x, indexing="ij")
        z = _dem_block(x2, y2).astype("float64")
        lat = xr.DataArray(ll["lat"].values, dims=("y", "x"))
        lon = xr.DataArray(ll["lon"].values, dims=("y", "x"))
        kw = dict(lat=lat, lon=lon, method="linear", kwargs={"fill_value": None})
        z_era = cube["orog"].astype("float64").interp(**kw).values
        t = cube["t2m"].interp(**kw).values
        p = cube["tp"].interp(**kw).values
        temp = (t + params.lapse_rate * (z - z_era) - T0).astype("float32")
        prcp = np.maximum(p * params.precip_factor * np.maximum(1 + params.precip_gradient * (z - z_era), 0), 0
                          ).astype("float32")
        ds = xr.Dataset({"temp": (("time", "y", "x"), temp), "prcp": (("time", "y", "x"), prcp)},
                        coords={"time": cube["time"], **grid.coords()})
        ds.chunk({"time": 12, "y": chunk, "x": chunk}).to_zarr(out, mode="w", zarr_format=3, consolidated=False)
    else:
        yy = dsa.from_array(grid.y, chunks=chunk)[:, None]
        xx = dsa.from_array(grid.x, chunks=chunk)[None, :]
        yy, xx = dsa.broadcast_arrays(yy, xx)
        z = dsa.map_blocks(_dem_block, xx.rechunk(chunk), yy.rechunk(chunk), dtype="float32")
        dem = xr.DataArray(z, dims=("y", "x"), coords=grid.coords())
        kw = {"glacgrid": {}, "glacgrid-conservative": {"method": "conservative"},
              "odc-geo": {"engine": "odc-geo"}}[name]
        ds = downscale(cube, grid, dem, params, **kw)[["temp", "prcp"]]
        ds.to_zarr(out, mode="w", zarr_format=3, consolidated=False)
    seconds = time.perf_counter() - t0
    check = xr.open_zarr(out)
    stats = {k: float(check[k].isel(time=6, y=slice(None, None, 97), x=slice(None, None, 89)).mean())
             for k in ("temp", "prcp")}
    return {"name": name, "seconds": seconds, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "pixels": grid.shape[0] * grid.shape[1], "shape": grid.shape, **stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 x 40 km instead of 500 x 300 km")
    ap.add_argument("--width-km", type=float, default=500.0)
    ap.add_argument("--height-km", type=float, default=300.0)
    ap.add_argument("--res", type=float, default=100.0)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--contenders", default="interp,glacgrid,glacgrid-conservative,odc-geo")
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.width_km, args.height_km = 60.0, 40.0
    if args.run:
        print(json.dumps(run_one(args.run, args.width_km, args.height_km, args.res, args.chunk, Path(args.out))))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.contenders.split(","):
            cmd = [sys.executable, __file__, "--run", name, "--width-km", str(args.width_km), "--height-km",
                   str(args.height_km), "--res", str(args.res), "--chunk", str(args.chunk),
                   "--out", str(Path(tmp) / f"{name}.zarr")]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                print(f"{name} failed:\n{res.stderr[-3000:]}")
                continue
            results.append(json.loads(res.stdout.strip().splitlines()[-1]))
    base = next((r for r in results if r["name"] == "interp"), results[0])
    r0 = results[0]
    print(f"grid {r0['shape'][0]} x {r0['shape'][1]} px at {args.res:g} m ({r0['pixels'] / 1e6:.1f} Mpx), 12 months, "
          f"temp + prcp, chunks {args.chunk}; baseline = {base['name']}")
    print(f"{'contender':24s} {'s':>8s} {'Mpx-month/s':>12s} {'peak RSS MB':>12s} {'speed x':>8s} {'memory x':>9s}"
          f" {'temp mean':>10s} {'prcp mean':>10s}")
    for r in results:
        rate = r["pixels"] * 12 / r["seconds"] / 1e6
        print(f"{r['name']:24s} {r['seconds']:8.1f} {rate:12.2f} {r['maxrss_mb']:12.0f} "
              f"{base['seconds'] / r['seconds']:8.2f} {r['maxrss_mb'] / base['maxrss_mb']:9.3f}"
              f" {r['temp']:10.3f} {r['prcp']:10.3f}")


if __name__ == "__main__":
    main()
