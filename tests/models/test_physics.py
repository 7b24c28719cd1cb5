"""Physical consistency: monotone models, the check-physics sweep, torch threads, `glacgrid cv` options."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from glacgrid.cli import app
from glacgrid.exceptions import ModelError
from glacgrid.models import (
    MONOTONE_KINDS,
    FeatureSchema,
    PhysicsReport,
    check_physics,
    cross_validate,
    load_model,
    make_model,
    monotone_sign,
)
from glacgrid.models.physics import (
    ProjectionWarning,
    sine_warmed_cpdd,
    warm_features,
    warn_unconstrained_projection,
)
from glacgrid.testing import requires_data

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
SCHEMA = FeatureSchema(("cpdd", "snow_winter", "mean_elevation"), ("K day", "kg m-2", "m"))


def adversarial(n=300, seed=0):
    """SMB falls with degree days on average but wiggles (rises on part of each 1257 K d period) and rises
    with snowfall: an unconstrained flexible model follows the wiggles, a monotone one cannot."""
    rng = np.random.default_rng(seed)
    cpdd, snow, z = rng.uniform(0, 2000, n), rng.uniform(200, 2000, n), rng.uniform(2500, 3500, n)
    y = (snow - 1.5 * cpdd) / 1000 + 0.8 * np.sin(cpdd / 200) + rng.normal(0, 0.05, n)
    X = np.column_stack([cpdd, snow, z])
    return X, y, pd.DataFrame(X, columns=SCHEMA.names)


def counts(rep: PhysicsReport) -> dict[str, int]:
    return {v.feature: v.rows_violating for v in rep.violations}


def test_signs_come_from_one_table():
    assert [monotone_sign(n) for n in ("cpdd", "cpdd_ablation", "cpdd_anom", "temp_jul", "t2m_mean", "cpdd_low",
                                       "cpdd_ice")] == [-1] * 7
    assert [monotone_sign(n) for n in ("snow_winter", "snow_summer", "snow_jan", "tp_sum", "prcp")] == [1] * 5
    assert [monotone_sign(n) for n in ("mean_elevation", "slope", "ablation_months", "snowline", "x1",
                                       "snow_winter_dz")] == [0] * 6
    assert set(MONOTONE_KINDS) == {"lasso", "ols", "ridge", "rf", "gbm", "ann"}


@pytest.mark.usefixtures("one_torch_thread")
def test_monotone_ann_has_no_violation_where_the_free_one_has_many(tmp_path):
    X, y, tab = adversarial()
    free = make_model("ann", seed=0, epochs=150, device="cpu").fit(X, y, SCHEMA)
    mono = make_model("ann", seed=0, epochs=150, device="cpu", monotone=True).fit(X, y, SCHEMA)
    rf, rm = check_physics(free, tab, n_probe=20), check_physics(mono, tab, n_probe=20)
    assert counts(rf)["cpdd"] >= 15 and rf.violations[0].max_violation > 0.1
    assert counts(rm) == {"cpdd": 0, "snow_winter": 0} and rm.monotone and not rf.monotone
    assert all(s < 0 for s in rm.sensitivity)  # warming lowers SMB at every step
    # the constraint is in the artifact: the reloaded network predicts the same and is still monotone
    back = load_model(mono.to_artifact(tmp_path / "m"))
    np.testing.assert_array_equal(back.predict(X), mono.predict(X))
    assert back.monotone and counts(check_physics(back, tab, n_probe=20))["cpdd"] == 0


@pytest.mark.usefixtures("one_torch_thread")
def test_monotone_ann_is_monotone_by_construction_before_training_and_with_batchnorm():
    """An untrained network (random weights) and the ALPGM preset (BatchNorm, dropout, noise) are monotone."""
    X, y, tab = adversarial(60)
    m = make_model("ann", preset="alpgm", seed=3, epochs=2, device="cpu", monotone=True).fit(X, y, SCHEMA)
    assert counts(check_physics(m, tab, n_probe=60)) == {"cpdd": 0, "snow_winter": 0}
    m._state = {k: (torch.randn_like(v) if v.is_floating_point() and not k.endswith("signs") and "running_var" not in k
                    else v) for k, v in m._state.items()}
    m._nets = {}
    rep = check_physics(m, tab, n_probe=60)
    assert counts(rep) == {"cpdd": 0, "snow_winter": 0}
    assert m._state["0.weight"].shape == (3,) and m._state["2.signs"].tolist() == [-1.0, 1.0, 0.0]


def test_monotone_options_are_checked():
    with pytest.raises(ModelError, match="lasso, ols, ridge, rf, gbm, ann"):
        make_model("svr", monotone=True)
    assert make_model("lasso", monotone=True).monotone  # (tests/models/test_monotone_linear.py)
    with pytest.raises(ModelError, match="leaky_slope"):
        make_model("ann", monotone=True, leaky_slope=-0.1)
    X, y, _ = adversarial(40)
    with pytest.raises(ModelError, match="physical sign"):
        make_model("gbm", monotone=True).fit(X[:, 2:], y, FeatureSchema(("mean_elevation",), ("m",)))
    assert make_model("lasso", monotone=False).kind == "lasso"  # nothing to constrain, nothing refused


@pytest.mark.parametrize("kind", ["gbm", "rf"])
def test_monotonic_cst_trees_have_no_violation(kind, tmp_path):
    X, y, tab = adversarial()
    opts = {"n_estimators": 60} if kind == "rf" else {}
    free = make_model(kind, seed=0, **opts).fit(X, y, SCHEMA)
    mono = make_model(kind, seed=0, monotone=True, **opts).fit(X, y, SCHEMA)
    assert counts(check_physics(free, tab, n_probe=20))["cpdd"] == 20
    assert counts(check_physics(mono, tab, n_probe=200)) == {"cpdd": 0, "snow_winter": 0}
    # still a fit: the monotone model explains most of the variance of the (wiggly) truth
    assert np.corrcoef(mono.predict(X), y)[0, 1] > 0.9
    back = load_model(mono.to_artifact(tmp_path / kind))
    assert back.monotone and back.training_["monotone_signs"] == [-1, 1, 0]
    np.testing.assert_array_equal(back.predict(X), mono.predict(X))


def test_check_physics_known_answers_of_a_linear_model():
    """OLS on y = -0.004 cpdd + 0.001 snow: violations 0; on y = +0.004 cpdd: every row; the sensitivity is
    the coefficient times the change of degree days under the sinusoidal annual cycle."""
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.uniform(100, 600, 50), rng.uniform(300, 900, 50), rng.uniform(2800, 3300, 50)])
    tab = pd.DataFrame(X, columns=SCHEMA.names)
    good = make_model("ols").fit(X, -0.004 * X[:, 0] + 0.001 * X[:, 1], SCHEMA)
    rep = check_physics(good, tab, n_probe=10, seed=2)
    assert rep.total_violations == 0 and rep.n_probe == 10 and rep.probe_source == "table"
    probe = tab.iloc[np.sort(np.random.default_rng(2).choice(50, 10, replace=False))]
    c = probe["cpdd"].to_numpy()
    want = [-0.004 * np.mean(sine_warmed_cpdd(c, k) - sine_warmed_cpdd(c, k - 1)) for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(rep.sensitivity, want, rtol=1e-9)
    assert rep.sensitivity_2_4 == pytest.approx(np.mean(want[2:]))
    bad = make_model("ols").fit(X, 0.004 * X[:, 0], SCHEMA)
    assert counts(check_physics(bad, tab, n_probe=10)) == {"cpdd": 10, "snow_winter": 0}
    mean = check_physics(good)  # no table: the stored training means are the probe row
    assert mean.n_probe == 1 and mean.probe_source == "training means"


def test_warming_recomputes_degree_days_from_monthly_temperatures():
    months = ["oct", "nov", "dec", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep"]
    temps = np.array([[-1, -6, -9, -10, -9, -5, -1, 3, 6, 9, 8, 4]], float)
    days = np.array([31, 30, 31, 31, 28, 31, 30, 31, 30, 31, 31, 30], float)
    names = ["cpdd", "snow_winter", *[f"temp_{m}" for m in months]]
    X = np.column_stack([np.maximum(temps, 0) @ days, [500.0], temps])
    warm, how = warm_features(X, names, 2.0)
    assert how == "recomputed" and warm[0, 1] == 500.0
    np.testing.assert_array_equal(warm[0, 2:], temps[0] + 2)
    assert warm[0, 0] == pytest.approx(np.maximum(temps + 2, 0) @ days)  # + 1 K months: oct, apr become positive
    # the sinusoid: no warming leaves the degree days; they grow faster than linearly
    c = np.array([50.0, 300.0, 1200.0])
    np.testing.assert_allclose(sine_warmed_cpdd(c, 0.0), c, rtol=1e-9)
    steps = np.diff([sine_warmed_cpdd(c, k) for k in range(5)], axis=0)
    assert (steps > 0).all() and (steps[-1] >= steps[0] - 1e-9).all()


def test_threads_default_to_one_are_restored_and_do_not_change_results():
    X, y, _ = adversarial(120)
    before = torch.get_num_threads()
    preds = {}
    for th in (1, 2):
        m = make_model("ann", seed=0, epochs=20, device="cpu", threads=th).fit(X, y, SCHEMA)
        preds[th] = m.predict(X)
        assert torch.get_num_threads() == before and m.threads == th
    np.testing.assert_array_equal(preds[1], preds[2])
    assert make_model("ann").threads == 1 and make_model("ann").hyperparameters()["threads"] == 1
    with pytest.raises(ModelError, match="threads"):
        make_model("ann", threads=0)


def test_projection_warning_only_for_unconstrained_models_past_training():
    X, y, _ = adversarial(60)
    free = make_model("gbm", n_estimators=10).fit(X, y, SCHEMA)
    mono = make_model("gbm", n_estimators=10, monotone=True).fit(X, y, SCHEMA)
    with pytest.warns(ProjectionWarning, match="2019-2100"):
        assert warn_unconstrained_projection(free, last_training_year=2018, last_year=2100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_unconstrained_projection(mono, last_training_year=2018, last_year=2100)
        assert not warn_unconstrained_projection(free, last_training_year=2018, last_year=2018)


def test_cli_check_physics_prints_the_api_numbers(tmp_path):
    X, y, tab = adversarial(80)
    make_model("gbm", seed=0, n_estimators=40).fit(X, y, SCHEMA).to_artifact(tmp_path / "m")
    tab.to_csv(tmp_path / "t.csv", index=False)
    res = runner.invoke(app, ["check-physics", str(tmp_path / "m"), "--table", str(tmp_path / "t.csv"),
                              "--n-probe", "20", "--json", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    api = check_physics(load_model(tmp_path / "m"), tab, n_probe=20)
    got = json.loads((tmp_path / "p.json").read_text())
    assert got["violations"][0]["rows_violating"] == counts(api)["cpdd"] > 0
    np.testing.assert_allclose(got["sensitivity_per_k"], api.sensitivity)
    assert f"{counts(api)['cpdd']}/20" in res.output and f"{api.sensitivity[0]:+.3f}" in res.output
    assert "not constrained" in res.output
    res = runner.invoke(app, ["check-physics", str(tmp_path / "m")])
    assert res.exit_code == 0 and "training means" in res.output


def cv_cli(tmp_path, t, *args):
    t.to_csv(tmp_path / "t.csv", index=False)
    res = runner.invoke(app, ["cv", str(tmp_path / "t.csv"), "--target", "smb", "--glacier-col", "glacier",
                              "--year-col", "year", "--features", "cpdd,snow_winter", *args,
                              "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    return json.loads((tmp_path / "r.json").read_text())


def cv_table():
    X, y, _ = adversarial(60, seed=4)
    return pd.DataFrame({"glacier": np.repeat([f"G{i}" for i in range(6)], 10),
                         "year": np.tile(np.arange(2001, 2011), 6), "cpdd": X[:, 0], "snow_winter": X[:, 1], "smb": y})


def test_cli_cv_options_reach_cross_validate(tmp_path):
    t = cv_table()
    kw = dict(target="smb", features=["cpdd", "snow_winter"], glacier_col="glacier", year_col="year")
    got = cv_cli(tmp_path, t, "--model", "ridge", "--scheme", "kfold", "--n-splits", "3", "--weighting", "kde")
    api = cross_validate(t, kind="ridge", scheme="kfold", n_splits=3, weighting="kde", **kw)
    assert got["weighting"] == "kde" and len(got["per_fold"]) == 3
    assert got["metrics"]["rmse"] == pytest.approx(api.metrics["rmse"], rel=1e-12)
    got = cv_cli(tmp_path, t, "--model", "svr", "--scheme", "kfold", "--n-splits", "3", "--search", "C=0.1,10")
    api = cross_validate(t, kind="svr", scheme="kfold", n_splits=3, search={"C": [0.1, 10]}, **kw)
    assert [f["params"] for f in got["per_fold"]] == api.per_fold["params"].tolist()
    assert got["options"]["search"] == {"C": [0.1, 10]}
    assert got["metrics"]["rmse"] == pytest.approx(api.metrics["rmse"], rel=1e-12)
    got = cv_cli(tmp_path, t, "--model", "ridge", "--scheme", "logo", "--ensemble", "3", "--ensemble-method",
                 "bootstrap")
    api = cross_validate(t, kind="ridge", scheme="logo", ensemble=3, ensemble_method="bootstrap", **kw)
    assert got["options"] == {"ensemble": 3, "ensemble_method": "bootstrap"}
    assert got["metrics"]["rmse"] == pytest.approx(api.metrics["rmse"], rel=1e-12)
    assert api.metrics["rmse"] != cross_validate(t, kind="ridge", scheme="logo", **kw).metrics["rmse"]
    got = cv_cli(tmp_path, t, "--model", "gbm", "--scheme", "kfold", "--n-splits", "2", "--monotone")
    api = cross_validate(t, kind="gbm", scheme="kfold", n_splits=2, monotone=True, **kw)
    assert got["options"] == {"monotone": True}
    assert got["metrics"]["rmse"] == pytest.approx(api.metrics["rmse"], rel=1e-12)
    free = cross_validate(t, kind="gbm", scheme="kfold", n_splits=2, **kw)
    assert free.metrics["rmse"] != api.metrics["rmse"]  # the constraint changed the fits


@pytest.mark.parametrize("args, message", [
    (["--model", "svr", "--scheme", "logo", "--monotone"], "rf, gbm, ann"),
    (["--model", "ridge", "--scheme", "nope"], "kfold"),
    (["--model", "ridge", "--scheme", "logo", "--weighting", "w"], "frequency"),
    (["--model", "ridge", "--scheme", "logo", "--ensemble-method", "x"], "bootstrap"),
    (["--model", "ridge", "--scheme", "logo", "--search", "alpha"], "--search"),
])
def test_cli_cv_refuses_bad_options(tmp_path, args, message):
    cv_table().to_csv(tmp_path / "t.csv", index=False)
    res = runner.invoke(app, ["cv", str(tmp_path / "t.csv"), "--target", "smb", "--glacier-col", "glacier",
                              "--year-col", "year", "--features", "cpdd,snow_winter", *args, "--out",
                              str(tmp_path / "r.json")])
    assert res.exit_code == 2 and message in res.output


@pytest.mark.slow
@requires_data("hef", "climate", "sel_era5_land_monthly_t2m_1981-2018.nc")
@requires_data("hef", "mb", "mbdata_WGMS-00491.csv")
def test_oetztal_monotone_models_have_no_violation_where_trees_have_many(tmp_path):
    """examples/hef.toml's glacier-wide table (HEF, KWF, VF; 1982-2018): the unconstrained forest violates
    monotonicity on every probed row, the monotone gbm and ANN on none, and the monotone ANN keeps losing
    mass at least as fast between +2 and +4 K as between 0 and +2 K."""
    from glacgrid.config import load_config
    from glacgrid.metadata import registry
    from glacgrid.pipeline import prepare, read_observed, training_table

    cfg = load_config(REPO / "examples" / "hef.toml")
    prep = prepare(cfg, tmp_path)
    t, _ = training_table(cfg, prep, read_observed(cfg, prep.table))
    feats = ["cpdd", "snow_winter", "snow_summer"]
    schema = FeatureSchema(tuple(feats), tuple(registry()[n]["units"] for n in feats))
    X, y = t[feats].to_numpy(float), t["smb"].to_numpy(float)
    assert len(t) == 111
    rf = check_physics(make_model("rf", n_estimators=50).fit(X, y, schema), t, n_probe=20)
    assert counts(rf)["cpdd"] >= 18
    for kind, opts in (("gbm", {}), ("ann", {"device": "cpu", "threads": 1})):
        rep = check_physics(make_model(kind, monotone=True, **opts).fit(X, y, schema), t, n_probe=111)
        assert rep.total_violations == 0, (kind, counts(rep))
        assert rep.sensitivity_0_2 < -0.2
    assert rep.sensitivity_2_4 <= rep.sensitivity_0_2  # the ANN: no flattening under warming
