"""Topo-climatic predictors per pixel and per glacier, as chunked whole-array operations.

Every feature is first a pixel field; a glacier's feature is the area-weighted mean of its ice-covered
pixels, computed with flox over the glacier-index raster (no loop over glaciers). Glacier-level
quantities (area, maximum and minimum elevation) are broadcast back to their pixels, so that the same
model applies to pixels and to glaciers: for a linear model, the area-weighted mean of the pixel
predictions equals the prediction on the glacier's features.
"""

from __future__ import annotations

import logging

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from ..config import DownscaleParams
from ..exceptions import InputDataError, TimeAxisError
from ..grid import EARTH_RADIUS, TargetGrid
from ..metadata import provenance, stamp
from . import _kernels

__all__ = [
    "FEATURES", "hydrological_years", "climate_pixel_features", "topo_pixel_features",
    "pixel_features", "glacier_features", "area_weighted_mean", "glacier_constants", "features_table",
]

log = logging.getLogger(__name__)

#: All features glacgrid computes, in canonical order.
FEATURES = ("cpdd", "snow_winter", "snow_summer", "mean_elevation", "max_elevation", "min_elevation",
            "area", "slope", "lat", "lon", "aspect_cos", "aspect_sin")
_CLIMATE = ("cpdd", "snow_winter", "snow_summer")

#: First month of the hydrological year; the year is labelled by the calendar year it ends in.
HYDRO_START = {"north": 10, "south": 4}
#: Months of the winter (accumulation) season, as offsets from the first month of the hydrological year
#: (north: Oct-Apr, south: Apr-Oct).
WINTER_MONTHS = 7


def hydrological_years(ds: xr.Dataset | xr.DataArray, start: int, end: int, hemisphere: str = "north"):
    """Select hydrological years ``start..end`` and reshape ``time`` into ``(year, month)``.

    Monthly data must be contiguous. Years in the request that the data does not fully cover raise a
    :class:`TimeAxisError` naming them (nothing is dropped silently).
    """
    if hemisphere not in HYDRO_START:
        raise InputDataError(f"hemisphere must be 'north' or 'south', got {hemisphere!r}.")
    m0 = HYDRO_START[hemisphere]
    first = pd.Timestamp(year=start - 1 if m0 > 1 else start, month=m0, day=1)
    months = pd.date_range(first, periods=12 * (end - start + 1), freq="MS")
    have = pd.DatetimeIndex(ds["time"].values)
    missing = months.difference(have)
    if len(missing):
        bad = sorted({(t.year + 1 if t.month >= m0 and m0 > 1 else t.year) for t in missing})
        raise TimeAxisError(
            f"Hydrological years {bad} are not fully covered by the climate data "
            f"({have.min():%Y-%m} .. {have.max():%Y-%m}); a year needs its 12 months from "
            f"{pd.Timestamp(2000, m0, 1):%B}. Shorten [period] or ingest more months."
        )
    sel = ds.sel(time=months)
    years = np.arange(start, end + 1)
    out = sel.coarsen(time=12).construct(time=("year", "month"))
    out = out.assign_coords(year=("year", years), month=("month", np.arange(12)))
    days = xr.DataArray(months.days_in_month.to_numpy().reshape(-1, 12).astype("float64"),
                        dims=("year", "month"), coords={"year": years})
    return out.drop_vars("time", errors="ignore"), days


