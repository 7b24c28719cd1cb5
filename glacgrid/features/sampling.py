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
from ..exceptions import InputDataError
from ..glaciers import (CONSTANTS, MONTH_SUMS, PIXEL_TOPO, YEAR_STATIC, GlacierGeometry, area_weighted_mean,
                        ordered_features, paint)
from ..metadata import provenance, stamp
from .climate import ClimateFeatureParams, _finish, _surface_climate, era5_monthly_features, stamp_feature, \
    unstack_features
from .topo import active_pixels, glacier_constants, topo_pixel_features

__all__ = ["pixel_features", "glacier_features", "compute_features", "season_features", "check_seasonal"]


def pixel_features(climate: xr.Dataset, topo: xr.Dataset, constants: xr.Dataset,
                   glacier_id: xr.DataArray, active: xr.DataArray) -> xr.Dataset:
    """All features on every active pixel: climate (year, y, x), topographic and glacier constants (y, x).

    Adds ``elevation_norm`` = (z - z_min) / (z_max - z_min) of the pixel within its glacier. Lazy.
    """
    out = {}
    for name in climate.data_vars:
        out[name] = climate[name].where(active)
    for name in PIXEL_TOPO:
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
    ds = xr.Dataset({k: stamp_feature(out[k], k) for k in ordered_features(out)})
    ds.attrs["history"] = provenance("pixel_features")
    return ds


def check_seasonal(names) -> None:
    """Refuse features that have no seasonal part: neither sums over months
    (:data:`glacgrid.glaciers.MONTH_SUMS`) nor constant within a year (:data:`glacgrid.glaciers.YEAR_STATIC`),
    e.g. a monthly temperature or an anomaly (:class:`~glacgrid.exceptions.InputDataError`)."""
    other = [n for n in names if n not in MONTH_SUMS and n not in YEAR_STATIC]
    if other:
        raise InputDataError(f"Features {other} have no seasonal part (they are neither sums over months, "
                             f"{list(MONTH_SUMS)}, nor constant within a year); drop them from [model] features "
                             "to fit seasonal balances, or give those balances no weight.")


def season_features(pix: xr.Dataset, fraction: float) -> xr.Dataset:
    """The pixel features of a season of the year, from those computed with its climate.

    ``pix`` holds features whose climate sums were taken over the season's months only
    (:attr:`ClimateFeatureParams.period`); its year-static features (topography, glacier constants,
    ``elevation_norm``: :data:`glacgrid.glaciers.YEAR_STATIC`) are multiplied by the season's share of the
    year, ``fraction``. A linear model then gives a winter and a summer value that add up to its annual
    value, intercept included when the intercept is shared the same way.

    Parameters
    ----------
    pix : xarray.Dataset
        Pixel features of the season (:func:`pixel_features` of the season's climate).
    fraction : float
        Share of the year's months the season covers, in (0, 1].

    Returns
    -------
    xarray.Dataset
        The same variables, the year-static ones scaled.

    Raises
    ------
    InputDataError
        A feature that is neither a sum over months (:data:`glacgrid.glaciers.MONTH_SUMS`) nor year-static,
        e.g. a monthly temperature or an anomaly: it has no seasonal part.
    """
    check_seasonal(list(pix.data_vars))
    if not 0.0 < float(fraction) <= 1.0:
        raise InputDataError(f"fraction must be in (0, 1] (the season's share of the year); got {fraction!r}.")
    return pix.assign({n: (pix[n] * np.float32(fraction)).assign_attrs(pix[n].attrs)
                       for n in pix.data_vars if n in YEAR_STATIC})


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


