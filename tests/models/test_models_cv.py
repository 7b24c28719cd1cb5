"""Cross-validation schemes (LSYGO, grouped k-fold, random 70/15/15), weights, nested search and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from glacgrid.cli import app
from glacgrid.exceptions import ModelError
from glacgrid.models import cross_validate, load_model
from glacgrid.models.folds import make_folds
from glacgrid.testing._models import glacier_year_table

from glacgrid.testing import DATA, requires_data

runner = CliRunner()
FEATS = ["x1", "x2", "x3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_lsygo_folds_hold_out_glaciers_and_years_from_training():
    t = glacier_year_table(5, 7)
    folds = make_folds("lsygo", t.glacier.to_numpy(), t.year.to_numpy(), k=2, seed=3)
    assert len(folds) == 3 * 4  # ceil(5/2) glacier groups x ceil(7/2) year groups
    covered = np.zeros(len(t), int)
    for f in folds:
        covered += f.test
        g_test, y_test = set(t.glacier[f.test]), set(t.year[f.test])
        assert len(g_test) <= 2 and len(y_test) <= 2
        # training drops every sample of the test glaciers and of the test years, nothing else
        expected = ~t.glacier.isin(g_test) & ~t.year.isin(y_test)
        np.testing.assert_array_equal(f.train, expected.to_numpy())
    np.testing.assert_array_equal(covered, 1)  # each row predicted exactly once


def test_lsygo_known_answer_offsets():
    """G2 is +3 in every year and 2004 is -2 for every glacier. Only LSYGO's fold holding out G2 *and*
    2004 trains on neither offset, so OLS there predicts the exact truth: its error is -(3 - 2) = -1.
    LOGO's G2 fold still trains on 2004 and is pulled off the truth."""
    t = glacier_year_table(4, 6, glacier_offsets={"G2": 3.0}, year_offsets={2004: -2.0}, seed=1)
    res = cross_validate(t, target="smb", features=FEATS, kind="ols", scheme="lsygo", k=1)
    assert len(res.per_fold) == 24 and (res.per_fold.n == 1).all() and len(res.predictions) == 24
    p = res.predictions
    err = (p.predicted - p.observed).to_numpy()
    cell = ((p.glacier == "G2") & (p.year == 2004)).to_numpy()
    assert err[cell].item() == pytest.approx(-1.0, abs=1e-9)
    assert (np.abs(err[~cell]) > 1e-3).all()  # every other fold trained on one of the offsets
    assert res.metrics["bias"] == pytest.approx(err.mean())
    logo = cross_validate(t, target="smb", features=FEATS, kind="ols", scheme="logo").predictions
    e_logo = (logo.predicted - logo.observed)[(logo.glacier == "G2") & (logo.year == 2004)].item()
    assert abs(e_logo + 1.0) > 0.05


def test_kfold_and_random_schemes():
    t = glacier_year_table(6, 10, noise=0.01)
    kf = cross_validate(t, target="smb", features=FEATS, kind="lasso", scheme="kfold", n_splits=3, seed=2)
    assert len(kf.per_fold) == 3 and kf.per_fold.n.sum() == 60 and (kf.per_fold.n == 20).all()
    for fold in kf.per_fold.fold:  # a glacier is never split between folds
        assert kf.predictions[kf.predictions.fold == fold].glacier.nunique() == 2
    assert kf.metrics["rmse"] < 0.05  # linear truth: Lasso recovers it out of sample
    folds = make_folds("random", t.glacier.to_numpy(), t.year.to_numpy(), seed=5)
    (f,) = folds
    assert (f.train.sum(), f.validation.sum(), f.test.sum()) == (42, 9, 9)
    assert not (f.train & f.test).any() and not (f.train & f.validation).any() and not (f.validation & f.test).any()
    rnd = cross_validate(t, target="smb", features=FEATS, kind="ann", scheme="random", seed=5, hidden=(8,),
                         epochs=20, device="cpu")
    assert len(rnd.predictions) == 9 and rnd.predictions.index.equals(t.index[f.test])
    assert rnd.per_fold.n.tolist() == [9] and rnd.per_fold.fold.tolist() == ["random"]


def test_cv_sample_weights_are_recorded_and_change_the_fit(tmp_path):
    t = glacier_year_table(5, 8, truth="nonlinear", noise=0.1, seed=4)
    plain = cross_validate(t, target="smb", features=FEATS, kind="ols", scheme="loyo")
    kde = cross_validate(t, target="smb", features=FEATS, kind="ols", scheme="loyo", weighting="kde")
    assert kde.weighting == "kde" and plain.weighting is None
    assert not np.allclose(kde.predictions.predicted, plain.predictions.predicted)
    kde.to_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["weighting"] == "kde"
    with pytest.raises(ModelError, match="valid: kde, frequency"):
        cross_validate(t, target="smb", features=FEATS, weighting="density")


