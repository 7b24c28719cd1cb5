"""Joint (footprint) training on a glacier-domain run: examples/hef.toml with the profile features, on its grid
(the dense path) and on a domain built from the same inputs.

The domain fits its joint model on the pixel features it computes for its training table
(:func:`glacgrid.simulate.domain.domain_pixel_features`, one feature pass); the model equals the dense run's,
its footprints are the same groups and counts, and its gridded SMB is steeper on Hintereisferner than that of
the glacier-wide model.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import glacgrid.cube as cube_mod
from glacgrid.config import DomainConfig, OutputConfig, load_config
from glacgrid.domain import open_domain
from glacgrid.exceptions import ConfigError, InputDataError
from glacgrid.testing import REPO, requires_data

#: The profile features the domain's compiled pass builds (glacgrid.inference.buildable).
FEATURES = ("cpdd", "snow_winter", "snow_summer", "snow_winter_dz", "cpdd_low", "cpdd_ice", "elevation_norm")
#: A decade with glacier-wide balances and 50 m band profiles of HEF, KWF and VF (keeps the case small).
PERIOD = (2001, 2010)
HEF = "RGI50-11.00897"

needs_hef = [requires_data("hef", "climate", "sel_era5_land_monthly_t2m_1981-2018.nc"),
             requires_data("hef", "mb", "profile_WGMS-00491.csv")]


def _config(out, training="joint", kind="lasso", domain=True):
    cfg = load_config(REPO / "examples" / "hef.toml")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, features=FEATURES, training=training,
                                                              kind=kind),
                               period=dataclasses.replace(cfg.period, start=PERIOD[0], end=PERIOD[1]),
                               output=OutputConfig(directory=out, plot=False),
                               domain=DomainConfig(group_pixels=4096) if domain else None)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The dense joint model (prepare -> training table -> fit_joint_model) and two domain runs (joint and
    glacier-wide training) of the same configuration."""
    from glacgrid.models import load_model
    from glacgrid.pipeline import prepare, read_observed, run
    from glacgrid.pipeline.training import fit_joint_model, training_table

    tmp = tmp_path_factory.mktemp("domain-joint")
    dense_cfg = _config(tmp / "dense", domain=False)
    (tmp / "dense" / "work").mkdir(parents=True)
    prep = prepare(dense_cfg, tmp / "dense" / "work")
    observed = read_observed(dense_cfg, prep.table)
    train, _ = training_table(dense_cfg, prep, observed)
    # (both paths order the table year by year: the lasso's inner CV splits by row position)
    dense = fit_joint_model(dense_cfg, prep, observed, train, tmp / "dense")
    joint = run(_config(tmp / "joint"), progress=False)
    glacier = run(_config(tmp / "glacier", training="glacier"), progress=False)
    return {"tmp": tmp, "dense_cfg": dense_cfg, "prep": prep, "observed": observed, "train": train, "dense": dense,
            "joint": joint, "glacier": glacier, "joint_model": load_model(tmp / "joint" / "model")}


def _domain_inputs(case):
    from glacgrid.pipeline.domain import domain_run_spec, observed_on
    from glacgrid.pipeline.training import observed_years

    cfg = _config(case["tmp"] / "joint")
    d = open_domain(case["tmp"] / "joint" / "work" / "domain.zarr")
    cube = cube_mod.open_store(case["tmp"] / "joint" / "work" / "cube.zarr")
    observed = observed_on(cfg, d)
    years = observed_years(cfg, observed)[3]
    return cfg, d, cube, observed, np.asarray(observed.unit_of_outline)[1:], domain_run_spec(cfg), years


