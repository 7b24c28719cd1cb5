"""Glacier-level helpers shared by the stages above the masks: the glacier geometry bundle, area-weighted
means and sums per glacier (flox, one engine choice), per-glacier values painted onto pixels, per-glacier
checks, and the feature-name lists. One home per idea; the stages import these names from here.

The numpy kernels (:func:`lookup`, :func:`glacier_positions`, :func:`paint_lookup`) import no xarray and
are public for the stages' own kernels.
"""

from ._kernels import glacier_positions, lookup, paint_lookup
from .bundle import GlacierGeometry
from .checks import (PIXEL_CHECKS, SURFACE_REASON, PixelCheck, check_reasons, glacier_checks, glacier_problems,
                     pixel_check_terms)
from .names import (CLIMATE, CLIMATE_PRODUCTS, CONSTANTS, DERIVED, EXPOSURE, FEATURES, MONTH_SUMS, PIXEL_TOPO,
                    STATE_VARS, YEAR_STATIC, ordered_features)
from .paint import glacier_vector, paint, paint_flags
from .reduce import FLOX_ENGINE, area_weighted_mean, glacier_sums

__all__ = ["GlacierGeometry", "FLOX_ENGINE", "area_weighted_mean", "glacier_sums", "paint", "paint_flags",
           "glacier_vector", "glacier_checks", "check_reasons", "SURFACE_REASON", "FEATURES", "CONSTANTS", "PIXEL_TOPO",
           "CLIMATE", "DERIVED", "CLIMATE_PRODUCTS", "EXPOSURE", "MONTH_SUMS", "YEAR_STATIC", "STATE_VARS",
           "ordered_features", "lookup",
           "glacier_positions", "paint_lookup",
           "PixelCheck", "PIXEL_CHECKS", "pixel_check_terms", "glacier_problems"]
