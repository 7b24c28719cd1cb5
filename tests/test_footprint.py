"""Joint training against many observation footprints (glacgrid.models.footprint, pipeline.training).

The known-answer test: on a synthetic region whose pixel SMB is known (the region's temperature-index truth
plus a surface-type term that steepens the tongue and flattens the top), glacier-wide balances alone cannot
recover the vertical gradient (the extra term barely changes a glacier's mean), the joint fit against
glacier-wide balances and 50 m bands does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from glacgrid.exceptions import InputDataError, ModelError
from glacgrid.features import FeatureSchema
from glacgrid.models import LinearModel, load_model, make_model
from glacgrid.models.footprint import Footprints, fit_footprints, footprint_weights, shape_matrix
from glacgrid.testing import requires_data
from glacgrid.validation import equilibrium_line, profile_gradients, vertical_gradient


def _fp(values, groups, weights=None, kind="glacier"):
    """Footprints from lists of row indices."""
    sizes = [len(g) for g in groups]
    rows = np.concatenate([np.asarray(g) for g in groups]).astype("int64")
    w = np.ones(rows.size) if weights is None else np.concatenate(weights).astype("float64")
    n = len(values)
    return Footprints(np.asarray(values, "float64"), np.r_[0, np.cumsum(sizes)].astype("int64"), rows, w,
                      np.full(n, kind), np.array([f"g{i}" for i in range(n)]), np.arange(n))


# ------------------------------------------------------------------------------------------ footprints
def test_aggregate_select_concat_and_weights():
    X = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0], [7.0, 70.0]])
    fp = _fp([0.0, 1.0, 2.0], [[0, 1], [2], [1, 2, 3]], weights=[[1, 3], [2], [1, 1, 2]])
    agg = fp.aggregate(X)
    np.testing.assert_allclose(agg, [[2.5, 25.0], [5.0, 50.0], [5.5, 55.0]])  # (1*1+3*3)/4, ..., (3+5+14)/4
    sub = fp.select(np.array([False, True, True]))
    np.testing.assert_allclose(sub.aggregate(X), agg[1:])
    assert list(sub.value) == [1.0, 2.0] and list(sub.sizes) == [1, 3]
    both = Footprints.concat([fp, dataclasses.replace(sub, kind=np.array(["band", "band"]))])
    np.testing.assert_allclose(both.aggregate(X), np.vstack([agg, agg[1:]]))
    assert both.counts() == {"band": 2, "glacier": 3}
    # each kind gets its share of the loss whatever its number of footprints; weights average 1
    w = footprint_weights(both, {"glacier": 1.0, "band": 1.0})
    assert w.mean() == pytest.approx(1.0)
    assert w[both.kind == "glacier"].sum() == pytest.approx(w[both.kind == "band"].sum())
    w3 = footprint_weights(both, {"glacier": 3.0, "band": 1.0})
    assert w3[both.kind == "glacier"].sum() == pytest.approx(3 * w3[both.kind == "band"].sum())
    with pytest.raises(ModelError, match="No weight for footprint group"):
        footprint_weights(both, {"glacier": 1.0})


def test_footprints_refuse_bad_input():
    with pytest.raises(InputDataError, match="at least one row"):
        Footprints(np.array([1.0]), np.array([0, 0]), np.array([], "int64"), np.array([]), np.array(["glacier"]),
                   np.array(["a"]), np.array([2000]))
    with pytest.raises(InputDataError, match="positive"):
        _fp([1.0], [[0]], weights=[[0.0]])
    with pytest.raises(InputDataError, match="NaN"):
        _fp([np.nan], [[0]])
    with pytest.raises(InputDataError, match="X has 2 rows"):
        _fp([1.0], [[0, 5]]).aggregate(np.ones((2, 1)))


def _toy(seed=0, n_glaciers=6, n_years=8, n_pix=40):
    """Pixel features (climate varying by year, elevation_norm fixed) and a linear pixel truth."""
    rng = np.random.default_rng(seed)
    rows, gl, band, yr = [], [], [], []
    for g in range(n_glaciers):
        z = np.sort(rng.uniform(0, 1, n_pix))
        for y in range(n_years):
            t = rng.normal(0, 1) + 2.0 * (1 - z)          # warmer low down
            s = rng.normal(2, 0.3) + 0.5 * z              # more snow high up
            rows.append(np.c_[t, s, z])
            gl += [g] * n_pix
            band += list(g * 10 + np.minimum((z * 5).astype(int), 4))
            yr += [y] * n_pix
    X = np.vstack(rows)
    coef, b = np.array([-0.5, 0.8, 1.2]), -0.3
    return X, X @ coef + b, np.array(gl), np.array(band), np.array(yr), coef, b


def _groups(keys, yr, truth, kind):
    ukeys = np.unique(np.c_[keys, yr], axis=0)
    groups = [np.flatnonzero((keys == k) & (yr == y)) for k, y in ukeys]
    fp = _fp([truth[g].mean() for g in groups], groups, kind=kind)
    return dataclasses.replace(fp, obs_id=ukeys[:, 0].astype(str), year=ukeys[:, 1])


def test_linear_fit_is_exact_on_aggregated_features(tmp_path):
    X, truth, gl, band, yr, coef, b = _toy()
    fp = Footprints.concat([_groups(gl, yr, truth, "glacier"), _groups(band, yr, truth, "band")])
    schema = FeatureSchema(("t", "s", "zn"), ("K", "m", "1"))
    model = fit_footprints(make_model("ols"), X, fp, schema)
    np.testing.assert_allclose(model.coef_, coef, atol=1e-9)
    assert model.intercept_ == pytest.approx(b, abs=1e-9)
    assert model.training_["footprints"]["band"]["weight_share"] == pytest.approx(0.5)
    # the artifact is an ordinary linear model, applied to pixels as any other
    back = load_model(model.to_artifact(tmp_path / "m"))
    assert isinstance(back, LinearModel) and back.training_["footprints"]["glacier"]["n"] == 48
    np.testing.assert_allclose(back.predict(X), truth, atol=1e-9)
    with pytest.raises(ModelError, match="linear models"):
        fit_footprints(make_model("rf"), X, fp, schema)


def _offset_bands(gl, band, yr, truth, offset):
    """Band footprints (obs_id: the glacier) whose every glacier-year is shifted by ``offset[glacier, year]``:
    the bands' level disagrees with the glacier-wide balances, their shape does not."""
    fp = _groups(band, yr, truth, "band")
    g = fp.obs_id.astype(int) // 10
    return dataclasses.replace(fp, value=fp.value + offset[g, fp.year], obs_id=g.astype(str))