@pytest.mark.slow
@needs_hef[0]
@needs_hef[1]
def test_the_domain_joint_model_equals_the_dense_one(case):
    from glacgrid.pipeline.training import (fit_joint, footprints_from_pixels, observed_pixels, pixel_footprints,
                                            read_band_profiles)
    from glacgrid.simulate.domain import domain_pixel_features

    dense, dom = case["dense"], case["joint_model"]
    assert dom.schema.names == dense.schema.names == FEATURES
    # measured 2026-12-05: at most 3.5e-8 relative (cpdd_ice), intercept 1.4e-8: snow_winter_dz, see below
    np.testing.assert_allclose(dom.coef_, dense.coef_, rtol=1e-7, atol=0)
    assert dom.intercept_ == pytest.approx(dense.intercept_, rel=1e-7)
    # the same footprints, and the same aggregated features (what a linear fit sees) to rounding, except
    # snow_winter_dz: its height factor (z - 3000) / 1000 is computed from the float64 surface of the domain
    # (as the domain run's inference does) and from the float32 DEM on the grid: one float32 ulp per pixel
    cfg, d, cube, observed, slots, spec, years = _domain_inputs(case)
    px = domain_pixel_features(d, cube, slots, spec, years)
    train = pd.read_csv(case["tmp"] / "joint" / "training_features.csv")
    fp = footprints_from_pixels(px.years, px.unit_of_pixel, px.z, px.pixel_area, observed.units,
                                train[["obs_id", "year", "smb"]], read_band_profiles(cfg))
    dcfg, prep = case["dense_cfg"], case["prep"]
    opx = observed_pixels(dcfg, prep, case["observed"], years)
    X, dfp = pixel_footprints(opx.features, opx.unit, opx.surface, opx.pixel_area, opx.units,
                              case["train"][["obs_id", "year", "smb"]], read_band_profiles(dcfg), names=FEATURES)
    assert len(fp) == len(dfp) == 554
    assert (fp.obs_id == dfp.obs_id).all() and (fp.year == dfp.year).all() and np.array_equal(fp.sizes, dfp.sizes)
    np.testing.assert_array_equal(fp.value, dfp.value)
    np.testing.assert_array_equal(fp.band_mid, dfp.band_mid)
    A, B = fp.aggregate(px.X), dfp.aggregate(X)
    rel = (np.abs(A - B) / np.maximum(np.abs(B), 1e-3)).max(axis=0)
    k = FEATURES.index("snow_winter_dz")
    assert np.delete(rel, k).max() < 1e-14 and 1e-9 < rel[k] < 2e-7  # measured 9e-16 and 9.1e-8
    # without it, an exact solver (ols) gives the same model on both paths to rounding (measured 6e-15)
    keep = [i for i in range(len(FEATURES)) if i != k]
    ols = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kind="ols",
                                                             features=tuple(FEATURES[i] for i in keep)))
    a, b = fit_joint(ols, px.X[:, keep], fp), fit_joint(ols, X[:, keep], dfp)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-9, atol=0)
    assert a.intercept_ == pytest.approx(b.intercept_, rel=1e-9)


@pytest.mark.slow
@needs_hef[0]
@needs_hef[1]
def test_the_domain_run_writes_the_dense_footprints(case):
    tmp = case["tmp"]
    dense = json.loads((tmp / "dense" / "footprints.json").read_text())
    dom = json.loads((tmp / "joint" / "footprints.json").read_text())
    assert dom["training"] == "joint" and dom["band_fit"] == dense["band_fit"] == "level"
    counts = {k: v["n"] for k, v in dom["footprints"].items()}
    assert counts == {k: v["n"] for k, v in dense["footprints"].items()} == {"glacier": 30, "band": 524}
    assert dom["footprints"]["band"]["weight_share"] == pytest.approx(0.25)  # band_weight 1/3 against 1
    # the glacier-wide cross-validation is kept (cv.json), the artifact is the joint model
    assert (tmp / "joint" / "cv.json").exists()
    assert not (tmp / "glacier" / "footprints.json").exists()


def _hef_gradient(out) -> float:
    """Linear elevation gradient (m w.e. per 100 m) of the period-mean gridded SMB over HEF's pixels."""
    d = open_domain(out / "work" / "domain.zarr")
    slot = int(d.table.index[d.table["rgi_id"] == HEF][0])
    first, n = int(d.glaciers["first_pixel"].values[slot - 1]), int(d.glaciers["n_pixels"].values[slot - 1])
    z = d.pixels["surface"].values[first:first + n].astype("float64")
    smb = cube_mod.open_store(out / "results.zarr", chunks=None)["smb"].values[:, first:first + n].mean(axis=0)
    assert n > 1000 and np.isfinite(smb).all()
    return float(np.polyfit(z, smb.astype("float64"), 1)[0] * 100.0)


