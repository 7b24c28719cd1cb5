"""Seasonal (winter / summer) balances and stakes as footprints of the annual pixel model.

The predictors of a season are sums over the season's months (the year-static ones carry the season's share
of the year), so the winter and summer predictors add up to the annual ones, and a linear model's winter and
summer values add up to its annual value. Known answer: on the synthetic region, whose pixel SMB is a
temperature-index model of exactly these predictors, a fit on the seasonal balances alone recovers the
annual model. And stakes: a stake is the footprint of its glacier's nearest pixel; with glacier-wide
balances and a few stakes per glacier the joint fit recovers a surface-type term that glacier-wide balances
cannot see.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glacgrid.exceptions import InputDataError, ModelError
from glacgrid.features import ClimateFeatureParams, HydroYear, annual_climate, season_features, snow_bucket
from glacgrid.models import make_model
from glacgrid.models.footprint import Footprints, fit_footprints, footprint_predictions, footprint_weights


def test_the_seasons_predictors_add_up_to_the_years():
    rng = np.random.default_rng(1)
    cycle = 10.0 * np.cos(2 * np.pi * (np.arange(12) - 9.5) / 12) - 3.0  # hydrological months, warmest Jul/Aug
    temp = cycle + rng.normal(0.0, 3.0, (50, 12))
    prcp = rng.gamma(2.0, 50.0, (50, 12))
    days = np.array([31, 30, 31, 31, 28, 31, 30, 31, 30, 31, 31, 30], "float64")
    params = ClimateFeatureParams(HydroYear("north"))
    winter, summer = params.masks()
    w = ClimateFeatureParams(HydroYear("north"), period="winter")
    s = ClimateFeatureParams(HydroYear("north"), period="summer")
    assert w.fraction == pytest.approx(7 / 12) and s.fraction == pytest.approx(5 / 12)
    assert (w.within() == winter).all() and (s.within() == summer).all() and params.within() is None
    year = annual_climate(temp, prcp, days, winter, summer, 0.0, 2.0)
    parts = [annual_climate(temp, prcp, days, winter, summer, 0.0, 2.0, within=p.within()) for p in (w, s)]
    np.testing.assert_allclose(parts[0] + parts[1], year, rtol=1e-5, atol=1e-3)
    assert (parts[0][:, 4] == 0).all() and (parts[1][:, 3] == 0).all()  # no summer snow in winter, and back
    assert (parts[1][:, 0] > parts[0][:, 0]).mean() > 0.9  # most degree-days in summer
    bucket = snow_bucket(temp, prcp, days, 0.0, 2.0, 3.0)
    b_parts = [snow_bucket(temp, prcp, days, 0.0, 2.0, 3.0, within=p.within()) for p in (w, s)]
    np.testing.assert_allclose(b_parts[0] + b_parts[1], bucket, rtol=1e-5, atol=1e-3)
    with pytest.raises(InputDataError, match="monthly"):
        ClimateFeatureParams(period="winter", monthly=True)
    with pytest.raises(InputDataError, match="period must be one of"):
        ClimateFeatureParams(period="spring")


def test_season_features_scale_the_year_static_ones_and_refuse_the_others():
    import xarray as xr

    ds = xr.Dataset({"cpdd": ("x", np.array([10.0, 20.0], "float32")),
                     "elevation_norm": ("x", np.array([0.5, 1.0], "float32"))})
    out = season_features(ds, 0.25)
    np.testing.assert_array_equal(out["cpdd"], [10.0, 20.0])
    np.testing.assert_allclose(out["elevation_norm"], [0.125, 0.25])
    with pytest.raises(InputDataError, match="no seasonal part"):
        season_features(ds.assign(temp_jan=ds["cpdd"]), 0.5)


def test_seasonal_footprints_are_fitted_exactly_by_a_linear_model():
    """Annual rows x, winter rows xw (x = xw + xs): observations b + c.x and 7/12 b + c.xw, 5/12 b + c.xs."""
    rng = np.random.default_rng(0)
    n = 40
    xw, xs = rng.normal(1.0, 1.0, (n, 2)), rng.normal(3.0, 1.0, (n, 2))
    X = np.vstack([xw + xs, xw, xs])
    b, c = 0.7, np.array([0.5, -1.2])
    one = np.arange(n)

    def fp(period, offset, fraction, values):
        return Footprints(values, np.arange(n + 1, dtype="int64"), one + offset, np.ones(n), np.full(n, "glacier"),
                          np.array([f"g{i}" for i in range(n)]), np.arange(n), np.full(n, np.nan),
                          np.full(n, period), np.full(n, fraction))

    seasons = Footprints.concat([fp("winter", n, 7 / 12, 7 / 12 * b + xw @ c),
                                 fp("summer", 2 * n, 5 / 12, 5 / 12 * b + xs @ c)])
    from glacgrid.features import FeatureSchema

    schema = FeatureSchema(("cpdd", "snow_winter"), ("K d", "kg m-2"))
    model = fit_footprints(make_model("ols"), X, seasons, schema,
                           kind_weights={"glacier_winter": 1.0, "glacier_summer": 1.0})
    assert model.intercept_ == pytest.approx(b, abs=1e-9)
    np.testing.assert_allclose(model.coef_, c, atol=1e-9)
    np.testing.assert_allclose(model.predict(X[:n]), b + (xw + xs) @ c, atol=1e-9)  # the annual balances
    assert set(model.training_["footprints"]) == {"glacier_winter", "glacier_summer"}
    assert model.training_["season_offset"] == pytest.approx(0.0, abs=1e-9)
    # a winter that holds more of the intercept than its 7 of 12 months: the offset d is fitted, the annual
    # model is unchanged, and the seasons' values (footprint_predictions) still add up to the annual one
    d = 0.4
    shifted = Footprints.concat([fp("winter", n, 7 / 12, 7 / 12 * b + d + xw @ c),
                                 fp("summer", 2 * n, 5 / 12, 5 / 12 * b - d + xs @ c)])
    m2 = fit_footprints(make_model("ols"), X, shifted, schema, kind_weights={"glacier_winter": 1.0, "glacier_summer": 1.0})
    assert m2.training_["season_offset"] == pytest.approx(d, abs=1e-9) and m2.intercept_ == pytest.approx(b, abs=1e-9)
    np.testing.assert_allclose(m2.coef_, c, atol=1e-9)
    assert len(m2.schema.names) == 2 and len(m2.training_["feature_means"]) == 2  # the artifact: the annual model
    np.testing.assert_allclose(footprint_predictions(m2, X, shifted), shifted.value, atol=1e-9)
    w = footprint_weights(seasons, {"glacier_winter": 3.0, "glacier_summer": 1.0})
    assert w[seasons.period == "winter"].sum() == pytest.approx(3 * w[seasons.period == "summer"].sum())
    with pytest.raises(ModelError, match="No weight for footprint group"):
        footprint_weights(seasons, {"glacier": 1.0})
    with pytest.raises(InputDataError, match="fraction must be in"):
        fp("winter", n, 1.0, np.zeros(n)).select(np.ones(n, bool)).__class__(
            np.zeros(1), np.array([0, 1]), np.array([0]), np.ones(1), np.array(["glacier"]), np.array(["a"]),
            np.array([2000]), period=np.array(["annual"]), fraction=np.array([0.5]))


def test_a_fit_on_seasonal_balances_alone_recovers_the_annual_model(region_pixels):
    """The region's truth is the temperature-index model (snow - 4 cpdd) / 1000 of these very predictors:
    its winter and summer parts are that model over the season's predictors. Fitted on the glacier-wide
    winter and summer balances only, the model predicts the annual balances it never saw."""
    from glacgrid.pipeline.training import pixel_footprints

    cfg, train, px, _, _, _ = region_pixels
    assert set(px.seasonal) == {"winter", "summer"}
    f, (fw, frac_w), (fs, frac_s) = px.features, px.seasonal["winter"], px.seasonal["summer"]
    assert frac_w == pytest.approx(7 / 12) and frac_s == pytest.approx(5 / 12)
    for name in ("cpdd", "snow_winter", "snow_summer"):  # the seasons add up to the year
        np.testing.assert_allclose((fw[name] + fs[name]).values, f[name].values, rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose((fw["elevation_norm"] + fs["elevation_norm"]).values, f["elevation_norm"].values,
                               atol=1e-6)

    obs = _seasonal_truth(px)
    assert (obs["winter"] > 0).mean() > 0.9 and (obs["summer"] < 0).mean() > 0.9  # seasons as on a glacier
    np.testing.assert_allclose(obs["winter"] + obs["summer"], obs["smb"], atol=1e-5)
    names = tuple(cfg.model.features)
    X, fp = pixel_footprints(px.features, px.unit, px.surface, px.pixel_area, px.units, obs, names=names,
                             seasonal=px.seasonal)
    assert fp.counts() == {"glacier": len(obs), "glacier_winter": len(obs), "glacier_summer": len(obs)}
    seasons_only = fp.select(fp.period != "annual")
    model = fit_footprints(make_model("ols"), X, seasons_only, _schema(names),
                           kind_weights={"glacier_winter": 1.0, "glacier_summer": 1.0})
    np.testing.assert_allclose(model.coef_[:3], [-4e-3, 1e-3, 1e-3], rtol=1e-4)  # cpdd, snow_winter, snow_summer
    assert abs(model.intercept_) < 1e-4 and abs(model.coef_[3]) < 1e-4
    annual = fp.select(fp.period == "annual")
    np.testing.assert_allclose(model.predict(annual.aggregate(X)), annual.value, atol=1e-4)


def _seasonal_truth(px) -> pd.DataFrame:
    """The glacier-wide annual, winter and summer balances of the temperature-index truth
    (snow - 4 cpdd) / 1000 over each period's features of ``px`` (obs_id, year, smb, winter, summer)."""
    from glacgrid.inference import glacier_mean

    def ti(ds):
        return (ds["snow_winter"] + ds["snow_summer"] - 4.0 * ds["cpdd"]) / 1000.0

    def means(ds):
        gm = glacier_mean(ti(ds), px.unit, px.unit > 0, px.pixel_area, px.index).to_pandas().stack()
        df = gm.rename("v").reset_index()
        df["obs_id"] = np.asarray(px.units)[df["glacier"].to_numpy() - 1]
        return df.set_index(["obs_id", "year"])["v"]

    return pd.DataFrame({"smb": means(px.features), "winter": means(px.seasonal["winter"][0]),
                         "summer": means(px.seasonal["summer"][0])}).reset_index()