def test_shape_matrix_removes_each_glacier_years_mean_band():
    fp = Footprints.concat([_fp([1.0], [[0]]), _fp([2.0, 4.0, 9.0, 5.0], [[1], [2], [3], [4]], kind="band")])
    fp = dataclasses.replace(fp, obs_id=np.array(["A", "A", "A", "A", "B"]), year=np.array([1, 1, 1, 1, 1]))
    C = shape_matrix(fp).toarray()
    # the glacier-wide value is kept; A's 3 bands of year 1 lose their mean 5; B's single band becomes 0
    np.testing.assert_allclose(C @ fp.value, [1.0, -3.0, -1.0, 4.0, 0.0])
    np.testing.assert_allclose(C[1, 1:4], [2 / 3, -1 / 3, -1 / 3])
    np.testing.assert_allclose(shape_matrix(fp.select(fp.kind == "glacier")).toarray(), [[1.0]])


def test_band_shape_fit_ignores_the_bands_level_and_keeps_the_glacier_wide_one():
    X, truth, gl, band, yr, coef, b = _toy()
    rng = np.random.default_rng(5)
    offset = -0.4 + rng.normal(0, 0.2, (6, 8))  # bands too low by 0.4 m w.e. on average, varying by year
    fp = Footprints.concat([_groups(gl, yr, truth, "glacier"), _offset_bands(gl, band, yr, truth, offset)])
    schema = FeatureSchema(("t", "s", "zn"), ("K", "m", "1"))
    shape = fit_footprints(make_model("ols"), X, fp, schema, band_fit="shape")
    np.testing.assert_allclose(shape.coef_, coef, atol=1e-9)  # exact: the shape and the level are both right
    assert shape.intercept_ == pytest.approx(b, abs=1e-9) and shape.training_["band_fit"] == "shape"
    level = fit_footprints(make_model("ols"), X, fp, schema)  # the offset bands pull the level fit off
    assert np.abs(level.predict(X) - truth).mean() > 0.1
    with pytest.raises(ModelError, match="band_fit must be one of"):
        fit_footprints(make_model("ols"), X, fp, schema, band_fit="bands")
    with pytest.raises(ModelError, match="no"):  # the level needs glacier-wide footprints
        fit_footprints(make_model("ols"), X, fp.select(fp.kind == "band"), schema, band_fit="shape")