@pytest.mark.slow
@needs_hef[0]
@needs_hef[1]
def test_the_joint_models_gridded_smb_is_steeper_on_hef(case):
    joint, glacier = _hef_gradient(case["tmp"] / "joint"), _hef_gradient(case["tmp"] / "glacier")
    # measured 2026-12-05: 0.526 (joint) against 0.463 m w.e. per 100 m (glacier-wide, same features)
    assert joint == pytest.approx(0.526, abs=0.01) and glacier == pytest.approx(0.463, abs=0.01)
    assert joint > glacier + 0.05
    # the glacier-wide balances stay close: the run's validation against WGMS
    a, b = case["joint"].validation, case["glacier"].validation
    assert len(a) == len(b) == 30
    rmse = lambda v: float(np.sqrt(np.mean((v["modelled"] - v["observed"]) ** 2)))  # noqa: E731
    assert rmse(a) < rmse(b) + 0.1


@pytest.mark.slow
@needs_hef[0]
@needs_hef[1]
def test_the_training_table_from_the_joint_pixels_is_the_glacier_wide_one(case):
    """One feature pass: the table averaged from the joint pixels (constants per outline; Vernagtferner's two
    divides are built again with the unit's constants) equals the table of its own pass, to the bit."""
    from glacgrid.simulate.domain import domain_glacier_features, domain_pixel_features

    cfg, d, cube, observed, slots, spec, years = _domain_inputs(case)
    px = domain_pixel_features(d, cube, slots, spec, years)
    by_unit = domain_pixel_features(d, cube, slots, spec, years, constants="unit")
    assert px.X.shape == (len(years) * px.n_pixels, len(FEATURES)) and px.constants == "glacier"
    vf = px.unit_of_pixel == 2  # the unit of two outlines
    assert np.unique(px.glacier_of_pixel[vf]).size == 2
    j = FEATURES.index("elevation_norm")
    assert not np.array_equal(px.X[:px.n_pixels][vf, j], by_unit.X[:px.n_pixels][vf, j])
    np.testing.assert_array_equal(px.X[:px.n_pixels][~vf], by_unit.X[:px.n_pixels][~vf])
    a = domain_glacier_features(d, cube, slots, spec, years, pixels=px)
    b = domain_glacier_features(d, cube, slots, spec, years)
    for name in FEATURES:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    # and the joint pixels are those of the dense path (constants per outline, as the inference sees them)
    from glacgrid.pipeline.training import observed_pixels

    opx = observed_pixels(case["dense_cfg"], case["prep"], case["observed"], years)
    dense_vf = np.sort(opx.features["elevation_norm"].values[opx.unit.values == 2])
    assert dense_vf.size == vf.sum()
    np.testing.assert_allclose(np.sort(px.X[:px.n_pixels][vf, j]), dense_vf, rtol=0, atol=1e-6)
    assert np.abs(np.sort(by_unit.X[:by_unit.n_pixels][vf, j]) - dense_vf).max() > 0.01
    with pytest.raises(InputDataError, match="constants must be one of"):
        domain_pixel_features(d, cube, slots, spec, years, constants="outline")


def test_joint_training_on_a_domain_is_no_longer_refused():
    from types import SimpleNamespace

    from glacgrid.config import ModelConfig
    from glacgrid.pipeline import check_run_features

    check_run_features(SimpleNamespace(model=ModelConfig(training="joint"), domain=object(), forcing=None))