def _schema(names):
    from glacgrid.features import FeatureSchema
    from glacgrid.metadata import registry

    reg = registry()
    return FeatureSchema(names, tuple(reg[n]["units"] for n in names))


@pytest.mark.usefixtures("one_torch_thread")
def test_the_ann_learns_the_seasons_as_a_period_model(region_pixels):
    """The ANN's value over a season is the network on the season's rows: fitted on the annual and seasonal
    glacier-wide balances of the temperature-index truth, it gets the held-out seasons right; fitted on the
    annual ones only, it cannot (its winter, from the winter's smaller sums, is far off)."""
    from glacgrid.pipeline.training import pixel_footprints

    cfg, train, px, _, _, _ = region_pixels
    obs = _seasonal_truth(px)
    names = tuple(cfg.model.features)
    X, fp = pixel_footprints(px.features, px.unit, px.surface, px.pixel_area, px.units, obs, names=names,
                             seasonal=px.seasonal)
    held = np.isin(fp.year, [2003, 2005])  # two years out of the fit
    weights = {"glacier": 1.0, "glacier_winter": 1.0, "glacier_summer": 1.0}

    def ann():
        return make_model("ann", hidden=(16, 8), epochs=400, patience=400, lr=0.01, seed=0, threads=1)

    both = fit_footprints(ann(), X, fp.select(~held), _schema(names), kind_weights=weights)
    annual_only = fit_footprints(ann(), X, fp.select(~held & (fp.period == "annual")), _schema(names),
                                 kind_weights=weights)

    def rmse(model, period):
        sel = fp.select(held & (fp.period == period))
        return float(np.sqrt(np.mean((footprint_predictions(model, X, sel) - sel.value) ** 2)))

    spread = float(obs["winter"].std())
    assert rmse(both, "winter") < 0.35 * spread and rmse(both, "summer") < 0.35 * float(obs["summer"].std())
    assert rmse(annual_only, "winter") > 2 * rmse(both, "winter")
    assert rmse(both, "annual") < 0.35 * float(obs["smb"].std())


