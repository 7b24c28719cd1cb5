"""Sampling modes: every glacier pixel (lazy, blockwise) and per glacier (area-weighted, flox).

Every feature is first a pixel field; a glacier's feature is the area-weighted mean of its active
pixels, computed with flox over the glacier-index raster (no loop over glaciers). Glacier-level
quantities (area, maximum and minimum elevation, lower-tongue slope) are painted back onto their
pixels, so that the same model applies to pixels and to glaciers: for a linear model, the
area-weighted mean of the pixel predictions equals the prediction on the glacier's features.
Point sampling (stakes) lives in :mod:`glacgrid.features.points`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..config import DownscaleParams
from ..grid import TargetGrid
from ..metadata import provenance, stamp
from .climate import ClimateFeatureParams, era5_monthly_features, stamp_feature, unstack_features
from .topo import active_pixels, glacier_constants, paint, topo_pixel_features

__all__ = ["FEATURES", "CONSTANTS", "area_weighted_mean", "pixel_features", "glacier_features",
           "compute_features"]

#: The base features glacgrid computes, in canonical order (the ``[model] features`` of a run).
FEATURES = ("cpdd", "snow_winter", "snow_summer", "mean_elevation", "max_elevation", "min_elevation",
            "area", "slope", "lat", "lon", "aspect_cos", "aspect_sin")
#: flox engine of the per-glacier reductions: "flox" (numpy, no JIT); numbagg's default costs ~12 s of
#: JIT compilation in every new process.
FLOX_ENGINE = "flox"
#: Glacier-level topographic quantities painted onto the pixels.
CONSTANTS = ("area", "max_elevation", "min_elevation", "slope_lower20")
_PIXEL_TOPO = ("mean_elevation", "slope", "lat", "lon", "aspect_cos", "aspect_sin", "aspect")


def area_weighted_mean(obj: xr.DataArray | xr.Dataset, glacier_id: xr.DataArray, active: xr.DataArray,
                       pixel_area: xr.DataArray, index: np.ndarray):
    """Area-weighted mean of ``obj`` over each glacier's active pixels (flox); adds dim ``glacier``.

    Pixels where a value is NaN do not count for that value (their area is left out of its weights);
    glaciers in ``index`` without an active pixel with a value get NaN. One flox reduction computes
    the weighted sums and the weights of every variable together.
    """
    from flox.xarray import xarray_reduce

    gid = glacier_id.where(active, 0).rename("glacier")
    w = pixel_area.where(active, 0.0)
    kw = dict(func="sum", expected_groups=(np.asarray(index),), fill_value=0.0, engine=FLOX_ENGINE)
    single = isinstance(obj, xr.DataArray)
    ds = obj.to_dataset(name="__value") if single else obj
    parts = {}
    for k in ds.data_vars:
        parts[f"{k}"] = (ds[k].fillna(0.0) * w).astype("float64")
        parts[f"__weight_{k}"] = (ds[k].notnull() * w).astype("float64")
    red = xarray_reduce(xr.Dataset(parts), gid, **kw)
    out = xr.Dataset({k: red[k] / red[f"__weight_{k}"].where(red[f"__weight_{k}"] > 0) for k in ds.data_vars})
    for k in ds.data_vars:
        out[k].attrs = dict(ds[k].attrs)
    return out["__value"].rename(obj.name) if single else out


def _ordered(names) -> list[str]:
    names = list(names)
    return [n for n in FEATURES if n in names] + [n for n in names if n not in FEATURES]


def pixel_features(climate: xr.Dataset, topo: xr.Dataset, constants: xr.Dataset,
                   glacier_id: xr.DataArray, active: xr.DataArray) -> xr.Dataset:
    """All features on every active pixel: climate (year, y, x), topographic and glacier constants (y, x).

    Adds ``elevation_norm`` = (z - z_min) / (z_max - z_min) of the pixel within its glacier. Lazy.
    """
    out = {}
    for name in climate.data_vars:
        out[name] = climate[name].where(active)
    for name in _PIXEL_TOPO:
        if name in topo:
            out[name] = topo[name].where(active)
    for name in CONSTANTS:
        if name in constants:
            out[name] = stamp(paint(constants[name], glacier_id, active).astype("float32"), name)
    if "max_elevation" in out and "min_elevation" in out:
        zmin, zmax = out["min_elevation"], out["max_elevation"]
        rng = (zmax - zmin)
        out["elevation_norm"] = stamp(((topo["mean_elevation"] - zmin) / rng.where(rng > 0)).where(active)
                                      .fillna(0.0).where(active).astype("float32"), "elevation_norm")
    ds = xr.Dataset({k: stamp_feature(out[k], k) for k in _ordered(out)})
    ds.attrs["history"] = provenance("pixel_features")
    return ds


def glacier_features(pix: xr.Dataset, glacier_id: xr.DataArray, active: xr.DataArray,
                     pixel_area: xr.DataArray, index: np.ndarray, constants: xr.Dataset | None = None) -> xr.Dataset:
    """Area-weighted mean of every pixel feature over each glacier's active pixels (flox, lazy).

    Glacier-level quantities are taken from ``constants`` when given (else from their painted pixels),
    and the glacier ``aspect`` (radians) is the direction of the mean aspect vector.
    """
    names = list(pix.data_vars)
    skip = [n for n in CONSTANTS if constants is not None and n in constants and n in names]
    means = area_weighted_mean(pix[[n for n in names if n not in skip and n != "aspect"]], glacier_id, active,
                               pixel_area, index)
    out = {k: means[k] for k in means.data_vars}
    for n in skip:
        out[n] = constants[n]
    if "aspect" in names:
        vec = area_weighted_mean(pix[["aspect_cos", "aspect_sin"]], glacier_id, active, pixel_area, index)
        out["aspect"] = (np.arctan2(vec["aspect_sin"], vec["aspect_cos"]) % (2 * np.pi))
    res = xr.Dataset({k: stamp_feature(out[k], k) for k in names}).transpose("glacier", ...)
    res.attrs["history"] = provenance("glacier_features")
    return res


def compute_features(down: xr.Dataset, surface: xr.DataArray, glacier_id: xr.DataArray, pixel_area: xr.DataArray,
                     grid: TargetGrid | None, index: np.ndarray, *, start: int, end: int,
                     downscale: DownscaleParams = DownscaleParams(),
                     climate: ClimateFeatureParams | None = None, thickness: xr.DataArray | None = None,
                     cube: xr.Dataset | None = None, era5_variables=(), mode: str = "glacier",
                     topo: xr.Dataset | None = None) -> xr.Dataset:
    """Every feature for hydrological years ``start..end`` on the geometry (``surface``, ``thickness``).

    Parameters
    ----------
    down : downscaled climate (``temp`` degC, ``prcp`` kg m-2 on time, y, x; ``reference_elevation``)
    surface : surface elevation (m) of the current geometry
    glacier_id, pixel_area : glacier-index raster and pixel areas (m2)
    index : glacier indices to report (glaciers without active pixels get NaN, never dropped)
    thickness : ice thickness (m); when given, only pixels with ice count (an evolving geometry)
    cube, era5_variables : ERA5-Land cube and the variables whose monthly values become features
    mode : ``"glacier"`` (dims glacier, year) or ``"pixel"`` (dims year, y, x)
    topo : pixel topography on the dims of ``surface`` (see :func:`topo_pixel_features`); computed
        from ``surface`` on ``grid`` when not given. With ``topo`` the inputs can have any spatial
        dims, e.g. the packed ``pixel`` dim of :func:`glacgrid.features.packed.pack_glacier_pixels`
        (``grid`` may then be None).

    Returns a lazy Dataset; nothing is computed here. In glacier mode the climate predictors are
    reduced as one stacked array (one flox reduction for all of them) and anomalies are taken after the
    reduction, which equals the area-weighted mean of the pixel anomalies (the weights do not change
    with the year).
    """
    from ..exceptions import InputDataError
    from .climate import _finish, _surface_climate

    if mode not in ("glacier", "pixel"):
        raise InputDataError(f"mode must be 'glacier' or 'pixel', got {mode!r}.")
    if era5_variables and cube is None:
        raise InputDataError("era5_variables needs the ERA5-Land cube: pass cube=.")
    climate = climate or ClimateFeatureParams()
    active = active_pixels(glacier_id, thickness)
    stacked = _surface_climate(down, surface, downscale, climate, start, end)
    era = None
    if topo is None:
        if grid is None:
            raise InputDataError("compute_features needs either grid= or a precomputed topo=.")
        topo = topo_pixel_features(surface, grid)
    if era5_variables:
        era = era5_monthly_features(cube, topo["lon"], topo["lat"], list(era5_variables), start=start, end=end,
                                    hydro=climate.hydro)
    const = glacier_constants(glacier_id, surface, active, pixel_area, index, topo=topo)
    if mode == "pixel":
        clim = _finish(stacked, climate, start, end)
        if era is not None:
            clim = clim.assign(era.data_vars)
        return pixel_features(clim, topo, const, glacier_id, active)
    zmin = paint(const["min_elevation"], glacier_id, active)
    zmax = paint(const["max_elevation"], glacier_id, active)
    rng = zmax - zmin
    enorm = ((topo["mean_elevation"] - zmin) / rng.where(rng > 0)).fillna(0.0).where(active)
    tnames = ["mean_elevation", "slope", "lat", "lon", "aspect_cos", "aspect_sin"]
    tstack = xr.concat([topo[n].astype("float32") for n in tnames] + [enorm.astype("float32")], dim="feature",
                       coords="minimal", compat="override", join="override")
    tstack = tstack.assign_coords(feature=[*tnames, "elevation_norm"])
    cm = area_weighted_mean(stacked, glacier_id, active, pixel_area, index)
    tm = area_weighted_mean(tstack, glacier_id, active, pixel_area, index)
    out = dict(_finish(cm, climate, start, end).data_vars)
    if era is not None:
        em = area_weighted_mean(era.to_dataarray("feature"), glacier_id, active, pixel_area, index)
        out.update(unstack_features(em).data_vars)
    out.update(unstack_features(tm).data_vars)
    out.update({k: const[k] for k in const.data_vars})
    out["aspect"] = np.arctan2(out["aspect_sin"], out["aspect_cos"]) % (2 * np.pi)
    res = xr.Dataset({k: stamp_feature(out[k].drop_vars("feature", errors="ignore"), k) for k in _ordered(out)})
    res.attrs["history"] = provenance("compute_features", start=start, end=end, mode=mode,
                                      climate=repr(climate), downscale=repr(downscale))
    return res.transpose("glacier", ...)
