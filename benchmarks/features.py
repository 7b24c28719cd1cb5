"""Glacier-wide features of all Alps glaciers (Farinotti 25 m mosaic): glacgrid vs a per-glacier loop.

Both contenders compute the same features from the same inputs in the same run, each in its own
subprocess (time and peak RSS are its own): CPDD over the year and the dynamic ablation season, winter
and summer snowfall, area, min/max/mean elevation, slope of the lowermost 20 %, mean slope, aspect,
latitude and longitude, for every glacier and hydrological year, from 30 years of synthetic monthly
climate (sea-level temperature and precipitation on a 0.1 degree grid, seeded, moved to every 25 m
pixel with a lapse rate).

* glacgrid: :func:`glacgrid.features.pack_feature_pixels` (every glacier pixel of each mosaic store,
  with slope/aspect from its neighbours) then :func:`glacgrid.features.compute_features` (one kernel
  call per block of pixels, flox reductions over the glacier ids), threaded dask scheduler.
* loop: the per-glacier Python loop it replaces: each glacier's bounding-box window is cut out of the
  in-memory rasters (``scipy.ndimage.find_objects``), then slope, climate and means are computed with
  the same numpy kernels on that glacier's pixels.
* mask-loop sample: the cruder loop (``ids == g`` over the whole store raster per glacier, as in
  ``benchmarks/glacier_means.py``), timed on a sample of glaciers and extrapolated to all of them.

Usage: python benchmarks/features.py [--quick] [--years 30] [--mosaic DIR] [--chunk 262144]
``--quick`` uses only the EPSG:32633 store (394 glaciers) and 10 years.
Needs the mosaic built by ``glacgrid mosaic`` (see /tmp/glacgrid-shared/MOSAIC_READY.md).
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

LAPSE = -0.0065
LAT0, LON0, RES, NLAT, NLON = 43.0, 4.0, 0.1, 60, 140
NAMES = ("cpdd", "cpdd_ablation", "snow_winter", "snow_summer", "area", "min_elevation", "max_elevation",
         "mean_elevation", "slope_lower20", "slope", "aspect", "lat", "lon")


def synthetic_climate(years: int, seed: int = 0):
    """Monthly sea-level temperature (degC) and precipitation (kg m-2) on a coarse lat/lon grid."""
    rng = np.random.default_rng(seed)
    n = 12 * years
    lat = LAT0 + RES * np.arange(NLAT)
    season = 10.0 * np.sin(2 * np.pi * (np.arange(n) % 12 - 3) / 12)  # Oct first: peak in July
    interannual = np.repeat(rng.normal(0.0, 0.8, years), 12)
    t = (16.0 - 0.6 * (lat[:, None] - 45.0))[None] + (season + interannual)[:, None, None]
    t = t + rng.normal(0.0, 1.0, (n, NLAT, NLON))
    p = rng.gamma(2.0, 50.0, (n, NLAT, NLON))
    return t.reshape(n, -1).astype("float32"), p.reshape(n, -1).astype("float32")


def cells_of(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    j = np.clip(np.rint((lat - LAT0) / RES).astype("int64"), 0, NLAT - 1)
    i = np.clip(np.rint((lon - LON0) / RES).astype("int64"), 0, NLON - 1)
    return j * NLON + i


def stores(mosaic: Path, quick: bool) -> list[Path]:
    found = sorted(mosaic.glob("alps_*.zarr"))
    if quick:
        found = [p for p in found if p.name == "alps_32633.zarr"] or found[:1]
    if not found:
        sys.exit(f"no alps_*.zarr store in {mosaic}: build it with `glacgrid mosaic` first")
    return found


def grid_of(ds):
    from glacgrid.grid import TargetGrid

    a, _, x0, _, e, ytop = ds.attrs["transform_gdal"]
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    return TargetGrid.from_spec(f"EPSG:{ds.attrs['epsg']}", a, (x0, ytop + e * ny, x0 + a * nx, ytop),
                                chunks=int(ds.attrs.get("chunk_size", 2048)))


# --------------------------------------------------------------------------------------------- glacgrid

def run_glacgrid(paths: list[Path], years: int, chunk: int) -> dict:
    import warnings

    import dask
    import dask.array as dsa
    import pandas as pd
    import xarray as xr

    from glacgrid import features as feat
    from glacgrid.glaciers import GlacierGeometry
    from glacgrid.mosaic import open_mosaic

    t_sl, p_sl = synthetic_climate(years)
    start = 2001
    packs = []
    for path in paths:
        ds = open_mosaic(path)
        packs.append(feat.pack_feature_pixels(ds["glacier_id"], ds["surface"], grid_of(ds),
                                              thickness=ds["thickness"], chunk=chunk)
                     .drop_vars(["row", "col"]))
    pix = xr.concat(packs, dim="pixel").chunk({"pixel": chunk})
    cells = cells_of(pix["lat"].values.astype("float64"), pix["lon"].values.astype("float64"))
    cells_d = dsa.from_array(cells, chunks=chunk)
    tidx = dsa.arange(12 * years, chunks=12)

    def gen(field):
        return lambda ti, ci: field[ti][:, ci]

    with warnings.catch_warnings():  # (time, pixel) blocks of 12 x chunk are what we want
        warnings.simplefilter("ignore", dsa.PerformanceWarning)
        temp = dsa.blockwise(gen(t_sl), "tp", tidx, "t", cells_d, "p", dtype="float32")
        prcp = dsa.blockwise(gen(p_sl), "tp", tidx, "t", cells_d, "p", dtype="float32")
    time_ = pd.date_range(f"{start - 1}-10-01", periods=12 * years, freq="MS")
    down = xr.Dataset({"temp": (("time", "pixel"), temp), "prcp": (("time", "pixel"), prcp),
                       "reference_elevation": ("pixel", dsa.zeros(cells.size, chunks=chunk, dtype="float32"))},
                      coords={"time": time_}, attrs={"lapse_rate": LAPSE})
    index = np.unique(np.concatenate([np.asarray(open_mosaic(p)["glacier"].values) for p in paths]))
    gf = feat.compute_features(down, GlacierGeometry.from_dataset(pix, index), start=start, end=start + years - 1,
                               topo=pix)
    with dask.config.set(scheduler="threads", num_workers=2):
        gf = gf[list(NAMES)].compute()
    return {"glacier": index, "n_pixels": int(cells.size),
            **{n: np.asarray(gf[n].transpose("glacier", ...).values, dtype="float64") for n in NAMES}}


# --------------------------------------------------------------------------------------------- the loop

def _glacier_features(z, ids, th, g, win, grid, t_sl, p_sl, days, winter, summer, transformer):
    from glacgrid.features import annual_climate, slope_aspect
    from glacgrid.units import m2_to_km2

    zw = z[win].astype("float64")
    m = (ids[win] == g) & (th[win] > 0)
    if not m.any():
        return None
    sa = slope_aspect(zw, grid.resolution[0], grid.resolution[1])[m]
    rr, cc = np.nonzero(m)
    x = grid.x[cc + win[1].start]
    y = grid.y[rr + win[0].start]
    lon, lat = transformer.transform(x, y)
    lon, lat = np.float32(lon).astype("float64"), np.float32(lat).astype("float64")  # as glacgrid stores them
    zg = zw[m]
    cells = cells_of(lat, lon)
    temp = t_sl[:, cells] + LAPSE * zg[None, :]
    prcp = p_sl[:, cells]
    ny = t_sl.shape[0] // 12
    tt = temp.reshape(ny, 12, -1).transpose(2, 0, 1)
    pp = prcp.reshape(ny, 12, -1).transpose(2, 0, 1)
    clim = annual_climate(tt, pp, days, winter, summer, 0.0, 2.0, (0.1, 0.9))  # (n, year, 5)
    w = np.full(zg.size, 625.0)

    def wavg(v, wt):  # NaN pixels leave the weights, as in glacgrid.glaciers.area_weighted_mean
        ok = np.isfinite(v)
        wk = np.where(ok, wt.reshape(wt.shape + (1,) * (v.ndim - 1)), 0.0)
        den = wk.sum(axis=0)
        num = (np.where(ok, v, 0.0) * wk).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    mean = wavg(clim, w)
    zmin, zmax = np.nanmin(zg), np.nanmax(zg)
    low = zg <= zmin + 0.2 * (zmax - zmin)
    cosm, sinm = wavg(sa[:, 1], w), wavg(sa[:, 2], w)
    return {"cpdd": mean[:, 0], "cpdd_ablation": mean[:, 1], "snow_winter": mean[:, 3], "snow_summer": mean[:, 4],
            "area": m2_to_km2(w.sum()), "min_elevation": zmin, "max_elevation": zmax,
            "mean_elevation": wavg(zg, w), "slope_lower20": wavg(sa[low, 0], w[low]),
            "slope": wavg(sa[:, 0], w), "aspect": np.arctan2(sinm, cosm) % (2 * np.pi),
            "lat": wavg(lat, w), "lon": wavg(lon, w)}


def run_loop(paths: list[Path], years: int, sample: int) -> dict:
    import pandas as pd
    from pyproj import Transformer
    from scipy import ndimage

    from glacgrid.features import ClimateFeatureParams
    from glacgrid.mosaic import open_mosaic

    t_sl, p_sl = synthetic_climate(years)
    start = 2001
    days = pd.date_range(f"{start - 1}-10-01", periods=12 * years, freq="MS").days_in_month.to_numpy(
        "float64").reshape(years, 12)
    winter, summer = ClimateFeatureParams().masks()
    out: dict[int, dict] = {}
    mask_times = []
    for path in paths:
        ds = open_mosaic(path)
        grid = grid_of(ds)
        tr = Transformer.from_crs(grid.pyproj_crs, "EPSG:4326", always_xy=True)
        ids = ds["glacier_id"].values
        z = ds["surface"].values
        th = ds["thickness"].values
        objs = ndimage.find_objects(ids)
        for g in np.asarray(ds["glacier"].values):  # the loop glacgrid replaces
            sl = objs[g - 1] if g - 1 < len(objs) else None
            if sl is None:
                continue
            win = (slice(max(sl[0].start - 1, 0), min(sl[0].stop + 1, ids.shape[0])),
                   slice(max(sl[1].start - 1, 0), min(sl[1].stop + 1, ids.shape[1])))
            res = _glacier_features(z, ids, th, g, win, grid, t_sl, p_sl, days, winter, summer, tr)
            if res is not None:
                out[int(g)] = res
        # the cruder pattern: a mask over the whole raster per glacier, on a sample of glaciers
        for g in np.asarray(ds["glacier"].values)[:: max(1, ds.sizes["glacier"] // max(sample, 1))][:sample]:
            t0 = time.perf_counter()
            m = (ids == g) & (th > 0)
            rr, cc = np.nonzero(m)
            if rr.size:
                win = (slice(max(rr.min() - 1, 0), min(rr.max() + 2, ids.shape[0])),
                       slice(max(cc.min() - 1, 0), min(cc.max() + 2, ids.shape[1])))
                _glacier_features(z, ids, th, g, win, grid, t_sl, p_sl, days, winter, summer, tr)
            mask_times.append((time.perf_counter() - t0, ds.sizes["glacier"]))
        del ids, z, th
    index = np.array(sorted(out))
    res = {"glacier": index}
    for n in NAMES:
        res[n] = np.array([np.broadcast_to(out[g][n], (years,)) if n in ("cpdd", "cpdd_ablation", "snow_winter",
                                                                         "snow_summer") else out[g][n]
                           for g in index], dtype="float64")
    # extrapolated mask-loop time: mean time per sampled glacier of each store times its glacier count
    per_store: dict[int, list[float]] = {}
    for t, n in mask_times:
        per_store.setdefault(n, []).append(t)
    res["mask_loop_extrapolated_s"] = np.array(sum(np.mean(v) * n for n, v in per_store.items()))
    res["mask_loop_sampled"] = np.array(len(mask_times))
    res["mask_sample_total_s"] = np.array(sum(t for t, _ in mask_times))
    return res


# --------------------------------------------------------------------------------------------- driver

def child(which: str, paths: list[Path], years: int, chunk: int, sample: int, out: Path) -> None:
    t0 = time.perf_counter()
    res = run_glacgrid(paths, years, chunk) if which == "glacgrid" else run_loop(paths, years, sample)
    wall = time.perf_counter() - t0
    if which == "loop":  # the sampled mask-loop timings are not part of the window loop's time
        wall -= float(res["mask_sample_total_s"])
    res["wall_s"] = np.array(wall)
    res["peak_rss_gb"] = np.array(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)
    np.savez(out, **res)
    print(f"{which}: {wall:.1f} s, peak RSS {float(res['peak_rss_gb']):.2f} GB, {res['glacier'].size} glaciers",
          file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="EPSG:32633 store only, 10 years")
    p.add_argument("--years", type=int, default=None, help="hydrological years (default 30, quick 10)")
    p.add_argument("--mosaic", type=Path, default=Path("/tmp/glacgrid-shared/alps"))
    p.add_argument("--chunk", type=int, default=2**18, help="pixels per chunk of the packed arrays")
    p.add_argument("--sample", type=int, default=20, help="glaciers per store timed with the mask loop")
    p.add_argument("--child", choices=["glacgrid", "loop"], help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    years = a.years or (10 if a.quick else 30)
    paths = stores(a.mosaic, a.quick)
    if a.child:
        child(a.child, paths, years, a.chunk, a.sample, a.out)
        return
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for which in ("glacgrid", "loop"):
            out = Path(tmp) / f"{which}.npz"
            cmd = [sys.executable, __file__, "--child", which, "--out", str(out), "--years", str(years),
                   "--mosaic", str(a.mosaic), "--chunk", str(a.chunk), "--sample", str(a.sample)]
            if a.quick:
                cmd.append("--quick")
            subprocess.run(cmd, check=True)
            with np.load(out) as f:
                res[which] = {k: f[k] for k in f.files}
    fast, slow = res["glacgrid"], res["loop"]
    common, i_f, i_s = np.intersect1d(fast["glacier"], slow["glacier"], return_indices=True)
    worst = {}
    for n in NAMES:
        a_, b_ = fast[n][i_f], slow[n][i_s]
        if n == "aspect":  # angles: compare on the circle
            d = np.abs(np.angle(np.exp(1j * (a_ - b_))))
        else:
            d = np.abs(a_ - b_) / np.maximum(np.abs(b_), 1.0)
        worst[n] = float(np.nanmax(d)) if d.size else float("nan")
    missing = np.setdiff1d(slow["glacier"], fast["glacier"]).size
    nan_fast = int(np.isnan(fast["cpdd"]).all(axis=-1).sum())
    t_f, t_s = float(fast["wall_s"]), float(slow["wall_s"])
    t_m = float(slow["mask_loop_extrapolated_s"])
    summary = {
        "stores": [p.name for p in paths], "years": years, "glaciers": int(fast["glacier"].size),
        "glacier_pixels": int(fast["n_pixels"]), "glaciers_compared": int(common.size),
        "glaciers_without_ice_in_glacgrid (NaN, kept)": nan_fast, "glaciers_missing_from_glacgrid": int(missing),
        "glacgrid_s": round(t_f, 2), "loop_s": round(t_s, 2), "speedup_vs_window_loop": round(t_s / t_f, 2),
        "mask_loop_extrapolated_s": round(t_m, 1), "mask_loop_glaciers_timed": int(slow["mask_loop_sampled"]),
        "speedup_vs_mask_loop": round(t_m / t_f, 1),
        "glacgrid_peak_rss_gb": round(float(fast["peak_rss_gb"]), 2),
        "loop_peak_rss_gb": round(float(slow["peak_rss_gb"]), 2),
        "max_rel_difference": {k: float(f"{v:.2e}") for k, v in worst.items()},
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
