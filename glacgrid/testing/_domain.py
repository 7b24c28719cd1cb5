"""Seeded inputs of glacier-domain runs: a synthetic ERA5-Land-like cube over a domain and a fitted model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..units import T0

__all__ = ["DOMAIN_FEATURES", "climate_box", "synthetic_cube", "domain_cube", "domain_model"]

#: Features of the synthetic domain model: climate, topography, glacier constants and position.
DOMAIN_FEATURES = ("cpdd", "snow_winter", "snow_summer", "mean_elevation", "max_elevation", "area", "slope", "lat",
                   "lon", "aspect_cos", "aspect_sin")


def climate_box(lons: np.ndarray, lats: np.ndarray, resolution: float = 0.1) -> tuple[float, float, float, float]:
    """``(lon0, lon1, lat0, lat1)``: the cells of ``resolution`` degrees around points, two cells of margin."""
    k = 1.0 / resolution
    return (float(np.floor(np.nanmin(lons) * k) / k - 2 * resolution),
            float(np.ceil(np.nanmax(lons) * k) / k + 2 * resolution),
            float(np.floor(np.nanmin(lats) * k) / k - 2 * resolution),
            float(np.ceil(np.nanmax(lats) * k) / k + 2 * resolution))


def synthetic_cube(bounds: tuple[float, float, float, float], first_year: int, n_years: int = 1, seed: int = 0, *,
                   warming: float = 0.0, resolution: float = 0.1) -> xr.Dataset:
    """A seeded monthly cube (``t2m`` K, ``tp`` kg m-2 per month, ``orog`` m) on ``bounds`` (:func:`climate_box`)
    for ``n_years`` hydrological years from ``first_year`` (north).

    Temperature falls 0.6 K per degree of latitude and 6.5 K km-1 with the synthetic orography, with a warm
    seasonal cycle, noise and ``warming`` K per year; precipitation is gamma-distributed and grows with the
    orography.
    """
    lon0, lon1, lat0, lat1 = bounds
    lon = np.round(np.arange(lon0, lon1 + 1e-9, resolution), 6)
    lat = np.round(np.arange(lat0, lat1 + 1e-9, resolution), 6)
    time = pd.date_range(f"{first_year - 1}-10-01", periods=12 * n_years, freq="MS")
    rng = np.random.default_rng(seed)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    orog = 1100.0 + 700.0 * np.sin(lo * 0.9) * np.cos(la * 1.3) + rng.normal(0, 80, la.shape)
    month = time.month.to_numpy()
    t_sl = 12.5 + 10.5 * np.cos(2 * np.pi * (month - 7) / 12) + 3.0 + warming * (np.arange(time.size) / 12.0)
    t2m = (t_sl[:, None, None] - 0.6 * (la - 45.0) - 0.0065 * orog + rng.normal(0, 0.7, (time.size, *la.shape))
           + T0)
    tp = rng.gamma(4.0, 30.0, (time.size, *la.shape)) * (1.0 + orog / 3000.0)
    return xr.Dataset({"t2m": (("time", "lat", "lon"), t2m.astype("float32"), {"units": "K"}),
                       "tp": (("time", "lat", "lon"), tp.astype("float32"), {"units": "kg m-2"}),
                       "orog": (("lat", "lon"), orog.astype("float32"), {"units": "m"})},
                      coords={"time": time, "lat": lat, "lon": lon})


def domain_cube(lon: np.ndarray, lat: np.ndarray, store: str | Path, *, start: int, end: int, seed: int = 0,
                warming: float = 0.0, resolution: float = 0.1) -> Path:
    """:func:`synthetic_cube` around the points ``lon``/``lat`` for the hydrological years ``start..end``,
    written to the Zarr ``store``."""
    cube = synthetic_cube(climate_box(lon, lat, resolution), start, end - start + 1, seed, warming=warming,
                          resolution=resolution)
    store = Path(store)
    cube.chunk({"time": 12}).to_zarr(store, mode="w", zarr_format=3, consolidated=True)
    return store


def domain_model(features=DOMAIN_FEATURES, seed: int = 0, kind: str = "lasso", **options):
    """A model (``kind``, with ``options`` for :func:`glacgrid.models.make_model`, e.g. ``preset`` and
    ``epochs`` of an ANN) fitted on a seeded table of ``features``: SMB = (snowfall - 4 mm K-1 d-1 CPDD) /
    1000 + noise (m w.e.), the other features drawn over Alpine ranges."""
    from ..metadata import registry
    from ..models import FeatureSchema, make_model

    rng = np.random.default_rng(seed)
    n = 3000
    cols = {"cpdd": rng.uniform(0, 2500, n), "snow_winter": rng.uniform(200, 2000, n),
            "snow_summer": rng.uniform(0, 600, n), "mean_elevation": rng.uniform(1800, 4000, n),
            "max_elevation": rng.uniform(2500, 4500, n), "area": rng.lognormal(0, 1.5, n),
            "slope": rng.uniform(2, 40, n), "lat": rng.uniform(43, 48, n), "lon": rng.uniform(5, 16, n),
            "aspect_cos": rng.uniform(-1, 1, n), "aspect_sin": rng.uniform(-1, 1, n)}
    y = (cols["snow_winter"] + cols["snow_summer"] - 4.0 * cols["cpdd"]) / 1000.0 + rng.normal(0, 0.05, n)
    cols["min_elevation"] = rng.uniform(1500, 3000, n)
    features = tuple(features)
    X = np.stack([cols[f] for f in features], axis=1)
    schema = FeatureSchema(features, tuple(registry()[f]["units"] for f in features))
    return make_model(kind, seed=seed, **options).fit(X, y, schema)
