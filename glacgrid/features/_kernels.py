"""Numpy kernels of the features stage. No xarray here.

Climate kernels take the 12 months of a hydrological year on the last axis; the leading axes can be
anything (pixels, glaciers, points, years), which is how the three sampling modes share one code path.
"""

from __future__ import annotations

import numpy as np

from ..downscale import solid_fraction  # the rain/snow partition of the downscaling stage (one home)

__all__ = ["climate_features", "annual_climate", "climate_stack", "snowfall", "snow_bucket", "slope_aspect",
           "slope_aspect_at", "slope_aspect_from_gradient", "bilinear_index", "N_ANNUAL"]

#: Number of outputs of :func:`annual_climate`.
N_ANNUAL = 5


def snowfall(temp_c: np.ndarray, prcp: np.ndarray, snow_threshold: float, rain_threshold: float) -> np.ndarray:
    """Monthly solid precipitation (kg m-2): ``prcp`` times the solid fraction at ``temp_c`` (degC)."""
    return (prcp * solid_fraction(temp_c, snow_threshold, rain_threshold)).astype("float32")


def annual_climate(temp_c: np.ndarray, prcp: np.ndarray, days: np.ndarray, winter: np.ndarray,
                   summer: np.ndarray, snow_threshold: float, rain_threshold: float,
                   ablation: tuple[float, float] = (0.1, 0.9), within: np.ndarray | None = None) -> np.ndarray:
    """Annual climate predictors from the 12 months of a hydrological year (last axis = month).

    Parameters
    ----------
    temp_c : (..., 12) monthly mean temperature, degC
    prcp : (..., 12) monthly precipitation, kg m-2
    days : (..., 12) or (12,) days in each month
    winter, summer : (12,) bool, months of the winter (accumulation) and summer seasons
    snow_threshold, rain_threshold : degC, the linear rain/snow transition band
    ablation : (f_start, f_end), 0 <= f_start < f_end <= 1
        The dynamic ablation season runs from the month in which the cumulative positive degree-days
        of the year pass ``f_start`` of their annual total to the month in which they pass ``f_end``
        (both months included).
    within : (12,) bool, optional
        The months of a period of the year (e.g. a winter balance's): every sum is taken over these
        months only, so the predictors of complementary periods add up to the year's. The ablation season
        is still found from the whole year's degree-days. Default: every month.

    Returns
    -------
    (..., 5) float32: CPDD over the year (K d), CPDD over the ablation season (K d), length of the
    ablation season (months), winter and summer solid precipitation (kg m-2). A year without any
    positive month has an empty ablation season (0, 0). NaN input gives NaN.
    """
    f0, f1 = ablation
    pdd = np.maximum(temp_c, 0.0) * days
    cpdd = np.sum(pdd, axis=-1)
    cum = np.cumsum(pdd, axis=-1)
    before = cum - pdd  # cumulative PDD at the start of each month
    total = cpdd[..., None]
    with np.errstate(invalid="ignore"):
        # a month belongs to the season if the cumulative curve crosses [f0, f1] * total inside it
        in_season = (cum > f0 * total) & (before < f1 * total) & (total > 0)
    nan = np.isnan(cpdd)
    if within is not None:  # the sums of a period: its months only (the season still from the whole year)
        within = np.asarray(within, dtype=bool)
        in_season = in_season & within
        winter, summer = np.asarray(winter, bool) & within, np.asarray(summer, bool) & within
        cpdd = np.where(nan, np.nan, np.sum(np.where(within, pdd, 0.0), axis=-1))
    cpdd_abl = np.sum(np.where(in_season, pdd, 0.0), axis=-1)
    n_abl = np.sum(in_season, axis=-1).astype("float64")
    snow = prcp * solid_fraction(temp_c, snow_threshold, rain_threshold)
    snow_w = np.sum(np.where(winter, snow, 0.0), axis=-1)
    snow_s = np.sum(np.where(summer, snow, 0.0), axis=-1)
    cpdd_abl = np.where(nan, np.nan, cpdd_abl)
    n_abl = np.where(nan, np.nan, n_abl)
    return np.stack([cpdd, cpdd_abl, n_abl, snow_w, snow_s], axis=-1).astype("float32")


def climate_stack(temp_c: np.ndarray, prcp: np.ndarray, days: np.ndarray, winter: np.ndarray, summer: np.ndarray,
                  snow_threshold: float, rain_threshold: float, ablation: tuple[float, float] = (0.1, 0.9),
                  monthly: bool = False, within: np.ndarray | None = None) -> np.ndarray:
    """:func:`annual_climate` followed, when ``monthly``, by the 12 temperatures and 12 snowfalls.

    Returns ``(..., 5)`` or ``(..., 29)`` float32 (one array, so that one dask task per block makes all).
    ``within``: the months of a period (:func:`annual_climate`); not with ``monthly``.
    """
    annual = annual_climate(temp_c, prcp, days, winter, summer, snow_threshold, rain_threshold, ablation, within)
    if not monthly:
        return annual
    snow = snowfall(temp_c, prcp, snow_threshold, rain_threshold)
    return np.concatenate([annual, temp_c.astype("float32"), snow], axis=-1)