BETA = 1.5  # m w.e.: a surface-type term BETA * (elevation_norm - its glacier mean), invisible glacier-wide


def test_stakes_recover_what_glacier_wide_balances_cannot(region_pixels, tmp_path):
    import dataclasses
    import json

    from glacgrid.inference import glacier_mean
    from glacgrid.models import load_model
    from glacgrid.pipeline.training import (fit_joint, fit_joint_model, pixel_footprints, place_stakes,
                                            read_run_stakes)

    cfg, train, px, _, prep, observed = region_pixels
    f = px.features
    norm = f["elevation_norm"]
    mean = glacier_mean(norm, px.unit, px.unit > 0, px.pixel_area, px.index).values
    painted = px.unit.copy(data=np.where(px.unit.values > 0, mean[np.maximum(px.unit.values, 1) - 1], np.nan))
    truth = (f["snow_winter"] + f["snow_summer"] - 4.0 * f["cpdd"]) / 1000.0 + BETA * (norm - painted)
    # 6 stakes per glacier at pixel centres (their lon/lat), every year, 0.05 m w.e. of noise
    rng = np.random.default_rng(3)
    unit = px.unit.values.ravel()
    on = np.flatnonzero(unit > 0)
    picks = np.concatenate([rng.choice(on[unit[on] == u], 6, replace=False) for u in px.index])
    years = train["year"].drop_duplicates().sort_values().to_numpy()
    vals = truth.sel(year=years).values.reshape(years.size, -1)[:, picks]
    table = pd.DataFrame({cfg.observations.id_column: np.tile(np.asarray(px.units)[unit[picks] - 1], years.size),
                          "stake": np.tile([f"s{i}" for i in range(picks.size)], years.size),
                          "year": np.repeat(years, picks.size),
                          "lon": np.tile(px.lon.values.ravel()[picks], years.size),
                          "lat": np.tile(px.lat.values.ravel()[picks], years.size),
                          "smb": vals.ravel() + rng.normal(0.0, 0.05, vals.size)})
    table.to_csv(tmp_path / "stakes.csv", index=False)
    run_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, training="joint", kind="ols"),
                                  observations=dataclasses.replace(cfg.observations, stakes=(tmp_path / "stakes.csv",),
                                                                   stake_format="table"))
    stakes = place_stakes(read_run_stakes(run_cfg), px.units, unit[on], px.lon.values.ravel()[on],
                          px.lat.values.ravel()[on], px.pixel_area.values.ravel()[on])
    # each stake on its own pixel: the position among the unit pixels of the pixel it was put on
    np.testing.assert_array_equal(stakes["pixel"].to_numpy(), np.tile(np.searchsorted(on, picks), years.size))
    glw = glacier_mean(truth, px.unit, px.unit > 0, px.pixel_area, px.index).to_pandas().stack().rename("smb")
    obs = glw.reset_index()
    obs["obs_id"] = np.asarray(px.units)[obs["glacier"].to_numpy() - 1]
    names = tuple(cfg.model.features)
    X, fp = pixel_footprints(px.features, px.unit, px.surface, px.pixel_area, px.units, obs, names=names,
                             stakes=stakes)
    assert fp.counts() == {"glacier": len(obs), "stake": len(stakes)}
    glacier_only = fit_joint(run_cfg, X, fp, keep=fp.kind == "glacier")
    joint = fit_joint(run_cfg, X, fp)
    k = names.index("elevation_norm")
    assert joint.coef_[k] == pytest.approx(BETA, rel=0.05)
    assert abs(glacier_only.coef_[k]) < 0.3 * BETA
    # through the model stage of a run: the same stakes read from [observations] stakes
    model = fit_joint_model(run_cfg, prep, observed, train, tmp_path)
    meta = json.loads((tmp_path / "footprints.json").read_text())
    assert meta["stakes"] == {"read": len(stakes), "on_pixels": len(stakes)}
    assert meta["footprints"]["stake"]["n"] == len(stakes)
    assert load_model(tmp_path / "model").coef_[k] == pytest.approx(model.coef_[k])
