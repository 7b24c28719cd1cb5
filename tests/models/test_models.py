"""Tests of glacgrid.models: kernels, schema, linear and ANN models, artifacts, cross-validation."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glacgrid.exceptions import InputDataError, ModelError, SchemaMismatchError
from glacgrid.models import (
    ANNModel,
    CVResult,
    FeatureSchema,
    LinearModel,
    SMBModel,
    cross_validate,
    load_model,
    make_model,
    predict_frame,
)
from glacgrid.models import _kernels
from glacgrid.testing._models import pickle_globals

SCHEMA3 = FeatureSchema(("cpdd", "snow", "elev"), ("K day", "m w.e.", "km"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def nonlinear_truth(X):
    return np.sin(X[:, 0]) * X[:, 1] + X[:, 2] ** 2


@pytest.fixture(scope="module")
def nonlinear_data():
    rng = np.random.default_rng(42)
    X = rng.uniform(-2, 2, (500, 3))
    y = nonlinear_truth(X) + rng.normal(0, 0.05, 500)
    X_test = rng.uniform(-2, 2, (400, 3))
    return X, y, X_test


@pytest.fixture(scope="module")
def ann(nonlinear_data):
    X, y, _ = nonlinear_data
    return ANNModel(seed=0, device="cpu").fit(X, y, SCHEMA3)


def scaled_linear_data(n=300, seed=1):
    """Features on very different scales (~1000, ~0.1, ~5) and a known linear truth."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(1000, 300, n), rng.normal(0.1, 0.03, n), rng.normal(5, 2, n)])
    w, b = np.array([0.002, 30.0, -0.5]), 1.5
    return X, X @ w + b + rng.normal(0, 0.01, n), w, b


# --------------------------------------------------------------------------- kernels
def test_linear_predict_hand_values_and_nan_rows():
    X = np.array([[1.0, 2.0], [0.0, -1.0], [np.nan, 5.0]])
    out = _kernels.linear_predict(X, np.array([2.0, 0.0]), 0.5)
    np.testing.assert_array_equal(out[:2], [2.5, 0.5])
    assert np.isnan(out[2])  # NaN propagates even through a zero coefficient
    assert out.dtype == np.float64


def test_regression_metrics_hand_values():
    m = _kernels.regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]))
    assert m["bias"] == pytest.approx(1.0)
    assert m["mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert m["r"] == pytest.approx(3 / np.sqrt(12))
    assert m["r2"] == pytest.approx(1 - 5 / 2)
    one = _kernels.regression_metrics(np.array([1.0]), np.array([1.5]))
    assert np.isnan(one["r"]) and np.isnan(one["r2"]) and one["bias"] == 0.5 and one["rmse"] == 0.5


def test_column_stats_constant_column_gets_unit_std():
    mean, std = _kernels.column_stats(np.array([[1.0, 7.0], [3.0, 7.0]]))
    np.testing.assert_array_equal(mean, [2.0, 7.0])
    np.testing.assert_array_equal(std, [1.0, 1.0])


@settings(max_examples=50, deadline=None)
@given(
    coef=st.lists(st.floats(-10, 10), min_size=1, max_size=4),
    b=st.floats(-10, 10),
    seed=st.integers(0, 2**16),
)
def test_unstandardise_matches_standardised_predictor(coef, b, seed):
    rng = np.random.default_rng(seed)
    k = len(coef)
    mean, std = rng.normal(0, 100, k), rng.uniform(0.01, 100, k)
    X = rng.normal(mean, std, (5, k))
    c, i = _kernels.unstandardise_coefficients(np.array(coef), b, mean, std)
    expected = _kernels.standardise(X, mean, std) @ np.array(coef) + b
    np.testing.assert_allclose(_kernels.linear_predict(X, c, i), expected, rtol=1e-9, atol=1e-6)


# --------------------------------------------------------------------------- schema
names_st = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5, unique=True)


@settings(deadline=None)
@given(names=names_st, data=st.data())
def test_schema_dict_round_trip(names, data):
    units = data.draw(st.lists(st.sampled_from(["K", "m w.e.", "1", "K day"]), min_size=len(names),
                               max_size=len(names)))
    s = FeatureSchema(tuple(names), tuple(units))
    back = FeatureSchema.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    back.check(s)