def test_nested_search_picks_the_better_setting_in_every_fold():
    t = glacier_year_table(5, 8, truth="nonlinear", noise=0.05, seed=6)
    res = cross_validate(t, target="smb", features=FEATS, kind="gbm", scheme="logo",
                         search={"n_estimators": [1, 150]}, max_depth=2)
    assert list(res.per_fold.columns)[-1] == "params"
    assert all(p == {"n_estimators": 150} for p in res.per_fold.params)
    assert res.options["search"] == {"n_estimators": [1, 150]}
    rnd = cross_validate(t, target="smb", features=FEATS, kind="gbm", scheme="random",
                         search={"n_estimators": [1, 150]})
    assert rnd.per_fold.params.tolist() == [{"n_estimators": 150}]
    with pytest.raises(ModelError, match="Unknown option"):
        cross_validate(t, target="smb", features=FEATS, kind="gbm", search={"n_trees": [1]})
    with pytest.raises(ModelError, match="non-empty lists"):
        cross_validate(t, target="smb", features=FEATS, kind="gbm", search={"n_estimators": []})


@pytest.mark.parametrize(
    "n_glaciers, n_years, kwargs, pattern",
    [
        (2, 5, {"scheme": "lsygo", "k": 2}, "'lsygo' needs at least 3 distinct glaciers; found 2"),
        (5, 2, {"scheme": "lsygo", "k": 2}, "'lsygo' needs at least 3 distinct years; found 2"),
        (3, 5, {"scheme": "kfold", "n_splits": 4}, "'kfold' needs at least 4 distinct glaciers; found 3"),
        (2, 5, {"scheme": "random"}, "'random' needs at least 20 rows"),
    ],
)
def test_too_few_groups_for_scheme(n_glaciers, n_years, kwargs, pattern):
    t = glacier_year_table(n_glaciers, n_years)
    with pytest.raises(ModelError, match=pattern):
        cross_validate(t, target="smb", features=FEATS, kind="ols", **kwargs)


# --------------------------------------------------------------------------- CLI
def _cli_table(tmp_path, fmt="csv", **kw):
    t = glacier_year_table(5, 6, **kw).rename(columns={"glacier": "rgi", "year": "yr"})
    path = tmp_path / f"t.{fmt}"
    t.to_csv(path, index=False) if fmt == "csv" else t.to_parquet(path)
    return t, path


def _cv_args(path, out, model="ols", scheme="logo", features="x1,x2,x3", extra=()):
    return ["cv", str(path), "--target", "smb", "--glacier-col", "rgi", "--year-col", "yr", "--features", features,
            "--model", model, "--scheme", scheme, *extra, "--out", str(out)]


@pytest.mark.parametrize("model, scheme, fmt", [("lasso", "lsygo", "parquet"), ("svr", "loyo", "csv"),
                                                ("ann", "random", "csv")])
def test_cli_cv_prints_table_and_writes_result(model, scheme, fmt, tmp_path):
    t, path = _cli_table(tmp_path, fmt, glacier_offsets={"G3": 1.0})
    extra = ("--ann-preset", "point", "--seed", "2") if model == "ann" else ("--seed", "2")
    res = runner.invoke(app, _cv_args(path, tmp_path / "r.json", model, scheme, extra=extra))
    assert res.exit_code == 0, res.output
    assert "rmse" in res.output and "overall: r=" in res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["kind"] == model and doc["scheme"] == scheme and doc["seed"] == 2
    assert set(doc["metrics"]) == {"r", "r2", "rmse", "mae", "bias"}
    assert {"glacier", "year", "observed", "predicted"} <= set(doc["predictions"][0])
    n = len(doc["predictions"])
    assert n == (len(t) if scheme != "random" else 5)
    obs = {(r["glacier"], r["year"]): r["observed"] for r in doc["predictions"]}
    for (g, y), v in obs.items():
        assert v == pytest.approx(t.loc[(t.rgi == g) & (t.yr == y), "smb"].item())
    if model == "ann":
        assert doc["options"]["preset"] == "point"