def climate_pixel_features(down: xr.Dataset, surface: xr.DataArray, params: DownscaleParams, *,
                           start: int, end: int, hemisphere: str = "north") -> xr.Dataset:
    """CPDD and winter/summer snowfall per pixel and hydrological year (lazy).

    Temperature is moved from ``down.reference_elevation`` to ``surface`` with ``params.lapse_rate``
    before the predictors are computed, so an evolving surface changes them consistently.
    """
    lapse = float(down.attrs.get("lapse_rate", params.lapse_rate))
    temp = down["temp"] + lapse * (surface - down["reference_elevation"]).astype("float32")
    hy, days = hydrological_years(xr.Dataset({"temp": temp, "prcp": down["prcp"]}), start, end, hemisphere)
    hy = hy.chunk({"month": -1})
    winter = np.arange(12) < WINTER_MONTHS
    out = xr.apply_ufunc(
        _kernels.climate_features, hy["temp"], hy["prcp"], days,
        kwargs={"winter": winter, "snow_threshold": params.snow_threshold, "rain_threshold": params.rain_threshold},
        input_core_dims=[["month"], ["month"], ["month"]], output_core_dims=[["feature"]],
        dask="parallelized", output_dtypes=["float32"], dask_gufunc_kwargs={"output_sizes": {"feature": 3}},
    )
    ds = out.assign_coords(feature=list(_CLIMATE)).to_dataset("feature")
    return xr.Dataset({k: stamp(ds[k], k) for k in _CLIMATE})


def topo_pixel_features(surface: xr.DataArray, grid: TargetGrid) -> xr.Dataset:
    """Per-pixel elevation, slope, aspect (cos/sin), latitude and longitude (lazy, halo of 1 pixel)."""
    z = surface.data if isinstance(surface.data, dsa.Array) else dsa.from_array(np.asarray(surface), chunks=grid.chunks)
    z = z.astype("float64").rechunk(grid.chunks)
    ll = grid.lonlat()
    dxr, dyr = grid.resolution
    if grid.is_geographic:
        dy = EARTH_RADIUS * np.deg2rad(dyr)
        dx = (EARTH_RADIUS * np.deg2rad(dxr) * np.cos(np.deg2rad(ll["lat"].data)))
    else:
        dx = dsa.full(grid.shape, dxr, chunks=grid.chunks)
        dy = dyr

    def kernel(zb, dxb):
        return _kernels.slope_aspect(zb, dxb, dy)

    # A one-pixel halo from the neighbouring blocks; the kernel adds a trailing axis, so trim by hand.
    zp = dsa.overlap.overlap(z, depth={0: 1, 1: 1}, boundary={0: "nearest", 1: "nearest"})
    dxp = dsa.overlap.overlap(dx, depth={0: 1, 1: 1}, boundary={0: "nearest", 1: "nearest"})
    sa = dsa.map_blocks(lambda a, b: kernel(a, b)[1:-1, 1:-1], zp, dxp, dtype="float32",
                        new_axis=2, chunks=z.chunks + ((3,),))
    coords = grid.coords()
    dims = ("y", "x")
    out = xr.Dataset({
        "mean_elevation": stamp(xr.DataArray(z.astype("float32"), dims=dims, coords=coords), "mean_elevation"),
        "slope": stamp(xr.DataArray(sa[..., 0], dims=dims, coords=coords), "slope"),
        "aspect_cos": stamp(xr.DataArray(sa[..., 1], dims=dims, coords=coords), "aspect_cos"),
        "aspect_sin": stamp(xr.DataArray(sa[..., 2], dims=dims, coords=coords), "aspect_sin"),
        "lat": stamp(ll["lat"].astype("float32"), "lat"),
        "lon": stamp(ll["lon"].astype("float32"), "lon"),
    })
    return out


def glacier_constants(glacier_id: xr.DataArray, surface: xr.DataArray, active: xr.DataArray,
                      pixel_area: xr.DataArray, index: np.ndarray) -> xr.Dataset:
    """Per-glacier area (km2), maximum and minimum elevation (m) over active pixels, with flox."""
    from flox.xarray import xarray_reduce

    gid = glacier_id.where(active, 0).rename("glacier")
    groups = (np.asarray(index),)
    area = xarray_reduce(pixel_area.where(active, 0.0), gid, func="sum", expected_groups=groups, fill_value=0.0)
    zmax = xarray_reduce(surface.where(active), gid, func="nanmax", expected_groups=groups, fill_value=np.nan)
    zmin = xarray_reduce(surface.where(active), gid, func="nanmin", expected_groups=groups, fill_value=np.nan)
    return xr.Dataset({
        "area": stamp((area / 1e6).astype("float64"), "area"),
        "max_elevation": stamp(zmax.astype("float64"), "max_elevation"),
        "min_elevation": stamp(zmin.astype("float64"), "min_elevation"),
    })