@pytest.mark.parametrize(
    "other, fragments",
    [
        (FeatureSchema(("cpdd", "snow"), ("K day", "m w.e.")), ["missing from the data: ['elev']"]),
        (FeatureSchema(("cpdd", "snow", "elev", "rad"), ("K day", "m w.e.", "km", "W m-2")),
         ["not used by the model: ['rad']"]),
        (FeatureSchema(("snow", "cpdd", "elev"), ("m w.e.", "K day", "km")),
         ["reordered", "['cpdd', 'snow', 'elev']", "['snow', 'cpdd', 'elev']"]),
        (FeatureSchema(("cpdd", "snow", "elev"), ("K day", "m w.e.", "m")), ["units changed: elev: model 'km', data 'm'"]),
    ],
)
def test_schema_check_names_the_difference(other, fragments):
    with pytest.raises(SchemaMismatchError) as err:
        SCHEMA3.check(other)
    for frag in fragments:
        assert frag in str(err.value)


def test_schema_rejects_bad_definitions():
    with pytest.raises(ModelError, match="2 names .* but 1 units"):
        FeatureSchema(("a", "b"), ("K",))
    with pytest.raises(ModelError, match="duplicated: \\['a'\\]"):
        FeatureSchema(("a", "a"), ("K", "K"))
    with pytest.raises(ModelError, match="at least one"):
        FeatureSchema((), ())
    with pytest.raises(ModelError, match="not one string"):
        FeatureSchema("abc", ("K", "K", "K"))


# --------------------------------------------------------------------------- linear
@pytest.mark.parametrize("kind, rtol", [("ols", 2e-3), ("ridge", 2e-3), ("lasso", 1e-2)])
def test_linear_recovers_physical_coefficients(kind, rtol):
    X, y, w, b = scaled_linear_data()
    model = make_model(kind, seed=0).fit(X, y, SCHEMA3)
    assert isinstance(model, LinearModel) and isinstance(model, SMBModel)
    np.testing.assert_allclose(model.coef_, w, rtol=rtol)
    assert model.intercept_ == pytest.approx(b, abs=0.02)
    # predict is exactly the numpy kernel in physical units
    np.testing.assert_allclose(model.predict(X[:5]), X[:5] @ model.coef_ + model.intercept_, rtol=1e-12)


def test_lasso_zeroes_an_irrelevant_feature_and_is_seeded():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    y = 2 * X[:, 0] - X[:, 1] + rng.normal(0, 0.5, 200)
    a = make_model("lasso", seed=5).fit(X, y, SCHEMA3)
    b = make_model("lasso", seed=5).fit(X, y, SCHEMA3)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert abs(a.coef_[2]) < 0.05 and a.coef_[0] == pytest.approx(2, abs=0.1)


def test_linear_predict_nan_rows_float32_and_shape_errors():
    X, y, _, _ = scaled_linear_data()
    model = LinearModel("ols").fit(X, y, SCHEMA3)
    Xp = X[:4].copy()
    Xp[1, 2] = np.nan
    out = model.predict(Xp)
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2, 3]]).all()
    np.testing.assert_allclose(model.predict(X[:4].astype(np.float32)), model.predict(X[:4]), rtol=1e-5)
    with pytest.raises(SchemaMismatchError, match="3 columns"):
        model.predict(X[:, :2])
    with pytest.raises(SchemaMismatchError, match="2-D"):
        model.predict(X[0])
    with pytest.raises(ModelError, match="not fitted"):
        LinearModel().predict(X)


def test_fit_input_errors():
    X, y, _, _ = scaled_linear_data(n=20)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputDataError, match="snow \\(1 rows\\)"):
        LinearModel().fit(bad, y, SCHEMA3)
    with pytest.raises(InputDataError, match="target holds NaN"):
        LinearModel().fit(X, np.where(np.arange(20) == 0, np.nan, y), SCHEMA3)
    with pytest.raises(ModelError, match="3 columns but the schema names 2"):
        LinearModel().fit(X, y, FeatureSchema(("a", "b"), ("1", "1")))
    with pytest.raises(InputDataError, match="sample_weight"):
        LinearModel().fit(X, y, SCHEMA3, sample_weight=-np.ones(20))
    with pytest.raises(ModelError, match="at least 10"):
        ANNModel().fit(X[:5], y[:5], SCHEMA3)


def test_make_model_errors():
    with pytest.raises(ModelError, match="valid kinds: lasso, ols, ridge, svr, rf, gbm, ann"):
        make_model("xgboost")
    with pytest.raises(ModelError, match="Unknown option.*'hidden'.*'lasso'"):
        make_model("lasso", hidden=(4,))
    with pytest.raises(ModelError, match="device must be one of"):
        make_model("ann", device="tpu")
    assert make_model("ann", seed=3, hidden=(8,)).hidden == (8,)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_ann_cuda_requested_without_cuda():
    X, y, _, _ = scaled_linear_data(n=20)
    with pytest.raises(ModelError, match="no CUDA device.*device='auto' or 'cpu'"):
        ANNModel(device="cuda").fit(X, y, SCHEMA3)