def test_ann_band_shape_fit_learns_the_gradient_from_offset_bands(one_torch_thread):
    X, truth, gl, band, yr, coef, b = _toy(n_glaciers=5, n_years=6, n_pix=30)
    offset = np.full((5, 6), -0.5)
    fp = Footprints.concat([_groups(gl, yr, truth, "glacier"), _offset_bands(gl, band, yr, truth, offset)])
    schema = FeatureSchema(("t", "s", "zn"), ("K", "m", "1"))
    model = fit_footprints(make_model("ann", hidden=(16,), epochs=400, lr=0.02, patience=60, seed=0), X, fp, schema,
                           band_fit="shape")
    pred = model.predict(X)
    assert np.sqrt(np.mean((pred - truth) ** 2)) < 0.1 * truth.std()  # the level of the glacier-wide balances
    slope = np.polyfit(X[:, 2], pred - X[:, :2] @ coef[:2], 1)[0]
    assert slope == pytest.approx(coef[2], rel=0.15)


def test_ann_aggregation_loss_learns_the_pixel_gradient(one_torch_thread):
    X, truth, gl, band, yr, coef, b = _toy(n_glaciers=5, n_years=6, n_pix=30)
    fp = Footprints.concat([_groups(gl, yr, truth, "glacier"), _groups(band, yr, truth, "band")])
    schema = FeatureSchema(("t", "s", "zn"), ("K", "m", "1"))
    model = fit_footprints(make_model("ann", hidden=(16,), epochs=400, lr=0.02, patience=60, seed=0), X, fp, schema)
    pred = model.predict(X)
    # trained on footprint means only, the network reproduces the pixel field and its gradient in zn
    assert np.sqrt(np.mean((pred - truth) ** 2)) < 0.1 * truth.std()
    slope = np.polyfit(X[:, 2], pred - X[:, :2] @ coef[:2], 1)[0]
    assert slope == pytest.approx(coef[2], rel=0.15)
    assert model.training_["footprints"]["glacier"]["n"] == 30


def test_ann_aggregation_loss_keeps_a_monotone_network_monotone(one_torch_thread):
    X, truth, gl, band, yr, coef, b = _toy(n_glaciers=4, n_years=5, n_pix=20)
    X = np.c_[X[:, 0] * 100 + 300, X[:, 1] * 100, X[:, 2]]  # cpdd-like (K d), snowfall-like (kg m-2)
    truth = X @ np.array([-0.005, 0.008, 1.2]) - 0.3
    fp = Footprints.concat([_groups(gl, yr, truth, "glacier"), _groups(band, yr, truth, "band")])
    schema = FeatureSchema(("cpdd", "snow_winter", "elevation_norm"), ("K d", "kg m-2", "1"))
    model = fit_footprints(make_model("ann", hidden=(8,), epochs=150, lr=0.02, patience=40, seed=0, monotone=True),
                           X, fp, schema)
    assert model.training_["monotone_signs"][:2] == [-1.0, 1.0]
    base = X[:50].copy()
    warmer = base.copy()
    warmer[:, 0] += 100.0
    assert (model.predict(warmer) <= model.predict(base) + 1e-6).all()


# ------------------------------------------------------------------------------- synthetic region (known)
BETA = 1.5  # m w.e.: surface-type term, about -0.75 at a glacier's lowest pixel and +0.75 at its top


def _truth(px):
    """The known pixel SMB (year, y, x): the region's temperature-index truth (acc_factor 1, ddf 4) plus a
    surface-type term BETA * (elevation_norm - its glacier mean) that steepens the profile and leaves every
    glacier-wide balance exactly as it was: no fit on glacier-wide balances can see it."""
    from glacgrid.inference import glacier_mean

    f = px.features
    ti = (f["snow_winter"] + f["snow_summer"] - 4.0 * f["cpdd"]) / 1000.0
    norm = f["elevation_norm"]
    mean = glacier_mean(norm, px.unit, px.unit > 0, px.pixel_area, px.index).values
    painted = px.unit.copy(data=np.where(px.unit.values > 0, mean[np.maximum(px.unit.values, 1) - 1], np.nan))
    return ti, ti + BETA * (norm - painted)