def _broadcast_to_pixels(values: xr.DataArray, glacier_id: xr.DataArray, active: xr.DataArray) -> xr.DataArray:
    """Per-glacier values (dim ``glacier``, coordinate = index) painted onto the pixels of each glacier."""
    idx = np.asarray(values["glacier"].values)
    lut = np.full(int(max(idx.max(initial=0), 0)) + 1, np.nan, dtype="float32")
    lut[idx] = np.asarray(values.values, dtype="float32")

    def paint(ids):
        return lut[np.clip(ids, 0, lut.size - 1)]

    out = xr.apply_ufunc(paint, glacier_id, dask="parallelized", output_dtypes=["float32"])
    return out.where(active)


def pixel_features(climate: xr.Dataset, topo: xr.Dataset, constants: xr.Dataset,
                   glacier_id: xr.DataArray, active: xr.DataArray) -> xr.Dataset:
    """All features on every active pixel: climate (year, y, x), topographic and glacier constants (y, x)."""
    out = {}
    for name in _CLIMATE:
        out[name] = climate[name].where(active)
    for name in ("mean_elevation", "slope", "lat", "lon", "aspect_cos", "aspect_sin"):
        out[name] = topo[name].where(active)
    for name in ("area", "max_elevation", "min_elevation"):
        out[name] = stamp(_broadcast_to_pixels(constants[name], glacier_id, active), name)
    ds = xr.Dataset({k: (stamp(out[k], k)) for k in FEATURES})
    ds.attrs["history"] = provenance("pixel_features")
    return ds


def area_weighted_mean(obj: xr.DataArray | xr.Dataset, glacier_id: xr.DataArray, active: xr.DataArray,
                       pixel_area: xr.DataArray, index: np.ndarray):
    """Area-weighted mean of ``obj`` over each glacier's active pixels (flox); adds dim ``glacier``.

    Glaciers in ``index`` without an active pixel get NaN.
    """
    from flox.xarray import xarray_reduce

    gid = glacier_id.where(active, 0).rename("glacier")
    w = pixel_area.where(active, 0.0)
    groups = (np.asarray(index),)
    total = xarray_reduce(w, gid, func="sum", expected_groups=groups, fill_value=0.0)
    sums = xarray_reduce((obj.fillna(0.0) * w).astype("float64"), gid, func="sum", expected_groups=groups,
                         fill_value=0.0)
    return sums / total.where(total > 0)


def glacier_features(pix: xr.Dataset, glacier_id: xr.DataArray, active: xr.DataArray,
                     pixel_area: xr.DataArray, index: np.ndarray) -> xr.Dataset:
    """Area-weighted mean of every pixel feature over each glacier's active pixels (flox)."""
    means = area_weighted_mean(pix, glacier_id, active, pixel_area, index)
    out = xr.Dataset({k: stamp(means[k], k) for k in pix.data_vars})
    out.attrs["history"] = provenance("glacier_features")
    return out


def features_table(gf: xr.Dataset, table: pd.DataFrame) -> pd.DataFrame:
    """Flat (glacier, year) table of glacier features with ``rgi_id``, for CSV/Parquet and ``glacgrid cv``."""
    df = gf.to_dataframe().reset_index()
    df["rgi_id"] = table.loc[df["glacier"].to_numpy(), "rgi_id"].to_numpy()
    cols = ["glacier", "rgi_id", "year", *[c for c in gf.data_vars]]
    return df[cols]
