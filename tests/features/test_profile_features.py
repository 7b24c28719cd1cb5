"""Features that bend the vertical profile (glacgrid.features.profile): known answers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from glacgrid.config import DownscaleParams
from glacgrid.exceptions import InputDataError
from glacgrid.features._kernels import snow_bucket
from glacgrid.features.profile import (
    REFERENCE_ELEVATION,
    exposure_from_monthly,
    implied_precip_gradient,
    profile_pixel_features,
)
from glacgrid.metadata import registry


def _year(temp_cold=-5.0, temp_warm=10.0, prcp=100.0):
    temp = np.r_[np.full(6, temp_cold), np.full(6, temp_warm)]
    return temp, np.r_[np.full(6, prcp), np.zeros(6)], np.full(12, 30.0)


def test_snow_bucket_known_answer():
    temp, prcp, days = _year()
    out = snow_bucket(temp, prcp, days, 0.0, 2.0, 3.0)
    # 600 kg m-2 of snow; 900 kg m-2 of melt a warm month: a third of the first warm month and the five
    # others are snow-free, with 300 K d each
    assert out.shape == (2,) and out.dtype == np.float32
    np.testing.assert_allclose(out, [1 / 3 + 5, 300 / 3 + 5 * 300], rtol=1e-6)
    # twice as much snow lasts into the second warm month; a cold year never exposes ice
    np.testing.assert_allclose(snow_bucket(temp, 2 * prcp, days, 0.0, 2.0, 3.0), [2 / 3 + 4, 200 + 4 * 300], rtol=1e-6)
    np.testing.assert_allclose(snow_bucket(temp - 20, prcp, days, 0.0, 2.0, 3.0), [0, 0])
    # vectorised over pixels, NaN in gives NaN out
    stack = np.stack([temp, temp + np.nan])
    res = snow_bucket(stack, np.stack([prcp, prcp]), days, 0.0, 2.0, 3.0)
    np.testing.assert_allclose(res[0], out) and np.isnan(res[1]).all()


def test_exposure_from_monthly_on_dataarrays():
    temp, prcp, days = _year()
    t = xr.DataArray(np.stack([temp, temp - 20])[None], dims=("year", "pixel", "month"),
                     coords={"year": [2001]}).transpose("year", "month", "pixel")
    p = xr.DataArray(np.stack([prcp, prcp])[None], dims=("year", "pixel", "month")).transpose("year", "month", "pixel")
    d = xr.DataArray(days[None], dims=("year", "month"))
    ds = exposure_from_monthly(t.chunk(), p.chunk(), d, 0.0, 2.0)
    assert ds["snowfree_months"].attrs["units"] == "1" and ds["cpdd_ice"].attrs["units"] == "K d"
    np.testing.assert_allclose(ds["cpdd_ice"].sel(year=2001).values, [1600.0, 0.0], rtol=1e-6)
    with pytest.raises(InputDataError, match="ddf_snow"):
        exposure_from_monthly(t, p, d, 0.0, 2.0, ddf_snow=0.0)


def test_snow_winter_dz_and_the_implied_precipitation_gradient():
    surface = xr.DataArray(np.array([[2500.0, 3000.0, 3500.0]]), dims=("y", "x"))
    climate = xr.Dataset({"snow_winter": xr.DataArray(np.full((1, 1, 3), 800.0), dims=("year", "y", "x"),
                                                      coords={"year": [2001]})})
    out = profile_pixel_features(xr.Dataset(), surface, DownscaleParams(), climate, start=2001, end=2001,
                                 names=("snow_winter_dz",))
    np.testing.assert_allclose(out["snow_winter_dz"].values[0, 0], [-400.0, 0.0, 400.0])
    assert out["snow_winter_dz"].attrs["units"] == registry()["snow_winter_dz"]["units"] == "kg m-2 km"
    assert REFERENCE_ELEVATION == 3000.0
    # a linear model a * snow + b * snow * dz = a * snow * (1 + (b / a) dz): +40 % per km
    assert implied_precip_gradient(2.0, 0.8) == pytest.approx(4e-4)
    assert np.isnan(implied_precip_gradient(0.0, 0.8))
    with pytest.raises(InputDataError, match="Unknown profile features"):
        profile_pixel_features(xr.Dataset(), surface, DownscaleParams(), climate, start=2001, end=2001,
                               names=("albedo",))


def test_cpdd_low_weights_the_tongue():
    surface = xr.DataArray(np.array([[2500.0, 3000.0, 3500.0]]), dims=("y", "x"))
    climate = xr.Dataset({"cpdd": xr.DataArray(np.array([[[600.0, 400.0, 200.0]]]), dims=("year", "y", "x"),
                                               coords={"year": [2001]})})
    norm = xr.DataArray(np.array([[0.0, 0.5, 1.0]]), dims=("y", "x"))
    out = profile_pixel_features(xr.Dataset(), surface, DownscaleParams(), climate, start=2001, end=2001,
                                 names=("cpdd_low",), elevation_norm=norm)
    np.testing.assert_allclose(out["cpdd_low"].values[0, 0], [600.0, 200.0, 0.0])
    assert out["cpdd_low"].attrs["units"] == "K d"
    with pytest.raises(InputDataError, match="elevation_norm"):
        profile_pixel_features(xr.Dataset(), surface, DownscaleParams(), climate, start=2001, end=2001,
                               names=("cpdd_low",))
