"""Feature and variable names shared by the stages (one list per idea)."""

from __future__ import annotations

__all__ = ["FEATURES", "CONSTANTS", "PIXEL_TOPO", "CLIMATE", "DERIVED", "CLIMATE_PRODUCTS", "EXPOSURE", "MONTH_SUMS",
           "YEAR_STATIC", "STATE_VARS", "ordered_features"]

#: The base features glacgrid computes, in canonical order (the ``[model] features`` of a run).
FEATURES = ("cpdd", "snow_winter", "snow_summer", "mean_elevation", "max_elevation", "min_elevation",
            "area", "slope", "lat", "lon", "aspect_cos", "aspect_sin")
#: Glacier-level topographic quantities painted onto the pixels.
CONSTANTS = ("area", "max_elevation", "min_elevation", "slope_lower20")
#: Per-pixel topographic predictors.
PIXEL_TOPO = ("mean_elevation", "slope", "lat", "lon", "aspect_cos", "aspect_sin", "aspect")
#: Climate predictors of the default climate feature parameters (the order of the compiled kernels).
CLIMATE = ("cpdd", "cpdd_ablation", "ablation_months", "snow_winter", "snow_summer")
#: Derived from the constants: position of the pixel in its glacier's elevation range.
DERIVED = ("elevation_norm",)
#: Profile features that are a climate predictor times a per-pixel factor, as ``(name, climate predictor)``
#: (:mod:`glacgrid.features.profile`): winter snowfall times the height above the reference elevation,
#: degree-days times ``1 - elevation_norm``. The compiled inference pass builds them from its climate sums.
CLIMATE_PRODUCTS = (("snow_winter_dz", "snow_winter"), ("cpdd_low", "cpdd"))
#: Profile features of a monthly snow bucket (:func:`glacgrid.features.snow_bucket`), in its output order.
EXPOSURE = ("snowfree_months", "cpdd_ice")
#: Predictors that are sums over the months of a hydrological year: over a season (a seasonal balance's
#: footprint) they are the sums over the season's months, and a winter and a summer value add up to the year's.
MONTH_SUMS = CLIMATE + tuple(n for n, _ in CLIMATE_PRODUCTS) + EXPOSURE
#: Predictors that do not change within a year (topography, glacier constants, position in the glacier's
#: elevation range): over a season each carries the season's share of the year's months.
YEAR_STATIC = tuple(dict.fromkeys(PIXEL_TOPO + CONSTANTS + DERIVED + tuple(f for f in FEATURES if f not in CLIMATE)))
#: The pixel variables of a glacier state (:class:`~glacgrid.glaciers.GlacierGeometry`).
STATE_VARS = ("glacier_id", "thickness", "surface", "pixel_area")


def ordered_features(names) -> list[str]:
    """``names`` with the base :data:`FEATURES` first, in canonical order, then the others as given."""
    names = list(names)
    return [n for n in FEATURES if n in names] + [n for n in names if n not in FEATURES]