@pytest.mark.slow
@needs_hef[0]
@needs_hef[1]
def test_stakes_on_a_domain_are_placed_and_fitted_as_on_the_grid(case, tmp_path):
    """A stake table on the three glaciers: the domain puts every stake on the same pixel as the grid (its
    pixel lon/lat are the grid's) and fits the dense run's model; footprints.json counts the stakes."""
    from glacgrid.pipeline.domain import shared_stages
    from glacgrid.pipeline.steps import Steps
    from glacgrid.pipeline.training import fit_joint_model, observed_pixels

    dcfg, prep, observed, train = case["dense_cfg"], case["prep"], case["observed"], case["train"]
    years = sorted(train["year"].unique().tolist())
    px = observed_pixels(dcfg, prep, observed, years)
    unit = px.unit.values.ravel()
    rng = np.random.default_rng(7)
    picks = np.concatenate([rng.choice(np.flatnonzero(unit == u), 4, replace=False) for u in px.index])
    z = px.surface.values.ravel()[picks]
    table = pd.DataFrame({"RGI_ID": np.tile(np.asarray(px.units)[unit[picks] - 1], len(years)),
                          "stake": np.tile([f"s{i}" for i in range(picks.size)], len(years)),
                          "year": np.repeat(years, picks.size),
                          "lon": np.tile(px.lon.values.ravel()[picks], len(years)),
                          "lat": np.tile(px.lat.values.ravel()[picks], len(years)),
                          "smb": np.tile((z - 3100.0) / 100.0 * 0.8, len(years))  # 0.8 m w.e. per 100 m
                                 + rng.normal(0.0, 0.2, picks.size * len(years))})
    table.loc[len(table)] = ["RGI60-11.00897", "far", years[0], 10.0, 46.0, -1.0]  # off every glacier
    table.to_csv(tmp_path / "stakes.csv", index=False)

    def with_stakes(cfg, out):
        return dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, directory=out),
                                   observations=dataclasses.replace(cfg.observations, stakes=(tmp_path / "stakes.csv",),
                                                                    stake_format="table"))

    dense = fit_joint_model(with_stakes(dcfg, tmp_path / "dense"), prep, observed, train, tmp_path / "dense")
    with Steps(False) as steps:
        dom = shared_stages(with_stakes(_config(tmp_path / "domain"), tmp_path / "domain"), steps).model
    metas = [json.loads((tmp_path / w / "footprints.json").read_text()) for w in ("dense", "domain")]
    n = picks.size * len(years)
    for meta in metas:
        assert meta["stakes"] == {"read": n + 1, "on_pixels": n}
        assert meta["footprints"]["stake"]["n"] == n
    # measured 4.7e-6 relative at most: the snow_winter_dz ulp (see above) through the lasso's solver
    np.testing.assert_allclose(dom.coef_, dense.coef_, rtol=1e-5, atol=0)
    assert dom.intercept_ == pytest.approx(dense.intercept_, rel=1e-5)


@pytest.mark.slow
@needs_hef[0]
@needs_hef[1]
def test_seasonal_balances_on_a_domain_fit_the_dense_model(case, tmp_path):
    """[model] season_weight > 0: the domain builds the winter and summer pixel features (every month sum over
    the season, year-static features times its share) and fits the dense run's model."""
    from glacgrid.pipeline.domain import shared_stages
    from glacgrid.pipeline.steps import Steps
    from glacgrid.pipeline.training import fit_joint_model

    def seasonal(cfg):
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, season_weight=1.0 / 3.0))

    dense = fit_joint_model(seasonal(case["dense_cfg"]), case["prep"], case["observed"], case["train"],
                            tmp_path / "dense")
    with Steps(False) as steps:
        dom = shared_stages(seasonal(_config(tmp_path / "domain")), steps).model
    # measured 2.5e-7 relative at most (snow_winter_dz: see above; through the fitted seasonal offset too)
    np.testing.assert_allclose(dom.coef_, dense.coef_, rtol=1e-6, atol=0)
    assert dom.intercept_ == pytest.approx(dense.intercept_, rel=1e-6)
    a = json.loads((tmp_path / "domain" / "footprints.json").read_text())["footprints"]
    b = json.loads((tmp_path / "dense" / "footprints.json").read_text())["footprints"]
    assert {k: v["n"] for k, v in a.items()} == {k: v["n"] for k, v in b.items()}
    assert a["glacier_winter"]["n"] == a["glacier_summer"]["n"] == 10
    assert not np.allclose(dom.coef_, case["joint_model"].coef_, rtol=1e-3)  # the seasons change the fit
