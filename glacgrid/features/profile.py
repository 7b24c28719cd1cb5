"""Features that can bend the vertical SMB profile of a glacier.

A model fitted on glacier-wide balances alone gets its pixel gradient only from its inter-annual
coefficients times each feature's elevation gradient. These pixel features give it more to work with;
they are meant for joint training against glacier-wide balances and elevation bands
(:mod:`glacgrid.models.footprint`):

- ``snow_winter_dz`` (kg m-2 km): winter snowfall times the height above :data:`REFERENCE_ELEVATION`
  (km). With ``snow_winter`` in the same linear model it is a precipitation gradient calibrated by the
  fit: ``coef(snow_winter_dz) / coef(snow_winter)`` is the relative increase of winter snowfall per km
  above the reference (:func:`implied_precip_gradient`), instead of the ``precip_gradient = 0`` default.
- ``snowfree_months`` (1) and ``cpdd_ice`` (K d): a surface-type / exposure proxy from a monthly snow
  bucket (:func:`glacgrid.features._kernels.snow_bucket`): the months, and the positive degree-days,
  after the year's snow has melted (bare ice or old firn, darker than snow). With ``cpdd`` in a linear
  model, ``coef(cpdd_ice)`` is the extra melt per degree-day of ice over snow (two degree-day factors).
- ``cpdd_low`` (K d): the degree-days times ``1 - elevation_norm``, largest on the tongue: an empirical
  surface-type proxy (the lower a pixel sits in its glacier's elevation range, the longer it is bare ice
  in summer) that, unlike ``cpdd_ice``, needs no snow model. Measured on the Ötztal (joint training,
  leave-one-year-out) it bends the profile more than ``cpdd_ice``.
- ``elevation_norm`` (already a pixel feature, :func:`glacgrid.features.pixel_features`): position in
  the glacier's elevation range. Its glacier-wide mean is close to 0.5 on every glacier, so only band (or
  stake) observations can calibrate it.

Typical use::

    extra = profile_pixel_features(down, surface, downscale, climate, start=1982, end=2018,
                                   names=("snow_winter_dz", "cpdd_ice"))
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from ..config import DownscaleParams
from ..exceptions import InputDataError
from ..glaciers import EXPOSURE
from . import _kernels
from .climate import ClimateFeatureParams, _one_month_chunk, stamp_feature
from .hydro import HydroYear, hydrological_years

__all__ = ["DDF_SNOW", "PROFILE_FEATURES", "REFERENCE_ELEVATION", "exposure_from_monthly", "implied_precip_gradient",
           "profile_pixel_features"]

#: Degree-day factor of snow of the exposure bucket (kg m-2 K-1 d-1).
DDF_SNOW = 3.0
#: Elevation (m) at which ``snow_winter_dz`` is zero: the precipitation gradient is relative to it.
REFERENCE_ELEVATION = 3000.0
#: The pixel features this module computes.
PROFILE_FEATURES = ("snow_winter_dz", "snowfree_months", "cpdd_ice", "cpdd_low")


def exposure_from_monthly(temp: xr.DataArray, prcp: xr.DataArray, days: xr.DataArray, snow_threshold: float,
                          rain_threshold: float, ddf_snow: float = DDF_SNOW,
                          within: np.ndarray | None = None) -> xr.Dataset:
    """``snowfree_months`` and ``cpdd_ice`` from monthly temperature (degC) and precipitation (kg m-2) on
    ``(year, month, ...)`` (lazy with dask inputs; one kernel call per block).

    Parameters
    ----------
    temp, prcp : xarray.DataArray
        Monthly mean temperature (degC) and precipitation (kg m-2), dims ``(year, month, ...)`` with the
        months in hydrological-year order.
    days : xarray.DataArray
        Days of each month (``year, month``).
    snow_threshold, rain_threshold : float
        The rain/snow transition (degC).
    ddf_snow : float
        Degree-day factor of snow (kg m-2 K-1 d-1).
    within : numpy.ndarray, optional
        (12,) bool: count only the months of a period (:meth:`ClimateFeatureParams.within`).

    Returns
    -------
    xarray.Dataset
        ``snowfree_months`` (1) and ``cpdd_ice`` (K d), dims ``(year, ...)``.
    """
    if not (np.isfinite(ddf_snow) and ddf_snow > 0):
        raise InputDataError(f"ddf_snow must be a positive number (kg m-2 K-1 d-1); got {ddf_snow!r}.")
    out = xr.apply_ufunc(
        _kernels.snow_bucket, _one_month_chunk(temp), _one_month_chunk(prcp), days,
        kwargs={"snow_threshold": snow_threshold, "rain_threshold": rain_threshold, "ddf_snow": float(ddf_snow),
                "within": within},
        input_core_dims=[["month"], ["month"], ["month"]], output_core_dims=[["feature"]], dask="parallelized",
        output_dtypes=["float32"], dask_gufunc_kwargs={"output_sizes": {"feature": 2}})
    return xr.Dataset({n: stamp_feature(out.isel(feature=i, drop=True), n)
                       for i, n in enumerate(EXPOSURE)})


def implied_precip_gradient(coef_snow_winter: float, coef_snow_winter_dz: float) -> float:
    """The winter precipitation gradient a linear model calibrated (m-1, relative to the snowfall at
    :data:`REFERENCE_ELEVATION`): ``coef(snow_winter_dz) / coef(snow_winter) / 1000``; NaN when the
    snowfall coefficient is 0."""
    if coef_snow_winter == 0:
        return float("nan")
    return float(coef_snow_winter_dz) / float(coef_snow_winter) / 1000.0


def profile_pixel_features(down: xr.Dataset, surface: xr.DataArray, params: DownscaleParams, climate: xr.Dataset,
                           *, start: int, end: int, hemisphere: str = "north",
                           names: Sequence[str] = PROFILE_FEATURES, ddf_snow: float = DDF_SNOW,
                           reference_elevation: float = REFERENCE_ELEVATION,
                           elevation_norm: xr.DataArray | None = None, period: str = "annual") -> xr.Dataset:
    """The profile features ``names`` per pixel and hydrological year ``start..end`` (lazy).

    Parameters
    ----------
    down : xarray.Dataset
        Downscaled climate (``temp``, ``prcp``, ``reference_elevation``), as for
        :func:`glacgrid.features.climate_pixel_features`.
    surface : xarray.DataArray
        Surface elevation (m).
    params : DownscaleParams
        Lapse rate and rain/snow thresholds.
    climate : xarray.Dataset
        The climate pixel features (``snow_winter`` is needed for ``snow_winter_dz``, ``cpdd`` for
        ``cpdd_low``).
    start, end : int
        Hydrological years.
    hemisphere : {"north", "south"}
        Hydrological year.
    names : sequence of str
        Any of :data:`PROFILE_FEATURES`.
    ddf_snow : float
        Degree-day factor of snow of the exposure bucket (kg m-2 K-1 d-1).
    reference_elevation : float
        Elevation (m) where ``snow_winter_dz`` is zero.
    elevation_norm : xarray.DataArray, optional
        The pixel's position in its glacier's elevation range (:func:`glacgrid.features.pixel_features`),
        needed for ``cpdd_low``.
    period : {"annual", "winter", "summer"}
        The months the features are summed over (:class:`~glacgrid.features.ClimateFeatureParams`); pass
        the ``climate`` of the same period.

    Returns
    -------
    xarray.Dataset
        The requested features, stamped with their units.
    """
    bad = sorted(set(names) - set(PROFILE_FEATURES))
    if bad:
        raise InputDataError(f"Unknown profile features {bad}; available: {list(PROFILE_FEATURES)}.")
    out = {}
    if "snow_winter_dz" in names:
        if "snow_winter" not in climate:
            raise InputDataError("snow_winter_dz needs the snow_winter climate feature; it is missing.")
        dz = (surface - reference_elevation) / 1000.0
        out["snow_winter_dz"] = stamp_feature((climate["snow_winter"] * dz).astype("float32"), "snow_winter_dz")
    if "cpdd_low" in names:
        if "cpdd" not in climate or elevation_norm is None:
            raise InputDataError("cpdd_low needs the cpdd climate feature and elevation_norm; pass both.")
        out["cpdd_low"] = stamp_feature((climate["cpdd"] * (1.0 - elevation_norm)).astype("float32"), "cpdd_low")
    if set(EXPOSURE) & set(names):
        lapse = float(down.attrs.get("lapse_rate", params.lapse_rate))
        temp = down["temp"] + lapse * (surface - down["reference_elevation"]).astype("float32")
        hy, days = hydrological_years(xr.Dataset({"temp": temp, "prcp": down["prcp"]}), start, end,
                                      hydro=HydroYear(hemisphere))
        within = ClimateFeatureParams(HydroYear(hemisphere), period=period).within()
        exp = exposure_from_monthly(hy["temp"], hy["prcp"], days, params.snow_threshold, params.rain_threshold,
                                    ddf_snow, within)
        out.update({n: exp[n] for n in EXPOSURE if n in names})
    return xr.Dataset({n: out[n] for n in names})