@pytest.mark.parametrize(
    "change, extra_args, pattern",
    [
        (None, {"features": "x1,x9"}, "\\['x9'\\] not found"),
        ("nan", {}, "Column 'x2' holds 1 NaN"),
        ("constant", {}, "constant"),
        ("one_glacier", {}, "needs at least 2 distinct glaciers"),
        (None, {"model": "tree"}, "'--model': 'tree' is not one of lasso, ols, ridge, svr, rf, gbm, ann"),
        (None, {"scheme": "bootstrap"}, "'--scheme': 'bootstrap' is not one of logo, loyo"),
        (None, {"model": "lasso", "extra": ("--ann-preset", "alpgm")}, "applies to the ANN only"),
        (None, {"model": "ann", "extra": ("--ann-preset", "keras")}, "'keras' is not one of alpgm, point"),
    ],
)
def test_cli_cv_clear_errors(change, extra_args, pattern, tmp_path):
    t, path = _cli_table(tmp_path)
    if change == "nan":
        t.loc[2, "x2"] = np.nan
    elif change == "constant":
        t["smb"] = 0.5
    elif change == "one_glacier":
        t["rgi"] = "G1"
    t.to_csv(path, index=False)
    res = runner.invoke(app, _cv_args(path, tmp_path / "r.json", **extra_args))
    assert res.exit_code == 2 and not (tmp_path / "r.json").exists()
    assert pd.Series([res.output]).str.contains(pattern).item(), res.output


def test_cli_cv_requires_model_and_scheme(tmp_path):
    _, path = _cli_table(tmp_path)
    args = [a for a in _cv_args(path, tmp_path / "r.json") if a not in ("--scheme", "logo")]
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and "scheme" in res.output


def test_cli_train_rf_with_weights_and_load(tmp_path):
    t, path = _cli_table(tmp_path, truth="nonlinear")
    res = runner.invoke(app, ["train", str(path), "--target", "smb", "--features", "x1,x2,x3", "--model", "rf",
                              "--weights", "kde", "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    m = load_model(tmp_path / "m")
    assert m.kind == "rf" and m.training_["weighted"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["arrays.npz", "model.json"]
    res = runner.invoke(app, ["train", str(path), "--target", "smb", "--features", "x1,x2,x3", "--model", "rf",
                              "--weights", "idw", "--out", str(tmp_path / "m2")])
    assert res.exit_code == 2 and "'--weights': 'idw' is not one of none, kde, frequency" in res.output


# --------------------------------------------------------------------------- real data

ICELAND = DATA / "iceland" / "era5_features" / "iceland_monthly_dataset.csv"


@pytest.mark.slow
@requires_data("iceland", "era5_features", "iceland_monthly_dataset.csv")
def test_real_iceland_era5_point_balance_loyo(tmp_path):
    """Real ERA5 monthly features at Icelandic stakes, aggregated per stake-period (as in
    benchmarks/model_metrics.py): LOYO OLS explains ~88 % of the variance (r2 0.882, RMSE 0.68 m w.e.)."""
    d = pd.read_csv(ICELAND)
    d["t2m_c"] = d["t2m"] - 273.15
    t = d.groupby("ID").agg(year=("YEAR", "first"), glacier=("RGIId", "first"), smb=("POINT_BALANCE", "first"),
                            elevation=("POINT_ELEVATION", "first"), n_months=("N_MONTHS", "first"),
                            t2m_mean=("t2m_c", "mean"), t2m_max=("t2m_c", "max"), tp_sum=("tp", "sum"),
                            slhf_sum=("slhf", "sum"), sshf_sum=("sshf", "sum"), ssrd_sum=("ssrd", "sum"),
                            str_sum=("str", "sum")).reset_index()
    feats = ["elevation", "n_months", "t2m_mean", "t2m_max", "tp_sum", "slhf_sum", "sshf_sum", "ssrd_sum", "str_sum"]
    assert len(t) == 55 and t.glacier.nunique() == 2 and t.year.nunique() == 13
    res = cross_validate(t, target="smb", features=feats, glacier_col="glacier", year_col="year", kind="ols",
                         scheme="loyo")
    assert res.metrics["r2"] == pytest.approx(0.882, abs=0.005)
    assert res.metrics["rmse"] == pytest.approx(0.677, abs=0.005)
    path = tmp_path / "iceland.csv"
    t.to_csv(path, index=False)
    out = runner.invoke(app, ["cv", str(path), "--target", "smb", "--glacier-col", "glacier", "--year-col", "year",
                              "--features", ",".join(feats), "--model", "ols", "--scheme", "loyo",
                              "--out", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["r2"] == pytest.approx(res.metrics["r2"])


def test_cv_of_an_ensemble_equals_its_member_when_members_agree():
    """OLS members differ only by seed, which OLS ignores: the ensemble's out-of-fold predictions are OLS's."""
    t = glacier_year_table(4, 5, truth="nonlinear", seed=8)
    ens = cross_validate(t, target="smb", features=FEATS, kind="ols", scheme="random", ensemble=3)
    one = cross_validate(t, target="smb", features=FEATS, kind="ols", scheme="random")
    np.testing.assert_allclose(ens.predictions.predicted, one.predictions.predicted, rtol=1e-12)
    assert ens.options["ensemble"] == 3