# --------------------------------------------------------------------------- ANN
def test_ann_beats_lasso_on_nonlinear_truth(ann, nonlinear_data):
    X, y, X_test = nonlinear_data
    truth = nonlinear_truth(X_test)
    rmse_ann = np.sqrt(np.mean((ann.predict(X_test) - truth) ** 2))
    rmse_lasso = np.sqrt(np.mean((LinearModel("lasso").fit(X, y, SCHEMA3).predict(X_test) - truth) ** 2))
    assert rmse_ann < 0.3 < 1.0 < rmse_lasso
    assert ann.training_["best_epoch"] <= ann.training_["epochs_run"] <= 500


def test_ann_seeded_reproducible_on_cpu(nonlinear_data):
    X, y, X_test = nonlinear_data
    fit = lambda seed: ANNModel(hidden=(16,), epochs=40, seed=seed, device="cpu").fit(X[:200], y[:200], SCHEMA3)
    a, b, c = fit(7), fit(7), fit(8)
    np.testing.assert_array_equal(a.predict(X_test), b.predict(X_test))
    assert not np.array_equal(a.predict(X_test), c.predict(X_test))


def test_ann_predict_nan_rows_dtype_and_pickle(ann, nonlinear_data):
    X_test = nonlinear_data[2][:6].copy()
    X_test[2, 0] = np.nan
    X_test[4, 1] = np.inf
    out = ann.predict(X_test)
    assert out.dtype == np.float64 and out.shape == (6,)
    assert np.isnan(out[[2, 4]]).all() and np.isfinite(out[[0, 1, 3, 5]]).all()
    assert np.isnan(ann.predict(np.full((3, 3), np.nan))).all()
    assert ann.predict(np.empty((0, 3))).shape == (0,)
    # dask distributed ships models by pickle: weights travel, cached networks are rebuilt
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ann)).predict(X_test), out)


# --------------------------------------------------------------------------- artifacts
def test_linear_artifact_round_trip(tmp_path):
    X, y, _, _ = scaled_linear_data()
    model = LinearModel("lasso", seed=2).fit(X, y, SCHEMA3)
    assert model.to_artifact(tmp_path / "m") == tmp_path / "m"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json"]
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["kind"] == "lasso" and meta["training"]["n_samples"] == 300
    assert meta["training"]["target_mean"] == pytest.approx(y.mean())
    assert meta["training"]["feature_stds"] == pytest.approx(X.std(axis=0).tolist())
    assert {"glacgrid", "numpy", "sklearn"} <= set(meta["versions"])
    loaded = load_model(tmp_path / "m", schema=SCHEMA3)
    assert isinstance(loaded, LinearModel)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    model.to_artifact(tmp_path / "m2")  # idempotent: same model, same bytes
    assert (tmp_path / "m" / "model.json").read_bytes() == (tmp_path / "m2" / "model.json").read_bytes()


def test_ann_artifact_round_trip_is_tensor_only(ann, nonlinear_data, tmp_path):
    ann.to_artifact(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "weights.pt"]
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["hyperparameters"]["hidden"] == [32, 16] and "torch" in meta["versions"]
    assert set(meta["normalisation"]) == {"x_mean", "x_std", "y_mean", "y_std"}
    assert pickle_globals(tmp_path / "weights.pt") <= {
        "collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage"}
    loaded = load_model(tmp_path)
    assert isinstance(loaded, ANNModel)
    X_test = nonlinear_data[2]
    np.testing.assert_array_equal(loaded.predict(X_test), ann.predict(X_test))


def test_load_refuses_schema_mismatch_and_bad_artifacts(ann, tmp_path):
    ann.to_artifact(tmp_path / "a")
    other = FeatureSchema(("cpdd", "snow", "elev"), ("K day", "m w.e.", "m"))
    with pytest.raises(SchemaMismatchError, match="units changed: elev: model 'km', data 'm'"):
        load_model(tmp_path / "a", schema=other)
    with pytest.raises(SchemaMismatchError, match="missing from the data: \\['elev'\\]"):
        load_model(tmp_path / "a").schema.check(FeatureSchema(("cpdd", "snow"), ("K day", "m w.e.")))
    with pytest.raises(ModelError, match="No model artifact"):
        load_model(tmp_path / "nothing")
    weights = tmp_path / "a" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    (tmp_path / "a" / "model.json").write_text(json.dumps({**meta, "kind": "forest"}))
    with pytest.raises(ModelError, match="kind 'forest'"):
        load_model(tmp_path / "a")