def test_joint_fit_recovers_the_gradient_that_glacier_wide_fitting_cannot(region_pixels):
    from glacgrid.inference import glacier_mean, predict_pixels
    from glacgrid.pipeline.training import fit_joint, pixel_footprints
    from glacgrid.validation import band_means

    cfg, train, px, table, _, _ = region_pixels
    ti, truth = _truth(px)
    # the pixel truth is the region's analytic one: its glacier means are the synthetic observations' truth
    gm = glacier_mean(ti, px.unit, px.unit > 0, px.pixel_area, px.index).to_pandas()
    mine = gm.stack().rename("mine").reset_index().rename(columns={"glacier": "pos"})
    mine["rgi_id"] = np.asarray(px.units)[mine["pos"].to_numpy() - 1]
    both = mine.merge(table, on=["rgi_id", "year"])
    assert len(both) == len(train)
    np.testing.assert_allclose(both["mine"], both["smb_true"], atol=0.03)

    # observations: glacier-wide means with the region's noise, 50 m bands with 0.1 m w.e. noise
    rng = np.random.default_rng(0)
    glw = glacier_mean(truth, px.unit, px.unit > 0, px.pixel_area, px.index).to_pandas().stack()
    obs = glw.rename("smb").reset_index()
    obs["obs_id"] = np.asarray(px.units)[obs["glacier"].to_numpy() - 1]
    noise = table.assign(noise=table["smb"] - table["smb_true"]).rename(columns={"rgi_id": "obs_id"})
    obs = obs.merge(noise[["obs_id", "year", "noise"]], on=["obs_id", "year"])
    obs["smb"] += obs["noise"]
    bands = band_means(truth, px.surface, px.unit, px.pixel_area, px.index).to_dataframe(name="smb").reset_index()
    bands = bands.dropna(subset=["smb"])
    bands["obs_id"] = np.asarray(px.units)[bands["glacier"].to_numpy() - 1]
    bands["smb"] += rng.normal(0.0, 0.1, len(bands))
    names = tuple(cfg.model.features)
    X, fp = pixel_footprints(px.features, px.unit, px.surface, px.pixel_area, px.units, obs, bands, names=names)
    assert fp.counts()["glacier"] == len(obs) and fp.counts()["band"] == len(bands)

    glacier_only = fit_joint(cfg, X, fp, keep=fp.kind == "glacier")
    joint = fit_joint(cfg, X, fp)

    on = (px.unit > 0).values
    z = np.broadcast_to(px.surface.values, truth.shape)[:, on]

    def gradient(field):
        return vertical_gradient(z.ravel(), np.asarray(field)[:, on].ravel())

    g_true = gradient(truth)
    g_glacier = gradient(predict_pixels(glacier_only, px.features, names))
    g_joint = gradient(predict_pixels(joint, px.features, names))
    assert g_true > 0.3  # a real gradient: m w.e. per 100 m
    assert abs(g_joint / g_true - 1) < 0.02  # measured 0.0015
    assert g_glacier / g_true < 0.75  # measured 0.70: only the temperature-index part of the gradient
    # the surface-type coefficient: recovered by the joint fit, not by the glacier-wide one
    k = names.index("elevation_norm")
    assert joint.coef_[k] == pytest.approx(BETA, rel=0.05)
    assert abs(glacier_only.coef_[k]) < 0.3 * BETA
    # both keep the glacier-wide balances
    for model in (glacier_only, joint):
        pred = model.predict(fp.select(fp.kind == "glacier").aggregate(X))
        assert np.sqrt(np.mean((pred - fp.value[fp.kind == "glacier"]) ** 2)) < 0.1


