"""Validation against observations: known answers on hand-built fields and the synthetic region, and the
real Hintereis-, Kesselwand- and Vernagtferner numbers (slow)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.observations import ObservedUnits
from glacgrid.pipeline.validate import observed_pixels, reconstruction_cv
from glacgrid.validation import band_means, compare_bands, compare_evolution, metrics, vertical_gradient

from glacgrid.testing import REPO, raise_if_dask_computes, requires_data


def test_metrics_and_gradient_known_values():
    m = metrics([1.0, 2.0, 3.0, np.nan], [2.0, 3.0, 4.0, 1.0])
    assert m["n"] == 3 and m["r"] == pytest.approx(1.0) and m["rmse"] == pytest.approx(1.0)
    assert m["bias"] == pytest.approx(1.0) and m["mae"] == pytest.approx(1.0)
    assert np.isnan(metrics([1.0], [1.0])["r"]) and metrics([], [])["n"] == 0
    assert vertical_gradient([2000, 2100, 2200], [-2.0, -1.3, -0.6]) == pytest.approx(0.7)


def _banded_field(gradient=0.6, offsets=(-20.0, -5.0, 5.0, 20.0)):
    """Two glaciers on a 4 x 12 grid: pixel elevations sit symmetrically around 50 m band mids (..25,
    ..75), so a field linear in elevation has band means exactly on the line through the band mids."""
    mids_a = np.array([2425.0, 2475.0, 2525.0])
    mids_b = np.array([2475.0, 2525.0, 2575.0])
    z = np.zeros((4, 12))
    unit = np.zeros((4, 12), dtype="int32")
    for col, mid in enumerate(mids_a):
        z[:, col] = mid + np.asarray(offsets)
        unit[:, col] = 1
    for col, mid in enumerate(mids_b):
        z[:, 6 + col] = mid + np.asarray(offsets)
        unit[:, 6 + col] = 2
    z[:, 4] = 9999.0  # not on a glacier: must not count
    area = np.full((4, 12), 100.0)
    area[0] = area[3] = 300.0  # symmetric pairs (-20/+20 m) share an area, so band means stay on the line
    dims = ("y", "x")
    coords = {"y": np.arange(4.0), "x": np.arange(12.0)}
    years = [2001, 2002]
    offset = xr.DataArray([-1.0, 0.5], dims="year", coords={"year": years})
    smb = offset + gradient / 100.0 * (xr.DataArray(z, dims=dims, coords=coords) - 2500.0)
    smb = smb.where(xr.DataArray(unit, dims=dims, coords=coords) > 0).transpose("year", "y", "x")
    return (smb, xr.DataArray(z, dims=dims, coords=coords), xr.DataArray(unit, dims=dims, coords=coords),
            xr.DataArray(area, dims=dims, coords=coords))


def test_band_means_recover_a_known_gradient_exactly():
    g = 0.6  # m w.e. per 100 m
    smb, z, unit, area = _banded_field(g)
    bm = band_means(smb, z, unit, area, np.array([1, 2]))
    assert bm.dims == ("year", "glacier", "band_mid")
    np.testing.assert_array_equal(bm["band_mid"], [2425.0, 2475.0, 2525.0, 2575.0])
    expected = np.array([-1.0, 0.5])[:, None] + g / 100 * (bm["band_mid"].values[None, :] - 2500.0)
    np.testing.assert_allclose(bm.sel(glacier=1).values[:, :3], expected[:, :3], atol=1e-12)
    np.testing.assert_allclose(bm.sel(glacier=2).values[:, 1:], expected[:, 1:], atol=1e-12)
    assert np.isnan(bm.sel(glacier=1, band_mid=2575.0)).all() and np.isnan(bm.sel(glacier=2, band_mid=2425.0)).all()
    for gl in (1, 2):
        one = bm.sel(glacier=gl).to_dataframe(name="v").reset_index()
        assert vertical_gradient(one["band_mid"], one["v"]) == pytest.approx(g, abs=1e-9)
    # dask chunks give the same answer, lazily (one computation: the band range)
    with raise_if_dask_computes(max_computes=1):
        lazy = band_means(smb.chunk({"x": 5}), z.chunk({"x": 5}), unit.chunk({"x": 5}), area.chunk({"x": 5}),
                          np.array([1, 2]))
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.values, bm.values, equal_nan=True)


def test_compare_bands_against_a_profile_table():
    g = 0.6
    smb, z, unit, area = _banded_field(g)
    bm = band_means(smb, z, unit, area, np.array([1, 2]))
    truth = bm.to_dataframe(name="smb").reset_index().dropna()
    truth["obs_id"] = np.where(truth["glacier"] == 1, "A", "B")
    prof = truth[["obs_id", "year", "band_mid", "smb"]].copy()
    prof.loc[prof.index[0], "smb"] += 0.3  # one observed band 0.3 m w.e. off
    off = pd.DataFrame({"obs_id": ["A"], "year": [2001], "band_mid": [2450.0], "smb": [5.0]})  # a 100 m band
    cmp = compare_bands(bm, pd.concat([prof, off], ignore_index=True), ["A", "B"])
    assert cmp.skipped == 1 and len(cmp.pairs) == len(prof)
    met = cmp.metrics.set_index("obs_id")
    assert met.loc["B", "rmse"] == pytest.approx(0.0, abs=1e-12) and met.loc["B", "r"] == pytest.approx(1.0)
    assert met.loc["A", "bias"] == pytest.approx(-0.3 / 6)
    assert met.loc["B", "gradient_observed"] == pytest.approx(g) and met.loc["B", "gradient_modelled"] == pytest.approx(g)
    assert met.loc["pooled", "n"] == len(prof)


def test_compare_evolution_sums_linked_outlines_and_integrates_wgms():
    # outlines 1 and 2 are the divides of unit "V", outline 3 is unit "H"
    gid = np.array([[1, 1, 2, 3]])
    th = np.array([[10.0, 20.0, 30.0, 40.0]])
    static = xr.Dataset({"glacier_id": (("y", "x"), gid), "thickness": (("y", "x"), th),
                         "pixel_area": (("y", "x"), np.full((1, 4), 1e6))})
    years = [2001, 2002]
    res = xr.Dataset({"glacier_area": (("year", "glacier"), [[1.5, 1.0, 1.0], [1.0, 0.5, 0.9]]),
                      "volume": (("year", "glacier"), [[0.02, 0.025, 0.039], [0.015, 0.02, 0.037]]),
                      "smb_glacier": (("year", "glacier"), [[-1.0, -2.0, -0.5], [-1.0, -1.0, -1.0]])},
                     coords={"year": years, "glacier": [1, 2, 3]})
    obs = pd.DataFrame({"obs_id": ["V", "V", "H", "H"], "year": [2001, 2002, 2001, 2002], "smb": [-1.0, -0.5, -2.0, 0.0]})
    areas = pd.DataFrame({"obs_id": ["V", "V", "H"], "year": [2001, 2002, 2001], "area_km2": [3.0, 2.0, 1.2]})
    observed = ObservedUnits(obs, ("V", "H"), np.array([0, 1, 1, 2]))
    ev = compare_evolution(res, static, observed, areas, rho_ice=900.0, rho_water=1000.0)
    s = ev.summary.set_index("obs_id")
    assert s.loc["V", "area_start_model"] == pytest.approx(3.0) and s.loc["V", "volume_start_model"] == pytest.approx(0.06)
    assert s.loc["V", "area_end_model"] == pytest.approx(1.5) and s.loc["V", "dv_model"] == pytest.approx(0.035 - 0.06)
    assert s.loc["V", "dv_wgms"] == pytest.approx((-1.0 * 3.0 - 0.5 * 2.0) * 1e-3 / 0.9)
    assert s.loc["V", "d_area_wgms_pct"] == pytest.approx(-100 / 3)
    y = ev.yearly.set_index(["obs_id", "year"])
    assert y.loc[("V", 2001), "smb_model"] == pytest.approx((-1.0 * 1.5 - 2.0 * 1.0) / 2.5)
    assert y.loc[("H", 2002), "area_wgms"] == pytest.approx(1.2)  # held beyond the record
    assert s.loc["H", "dv_wgms"] == pytest.approx(-2.0 * 1.2 * 1e-3 / 0.9)
    # an ensemble run (member dim): one summary row per glacier and member
    ens = xr.concat([res, res.assign(volume=res["volume"] * 0.5)], dim="member").assign_coords(member=[0, 1])
    ev2 = compare_evolution(ens, static, observed, areas)
    s2 = ev2.summary.set_index(["obs_id", "member"])
    assert len(s2) == 4 and s2.loc[("V", 0), "dv_model"] == pytest.approx(0.035 - 0.06)
    assert s2.loc[("V", 1), "dv_model"] == pytest.approx(0.0175 - 0.06)
    assert len(ev2.yearly) == 2 * 2 * 2


# ---------------------------------------------------------------------------------- synthetic region
@pytest.fixture(scope="module")
def synthetic(small_region, tmp_path_factory):
    from glacgrid.config import load_config
    from glacgrid.pipeline import prepare, read_observed, training_table
    from glacgrid.testing import write_config

    out = tmp_path_factory.mktemp("validation")
    cfg = load_config(write_config(small_region, out / "run.toml", output=out, mode="reconstruct", chunks=48))
    prep = prepare(cfg, out / "work")
    observed = read_observed(cfg, prep.table)
    train, _ = training_table(cfg, prep, observed)
    px = observed_pixels(cfg, prep, observed, sorted(train["year"].unique()))
    return cfg, prep, train, observed.units, px


@pytest.mark.parametrize("scheme", ["logo", "loyo"])
def test_gridded_reconstruction_cv_equals_the_model_cv_for_a_linear_model(synthetic, scheme):
    from glacgrid.models import cross_validate

    cfg, prep, train, units, px = synthetic
    rec = reconstruction_cv(cfg, train, px, scheme)
    cv = cross_validate(train, target="smb", features=list(cfg.model.features), glacier_col="obs_id",
                        year_col="year", kind=cfg.model.kind, scheme=scheme, seed=cfg.model.seed)
    p = rec.predictions
    assert len(p) == len(train) and p["reconstructed"].notna().all()
    # the same fold models: the direct predictions are the model CV's
    np.testing.assert_allclose(p["direct"], cv.predictions["predicted"], rtol=1e-9, atol=1e-12)
    # through pixels and back: a linear model's area-weighted pixel mean is its glacier prediction
    np.testing.assert_allclose(p["reconstructed"], cv.predictions["predicted"], atol=2e-4)
    pooled = rec.metrics.set_index("obs_id").loc["pooled"]
    for k in ("r", "rmse", "bias"):
        assert pooled[k] == pytest.approx(cv.metrics[k], abs=2e-4)
    assert pooled["r"] > 0.95  # the synthetic truth is a temperature-index model plus 0.05 m w.e. noise
    assert len(rec.metrics) == len(units) + 1
    # the out-of-fold gridded field covers exactly the observed glacier pixels in every observed year
    observed = (px.unit > 0).values
    assert np.isfinite(rec.smb.values[:, observed]).all() and np.isnan(rec.smb.values[:, ~observed]).all()


def test_cli_validate_writes_the_tables(synthetic, tmp_path):
    from typer.testing import CliRunner

    from glacgrid.cli import app

    cfg = synthetic[0]
    res = CliRunner().invoke(app, ["validate", str(cfg.source), "--out", str(tmp_path), "--schemes", "logo",
                                   "--no-evolve"])
    assert res.exit_code == 0, res.output
    assert "Reconstruction, LOGO" in res.output and "no elevation-band profiles" in res.output
    met = pd.read_csv(tmp_path / "reconstruction_logo_metrics.csv").set_index("obs_id")
    assert met.loc["pooled", "r"] > 0.95 and (tmp_path / "validation.md").exists()
    bad = CliRunner().invoke(app, ["validate", str(cfg.source), "--out", str(tmp_path), "--schemes", "random"])
    assert bad.exit_code == 2 and "random" in bad.output


def oetztal_data(test):
    """Slow real-data test that needs the Ötztal climate and the Farinotti thickness."""
    test = requires_data("hef", "climate", "sel_era5_land_monthly_t2m_1981-2018.nc")(test)
    test = requires_data("alps", "farinotti_thickness", "RGI60-11.00787_thickness.tif")(test)
    return pytest.mark.slow(test)


# ------------------------------------------------------------------------------------- real data (slow)
@pytest.fixture(scope="module")
def oetztal(tmp_path_factory):
    from glacgrid.config import load_config
    from glacgrid.pipeline import validate

    cfg = load_config(REPO / "examples" / "hef_evolve.toml")
    cfg = dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, chunks=128))
    out = tmp_path_factory.mktemp("oetztal")
    report = validate(cfg, out, schemes=("logo", "loyo"), evolve=True)
    print(report.markdown())
    return report


@oetztal_data
@pytest.mark.parametrize("scheme", ["logo", "loyo"])
def test_oetztal_reconstruction_against_wgms(oetztal, scheme):
    cv = oetztal.reconstruction[scheme]
    m = cv.metrics.set_index("obs_id")
    assert set(m.index) == {"RGI60-11.00897", "RGI50-11.00787", "RGI60-11.00719", "pooled"}
    assert (m.drop("pooled")["n"] == 37).all()  # 1982-2018, every year of every glacier
    assert m.loc["pooled", "r"] > 0.6 and abs(m.loc["pooled", "bias"]) < 0.3 and m.loc["pooled", "rmse"] < 0.45
    assert (m.drop("pooled")["r"] > 0.6).all() and (m.drop("pooled")["bias"].abs() < 0.3).all()
    # climate-only lasso: the gridded path (Vernagtferner over its two linked divides) is the model CV
    np.testing.assert_allclose(cv.predictions["reconstructed"], cv.predictions["direct"], atol=1e-3)


@oetztal_data
def test_oetztal_bands_against_wgms_profiles(oetztal):
    b = oetztal.bands
    m = b.metrics.set_index("obs_id")
    assert m.loc["pooled", "n"] > 1000 and m.loc["pooled", "r"] > 0.7
    glaciers = m.drop("pooled")
    # SMB increases with elevation in both; the model's gradient is weaker but of the same order
    assert (glaciers["gradient_observed"] > 0).all() and (glaciers["gradient_modelled"] > 0).all()
    ratio = glaciers["gradient_modelled"] / glaciers["gradient_observed"]
    assert ((ratio > 0.3) & (ratio < 2.0)).all()
    hef = b.per_band[b.per_band["obs_id"] == "RGI60-11.00897"]
    assert hef["modelled"].iloc[0] < -2.0 and hef["observed"].iloc[0] < -2.0  # the tongue melts strongly


@oetztal_data
def test_oetztal_evolution_against_wgms_area_and_volume(oetztal):
    ev = oetztal.evolution
    s = ev.summary.set_index("obs_id")
    hef = s.loc["RGI60-11.00897"]
    # HEF volume from the Farinotti thickness resampled to the SRTM grid: 0.578 km3 on its own grid
    assert hef["volume_start_model"] == pytest.approx(0.578, rel=0.05)
    assert hef["area_start_wgms"] == pytest.approx(9.07) and hef["area_end_wgms"] == pytest.approx(6.389)
    for oid, row in s.iterrows():
        # every glacier shrinks and loses volume in both model and WGMS record
        assert row["d_area_model"] < 0 and row["d_area_wgms"] < 0 and row["dv_model"] < 0 and row["dv_wgms"] < 0
        assert 0.5 < row["dv_model"] / row["dv_wgms"] < 1.5, oid
        assert 0.3 < row["d_area_model_pct"] / row["d_area_wgms_pct"] < 1.5, oid
    # the modelled volume change is the modelled balance times the area, year by year
    y = ev.yearly[ev.yearly["obs_id"] == "RGI60-11.00897"].set_index("year")
    assert y.loc[1982, "dv_model"] == pytest.approx(y.loc[1982, "smb_model"] * hef["area_start_model"] * 1e-3 / 0.9,
                                                    rel=1e-6)