def test_linear_predict_needs_neither_sklearn_nor_torch(tmp_path):
    X, y, _, _ = scaled_linear_data()
    model = LinearModel("ols").fit(X, y, SCHEMA3)
    model.to_artifact(tmp_path)
    np.save(tmp_path / "X.npy", X[:3])
    code = (
        "import sys, numpy as np; sys.modules['sklearn'] = None; sys.modules['torch'] = None\n"
        "from glacgrid.models import load_model\n"
        f"m = load_model({str(tmp_path)!r}); print(repr(m.predict(np.load({str(tmp_path / 'X.npy')!r})).tolist()))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(eval(res.stdout), model.predict(X[:3]))


@pytest.mark.parametrize("which", ["linear", "ann"])
def test_predict_thread_safe_and_chunking_invariant(which, ann, nonlinear_data, tmp_path):
    X, y, X_test = nonlinear_data
    model = ann if which == "ann" else LinearModel("ols").fit(X, y, SCHEMA3)
    model.to_artifact(tmp_path)
    fresh = load_model(tmp_path)  # networks are built lazily: first calls race on purpose
    big = np.tile(X_test, (5, 1))
    whole = model.predict(big)
    # uneven blocks (as dask edge chunks are): a row's prediction must not depend on its block
    blocks = np.split(big, [1, 8, 71, 136, 200, 263, 700, 701, 1300, 1999])
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fresh.predict, blocks * 3))
    for got, block in zip(results, blocks * 3):
        np.testing.assert_array_equal(got, model.predict(block))
    np.testing.assert_array_equal(np.concatenate(results[: len(blocks)]), whole)
    np.testing.assert_array_equal(fresh.predict(np.asfortranarray(big)), whole)


def test_predict_frame_selects_by_name():
    X, y, _, _ = scaled_linear_data()
    model = LinearModel("ols").fit(X, y, SCHEMA3)
    df = pd.DataFrame({"elev": X[:4, 2], "extra": 1.0, "snow": X[:4, 1], "cpdd": X[:4, 0]})
    np.testing.assert_array_equal(predict_frame(model, df), model.predict(X[:4]))
    with pytest.raises(SchemaMismatchError, match="lacks the model features \\['snow'\\]"):
        predict_frame(model, df.drop(columns="snow"))


# --------------------------------------------------------------------------- cross-validation
def glacier_table(offset_glacier=None, offset_year=None, offset=0.0, seed=0):
    """5 glaciers x 8 years, y = 2 x1 - x2 + 1 exactly, plus ``offset`` on one glacier or year."""
    rng = np.random.default_rng(seed)
    g, yr = np.meshgrid(["G1", "G2", "G3", "G4", "G5"], np.arange(2001, 2009), indexing="ij")
    df = pd.DataFrame({"glacier": g.ravel(), "year": yr.ravel(),
                       "x1": rng.normal(size=40), "x2": rng.normal(size=40)})
    df["smb"] = 2 * df.x1 - df.x2 + 1
    df.loc[df.glacier == offset_glacier, "smb"] += offset
    df.loc[df.year == offset_year, "smb"] += offset
    return df


def _check_metrics_by_hand(res: CVResult):
    p = res.predictions
    err = p.predicted - p.observed
    assert res.metrics["bias"] == pytest.approx(err.mean())
    assert res.metrics["mae"] == pytest.approx(err.abs().mean())
    assert res.metrics["rmse"] == pytest.approx(np.sqrt((err**2).mean()))
    assert res.metrics["r"] == pytest.approx(np.corrcoef(p.observed, p.predicted)[0, 1])
    ss_tot = ((p.observed - p.observed.mean()) ** 2).sum()
    assert res.metrics["r2"] == pytest.approx(1 - (err**2).sum() / ss_tot)


