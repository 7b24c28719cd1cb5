"""Issue 18 item 2: bias adjustment of a forcing into the reference with xsdba (delta method, empirical quantile
mapping, quantile delta mapping), per calendar month, fitted on an overlap and applied outside it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.downscale import BiasAdjustment, bias_adjust, to_reference_grid
from glacgrid.exceptions import InputDataError, TimeAxisError
from glacgrid.metadata import stamp
from glacgrid.testing import HEF, DATA, requires_data

LAT, LON = np.array([46.6, 46.7]), np.array([10.6, 10.7, 10.8])
OFFSET = np.arange(12) - 5.5                          # K, per calendar month
FACTOR = 1.0 + 0.05 * np.arange(12)                   # per calendar month


def cube(t2m: np.ndarray, tp: np.ndarray, time, lat=LAT, lon=LON, member=None) -> xr.Dataset:
    dims = ("time", "member", "lat", "lon") if member is not None else ("time", "lat", "lon")
    coords = {"time": time, "lat": lat, "lon": lon}
    if member is not None:
        coords["member"] = member
    return xr.Dataset({"t2m": stamp(xr.DataArray(t2m.astype("float32"), dims=dims, coords=coords), "t2m"),
                       "tp": stamp(xr.DataArray(tp.astype("float32"), dims=dims, coords=coords), "tp")})


def reference(years=30, start="1981-01", seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    time = pd.date_range(start, periods=12 * years, freq="MS")
    shape = (time.size, LAT.size, LON.size)
    season = 10.0 * np.sin(2 * np.pi * (time.month.values - 4) / 12)[:, None, None]
    return cube(265.0 + season + rng.normal(0, 2, shape), rng.gamma(3.0, 30.0, shape), time)


def by_month(values: np.ndarray, time) -> np.ndarray:
    return values[pd.DatetimeIndex(time).month.values - 1][:, None, None]


def test_delta_method_is_exact_outside_the_overlap():
    ref = reference(40)
    t = ref["time"].values
    forcing = cube(ref["t2m"].values + by_month(OFFSET, t), ref["tp"].values * by_month(FACTOR, t), t)
    out = bias_adjust(forcing, ref, method="delta", period=("1981-01", "2000-12"))
    later = slice("2001", None)  # outside the fitting period
    np.testing.assert_allclose(out["t2m"].sel(time=later).values, ref["t2m"].sel(time=later).values, atol=2e-4)
    np.testing.assert_allclose(out["tp"].sel(time=later).values, ref["tp"].sel(time=later).values, rtol=2e-5)
    assert out["t2m"].attrs["units"] == "K" and out["tp"].attrs["units"] == "kg m-2"
    assert "Scaling" in out["t2m"].attrs["bias_adjustment"] and "delta" in out.attrs["bias_adjustment"]


def test_single_cell_broadcasts_and_coarse_grid_is_interpolated():
    ref = reference(2)
    t = ref["time"].values
    one = cube(np.full((t.size, 1, 1), 280.0), np.full((t.size, 1, 1), 50.0), t, lat=[46.25], lon=[11.25])
    on = to_reference_grid(one, ref)
    assert on["t2m"].shape == (t.size, 2, 3) and np.all(on["t2m"].values == 280.0)
    # a 2 x 2 forcing, linear in lon: bilinear inside, the nearest cell outside (lon 10.6 < 10.65)
    lon = np.array([10.65, 10.75])
    vals = np.broadcast_to(np.array([270.0, 271.0])[None, None, :], (t.size, 2, 2))
    coarse = cube(vals, vals, t, lat=np.array([46.5, 46.8]), lon=lon)
    on = to_reference_grid(coarse, ref)
    np.testing.assert_allclose(on["t2m"].values[0, 0], [270.0, 270.5, 271.0])


def test_quantile_mapping_reproduces_the_reference_climatology_per_month():
    ref = reference(30, seed=1)
    t = ref["time"].values
    # a nonlinear, month-dependent distortion of the reference
    forcing = cube(ref["t2m"].values * 1.02 - 3.0 + by_month(OFFSET, t),
                   1.5 * ref["tp"].values ** 0.9 * by_month(FACTOR, t), t)
    out = bias_adjust(forcing, ref, method="eqm", period=("1981-01", "2010-12"), n_quantiles=30)
    for v, tol in (("t2m", 0.05), ("tp", 0.01)):
        got = out[v].groupby("time.month").mean()
        want = ref[v].groupby("time.month").mean()
        before = forcing[v].groupby("time.month").mean()
        err = np.abs(got - want) if v == "t2m" else np.abs(got / want - 1)
        assert float(err.max()) < tol, (v, float(err.max()))
        assert float(np.abs(before - want).max()) > 1.0  # there was a bias to remove
        # the spread per month is the reference's too
        np.testing.assert_allclose(out[v].groupby("time.month").std().values, ref[v].groupby("time.month").std().values,
                                   rtol=0.05)


def test_quantile_delta_mapping_keeps_the_trend_outside_the_overlap():
    rng = np.random.default_rng(2)
    time = pd.date_range("1981-01", periods=12 * 120, freq="MS")   # 1981..2100
    years = (time.year.values - 2010).clip(min=0)[:, None, None]   # flat until 2010, then a trend
    shape = (time.size, LAT.size, LON.size)
    noise = rng.normal(0, 2, shape)
    trend_t, trend_p = 0.04, 0.004                                   # K per year, relative per year
    forcing = cube(270.0 + by_month(OFFSET, time) + noise + trend_t * years,
                   rng.gamma(3.0, 30.0, shape) * (1 + trend_p * years), time)
    ref = cube(forcing["t2m"].values[:360] - 2.0 - by_month(OFFSET, time[:360]),
               forcing["tp"].values[:360] * 0.7, time[:360])
    fitted = BiasAdjustment.fit(forcing, ref, method="qdm", period=("1981-01", "2010-12"))
    out = fitted.apply(forcing)
    early, late = slice("1981", "2010"), slice("2071", "2100")
    raw_change = float(forcing["t2m"].sel(time=late).mean() - forcing["t2m"].sel(time=early).mean())
    adj_change = float(out["t2m"].sel(time=late).mean() - out["t2m"].sel(time=early).mean())
    assert raw_change == pytest.approx(0.04 * 75.5, abs=0.25)  # 3.02 K plus the noise of the two means
    assert adj_change == pytest.approx(raw_change, abs=0.05)
    raw_ratio = float(forcing["tp"].sel(time=late).mean() / forcing["tp"].sel(time=early).mean())
    adj_ratio = float(out["tp"].sel(time=late).mean() / out["tp"].sel(time=early).mean())
    assert adj_ratio == pytest.approx(raw_ratio, rel=0.02)
    # ... and the overlap takes the reference climatology (mean within 0.1 K, 2 %)
    assert float(out["t2m"].sel(time=early).mean() - ref["t2m"].mean()) == pytest.approx(0.0, abs=0.1)
    assert float(out["tp"].sel(time=early).mean() / ref["tp"].mean()) == pytest.approx(1.0, rel=0.02)
    # empirical quantile mapping, in contrast, maps the late values through the overlap's quantiles
    assert fitted.period == ("1981-01", "2010-12")


def test_pooled_members_keep_their_spread():
    ref = reference(20)
    t = ref["time"].values
    t2m = ref["t2m"].values[:, None] + np.array([0.0, 1.0, 2.0])[None, :, None, None] + 3.0
    tp = ref["tp"].values[:, None] * np.array([1.0, 1.1, 1.2])[None, :, None, None]
    forcing = cube(t2m, tp, t, member=np.arange(3))
    out = bias_adjust(forcing, ref, method="delta")
    assert out["t2m"].dims == ("time", "member", "lat", "lon")
    diff = out["t2m"] - out["t2m"].sel(member=0)
    np.testing.assert_allclose(diff.mean(("time", "lat", "lon")).values, [0.0, 1.0, 2.0], atol=1e-4)
    # the member mean takes the reference climatology
    np.testing.assert_allclose(out["t2m"].mean("member").mean().values, ref["t2m"].mean().values, atol=1e-3)


def test_errors():
    ref = reference(5)
    with pytest.raises(InputDataError, match="Unknown bias-adjustment method 'cdft'"):
        BiasAdjustment.fit(ref, ref, method="cdft")
    with pytest.raises(TimeAxisError, match="needs every calendar month"):
        BiasAdjustment.fit(ref, ref, period=("1981-01", "1981-06"))
    with pytest.raises(InputDataError, match="must be in both cubes"):
        BiasAdjustment.fit(ref[["t2m"]], ref)


CLIMATE = HEF / "climate"
FORCING = DATA / "forcing"


@requires_data("hef", "climate")
@requires_data("forcing")
def test_real_ccsm4_into_era5land():
    from glacgrid.ingest import open_era5land, read_forcing

    ref = open_era5land([CLIMATE / "sel_era5_land_monthly_t2m_1981-2018.nc", CLIMATE / "sel_era5_land_monthly_prcp_1981-2018.nc"],
                        variables=["t2m", "tp"]).load()
    gcm = read_forcing([FORCING / "tas_mon_CCSM4_rcp26_r1i1p1_g025.nc", FORCING / "pr_mon_CCSM4_rcp26_r1i1p1_g025.nc"], "cf")
    overlap = slice("1981", "2005")
    clim = {v: ref[v].sel(time=overlap).groupby("time.month").mean() for v in ("t2m", "tp")}
    for method, tol_t, tol_p in (("delta", 1e-3, 1e-5), ("eqm", 0.1, 0.05)):
        out = bias_adjust(gcm, ref, method=method, period=("1981-01", "2005-12"))
        assert out["t2m"].shape == (2772, 6, 7)
        dt = out["t2m"].sel(time=overlap).groupby("time.month").mean() - clim["t2m"]
        rp = out["tp"].sel(time=overlap).groupby("time.month").mean() / clim["tp"] - 1
        assert float(abs(dt).max()) < tol_t and float(abs(rp).max()) < tol_p, (method, float(abs(dt).max()), float(abs(rp).max()))
    qdm = bias_adjust(gcm, ref, method="qdm", period=("1981-01", "2005-12"))
    late = slice("2071", "2100")
    raw = float(gcm["t2m"].sel(time=late).mean() - gcm["t2m"].sel(time=overlap).mean())
    adj = float(qdm["t2m"].sel(time=late).mean() - qdm["t2m"].sel(time=overlap).mean())
    assert adj == pytest.approx(raw, abs=0.1)  # 1.29 K in CCSM4 RCP2.6


@requires_data("hef", "climate")
@requires_data("forcing")
def test_real_cera20c_ensemble_into_era5land():
    from glacgrid.downscale.biascorrect import skill
    from glacgrid.ingest import open_era5land, read_forcing

    ref = open_era5land([CLIMATE / "sel_era5_land_monthly_t2m_1981-2018.nc", CLIMATE / "sel_era5_land_monthly_prcp_1981-2018.nc"],
                        variables=["t2m", "tp"]).load()
    cera = read_forcing([FORCING / "sel_cera-20c_t2m_1901-2010.nc", FORCING / "sel_cera-20c_pcp_1901-2010.nc"], "era5")
    out = bias_adjust(cera, ref, method="delta", period=("1981-01", "2000-12"))
    assert out["t2m"].dims == ("time", "member", "lat", "lon") and out.sizes["member"] == 10
    mean = out.mean("member")
    fit, evaluation = slice("1981", "2000"), slice("2001", "2010")
    for v in ("t2m", "tp"):  # the member mean takes ERA5-Land's climatology on the fitting period
        got = mean[v].sel(time=fit).groupby("time.month").mean()
        want = ref[v].sel(time=fit).groupby("time.month").mean()
        np.testing.assert_allclose(got.values, want.values, rtol=1e-4, atol=1e-3)
    t, p = skill(mean["t2m"].sel(time=evaluation), ref["t2m"]), skill(mean["tp"].sel(time=evaluation), ref["tp"])
    assert abs(t["bias"]) < 0.5 and t["rmse"] < 0.9 and t["r"] > 0.99  # out of sample: 0.34 K, 0.75 K, 0.997
    assert abs(p["bias"]) < 10 and p["r"] > 0.85  # 5.7 kg m-2 per month, r 0.876
    # the additive adjustment is shared by the members: their spread is CERA-20C's
    raw = to_reference_grid(cera, ref)
    np.testing.assert_allclose(out["t2m"].std("member").values, raw["t2m"].std("member").values, atol=1e-3)


def test_dask_chunks_give_the_numpy_answer():
    ref = reference(12, seed=4)
    t = ref["time"].values
    forcing = cube(ref["t2m"].values * 0.9 + 30.0, ref["tp"].values * 1.3, t)
    eager = bias_adjust(forcing, ref, method="eqm", period=("1981-01", "1990-12"))
    chunked = bias_adjust(forcing.chunk({"time": 25, "lat": 1, "lon": 2}), ref.chunk({"time": 37, "lon": 2}),
                          method="eqm", period=("1981-01", "1990-12"))
    assert chunked["t2m"].chunks is not None  # lazy until computed
    for v in ("t2m", "tp"):
        np.testing.assert_allclose(chunked[v].values, eager[v].values, rtol=1e-6)
