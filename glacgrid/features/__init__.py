"""Topo-climatic predictors per pixel, per glacier and per point, as chunked whole-array operations.

Modules:

- ``hydro``: hydrological years (north/south defaults, configurable; partial years dropped with a warning)
- ``climate``: CPDD (year and dynamic ablation season), seasonal and monthly snowfall and temperature,
  anomalies against a reference period, monthly ERA5-Land variables
- ``topo``: pixel slope/aspect/elevation and per-glacier constants (flox), recomputed from any geometry
- ``sampling``: every glacier pixel (lazy) and per glacier (area-weighted, flox); :func:`compute_features`
- ``profile``: features that bend the vertical profile (fitted precipitation gradient, snow-bucket exposure,
  tongue-weighted degree-days) for joint training
- ``packed``: the glacier pixels of a large sparse raster (a regional mosaic) as one ``pixel`` dim
- ``points``: stakes: bilinear sampling with elevation correction; stake and Iceland ERA5 table readers
- ``schema``: :class:`FeatureSchema`: names, units and order of the features (checked by every model)
- ``io``: Zarr store and flat (glacier, year) table for ``glacgrid cv``

Every feature is first a pixel field; a glacier's feature is the area-weighted mean of its active
pixels, so that for a linear model the area-weighted mean of the pixel predictions equals the
prediction on the glacier's features. The feature-name lists, the area-weighted means and the
painting of glacier values onto pixels are shared with other stages: they live in
:mod:`glacgrid.glaciers`.
"""

from __future__ import annotations

from ._kernels import annual_climate, slope_aspect, slope_aspect_at, snow_bucket
from .climate import (
    ClimateFeatureParams,
    anomalies,
    climate_from_monthly,
    climate_pixel_features,
    era5_monthly_features,
    stamp_feature,
)
from .hydro import HYDRO_START, HydroYear, PartialYearWarning, hydrological_years, month_labels
from .io import feature_schema, features_table, read_features, schema_path, to_feature_array, write_features
from .packed import pack_feature_pixels
from .profile import PROFILE_FEATURES, exposure_from_monthly, implied_precip_gradient, profile_pixel_features
from .points import iceland_era5_point_features, read_stakes, sample_points
from .sampling import check_seasonal, compute_features, glacier_features, pixel_features, season_features
from .schema import FeatureSchema
from .topo import LOWER_FRACTION, active_pixels, glacier_constants, topo_pixel_features

#: Months of the winter season counted from the first month of the hydrological year (Oct-Apr in the
#: north); kept for callers of the first version, see :class:`ClimateFeatureParams` for seasons.
WINTER_MONTHS = 7

__all__ = [
    "HYDRO_START", "WINTER_MONTHS", "LOWER_FRACTION",
    "HydroYear", "PartialYearWarning", "ClimateFeatureParams", "FeatureSchema",
    "hydrological_years", "month_labels",
    "climate_pixel_features", "climate_from_monthly", "anomalies", "era5_monthly_features", "stamp_feature",
    "topo_pixel_features", "glacier_constants", "active_pixels",
    "pixel_features", "glacier_features", "compute_features", "season_features", "check_seasonal",
    "PROFILE_FEATURES", "profile_pixel_features", "exposure_from_monthly", "implied_precip_gradient",
    "pack_feature_pixels", "sample_points", "read_stakes", "iceland_era5_point_features",
    "feature_schema", "to_feature_array", "features_table", "write_features", "read_features", "schema_path",
    # numpy kernels for blockwise callers (glacgrid.inference builds the features of a block with them)
    "annual_climate", "slope_aspect", "slope_aspect_at", "snow_bucket",
]
