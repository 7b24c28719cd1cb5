"""Feature schema, Zarr store and flat tables; the `glacgrid features` verb feeding `glacgrid cv`."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from glacgrid import features as feat
from glacgrid.cli import app
from glacgrid.exceptions import InputDataError, SchemaMismatchError
from glacgrid.features import FeatureSchema


def _gf():
    gf = xr.Dataset({"cpdd": (("glacier", "year"), np.array([[100.0, 200.0], [np.nan, np.nan]])),
                     "area": ("glacier", np.array([1.5, 0.0]))},
                    coords={"glacier": [1, 2], "year": [2001, 2002]})
    return xr.Dataset({k: feat.stamp_feature(gf[k], k) for k in gf.data_vars})


def test_schema_table_and_store_round_trip(tmp_path):
    gf = _gf()
    schema = feat.feature_schema(gf)
    assert schema == FeatureSchema(("cpdd", "area"), ("K d", "km2"))
    arr = feat.to_feature_array(gf)
    assert arr.dims == ("glacier", "year", "feature") and arr["units"].values.tolist() == ["K d", "km2"]
    assert arr.sel(glacier=1, year=2002, feature="area").item() == 1.5
    table = pd.DataFrame({"rgi_id": ["RGI60-11.00001", "RGI60-11.00002"]}, index=[1, 2])
    paths = feat.write_features(gf, tmp_path, table, fmt="parquet")
    df = pd.read_parquet(paths["table"])
    assert list(df.columns) == ["glacier", "rgi_id", "year", "cpdd", "area"]
    assert len(df) == 4 and df["cpdd"].isna().sum() == 2  # the glacier without pixels keeps its rows
    assert df.set_index(["rgi_id", "year"]).loc[("RGI60-11.00001", 2002), "cpdd"] == 200.0
    assert json.loads(paths["schema"].read_text()) == schema.to_dict()
    ds, stored = feat.read_features(paths["zarr"])
    assert stored == schema
    np.testing.assert_array_equal(ds["cpdd"].values, gf["cpdd"].values)
    assert ds["cpdd"].attrs["units"] == "K d"
    # writing again is idempotent; a store whose units were changed is refused by name
    feat.write_features(gf, tmp_path, table)
    bad = gf.copy()
    bad["area"] = bad["area"].assign_attrs(units="m2")
    with pytest.raises(SchemaMismatchError, match="area"):
        FeatureSchema.from_dict(json.loads(paths["schema"].read_text())).check(feat.feature_schema(bad))
    with pytest.raises(InputDataError, match="rgi_id"):
        feat.features_table(gf, pd.DataFrame({"name": ["a", "b"]}, index=[1, 2]))


@pytest.mark.slow
def test_cli_features_writes_tables_that_cv_reads(small_region, tmp_path):
    from glacgrid.testing import write_config

    cfg = write_config(small_region, tmp_path / "run.toml", output=tmp_path / "run", chunks=64)
    out = tmp_path / "feat"
    runner = CliRunner()
    res = runner.invoke(app, ["features", str(cfg), "--out", str(out), "--monthly", "--reference",
                              f"{small_region.start}-{small_region.end}", "--era5-variables", "t2m"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "features.csv")
    ds, schema = feat.read_features(out / "features.zarr")
    n_years = small_region.end - small_region.start + 1
    assert len(df) == ds.sizes["glacier"] * n_years and list(df.columns[:3]) == ["glacier", "rgi_id", "year"]
    assert list(df.columns[3:]) == list(schema.names) and "temp_jul_anom" in schema.names
    # the flat table and the store hold the same numbers
    g = int(df["glacier"].iloc[0])
    np.testing.assert_allclose(df[df["glacier"] == g]["cpdd"].to_numpy(), ds["cpdd"].sel(glacier=g).values, rtol=1e-6)
    # the ERA5-Land 2 m temperature of July, bilinear from the cube (K), next to the downscaled one (degC)
    assert ds["t2m_jul"].attrs["units"] == "K" and 230 < df["t2m_jul"].min() <= df["t2m_jul"].max() < 320
    assert (df["t2m_jul"] - 273.15 - df["temp_jul"]).abs().max() < 25  # a lapse-rate apart, not a unit apart
    # anomalies against the whole period average to zero
    assert abs(df.groupby("glacier")["cpdd_anom"].mean()).max() < 1e-3
    obs = pd.read_csv(out / "observed.csv")
    assert {"smb", "rgi_id", "year"} <= set(obs.columns) and len(obs) > 10
    res = runner.invoke(app, ["cv", str(out / "observed.csv"), "--target", "smb", "--glacier-col", "rgi_id",
                              "--year-col", "year", "--features", "cpdd,snow_winter,snow_summer", "--model", "ols",
                              "--scheme", "logo", "--out", str(tmp_path / "cv.json")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "cv.json").read_text())["metrics"]
    assert metrics["r"] > 0.8  # the synthetic truth is a temperature-index model of these predictors
    bad = runner.invoke(app, ["features", str(cfg), "--out", str(out), "--reference", "1990"])
    assert bad.exit_code == 2 and "--reference" in bad.output
