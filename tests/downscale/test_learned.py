"""Issue 18 item 4: learned (ML) downscaling, and its comparison with bilinear + lapse rate and quantile mapping
against ERA5-Land and HISTALP at their cells; adjusted CERA-20C against HISTALP 1901-1980."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.downscale import FEATURES, LearnedDownscaling, cell_grid, downscale, learned_downscale
from glacgrid.downscale import _kernels
from glacgrid.downscale.learned import _flatten
from glacgrid.downscale.regrid import regrid
from glacgrid.exceptions import GridMismatchError, MissingVariableError, ModelError, TimeAxisError
from glacgrid.metadata import stamp
from glacgrid.testing import DATA, HEF, raise_if_dask_computes, requires_data

FIT = dict(n_estimators=80, max_depth=4, learning_rate=0.2)


def coarse_cube(years=(1981, 1992), seed=0) -> xr.Dataset:
    """A 0.25 deg forcing: seasonal cycle, monthly anomalies, a linear north-south gradient, smooth orography."""
    rng = np.random.default_rng(seed)
    lat, lon = np.arange(46.5, 47.26, 0.25), np.arange(10.5, 11.26, 0.25)
    time = pd.date_range(f"{years[0]}-01", f"{years[1]}-12", freq="MS")
    m = time.month.values
    t = (275 + 10 * np.sin(2 * np.pi * (m - 4) / 12) + rng.normal(0, 1.5, m.size))[:, None, None] \
        + 2.0 * (lat[None, :, None] - 47) + 0 * lon
    p = ((60 + 30 * np.cos(2 * np.pi * (m - 7) / 12)) * rng.gamma(4, 0.25, m.size))[:, None, None] * np.ones((lat.size, lon.size))
    orog = 1500 + 300 * np.sin(lat[:, None] * 7) + 200 * np.cos(lon[None, :] * 5)
    d, c = ("time", "lat", "lon"), {"time": time, "lat": lat, "lon": lon}
    return xr.Dataset({"t2m": stamp(xr.DataArray(t.astype("float32"), dims=d, coords=c), "t2m"),
                       "tp": stamp(xr.DataArray(p.astype("float32"), dims=d, coords=c), "tp"),
                       "orog": xr.DataArray(orog, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})})


def gamma(month):
    """The known lapse rate of the fine field: -8.5 K/km in January, -4.5 K/km in July."""
    return -0.0065 - 0.002 * np.cos(2 * np.pi * (np.asarray(month) - 1) / 12)


def truth(coarse: xr.Dataset, grid, z: np.ndarray):
    """Bilinear coarse fields and the known fine fields at the grid's pixels (elevation ``z`` on (y, x)):
    temperature moved with :func:`gamma` over ``dz``, precipitation times ``1 + 0.0006 dz``."""
    tb, pb = regrid(coarse["t2m"], grid).values, regrid(coarse["tp"], grid).values
    dz = z - regrid(coarse["orog"], grid).values
    t = tb + gamma(coarse["time"].dt.month.values)[:, None, None] * dz
    p = pb * np.clip(1 + 0.0006 * dz, 0.1, None)
    return tb, pb, t, p


def reference_cube(coarse, lat, lon, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.uniform(900, 3200, (lat.size, lon.size))          # on (lat ascending, lon)
    grid = cell_grid(lat, lon)
    _, _, t, p = truth(coarse, grid, z[::-1])                 # grid rows: lat descending
    d, c = ("time", "lat", "lon"), {"time": coarse["time"], "lat": lat, "lon": lon}
    return xr.Dataset({"t2m": stamp(xr.DataArray(t[:, ::-1].astype("float32"), dims=d, coords=c), "t2m"),
                       "tp": stamp(xr.DataArray(p[:, ::-1].astype("float32"), dims=d, coords=c), "tp"),
                       "orog": xr.DataArray(z, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})})


@pytest.fixture(scope="module")
def fitted():
    coarse = coarse_cube()
    lat, lon = np.round(np.arange(46.6, 47.151, 0.05), 6), np.round(np.arange(10.6, 11.151, 0.05), 6)
    ref = reference_cube(coarse, lat, lon)
    return coarse, ref, LearnedDownscaling.fit(coarse, ref, period=("1981-01", "1988-12"), **FIT)


def other_grid(coarse):
    """A different, finer grid (0.03 deg, offset) with its own elevations, and the truth on it."""
    grid = cell_grid(np.round(np.arange(46.62, 47.13, 0.03), 6), np.round(np.arange(10.62, 11.13, 0.03), 6), chunks=(7, 5))
    z = np.random.default_rng(2).uniform(1000, 3100, grid.shape)
    return grid, xr.DataArray(z, dims=("y", "x"), coords=grid.coords()), truth(coarse, grid, z)


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, "float64") - np.asarray(b, "float64")) ** 2)))


def test_tree_kernel_reproduces_sklearn():
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 7))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    gbr = GradientBoostingRegressor(n_estimators=30, max_depth=3, subsample=0.7, random_state=0).fit(X, y)
    t = _flatten(gbr)
    Xn = rng.normal(size=(300, 7))
    ours = t["init"][0] + _kernels.tree_sum(Xn, t["roots"], t["left"], t["right"], t["feature"], t["threshold"], t["value"])
    np.testing.assert_allclose(ours, gbr.predict(Xn), rtol=0, atol=1e-9)


def test_features_and_targets_known_values():
    X = _kernels.learned_features(np.array([[[270.0, 271.0]], [[272.0, 273.0]]]), np.array([[1000.0, 1500.0]]),
                                  np.array([[2000.0, 1200.0]]), np.array([[46.0, 46.0]]), np.array([[10.0, 11.0]]),
                                  np.array([1, 7]))
    assert FEATURES == ("coarse", "elevation", "dz", "lat", "lon", "month_sin", "month_cos")
    np.testing.assert_allclose(X[:, 0], [270, 271, 272, 273])
    np.testing.assert_allclose(X[:, 2], [1000, -300, 1000, -300])
    np.testing.assert_allclose(X[:, 5:], [[0, 1], [0, 1], [0, -1], [0, -1]], atol=1e-12)
    fine, coarse = np.array([0.0, 50.0]), np.array([9.0, 24.0])
    np.testing.assert_allclose(_kernels.learned_target(fine, coarse, "*"), np.log([0.1, 51 / 25]))
    np.testing.assert_allclose(_kernels.learned_inverse(_kernels.learned_target(fine, coarse, "*"), coarse, "*"), fine,
                               atol=1e-12)


def test_learned_recovers_elevation_structure_that_bilinear_cannot(fitted):
    """The fine field's lapse rate varies with the month (-8.5 .. -4.5 K/km) and precipitation grows 6 %/100 m:
    on held-out years and on another grid the learned model recovers both, bilinear (+ a constant lapse rate)
    cannot."""
    coarse, _, model = fitted
    held = coarse.sel(time=slice("1989-01", "1992-12"))
    grid, dem, (tb, pb, t, p) = other_grid(held)
    with raise_if_dask_computes():
        out = model.downscale(held, grid, dem)
    assert out["temp"].data.chunksize == (12, 7, 5) and out["temp"].shape[0] == 48
    out = out.compute()
    assert out["temp"].attrs["units"] == "degC" and out["prcp"].dims == ("time", "y", "x")
    lapse = downscale(held.assign(orog=held["orog"]), grid, dem).compute()  # bilinear + -6.5 K/km
    t_learned = out["temp"].values + 273.15
    assert rmse(tb, t) > 4.0                                     # bilinear alone: 5.2 K
    assert rmse(lapse["temp"].values + 273.15, t) > 1.0          # + constant lapse rate: 1.1 K
    assert rmse(t_learned, t) < 0.2                              # learned: 0.07 K
    assert rmse(pb, p) / p.mean() > 0.3                          # bilinear: 42 %
    assert rmse(out["prcp"].values, p) / p.mean() < 0.03         # learned: 0.9 %
    assert model.training["t2m"]["rmse_fit"] < 0.1 * model.training["t2m"]["rmse_bilinear"]


def test_blockwise_is_chunking_invariant(fitted):
    coarse, _, model = fitted
    held = coarse.sel(time=slice("1989-01", "1990-12"))
    grid, dem, _ = other_grid(held)
    one = model.downscale(held, cell_grid(grid.y, grid.x), dem.chunk(-1)).compute()
    many = model.downscale(held, grid, dem, time_chunk=5).compute()
    np.testing.assert_array_equal(one["temp"].values, many["temp"].values)
    np.testing.assert_array_equal(one["prcp"].values, many["prcp"].values)


def test_artifact_roundtrip_and_refusals(fitted, tmp_path):
    coarse, _, model = fitted
    held = coarse.sel(time=slice("1991-01", "1991-12"))
    grid, dem, _ = other_grid(held)
    model.to_artifact(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["kind"] == "learned_downscaling" and meta["period"] == ["1981-01", "1988-12"]
    loaded = LearnedDownscaling.from_artifact(tmp_path / "m")
    assert loaded.hyperparameters == model.hyperparameters
    a, b = model.downscale(held, grid, dem).compute(), loaded.downscale(held, grid, dem).compute()
    np.testing.assert_array_equal(a["temp"].values, b["temp"].values)
    np.testing.assert_array_equal(a["prcp"].values, b["prcp"].values)
    arrays = tmp_path / "m" / "arrays.npz"
    data = bytearray(arrays.read_bytes())
    data[len(data) // 2] ^= 0xFF
    arrays.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        LearnedDownscaling.from_artifact(tmp_path / "m")
    with pytest.raises(ModelError, match="missing"):
        LearnedDownscaling.from_artifact(tmp_path / "nothing")


def test_position_off_and_plain_residual(fitted):
    coarse, ref, _ = fitted
    held = coarse.sel(time=slice("1989-01", "1992-12"))
    grid, dem, (_, _, t, _) = other_grid(held)
    for kw in ({"position": False}, {"lapse_rate": 0.0}):
        m = LearnedDownscaling.fit(coarse, ref, period=("1981-01", "1988-12"), variables=("t2m",), **FIT, **kw)
        out = m.downscale(held, grid, dem).compute()
        assert "prcp" not in out
        assert rmse(out["temp"].values + 273.15, t) < 0.3  # 0.08 K, 0.17 K


def test_errors(fitted):
    coarse, ref, model = fitted
    with pytest.raises(MissingVariableError, match="orog"):
        LearnedDownscaling.fit(coarse.drop_vars("orog"), ref)
    with pytest.raises(TimeAxisError, match="calendar month"):
        LearnedDownscaling.fit(coarse, ref, period=("1981-01", "1981-06"))
    grid, dem, _ = other_grid(coarse)
    with pytest.raises(GridMismatchError, match="DEM"):
        model.downscale(coarse, grid, dem.isel(x=slice(1, None)))
    out = learned_downscale(coarse, ref, grid, dem, period=("1981-01", "1984-12"), variables=("tp",), n_estimators=10)
    assert set(out.data_vars) == {"prcp", "reference_elevation"}


# ----------------------------------------------------------------------------- real data
@pytest.mark.slow
@requires_data("hef", "climate", "HISTALP_oetztal.nc")
def test_real_comparison_era5_to_era5land_and_histalp(tmp_path):
    """ERA5 0.25 deg -> ERA5-Land 0.1 deg, fitted 1981-2000, scored 2001-2018 (HISTALP: to 2014-09)."""
    from glacgrid.downscale.validation import downscaling_comparison

    table, model = downscaling_comparison(HEF / "climate", return_model=True)
    assert model.training["t2m"]["rmse_fit"] < 0.5 and model.training["t2m"]["seconds"] < 30
    s = table["rmse"]
    land, hist = table.loc["era5land"], table.loc["histalp"]
    # at ERA5-Land's cells the learned model beats bilinear + lapse rate (temp 0.85 vs 0.92 K, prcp 3.0 vs 5.1)
    assert s["era5land", "temp", "learned"] < s["era5land", "temp", "bilinear_lapse"]
    assert s["era5land", "prcp", "learned"] < 0.7 * s["era5land", "prcp", "bilinear_lapse"]
    assert land["r"].min() > 0.99
    # ERA5-Land warms ~0.75 K more than ERA5 from 1981-2000 to 2001-2018 at these cells: every method trained on
    # the first period is too warm on the second
    assert 0.4 < land.loc[("temp", "learned"), "bias"] < 1.1
    # against HISTALP every method is about equally good: 2.1-2.8 K, r 0.98; ~+27 kg m-2 per month wetter
    assert hist.loc[("temp", "learned"), "rmse"] < hist.loc[("temp", "bilinear_lapse"), "rmse"]
    assert (hist.xs("temp")["rmse"] < 3.0).all() and (hist.xs("temp")["r"] > 0.97).all()
    assert (hist.xs("prcp")["bias"].between(20, 35)).all() and (hist.xs("prcp")["r"] > 0.75).all()
    model.to_artifact(tmp_path / "ml")
    assert LearnedDownscaling.from_artifact(tmp_path / "ml").training == model.training


@pytest.mark.slow
@requires_data("forcing", "sel_cera-20c_t2m_1901-2010.nc")
@requires_data("hef", "climate", "HISTALP_oetztal.nc")
def test_real_cera20c_adjusted_vs_histalp_1901_1980():
    from glacgrid.downscale.validation import forcing_histalp_comparison

    table = forcing_histalp_comparison(HEF / "climate", DATA / "forcing")
    t, p = table.xs("temp"), table.xs("prcp")
    # raw CERA-20C moved with -6.5 K/km from its own (low) orography: -3.8 K; adjusted: -1.0 K, 2.2 K RMSE
    assert t.loc["raw", "bias"] < -3.0
    for m in ("delta", "eqm", "qdm"):
        assert abs(t.loc[m, "bias"]) < 1.5 and t.loc[m, "rmse"] < 2.5 and t.loc[m, "r"] > 0.97
        assert 20 < p.loc[m, "bias"] < 40 and p.loc[m, "r"] > 0.6
    assert table["n"].min() == 42 * 960
