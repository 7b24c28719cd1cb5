import tomllib

import pytest

from glacgrid.config import TEMPLATE, DownscaleParams, config_from_dict, load_config
from glacgrid.exceptions import ConfigError

from glacgrid.testing import REPO, requires_data


def _minimal(tmp_path):
    for name in ("a.nc", "inv.nc", "dem.tif", "o.shp", "obs.csv"):
        (tmp_path / name).write_text("x")
    return {
        "climate": {"files": ["a.nc"], "invariant": "inv.nc"},
        "grid": {"dem": "dem.tif"},
        "glaciers": {"outlines": "o.shp"},
        "period": {"start": 2000, "end": 2005},
        "observations": {"files": ["obs.csv"]},
    }


def test_minimal_config_resolves_paths_and_defaults(tmp_path):
    cfg = config_from_dict(_minimal(tmp_path), base=tmp_path)
    assert cfg.climate.files == (tmp_path / "a.nc",)
    assert cfg.downscale == DownscaleParams()
    assert cfg.mode == "reconstruct" and cfg.model.kind == "lasso"
    with pytest.raises(AttributeError):
        cfg.mode = "evolve"  # frozen


def test_all_problems_are_reported_together(tmp_path):
    raw = _minimal(tmp_path)
    raw["grid"]["chunkz"] = 3
    raw["period"]["end"] = 1990
    raw["model"] = {"kind": "xgboost", "features": ["cpdd", "height"]}
    raw["mode"] = "evolve"
    raw["downscale"] = {"lapse_rate": "cold"}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, base=tmp_path)
    msg = str(info.value)
    assert "unknown key 'chunkz'" in msg and "Did you mean 'chunks'" in msg
    assert "'xgboost' is not one of" in msg
    assert "lapse_rate: expected a number, got 'cold'" in msg


def test_semantic_checks(tmp_path):
    raw = _minimal(tmp_path)
    raw["period"]["end"] = 1990
    raw["mode"] = "evolve"
    raw["model"] = {"features": ["cpdd", "height"]}
    raw["climate"]["files"] = ["missing-*.nc"]
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, base=tmp_path)
    msg = str(info.value)
    assert "matches no file" in msg
    with pytest.raises(ConfigError) as info:
        raw["climate"]["files"] = ["a.nc"]
        config_from_dict(raw, base=tmp_path)
    msg = str(info.value)
    assert "end (1990) is before start (2000)" in msg
    assert "needs an initial ice thickness" in msg
    assert "['height'] are unknown" in msg


def test_missing_sections_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"section \[climate\] is required"):
        config_from_dict({"period": {"start": 1, "end": 2}}, base=tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_template_parses_and_names_every_section():
    raw = tomllib.loads(TEMPLATE)
    assert {"climate", "grid", "glaciers", "period", "downscale", "model", "observations", "geometry",
            "output", "cluster"} <= set(raw)


@requires_data("hef")
def test_hef_example_config_is_valid():
    cfg = load_config(REPO / "examples" / "hef.toml")
    assert len(cfg.climate.files) == 2 and all(p.exists() for p in cfg.climate.files)
    assert cfg.observations.links["RGI60-11.00719"] == ("RGI50-11.00719_d01", "RGI50-11.00719_d02")
    assert (cfg.period.start, cfg.period.end) == (1982, 2018)


def test_run_mode_keys_geometry_surfaces_ensembles(tmp_path):
    raw = _minimal(tmp_path)
    (tmp_path / "dem_1979.tif").write_text("x")
    (tmp_path / "dem_2011.tif").write_text("x")
    raw["geometry"] = {"surfaces": ["dem_1979.tif", "dem_2011.tif"], "surface_years": [1979, 2011]}
    raw["model"] = {"ensemble": 5}
    cfg = config_from_dict(raw, base=tmp_path)
    assert cfg.geometry.surfaces == (tmp_path / "dem_1979.tif", tmp_path / "dem_2011.tif")
    assert cfg.geometry.surface_years == (1979, 2011) and cfg.model.ensemble == 5
    assert cfg.geometry.thickness_factors == (1.0,) and cfg.geometry.deltah_factors == (1.0,)
    (tmp_path / "h.tif").write_text("x")
    evolve = dict(_minimal(tmp_path), mode="evolve", glaciers={"outlines": "o.shp", "thickness": ["h.tif"]},
                  geometry={"thickness_factors": [0.7, 1, 1.3], "deltah_factors": [0.9, 1.0, 1.1]})
    cfg = config_from_dict(evolve, base=tmp_path)
    assert cfg.geometry.thickness_factors == (0.7, 1.0, 1.3) and cfg.geometry.deltah_factors == (0.9, 1.0, 1.1)
    from glacgrid.simulate import ensemble_members

    assert ensemble_members(cfg)[:4] == [(0.7, 0.9), (0.7, 1.0), (0.7, 1.1), (1.0, 0.9)]
    assert len(ensemble_members(cfg)) == 9


def test_run_mode_key_errors(tmp_path):
    raw = _minimal(tmp_path)
    raw["geometry"] = {"surfaces": ["nope.tif"], "surface_years": [2011, 1979], "thickness_factors": [0.7, 1.0],
                       "deltah_factors": [0.0]}
    raw["model"] = {"ensemble": 1}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, base=tmp_path)
    msg = str(info.value)
    assert "surfaces has 1 file(s) but surface_years has 2" in msg
    assert "must be strictly increasing" in msg and "nope.tif does not exist" in msg
    assert "thickness_factors = [0.7, 1.0] applies to mode = 'evolve' only" in msg
    assert "deltah_factors = [0.0] must all be positive" in msg
    assert "ensemble = 1: use 0 for a single model or at least 2" in msg


def test_ensemble_method_auto_gives_lasso_members_that_differ(tmp_path):
    """Seeds alone give identical lasso members (spread exactly 0): ``auto`` bootstraps seed-free kinds."""
    import dataclasses

    from glacgrid.config import ModelConfig
    from glacgrid.models import FeatureSchema, make_model
    from glacgrid.pipeline import ensemble_method
    from glacgrid.testing._models import glacier_year_table

    assert ensemble_method(ModelConfig(kind="lasso", ensemble=3)) == "bootstrap"
    assert ensemble_method(ModelConfig(kind="ann", ensemble=3)) == "seeds"
    assert ensemble_method(ModelConfig(kind="lasso", ensemble=3, ensemble_method="seeds")) == "seeds"
    table = glacier_year_table(noise=0.2, seed=3)
    names = [c for c in table.columns if c.startswith("x")]
    X, y = table[list(names)].to_numpy("float64"), table["smb"].to_numpy("float64")
    schema = FeatureSchema(tuple(names), tuple("1" for _ in names))
    spreads = {}
    for method in ("seeds", "bootstrap"):
        cfg = dataclasses.replace(ModelConfig(kind="ols", ensemble=3), ensemble_method=method)
        model = make_model(cfg.kind, ensemble=cfg.ensemble, ensemble_method=ensemble_method(cfg)).fit(X, y, schema)
        spreads[method] = model.predict_spread(X)[1]
    assert spreads["seeds"].max() < 1e-12 and spreads["bootstrap"].min() > 0.01  # seeds: identical members
    with pytest.raises(ConfigError, match="ensemble_method"):
        config_from_dict(dict(_minimal(tmp_path), model={"ensemble_method": "jackknife"}), base=tmp_path)