def climate_features(temp_c: np.ndarray, prcp: np.ndarray, days: np.ndarray, winter: np.ndarray,
                     snow_threshold: float, rain_threshold: float) -> np.ndarray:
    """CPDD (K d), winter and summer solid precipitation (kg m-2); summer = the months not in ``winter``.

    The three-feature subset of :func:`annual_climate`, returned as ``(..., 3)`` float32.
    """
    winter = np.asarray(winter, bool)
    out = annual_climate(temp_c, prcp, days, winter, ~winter, snow_threshold, rain_threshold)
    return out[..., [0, 3, 4]]


def slope_aspect(z: np.ndarray, dx: np.ndarray | float, dy: np.ndarray | float) -> np.ndarray:
    """Slope (degrees) and aspect cosine/sine of a north-up surface ``z`` (rows go south).

    ``dx``/``dy`` are pixel sizes in metres (scalars or arrays broadcastable to ``z``). Aspect is the
    direction the slope faces, clockwise from north: a surface falling towards the north has
    ``aspect_cos = 1``, towards the east ``aspect_sin = 1``. Flat pixels get cos = sin = 0.
    Returns an array of shape ``z.shape + (3,)``.
    """
    dz_drow, dz_dcol = np.gradient(z.astype("float64"))
    return slope_aspect_from_gradient(dz_dcol / dx, -dz_drow / dy)  # rows increase southward


def slope_aspect_at(z_west: np.ndarray, z_east: np.ndarray, z_north: np.ndarray, z_south: np.ndarray,
                    dx: np.ndarray | float, dy: np.ndarray | float) -> np.ndarray:
    """:func:`slope_aspect` of single pixels from their four neighbours (central differences).

    At a raster edge pass the pixel itself as the missing neighbour: that is what :func:`slope_aspect`
    on a block padded with its nearest values gives. Returns ``(..., 3)``.
    """
    dz_dx = (np.asarray(z_east, "float64") - z_west) / (2.0 * dx)
    dz_dy = (np.asarray(z_north, "float64") - z_south) / (2.0 * dy)
    return slope_aspect_from_gradient(dz_dx, dz_dy)


def slope_aspect_from_gradient(dz_dx: np.ndarray, dz_dy: np.ndarray) -> np.ndarray:
    """Slope (degrees), aspect cosine and sine from the eastward and northward surface derivatives."""
    grad = np.hypot(dz_dx, dz_dy)
    slope = np.degrees(np.arctan(grad))
    with np.errstate(invalid="ignore", divide="ignore"):
        # the downslope direction is -grad: its north component is -dz_dy, east component -dz_dx
        cos = np.where(grad > 0, -dz_dy / grad, 0.0)
        sin = np.where(grad > 0, -dz_dx / grad, 0.0)
    return np.stack([slope, cos, sin], axis=-1).astype("float32")


def bilinear_index(coord: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower neighbour index and weight of the upper neighbour for ``values`` on a regular 1-D ``coord``.

    ``coord`` may be ascending or descending. Values outside the outermost centres are clamped to
    the edge (weight 0 or 1). Returns ``(i0, w)`` with ``value ~ (1 - w) * f[i0] + w * f[i0 + 1]``.
    """
    coord = np.asarray(coord, dtype="float64")
    n = coord.size
    if n == 1:
        return np.zeros(np.shape(values), "int64"), np.zeros(np.shape(values))
    step = coord[1] - coord[0]
    pos = np.clip((np.asarray(values, dtype="float64") - coord[0]) / step, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(pos).astype("int64"), n - 2)
    return i0, pos - i0


def snow_bucket(temp_c: np.ndarray, prcp: np.ndarray, days: np.ndarray, snow_threshold: float,
                rain_threshold: float, ddf_snow: float, within: np.ndarray | None = None) -> np.ndarray:
    """Surface-exposure proxies of a hydrological year from a monthly snow bucket (last axis = month).

    The bucket starts empty at the first month of the year, gains the month's solid precipitation and
    loses ``ddf_snow * PDD`` (kg m-2 per K day); when the melt exceeds the snow, the rest of the month's
    degree-days fall on bare ice (or firn of earlier years). A loop over the 12 months, vectorised over
    every other axis. ``within`` (12,) bool: count only the months of a period of the year (the bucket
    still runs over every month), so that complementary periods add up to the year.

    Returns
    -------
    (..., 2) float32: snow-free months (the fraction of each month's degree-days on a snow-free surface,
    summed; months) and the positive degree-days on a snow-free surface (K d). NaN input gives NaN.
    """
    pdd = np.maximum(temp_c, 0.0) * days
    snow = prcp * solid_fraction(temp_c, snow_threshold, rain_threshold)
    store = np.zeros(np.broadcast_shapes(pdd.shape, snow.shape)[:-1])
    months = np.zeros_like(store)
    ice_pdd = np.zeros_like(store)
    for m in range(pdd.shape[-1]):
        store = store + snow[..., m]
        melt = ddf_snow * pdd[..., m]
        with np.errstate(invalid="ignore", divide="ignore"):
            bare = np.where(melt > store, (melt - store) / np.where(melt > 0, melt, 1.0), 0.0)
        if within is None or within[m]:
            months += bare
            ice_pdd += bare * pdd[..., m]
        store = np.maximum(store - melt, 0.0)
    nan = np.isnan(pdd).any(axis=-1) | np.isnan(snow).any(axis=-1)
    out = np.stack([months, ice_pdd], axis=-1)
    out[nan] = np.nan
    return out.astype("float32")