def test_reconstruction_cv_joint_side_by_side(region_pixels):
    from glacgrid.pipeline.validate import reconstruction_cv
    from glacgrid.validation import band_means, compare_bands, side_by_side

    cfg, train, px, table, _, _ = region_pixels
    px = dataclasses.replace(px, seasonal={})  # (annual balances only here)
    _, truth = _truth(px)
    prof = band_means(truth, px.surface, px.unit, px.pixel_area, px.index).to_dataframe(name="smb").reset_index()
    prof = prof.dropna(subset=["smb"])
    prof["obs_id"] = np.asarray(px.units)[prof["glacier"].to_numpy() - 1]
    recon, bands = {}, {}
    for training in ("glacier", "joint"):
        cv = reconstruction_cv(cfg, train, px, "loyo", training=training, profiles=prof)
        assert cv.training == training and cv.predictions["reconstructed"].notna().all()
        key = "loyo" if training == "glacier" else "loyo_joint"
        recon[key] = cv
        bands[key] = compare_bands(band_means(cv.smb, px.surface, px.unit, px.pixel_area, px.index), prof, px.units)
    table_ = side_by_side(recon, bands).set_index(["key", "obs_id"])
    # out of sample (leave-one-year-out), the joint model gets the bands right, the glacier-wide one does not
    assert table_.loc[("loyo_joint", "pooled"), "band_rmse"] < 0.5 * table_.loc[("loyo", "pooled"), "band_rmse"]
    for col in ("r", "rmse", "bias", "band_rmse", "band_bias", "ela", "gradient_ratio_below", "gradient_ratio_above"):
        assert col in table_.columns
    ratio = table_.xs("loyo_joint", level="key")["gradient_ratio_below"].drop("pooled")
    assert ((ratio > 0.85) & (ratio < 1.15)).all()


def test_equilibrium_line_and_profile_gradients():
    assert equilibrium_line([2525, 2575, 2625, 2675], [-2.0, -1.0, 0.5, 1.0]) == pytest.approx(2575 + 50 / 1.5)
    assert np.isnan(equilibrium_line([2525, 2575], [-2.0, -1.0]))
    z = np.repeat([2525.0, 2575.0, 2625.0, 2675.0, 2725.0], 3)
    obs = np.where(z < 2600, (z - 2600) / 100.0, 0.2 * (z - 2600) / 100.0)
    pairs = pd.DataFrame({"obs_id": "A", "year": np.tile([1, 2, 3], 5), "band_mid": z, "observed": obs,
                          "modelled": 0.5 * obs})
    g = profile_gradients(pairs).set_index("obs_id").loc["A"]
    assert g["ela"] == pytest.approx(2575 + 50 * 0.25 / 0.30)  # between -0.25 at 2575 m and +0.05 at 2625 m
    assert g["gradient_observed_below"] == pytest.approx(1.0)
    assert g["gradient_observed_above"] == pytest.approx(0.2)
    assert g["gradient_ratio_below"] == pytest.approx(0.5) and g["gradient_ratio_above"] == pytest.approx(0.5)