def test_cross_validate_logo_holds_out_each_glacier():
    table = glacier_table(offset_glacier="G4", offset=3.0)
    res = cross_validate(table, target="smb", features=["x1", "x2"], kind="ols", scheme="logo")
    assert list(res.per_fold.columns) == ["fold", "n", "r", "r2", "rmse", "mae", "bias"]
    assert list(res.per_fold.fold) == ["G1", "G2", "G3", "G4", "G5"] and (res.per_fold.n == 8).all()
    assert list(res.predictions.columns) == ["glacier", "year", "observed", "predicted", "fold"]
    assert (res.predictions.fold == res.predictions.glacier).all()
    assert res.predictions.index.equals(table.index) and res.predictions.predicted.notna().all()
    # G4's model saw only offset-free glaciers: it predicts the exact truth, 3 below the observations
    g4 = res.per_fold.set_index("fold").loc["G4"]
    assert g4.bias == pytest.approx(-3.0, abs=1e-9)
    assert g4.rmse == pytest.approx(3.0, abs=1e-9) and g4.mae == pytest.approx(3.0, abs=1e-9)
    assert g4.r == pytest.approx(1.0)
    # every other fold's model saw G4 and is pulled up by it
    assert (res.per_fold.set_index("fold").drop("G4").bias > 0.1).all()
    _check_metrics_by_hand(res)


def test_cross_validate_loyo_holds_out_each_year(tmp_path):
    table = glacier_table(offset_year=2005, offset=-2.0, seed=1)
    res = cross_validate(table, target="smb", features=["x1", "x2"], kind="ols", scheme="loyo",
                         units=["K day", "m w.e."])
    assert list(res.per_fold.fold) == list(range(2001, 2009)) and (res.per_fold.n == 5).all()
    assert (res.predictions.fold == res.predictions.year).all()
    y05 = res.per_fold.set_index("fold").loc[2005]
    assert y05.bias == pytest.approx(2.0, abs=1e-9) and y05.mae == pytest.approx(2.0, abs=1e-9)
    _check_metrics_by_hand(res)
    res.to_json(tmp_path / "cv.json")
    doc = json.loads((tmp_path / "cv.json").read_text())
    assert doc["scheme"] == "loyo" and doc["kind"] == "ols" and len(doc["predictions"]) == 40
    assert doc["metrics"]["rmse"] == pytest.approx(res.metrics["rmse"])


def test_cross_validate_single_row_fold_has_nan_r_and_ann_options():
    table = glacier_table(seed=2)
    table.loc[0, "glacier"] = "LONE"
    res = cross_validate(table, target="smb", features=["x1", "x2"], kind="ann", epochs=5, hidden=(4,),
                         device="cpu")
    lone = res.per_fold.set_index("fold").loc["LONE"]
    assert lone.n == 1 and np.isnan(lone.r) and np.isfinite(lone.rmse)
    assert len(res.per_fold) == 6 and res.per_fold.n.sum() == 40


@pytest.mark.parametrize(
    "change, kwargs, exc, pattern",
    [
        (None, {"scheme": "bootstrap"}, ModelError, "valid schemes: logo, loyo, lsygo, kfold, random"),
        (None, {"kind": "xgboost"}, ModelError, "valid kinds"),
        (None, {"features": ["x1", "x9"]}, InputDataError, "\\['x9'\\] not found"),
        (None, {"glacier_col": "RGIId"}, InputDataError, "\\['RGIId'\\] not found"),
        (None, {"features": ["x1", "smb"]}, ModelError, "also listed as a feature"),
        (None, {"units": ["K"]}, ModelError, "2 names .* but 1 units"),
        ("nan_feature", {}, InputDataError, "Column 'x2' holds 1 NaN.*dropna"),
        ("nan_target", {}, InputDataError, "Column 'smb' holds 1 NaN"),
        ("constant", {}, ModelError, "constant"),
        ("one_glacier", {}, ModelError, "'logo' needs at least 2 distinct glaciers; found 1"),
        ("one_year", {"scheme": "loyo"}, ModelError, "'loyo' needs at least 2 distinct years; found 1"),
        ("text_feature", {}, InputDataError, "'x1' is not numeric"),
    ],
)
def test_cross_validate_errors(change, kwargs, exc, pattern):
    table = glacier_table()
    if change == "nan_feature":
        table.loc[3, "x2"] = np.nan
    elif change == "nan_target":
        table.loc[5, "smb"] = np.nan
    elif change == "constant":
        table["smb"] = -0.4
    elif change == "one_glacier":
        table["glacier"] = "G1"
    elif change == "one_year":
        table["year"] = 2001
    elif change == "text_feature":
        table["x1"] = table["x1"].astype(str) + "K"
    args = {"target": "smb", "features": ["x1", "x2"], **kwargs}
    with pytest.raises(exc, match=pattern):
        cross_validate(table, **args)
