"""The profile features of joint training (snow_winter_dz, cpdd_low, and snowfree_months / cpdd_ice of the
monthly snow bucket) built by the inference pass of runs:
the dense blocks (fill_rows) and the packed pixels (fill_rows_cube) give the values of
glacgrid.features.profile to the bit, and every other feature is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from glacgrid import features as feat
from glacgrid.config import DownscaleParams
from glacgrid.downscale import pixel_climate, pixel_weights
from glacgrid.features.profile import profile_pixel_features
from glacgrid.inference import (_kernels, assemble_climate, block_spec, buildable, glacier_mean, infer,
                                infer_pixels, predict_pixels, spec_of, static_at)
from glacgrid.models import linear_predict
from glacgrid.testing._inference import fit_model, inference_region

DS = DownscaleParams()
PROFILE = ("snow_winter_dz", "cpdd_low", "snowfree_months", "cpdd_ice")
FEATURES = ["cpdd", "snow_winter", "snow_summer", "mean_elevation", "snow_winter_dz", "elevation_norm", "cpdd_low",
            "snowfree_months", "slope", "cpdd_ice"]


@pytest.fixture(scope="module")
def region():
    return inference_region((60, 90), chunks=(32, 48), glacier_size=20, gap=3, seed=2)


@pytest.fixture(scope="module")
def reference(region):
    """The xarray feature path with the profile features of glacgrid.features.profile."""
    constants = feat.glacier_constants(region.glacier_id, region.surface, region.active, region.pixel_area,
                                       region.index).compute()
    clim = feat.climate_pixel_features(region.down, region.surface, DS, start=region.start, end=region.end)
    pix = feat.pixel_features(clim, feat.topo_pixel_features(region.surface, region.grid), constants,
                              region.glacier_id, region.active)
    prof = profile_pixel_features(region.down, region.surface, DS, clim, start=region.start, end=region.end,
                                  names=PROFILE, elevation_norm=pix["elevation_norm"])
    pix = pix.assign({n: prof[n].where(region.active) for n in PROFILE})
    return constants, pix[FEATURES].compute()


def test_buildable_lists_the_profile_features():
    assert {"snow_winter_dz", "snowfree_months", "cpdd_ice"} <= set(buildable(())) and "cpdd_low" not in buildable(())
    full = buildable(("area", "max_elevation", "min_elevation"))
    assert set(PROFILE) | {"elevation_norm"} <= set(full)


def test_known_answer_of_one_pixel():
    # -5 degC and 100 kg m-2 snowfall in the six winter months at 3,500 m, lowest pixel of its glacier; then six
    # months at 2 degC (rain): 600 kg m-2 of snow melt at 3 kg m-2 K-1 d-1 x 60 K d = 180 a month
    spec = _kernels.BlockSpec(("snow_winter", "snow_winter_dz", "cpdd", "cpdd_low", "snowfree_months", "cpdd_ice"),
                              0.0, 0.0, 2.0,
                              np.arange(12) < 6, np.arange(12) >= 6, (0.1, 0.9), "EPSG:32632", False, 10.0, 10.0,
                              np.array([1]), {"min_elevation": np.array([3500.0]),
                                              "max_elevation": np.array([3600.0])})
    temp = np.where(np.arange(12) < 6, -5.0, 2.0).astype("float32").reshape(1, 12, 1)
    prcp = np.full((1, 12, 1), 100.0, "float32")
    static = static_at(spec, np.array([3500.0]), np.array([1]), None, None, None)
    X, ok = _kernels.assemble_rows(spec, temp, prcp, np.full((1, 12), 30.0), np.zeros(1, "float32"),
                                   np.zeros(1, "int64"), static)
    # winter snow 600 kg m-2 x 0.5 km; summer 6 x 2 K x 30 d = 360 K d, x (1 - 0) at the glacier's lowest pixel;
    # the snow is gone 1/3 into the 4th warm month: 2/3 + 2 snow-free months, (8/3) x 60 K d on bare ice
    np.testing.assert_allclose(X, [[600.0, 300.0, 360.0, 360.0, 8 / 3, 160.0]], rtol=1e-6)
    assert ok.all()
    raw = _kernels._numpy_rows(spec, temp, prcp, np.full((1, 12), 30.0), np.zeros(1, "int64"), static,
                               np.zeros(1, "float32"))
    np.testing.assert_array_equal(X, raw)


def _block_args(region, spec):
    hy, days = feat.hydrological_years(region.down[["temp", "prcp"]], region.start, region.end)
    temp = hy["temp"].transpose("year", "month", "y", "x").values
    prcp = hy["prcp"].transpose("year", "month", "y", "x").values
    zpad = np.pad(region.surface.values, 1, mode="edge")
    gid = region.glacier_id.values
    return (spec, temp, prcp, days.values, region.down["reference_elevation"].values, zpad, gid,
            region.active.values, region.grid.y, region.grid.x)


def test_dense_rows_equal_the_profile_features_to_the_bit(region, reference):
    constants, pix = reference
    spec = block_spec(FEATURES, constants, region.index, region.grid, DS, lapse_rate=region.down.attrs["lapse_rate"])
    args = _block_args(region, spec)
    X, r, c = _kernels.block_features(*args)
    ny = args[1].shape[0]
    for j, name in enumerate(FEATURES):  # every feature, the profile ones included, bitwise
        want = pix[name].values
        want = want[:, r, c] if want.ndim == 3 else np.tile(want[r, c], (ny, 1))
        np.testing.assert_array_equal(X[:, j], want.reshape(-1), err_msg=name)
    assert np.isfinite(X).all() and np.ptp(X[:, FEATURES.index("snow_winter_dz")]) > 100
    # the numpy path (used for float64 climate) gives the same rows
    shape3 = (ny, 12, args[1].shape[-2] * args[1].shape[-1])
    static = _kernels._static_features(spec, args[5], args[6][r, c], r, c, args[8], args[9])
    corr = spec.lapse_rate * (args[5][r + 1, c + 1] - args[4][r, c]).astype("float32")
    raw = _kernels._numpy_rows(spec, args[1].reshape(shape3), args[2].reshape(shape3), args[3],
                               r.astype("int64") * args[1].shape[-1] + c, static, corr)
    np.testing.assert_array_equal(raw, X)


def test_infer_with_profile_features_equals_the_xarray_path(region, reference):
    constants, pix = reference
    model = fit_model("ols", region, FEATURES)
    got = infer(model, region.down, region.glaciers, active=region.active, features=FEATURES, downscale=DS,
                start=region.start, end=region.end, constants=constants).compute()
    want = predict_pixels(model, pix, FEATURES).compute()
    g = got["smb"].transpose(*want.dims).values
    assert np.isfinite(g).sum() == np.isfinite(want.values).sum() == 2 * region.n_glacier_pixels
    np.testing.assert_allclose(g, want.values, rtol=1e-6, atol=1e-7, equal_nan=True)
    gl = glacier_mean(want, region.glacier_id, region.active, region.pixel_area, region.index).compute()
    np.testing.assert_allclose(got["smb_glacier"].transpose(*gl.dims).values, gl.values, rtol=1e-6, atol=1e-7)


def test_packed_pixels_equal_the_numpy_rows_to_the_bit(region, reference):
    # a coarse climate window interpolated at each packed pixel (fill_rows_cube), against the materialised
    # climate (fill_rows) and the numpy path; and a linear model applied in the same pass
    constants, _ = reference
    rng = np.random.default_rng(4)
    n = 700
    lat = np.sort(46.8 + 0.3 * rng.random(n))  # runs of pixels sharing a coarse cell
    lon = 10.7 + 0.4 * rng.random(n)
    clat, clon = np.arange(46.5, 47.5, 0.25), np.arange(10.5, 11.5, 0.25)
    t2m = (273.15 + rng.normal(0, 6, (2, 12, clat.size, clon.size))).astype("float32")
    tp = rng.gamma(3.0, 40.0, (2, 12, clat.size, clon.size)).astype("float32")
    w = pixel_weights(clat, clon, lat, lon)
    orog = rng.uniform(1500, 2500, (clat.size, clon.size))[w.lat_window, w.lon_window]
    z = rng.uniform(2400, 3600, n)
    climate = pixel_climate(t2m[:, :, w.lat_window, w.lon_window], tp[:, :, w.lat_window, w.lon_window], orog, w,
                            np.full(n, 2000.0), DS)
    spec = spec_of(FEATURES, constants, region.index, DS)
    gid = rng.choice(region.index, n)
    sa = rng.normal(0, 0.3, (n, 3)).astype("float32")
    static = static_at(spec, z, gid, lon, lat, sa)
    corr = (spec.lapse_rate * (z - 2000.0)).astype("float32")
    days = np.full((2, 12), 30.0)
    X, ok = assemble_climate(spec, climate, days, corr, static)
    Xm, okm = assemble_climate(spec, climate.materialise(), days, corr, static)
    raw = _kernels._numpy_rows(spec, *climate.materialise(), days, np.arange(n, dtype="int64"), static, corr)
    np.testing.assert_array_equal(X, Xm)
    np.testing.assert_array_equal(X, raw)
    assert ok.all() and okm.all()
    # the profile columns are the expressions of glacgrid.features.profile (the bucket: its kernel)
    t, p = climate.materialise()
    t = t + corr
    hy = feat.snow_bucket(np.moveaxis(t, 1, -1), np.moveaxis(p, 1, -1), days[:, None, :], DS.snow_threshold,
                          DS.rain_threshold, 3.0)
    np.testing.assert_array_equal(X[:, FEATURES.index("snowfree_months")], hy[..., 0].reshape(-1))
    np.testing.assert_array_equal(X[:, FEATURES.index("cpdd_ice")], hy[..., 1].reshape(-1))
    sw, cp = X[:, FEATURES.index("snow_winter")], X[:, FEATURES.index("cpdd")]
    dz = np.tile((z - 3000.0) / 1000.0, 2)
    np.testing.assert_array_equal(X[:, FEATURES.index("snow_winter_dz")], (sw * dz).astype("float32"))
    en = np.tile(static["elevation_norm"], 2)
    np.testing.assert_array_equal(X[:, FEATURES.index("cpdd_low")], cp * (np.float32(1.0) - en))
    # the linear model in the pass: the prediction of LinearModel.predict without a feature matrix
    coef = np.linspace(-0.01, 0.01, len(FEATURES))
    _, okl, pred = assemble_climate(spec, climate, days, corr, static, linear=(coef, 0.25))
    np.testing.assert_array_equal(pred, linear_predict(X, coef, 0.25))
    # and infer_pixels of an OLS model with profile features
    model = fit_model("ols", region, FEATURES)
    out = infer_pixels(climate, days, corr, static, spec, model)
    np.testing.assert_array_equal(out[0], model.predict(X).astype("float32").reshape(2, n))