def compute_features(down: xr.Dataset, glaciers: GlacierGeometry, *, start: int, end: int,
                     downscale: DownscaleParams = DownscaleParams(),
                     climate: ClimateFeatureParams | None = None, cube: xr.Dataset | None = None,
                     era5_variables=(), mode: str = "glacier", topo: xr.Dataset | None = None) -> xr.Dataset:
    """Every feature for hydrological years ``start..end`` on the geometry ``glaciers``.

    Parameters
    ----------
    down : xr.Dataset
        Downscaled climate: ``temp`` (degC) and ``prcp`` (kg m-2) on ``(time, y, x)`` and
        ``reference_elevation`` (m).
    glaciers : GlacierGeometry
        The geometry: its ``surface`` (m), ``glacier_id`` raster, ``pixel_area`` (m2), ``index`` (the
        glaciers to report; those without active pixels get NaN, never dropped) and ``grid``. When it
        holds a ``thickness``, only the pixels with ice count (an evolving geometry).
    start, end : int
        Hydrological years (labels = end years).
    downscale : DownscaleParams
        Lapse rate (when ``down`` does not record one) and rain/snow thresholds.
    climate : ClimateFeatureParams, optional
        Seasons, ablation season, monthly values and anomalies (default: the northern hemisphere).
    cube : xr.Dataset, optional
        The ERA5-Land cube, needed with ``era5_variables``.
    era5_variables : sequence of str
        ERA5-Land variables whose monthly values become features.
    mode : {"glacier", "pixel"}
        ``"glacier"`` (dims glacier, year) or ``"pixel"`` (dims year, y, x).
    topo : xr.Dataset, optional
        Pixel topography on the dims of the surface (see :func:`topo_pixel_features`); computed from
        the surface on ``glaciers.grid`` when not given. With ``topo`` the inputs can have any spatial
        dims, e.g. the packed ``pixel`` dim of :func:`glacgrid.features.pack_feature_pixels`
        (``glaciers.grid`` may then be None).

    Returns
    -------
    xr.Dataset
        Lazy; nothing is computed here. In glacier mode the climate predictors are reduced as one
        stacked array (one flox reduction for all of them) and anomalies are taken after the reduction,
        which equals the area-weighted mean of the pixel anomalies (the weights do not change with the
        year).
    """
    if mode not in ("glacier", "pixel"):
        raise InputDataError(f"mode must be 'glacier' or 'pixel', got {mode!r}.")
    if era5_variables and cube is None:
        raise InputDataError("era5_variables needs the ERA5-Land cube: pass cube=.")
    climate = climate or ClimateFeatureParams()
    g = glaciers
    active = active_pixels(g.glacier_id, g.thickness)
    stacked = _surface_climate(down, g.surface, downscale, climate, start, end)
    era = None
    if topo is None:
        if g.grid is None:
            raise InputDataError("compute_features needs glaciers with a grid, or a precomputed topo=.")
        topo = topo_pixel_features(g.surface, g.grid)
    if era5_variables:
        era = era5_monthly_features(cube, topo["lon"], topo["lat"], list(era5_variables), start=start, end=end,
                                    hydro=climate.hydro)
    const = glacier_constants(g.glacier_id, g.surface, active, g.pixel_area, g.index, topo=topo)
    if mode == "pixel":
        clim = _finish(stacked, climate, start, end)
        if era is not None:
            clim = clim.assign(era.data_vars)
        return pixel_features(clim, topo, const, g.glacier_id, active)
    res = _glacier_mode(stacked, era, topo, const, g, active, climate, start, end)
    res.attrs["history"] = provenance("compute_features", start=start, end=end, mode=mode,
                                      climate=repr(climate), downscale=repr(downscale))
    return res


def _glacier_mode(stacked: xr.DataArray, era: xr.Dataset | None, topo: xr.Dataset, const: xr.Dataset,
                  g: GlacierGeometry, active: xr.DataArray, climate: ClimateFeatureParams, start: int,
                  end: int) -> xr.Dataset:
    """The glacier features of :func:`compute_features`: area-weighted means of the stacked climate, of the
    ERA5-Land monthly values and of the pixel topography (with ``elevation_norm``), plus the constants."""
    zmin = paint(const["min_elevation"], g.glacier_id, active)
    zmax = paint(const["max_elevation"], g.glacier_id, active)
    rng = zmax - zmin
    enorm = ((topo["mean_elevation"] - zmin) / rng.where(rng > 0)).fillna(0.0).where(active)
    tnames = ["mean_elevation", "slope", "lat", "lon", "aspect_cos", "aspect_sin"]
    tstack = xr.concat([topo[n].astype("float32") for n in tnames] + [enorm.astype("float32")], dim="feature",
                       coords="minimal", compat="override", join="override")
    tstack = tstack.assign_coords(feature=[*tnames, "elevation_norm"])
    cm = area_weighted_mean(stacked, g.glacier_id, active, g.pixel_area, g.index)
    tm = area_weighted_mean(tstack, g.glacier_id, active, g.pixel_area, g.index)
    out = dict(_finish(cm, climate, start, end).data_vars)
    if era is not None:
        em = area_weighted_mean(era.to_dataarray("feature"), g.glacier_id, active, g.pixel_area, g.index)
        out.update(unstack_features(em).data_vars)
    out.update(unstack_features(tm).data_vars)
    out.update({k: const[k] for k in const.data_vars})
    out["aspect"] = np.arctan2(out["aspect_sin"], out["aspect_cos"]) % (2 * np.pi)
    res = xr.Dataset({k: stamp_feature(out[k].drop_vars("feature", errors="ignore"), k)
                      for k in ordered_features(out)})
    return res.transpose("glacier", ...)