def test_fit_joint_model_writes_an_ordinary_artifact(region_pixels, tmp_path):
    import json

    from glacgrid.pipeline.training import fit_joint_model, observed_pixels

    cfg, train, px, _, prep, observed = region_pixels  # the features do not change the prepared run
    feats = ("cpdd", "snow_winter", "snow_summer", "snow_winter_dz", "cpdd_low", "cpdd_ice", "elevation_norm")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, features=feats, training="joint"))
    # the profile features are pixel features of the observed glaciers like any other
    pix = observed_pixels(cfg, prep, observed, [2002, 2003]).features
    on = (px.unit > 0).values
    for name in ("snow_winter_dz", "cpdd_low", "cpdd_ice"):
        assert np.isfinite(pix[name].values[:, on]).all(), name
    assert (pix["cpdd_ice"].values[:, on] <= pix["cpdd"].values[:, on] + 1e-3).all()
    np.testing.assert_allclose(pix["cpdd_low"].values[:, on],
                               (pix["cpdd"] * (1 - pix["elevation_norm"])).values[:, on], rtol=1e-5)
    # no band profiles in the synthetic table format: the glacier-wide footprints alone, an ordinary model
    model = fit_joint_model(cfg, prep, observed, train, tmp_path)
    back = load_model(tmp_path / "model")
    assert isinstance(back, LinearModel) and back.schema.names == feats
    info = json.loads((tmp_path / "footprints.json").read_text())
    assert info["footprints"]["glacier"]["n"] == len(train) and info["kind_weights"]["band"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(back.coef_, model.coef_)


def test_validate_refuses_joint_training_without_profiles_and_unknown_trainings(region_pixels, tmp_path):
    from typer.testing import CliRunner

    from glacgrid.cli import app
    from glacgrid.pipeline import validate

    cfg, _, _, _, prep, _ = region_pixels
    bad = CliRunner().invoke(app, ["validate", str(cfg.source), "--out", str(tmp_path), "--training", "bands"])
    assert bad.exit_code == 2 and "bands" in bad.output
    with pytest.raises(InputDataError, match="needs elevation-band profiles"):
        validate(cfg, tmp_path, schemes=("loyo",), evolve=False, prep=prep, trainings=("glacier", "joint"))


def test_a_joint_run_with_profile_features_grids_what_the_training_path_computes(small_region, tmp_path):
    # `glacgrid run` end to end: [model] training = "joint" with the profile features, which the compiled
    # inference pass now builds; its gridded SMB is the trained model applied to the features the
    # training path computes (glacgrid.features.profile) on every observed pixel
    import json

    from glacgrid.config import load_config
    from glacgrid.inference import predict_pixels
    from glacgrid.pipeline import prepare, read_observed, run
    from glacgrid.pipeline.run import check_run_features
    from glacgrid.pipeline.training import observed_pixels
    from glacgrid.testing import write_config
    import xarray as xr

    feats = ("cpdd", "snow_winter", "snow_summer", "snow_winter_dz", "cpdd_low", "cpdd_ice", "snowfree_months",
             "elevation_norm")
    path = write_config(small_region, tmp_path / "run.toml", output=tmp_path / "out", mode="reconstruct", chunks=48,
                        features=feats, kind="ols")
    path.write_text(path.read_text().replace('cv = "logo"\n', 'cv = "logo"\ntraining = "joint"\n'))
    cfg = load_config(path)
    check_run_features(cfg)  # (refused before the compiled pass built them)
    run(cfg, progress=False)
    out = tmp_path / "out"
    model = load_model(out / "model")
    assert model.schema.names == feats and json.loads((out / "footprints.json").read_text())["training"] == "joint"
    assert (model.coef_ != 0).all()
    prep = prepare(cfg, out / "work")  # (the finished stores of the run: nothing recomputed)
    observed = read_observed(cfg, prep.table)
    years = list(range(cfg.period.start, cfg.period.end + 1))
    px = observed_pixels(cfg, prep, observed, years)
    want = predict_pixels(model, px.features, list(feats)).compute()
    with xr.open_zarr(out / "results.zarr") as ds:
        got = ds["smb"].sel(y=want["y"], x=want["x"]).transpose(*want.dims).values
    on = np.broadcast_to((px.unit > 0).values, want.shape)
    assert on.sum() > 1000 and np.isfinite(got[on]).all()
    np.testing.assert_allclose(got[on], want.values[on], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------- real data (slow)
PROFILE_FEATURES = ("cpdd", "snow_winter", "snow_summer", "snow_winter_dz", "cpdd_low", "cpdd_ice", "elevation_norm")


@pytest.mark.slow
@requires_data("hef", "climate", "sel_era5_land_monthly_t2m_1981-2018.nc")
@requires_data("hef", "mb", "profile_WGMS-00491.csv")
def test_oetztal_joint_training_bends_the_profile(tmp_path):
    """HEF, KWF, VF, leave-one-year-out: joint training with the profile features against glacier-wide-only
    training with today's climate features (measured 2026-12-05, docs/user-guide/footprints.md)."""
    from glacgrid.config import load_config
    from glacgrid.pipeline import validate
    from glacgrid.testing import REPO

    cfg = load_config(REPO / "examples" / "hef_evolve.toml")
    cfg = dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, chunks=128))
    before = validate(cfg, tmp_path / "before", schemes=("loyo",), evolve=False, trainings=("glacier",))
    after_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, features=PROFILE_FEATURES,
                                                                   training="joint"))
    after = validate(after_cfg, tmp_path / "after", schemes=("loyo",), evolve=False)
    b = before.comparison.set_index("obs_id")
    a = after.comparison.set_index("obs_id")
    assert (a["key"] == "loyo_joint").all()
    glaciers = ["RGI50-11.00787", "RGI60-11.00719", "RGI60-11.00897"]
    # before: the numbers (bands too flat, too high)
    assert b.loc["RGI60-11.00897", "r"] == pytest.approx(0.800, abs=0.01)
    assert (b.loc[glaciers, "gradient_ratio_below"] < 0.5).all() and b.loc["pooled", "band_bias"] > 0.4
    # after: measured 0.81 / 1.00 / 0.93, band RMSE 0.84 / 0.39 / 0.56, pooled glacier-wide RMSE 0.298
    assert ((a.loc[glaciers, "gradient_ratio_below"] > 0.78) & (a.loc[glaciers, "gradient_ratio_below"] < 1.1)).all()
    assert (a.loc[["RGI60-11.00719", "RGI60-11.00897"], "band_rmse"] < 0.6).all()
    assert a.loc["pooled", "band_rmse"] < 0.65 and abs(a.loc["pooled", "band_bias"]) < 0.15
    assert a.loc["pooled", "rmse"] < 0.305 and a.loc["RGI60-11.00897", "r"] > 0.79
    # above the ELA the modelled profile flattens towards the observed one
    assert (a.loc[glaciers, "gradient_modelled_above"] < b.loc[glaciers, "gradient_modelled_above"] - 0.1).all()


