"""SVR / random forest / gradient boosting, ANN presets, ensembles, sample weights, transfer learning."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from glacgrid.exceptions import InputDataError, ModelError, SchemaMismatchError
from glacgrid.models import (
    ANN_PRESETS,
    ANNModel,
    EnsembleModel,
    FeatureSchema,
    SklearnModel,
    fine_tune,
    load_model,
    make_model,
    sample_weights,
)
from glacgrid.models import _kernels
from glacgrid.testing._models import linear_truth, nonlinear_truth, pickle_globals


S3 = FeatureSchema(("x1", "x2", "x3"), ("K", "m w.e.", "km"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.uniform(-2, 2, (400, 3))
    X_test = rng.uniform(-2, 2, (300, 3))
    return X, nonlinear_truth(X) + rng.normal(0, 0.05, 400), X_test


def rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


# --------------------------------------------------------------------------- numpy kernels, by hand
def test_tree_kernel_hand_forest():
    # tree 0: x0 <= 0.5 ? 1.0 : (x1 <= 2 ? 2.0 : 3.0); tree 1: a single leaf 10.0
    forest = {"roots": np.array([0, 5]), "left": np.array([1, -1, 3, -1, -1, -1]),
              "right": np.array([2, -1, 4, -1, -1, -1]), "feature": np.array([0, 0, 1, 0, 0, 0]),
              "threshold": np.array([0.5, 0, 2.0, 0, 0, 0]), "value": np.array([0, 1.0, 0, 2.0, 3.0, 10.0])}
    X = np.array([[0.5, 9.0], [0.6, 2.0], [0.6, 2.5]])
    leaves = _kernels.tree_leaves(X.astype(np.float32), forest["roots"], forest["left"], forest["right"],
                                  forest["feature"], forest["threshold"])
    np.testing.assert_array_equal(leaves, [[1, 5], [3, 5], [4, 5]])
    np.testing.assert_allclose(_kernels.forest_predict(X, forest, scale=0.5, offset=1.0), [6.5, 7.0, 7.5])


def test_rbf_kernel_hand_value():
    sv, coef = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([2.0, -1.0])
    out = _kernels.rbf_predict(np.array([[1.0, 0.0]]), sv, coef, 0.5, gamma=0.5)
    assert out[0] == pytest.approx(0.5 + 2 * np.exp(-0.5) - np.exp(-0.5))


def test_sample_weights_hand_values():
    np.testing.assert_allclose(sample_weights(np.array([0.11, 0.12, 0.5]), "frequency"), [0.75, 0.75, 1.5])
    # KDE with bandwidth 1 by hand: p(y_i) = mean_j N(y_i - y_j; 0, 1)
    y = np.array([0.0, 0.0, 1.0])
    phi = lambda u: np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi)  # noqa: E731
    p = np.array([2 * phi(0) + phi(1), 2 * phi(0) + phi(1), phi(0) + 2 * phi(1)]) / 3
    np.testing.assert_allclose(sample_weights(y, "kde", bandwidth=1.0), (1 / p) / np.mean(1 / p))
    # extremes weigh more; max_ratio caps the spread
    y = np.r_[np.random.default_rng(0).normal(0, 1, 500), 6.0]
    w = sample_weights(y, "kde")
    assert w.mean() == pytest.approx(1.0) and w[-1] == w.max() and w[-1] / w.min() == pytest.approx(20.0)
    assert sample_weights(y, None) is None
    with pytest.raises(ModelError, match="valid: kde, frequency"):
        sample_weights(y, "idw")
    with pytest.raises(InputDataError, match="1 non-finite"):
        sample_weights(np.array([1.0, np.nan]), "kde")


def test_kde_weights_fit_extremes_better():
    """A biased-to-the-mean sample: weighting by 1/density lowers the error on the rare extreme rows."""
    rng = np.random.default_rng(3)
    X = np.r_[rng.normal(0, 0.3, (300, 3)), rng.uniform(-2, 2, (20, 3))]
    y = np.sin(2 * X[:, 0]) + X[:, 1]  # nonlinear: an unweighted linear fit favours the bulk
    ext = np.abs(y) > np.quantile(np.abs(y), 0.95)
    plain = make_model("ols").fit(X, y, S3).predict(X)
    weighted = make_model("ols").fit(X, y, S3, sample_weight=sample_weights(y, "kde")).predict(X)
    assert rmse(weighted[ext], y[ext]) < 0.9 * rmse(plain[ext], y[ext])


# --------------------------------------------------------------------------- scikit-learn kinds
@pytest.mark.parametrize("kind", ["svr", "rf", "gbm"])
def test_sklearn_kernels_match_sklearn_and_beat_lasso(kind, data, tmp_path):
    X, y, X_test = data
    model = make_model(kind, seed=1, **({"n_estimators": 60} if kind == "rf" else {})).fit(X, y, S3)
    assert isinstance(model, SklearnModel)
    est = model._estimator()
    if kind == "svr":
        mean, std = _kernels.column_stats(X)
        est.fit((X - mean) / std, (y - y.mean()) / y.std())
        ref = est.predict((X_test - mean) / std) * y.std() + y.mean()
    else:
        ref = est.fit(X, y).predict(X_test)
    np.testing.assert_allclose(model.predict(X_test), ref, rtol=1e-9, atol=1e-9)
    truth = nonlinear_truth(X_test)
    lasso = make_model("lasso").fit(X, y, S3).predict(X_test)
    assert rmse(model.predict(X_test), truth) < 0.6 * rmse(lasso, truth)
    # artifact: JSON + numeric npz, identical predictions, refuses tampering and other features
    model.to_artifact(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz", "model.json"]
    with zipfile.ZipFile(tmp_path / "arrays.npz") as zf:
        for name in zf.namelist():  # each member is a plain .npy: numeric dtype, no pickled objects
            header = zf.read(name)[:128].decode("latin1")
            assert "'descr': '<f8'" in header or "'descr': '<i8'" in header
    loaded = load_model(tmp_path, schema=S3)
    np.testing.assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["kind"] == kind and meta["training"]["n_samples"] == 400 and "sklearn" in meta["versions"]
    with pytest.raises(SchemaMismatchError, match="units changed"):
        load_model(tmp_path, schema=FeatureSchema(S3.names, ("K", "m w.e.", "m")))
    raw = bytearray((tmp_path / "arrays.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "arrays.npz").write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="sha256"):
        load_model(tmp_path)


def test_sklearn_predict_nan_rows_weights_and_no_sklearn_to_load(data, tmp_path):
    X, y, X_test = data
    model = make_model("gbm", seed=0, n_estimators=50).fit(X, y, S3)
    Xn = X_test[:5].copy()
    Xn[1, 2] = np.nan
    out = model.predict(Xn)
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2, 3, 4]]).all()
    w = sample_weights(y, "kde")
    weighted = make_model("gbm", seed=0, n_estimators=50).fit(X, y, S3, sample_weight=w)
    assert weighted.training_["weighted"] and not np.allclose(weighted.predict(X_test), model.predict(X_test))
    model.to_artifact(tmp_path)
    np.save(tmp_path / "X.npy", X_test[:4])
    code = ("import sys, numpy as np; sys.modules['sklearn'] = None; sys.modules['torch'] = None\n"
            "from glacgrid.models import load_model\n"
            f"print(repr(load_model({str(tmp_path)!r}).predict(np.load({str(tmp_path / 'X.npy')!r})).tolist()))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(eval(res.stdout), model.predict(X_test[:4]))


def test_sklearn_option_errors():
    with pytest.raises(ModelError, match="Unknown option.*'hidden'.*'rf'"):
        make_model("rf", hidden=(3,))
    with pytest.raises(ModelError, match="preset='alpgm' applies to the ANN only"):
        make_model("svr", preset="alpgm")


# --------------------------------------------------------------------------- ANN presets
def test_presets_build_the_documented_networks():
    nn = torch.nn
    alpgm = make_model("ann", preset="alpgm", epochs=3)
    net = alpgm._build(34)
    kinds = [type(m).__name__ for m in net]
    assert kinds[:2] == ["BatchNorm1d", "GaussianNoise"]
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [40, 20, 10, 5, 1]
    assert kinds[2:6] == ["Linear", "BatchNorm1d", "LeakyReLU", "Dropout"]
    assert {m.negative_slope for m in net if isinstance(m, nn.LeakyReLU)} == {0.05}
    assert (alpgm.optimizer, alpgm.loss, alpgm.epochs) == ("rmsprop", "mse", 3)  # explicit epochs override
    point = make_model("ann", preset="point")
    pnet = point._build(34)
    assert [m.out_features for m in pnet if isinstance(m, nn.Linear)] == [25, 30, 40, 20, 10, 1]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in pnet) == 5 and not any(isinstance(m, nn.Dropout) for m in pnet)
    assert (point.optimizer, point.lr, point.loss, point.batch_size) == ("adadelta", 1.0, "l1", 32)
    assert isinstance(point._optimiser(pnet.parameters(), point.lr), torch.optim.Adadelta)
    assert set(ANN_PRESETS) == {"alpgm", "point"}
    with pytest.raises(ModelError, match="valid presets: alpgm, point"):
        make_model("ann", preset="keras")
    with pytest.raises(ModelError, match="optimizer must be one of"):
        make_model("ann", optimizer="sgd")


@pytest.mark.parametrize("preset", ["alpgm", "point"])
def test_preset_ann_beats_lasso_reproducibly_and_round_trips(preset, data, tmp_path):
    X, y, X_test = data
    fit = lambda seed: make_model("ann", preset=preset, seed=seed, epochs=60, patience=15,  # noqa: E731
                                  batch_size=64, device="cpu").fit(X, y, S3)
    a, b = fit(3), fit(3)
    np.testing.assert_array_equal(a.predict(X_test), b.predict(X_test))  # dropout and noise are seeded
    truth = nonlinear_truth(X_test)
    lasso = make_model("lasso").fit(X, y, S3).predict(X_test)
    assert rmse(a.predict(X_test), truth) < 0.6 * rmse(lasso, truth)
    a.to_artifact(tmp_path)
    # tensors only (BatchNorm adds an int64 batch counter): nothing else would be imported on load
    assert pickle_globals(tmp_path / "weights.pt") <= {
        "collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage", "torch LongStorage"}
    loaded = load_model(tmp_path, schema=S3)
    assert loaded.preset == preset and loaded.batchnorm
    np.testing.assert_array_equal(loaded.predict(X_test), a.predict(X_test))
    # eval mode: a row's prediction does not depend on the other rows (BatchNorm uses running stats)
    np.testing.assert_array_equal(loaded.predict(X_test[:7]), a.predict(X_test)[:7])


def test_ann_explicit_validation_set_and_l1_loss(data):
    X, y, _ = data
    m = ANNModel(hidden=(8,), epochs=5, loss="l1", device="cpu").fit(X[:300], y[:300], S3,
                                                                   validation=(X[300:], y[300:]))
    assert m.training_["n_train"] == 300 and m.training_["n_val"] == 100 and m.training_["n_samples"] == 300


# --------------------------------------------------------------------------- ensembles
@pytest.mark.parametrize("method", ["seeds", "bootstrap"])
def test_ensemble_mean_and_spread(method, data, tmp_path):
    X, y, X_test = data
    ens = make_model("ann", seed=4, ensemble=3, ensemble_method=method, hidden=(8,), epochs=15, device="cpu")
    assert isinstance(ens, EnsembleModel)
    ens.fit(X, y, S3)
    members = np.stack([m.predict(X_test) for m in ens.members])
    mean, spread = ens.predict_spread(X_test)
    np.testing.assert_array_equal(mean, members.mean(axis=0))
    np.testing.assert_array_equal(spread, members.std(axis=0))
    assert (spread > 0).all() and [m.seed for m in ens.members] == [4, 5, 6]
    ens.to_artifact(tmp_path)
    loaded = load_model(tmp_path, schema=S3)
    np.testing.assert_array_equal(loaded.predict(X_test), ens.predict(X_test))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member_000", "member_001", "member_002", "model.json"]


def test_bootstrap_members_see_different_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = linear_truth(X) + rng.normal(0, 0.5, 60)
    ens = EnsembleModel("ols", n_members=3, method="bootstrap").fit(X, y, S3)
    coefs = [m.coef_ for m in ens.members]
    assert not np.allclose(coefs[0], coefs[1])  # OLS is deterministic: only the resample differs
    same = EnsembleModel("ols", n_members=2, method="seeds").fit(X, y, S3)
    np.testing.assert_array_equal(same.members[0].coef_, same.members[1].coef_)
    with pytest.raises(ModelError, match="n_members >= 2"):
        EnsembleModel("ols", n_members=1)


# --------------------------------------------------------------------------- transfer learning
@pytest.fixture(scope="module")
def transfer_sets():
    """Rich set: truth f on 2000 rows; small set: the same f shifted by +1.5 on 40 rows."""
    rng = np.random.default_rng(11)
    Xr = rng.uniform(-2, 2, (2000, 3))
    Xs, Xt = rng.uniform(-2, 2, (40, 3)), rng.uniform(-2, 2, (500, 3))
    f = nonlinear_truth
    return (Xr, f(Xr)), (Xs, f(Xs) + 1.5), (Xt, f(Xt) + 1.5)


def test_fine_tune_beats_small_set_alone_and_freezes(transfer_sets):
    (Xr, yr), (Xs, ys), (Xt, yt) = transfer_sets
    opts = dict(hidden=(32, 16), epochs=150, patience=20, device="cpu", seed=0)
    pre = make_model("ann", **opts).fit(Xr, yr, S3)
    before = {k: v.clone() for k, v in pre._state.items()}
    tuned = fine_tune(pre, Xs, ys, S3, freeze=1, lr=3e-3, epochs=200)
    alone = make_model("ann", **opts).fit(Xs, ys, S3)
    e_tuned, e_alone, e_pre = rmse(tuned.predict(Xt), yt), rmse(alone.predict(Xt), yt), rmse(pre.predict(Xt), yt)
    assert e_tuned < 0.6 * e_alone and e_tuned < 0.6 * e_pre  # e_pre ~ the 1.5 shift
    for k, v in pre._state.items():  # the pretrained model is untouched
        assert torch.equal(v, before[k])
    assert torch.equal(tuned._state["0.weight"], pre._state["0.weight"])  # frozen first layer
    assert not torch.equal(tuned._state["2.weight"], pre._state["2.weight"])
    assert tuned.norm_ == pre.norm_ and tuned.training_["fine_tuned"]["freeze"] == 1
    assert tuned.training_["fine_tuned"]["n_samples"] == 40


def test_fine_tune_batchnorm_frozen_stats_and_errors(transfer_sets):
    (Xr, yr), (Xs, ys), _ = transfer_sets
    pre = make_model("ann", preset="point", epochs=3, device="cpu").fit(Xr[:300], yr[:300], S3)
    tuned = fine_tune(pre, Xs, ys, S3, freeze=2, epochs=3)
    # blocks 1-2 (Linear + BatchNorm) keep weights and running statistics; block 3 moves on
    for key in ("0.weight", "1.running_mean", "1.running_var", "3.weight", "4.running_mean"):
        assert torch.equal(tuned._state[key], pre._state[key]), key
    assert not torch.equal(tuned._state["7.running_mean"], pre._state["7.running_mean"])
    with pytest.raises(SchemaMismatchError, match="missing from the data"):
        fine_tune(pre, Xs[:, :2], ys, FeatureSchema(("x1", "x2"), ("K", "m w.e.")))
    with pytest.raises(ModelError, match="freeze must be between 0 and the 5"):
        fine_tune(pre, Xs, ys, S3, freeze=6)
    with pytest.raises(ModelError, match="fitted ANNModel"):
        fine_tune(make_model("ols"), Xs, ys, S3)