@pytest.mark.slow
@requires_data("hef", "climate", "sel_era5_land_monthly_t2m_1981-2018.nc")
@requires_data("hef", "mb", "profile_WGMS-00491.csv")
def test_oetztal_joint_example_is_physical_and_near_the_goals(tmp_path):
    """examples/hef_joint.toml (monotone; glacier-wide annual, winter, summer and band footprints), validated as
    its header says: leave-one-year-out, glacier-wide-only against joint (measured 2026-12-05,
    docs/user-guide/footprints.md: HEF r 0.8199, RMSE 0.2935; pooled RMSE 0.274; gradient ratios below the ELA
    0.87 / 0.96 / 0.92; bands VF / HEF RMSE 0.40 / 0.58, bias +0.05 / +0.14; KWF bands RMSE 0.78, bias +0.24:
    missed), and no monotonicity violation at any probe row, top or tongue."""
    from glacgrid.config import load_config
    from glacgrid.models.physics import check_physics
    from glacgrid.pipeline import prepare, read_observed, training_table, validate
    from glacgrid.pipeline.training import fit_joint_model
    from glacgrid.testing import REPO

    cfg = load_config(REPO / "examples" / "hef_joint.toml")
    prep = prepare(cfg, tmp_path / "work")
    rep = validate(cfg, tmp_path, schemes=("loyo", "logo"), evolve=False, trainings=("glacier", "joint"), prep=prep)
    t = rep.comparison.set_index(["key", "obs_id"])
    j, g = t.xs("loyo_joint", level="key"), t.xs("loyo", level="key")
    kwf, vf, hef = "RGI50-11.00787", "RGI60-11.00719", "RGI60-11.00897"
    assert j.loc[hef, "r"] == pytest.approx(0.8199, abs=0.002)
    assert j.loc[hef, "rmse"] == pytest.approx(0.2935, abs=0.002)
    assert j.loc["pooled", "rmse"] < 0.28
    ratio = j.loc[[kwf, vf, hef], "gradient_ratio_below"]
    assert ((ratio > 0.85) & (ratio < 1.15)).all()
    assert (j.loc[[vf, hef], "band_rmse"] < 0.6).all() and (j.loc[[vf, hef], "band_bias"].abs() < 0.15).all()
    assert j.loc[kwf, "band_rmse"] == pytest.approx(0.782, abs=0.01)  # the miss: KWF's top (see the guide)
    # the seasons: held out, the joint model gets the winter and summer balances; the glacier-wide one cannot
    assert (j.loc[[vf, hef], "winter_rmse"] < 0.2).all() and (j.loc[[vf, hef], "summer_rmse"] < 0.25).all()
    assert (g.loc[[vf, hef], "winter_rmse"] > 1.0).all()
    # leave-one-glacier-out: the joint model transfers, the glacier-wide one with these features does not
    lj, lg = t.xs("logo_joint", level="key"), t.xs("logo", level="key")
    assert lj.loc["pooled", "rmse"] < 0.45 and lg.loc["pooled", "rmse"] > 2.0
    # the model of a run: monotone at every probe row of its training table, on the top and on the tongue
    observed = read_observed(cfg, prep.table)
    train, _ = training_table(cfg, prep, observed)
    model = fit_joint_model(cfg, prep, observed, train, tmp_path / "run")
    report = check_physics(model, train)
    assert report.monotone and report.total_violations == 0
    assert report.sensitivity_2_4 < report.sensitivity_0_2 < 0  # more loss per K as it warms
