"""Point (stake) sampling: elevation correction, consistency with pixels, stake and Iceland ERA5 readers."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid import features as feat
from glacgrid.config import DownscaleParams
from glacgrid.exceptions import InputDataError
from glacgrid.grid import TargetGrid

from glacgrid.testing import DATA, raise_if_dask_computes, requires_data

LAPSE = -0.0065


def _down(chunks=(3, 4)):
    """Sea-level temperature uniform in space: every pixel's temperature is T0(t) + lapse * z_pixel."""
    grid = TargetGrid.from_spec("EPSG:32632", 100.0, (600_000, 5_180_000, 601_000, 5_180_800), chunks=chunks)
    rng = np.random.default_rng(3)
    z = 2500.0 + rng.uniform(-300, 300, grid.shape)
    time = pd.date_range("2000-10-01", periods=24, freq="MS")
    t0 = 16.0 + 9.0 * np.sin(2 * np.pi * (np.arange(24) % 12 - 3) / 12)
    temp = t0[:, None, None] + LAPSE * z[None]
    prcp = np.broadcast_to(np.linspace(20, 150, 24)[:, None, None], temp.shape)
    down = xr.Dataset({"temp": (("time", "y", "x"), temp.astype("float32")),
                       "prcp": (("time", "y", "x"), prcp.astype("float32")),
                       "reference_elevation": (("y", "x"), z.astype("float32"))},
                      coords={"time": time, **grid.coords()}, attrs={"lapse_rate": LAPSE})
    surface = xr.DataArray(z, dims=("y", "x"), coords=grid.coords())
    return grid, down.chunk({"time": 12, "y": chunks[0], "x": chunks[1]}), surface, t0


def _lonlat(grid, x, y):
    from pyproj import Transformer

    return Transformer.from_crs(grid.pyproj_crs, "EPSG:4326", always_xy=True).transform(x, y)


def test_point_temperature_is_moved_to_the_stake_elevation():
    grid, down, surface, t0 = _down()
    lon, lat = _lonlat(grid, np.array([600_233.0, 600_871.0]), np.array([5_180_111.0, 5_180_650.0]))
    pts = pd.DataFrame({"point_id": ["a", "b"], "lat": lat, "lon": lon, "elevation": [2100.0, 3300.0]})
    params = feat.ClimateFeatureParams(monthly=True)
    with raise_if_dask_computes():
        out = feat.sample_points(down, pts, grid, DownscaleParams(), start=2001, end=2002, climate=params,
                                 surface=surface)
    out = out.compute()
    assert out["cpdd"].dims == ("point", "year") and out["point"].values.tolist() == ["a", "b"]
    # whatever the neighbours, the temperature at the stake is T0 + lapse * stake elevation
    for p, zp in (("a", 2100.0), ("b", 3300.0)):
        expect = t0[:12] + LAPSE * zp
        got = np.array([out[f"temp_{m}"].sel(point=p, year=2001).item() for m in feat.month_labels(feat.HydroYear())])
        np.testing.assert_allclose(got, expect, atol=2e-6)  # float32 of up to 15 degC: ~1 ulp
        days = pd.date_range("2000-10-01", periods=12, freq="MS").days_in_month.to_numpy()
        assert out["cpdd"].sel(point=p, year=2001).item() == pytest.approx((np.maximum(expect, 0) * days).sum(), rel=1e-6)
    assert out["point_elevation"].sel(point="b").item() == 3300.0
    assert out["elevation_difference"].attrs["units"] == "m"
    assert np.isfinite(out["slope"]).all()


def test_a_point_on_a_pixel_centre_gets_the_pixel_features():
    grid, down, surface, _ = _down()
    j, i = 4, 6
    x, y = grid.x[i], grid.y[j]
    lon, lat = _lonlat(grid, np.array([x]), np.array([y]))
    zpix = float(surface.values[j, i])
    pts = pd.DataFrame({"lat": lat, "lon": lon, "elevation": [zpix]})
    # random temperatures this time: the point must equal the pixel exactly, not by construction
    rng = np.random.default_rng(5)
    down = down.assign(temp=down["temp"] + xr.DataArray(rng.normal(0, 2, down["temp"].shape).astype("float32"),
                                                        dims=down["temp"].dims))
    pt = feat.sample_points(down, pts, grid, start=2001, end=2002).compute()
    px = feat.climate_pixel_features(down, surface, DownscaleParams(), start=2001, end=2002).isel(y=j, x=i).compute()
    for name in ("cpdd", "cpdd_ablation", "snow_winter", "snow_summer"):
        np.testing.assert_allclose(pt[name].isel(point=0).values, px[name].values, rtol=1e-5, err_msg=name)


def test_points_outside_the_grid_are_refused_by_name():
    grid, down, surface, _ = _down()
    pts = pd.DataFrame({"point_id": ["in", "far"], "lat": [46.77, 10.0], "lon": [10.3, 10.0],
                        "elevation": [2000.0, 2000.0]})
    with pytest.raises(InputDataError, match="far"):
        feat.sample_points(down, pts, grid, start=2001, end=2002)


@requires_data("norway")
def test_norway_stakes_are_read_through_the_observation_reader():
    st = feat.read_stakes(DATA / "norway" / "2023-08-28_stake_mb_norway_cleaned_ids_latlon.csv", "norway")
    assert len(st) == 4170 and st["rgi_id"].nunique() == 32  # 4171 rows, one without any balance
    assert list(st.columns) == list(feat.points.STAKE_COLUMNS)
    first = st.iloc[0]
    assert (first["rgi_id"], first["point_id"], first["elevation"]) == ("RGI60-08.01258", "L10/L1012", 471.0)
    assert first["year"] == 2013 and first["balance_annual"] == pytest.approx(-4.92)
    assert first["lat"] == pytest.approx(70.12588860839644)
    assert st["year"].min() >= 1962 and st["year"].max() <= 2021


@requires_data("iceland")
def test_iceland_stakes_and_the_real_era5_point_feature_table():
    st = feat.read_stakes(DATA / "iceland" / "stakes" / "HOFS_RGIIDV6.csv", "iceland")
    assert st.iloc[0]["point_id"] == "blt11" and st.iloc[0]["year"] == 2017
    assert st.iloc[0]["balance_annual"] == pytest.approx(-1.12)
    tab = feat.iceland_era5_point_features(DATA / "iceland" / "era5_features" / "iceland_monthly_dataset.csv")
    assert len(tab) == 55  # one row per observation period, none dropped
    row = tab.set_index("obs_id").loc[0]
    assert (row["point_id"], row["year"], row["n_months"]) == ("hn14aa", 1995, 7)
    # October 1994: tp 0.0050710 m/day * 31 days -> 157.2 kg m-2; t2m 267.886 K moved up 116.48 m
    assert row["tp_oct"] == pytest.approx(0.0050710322408527705 * 31 * 1000, rel=1e-9)
    assert row["temp_oct"] == pytest.approx(267.88568155189944 - 273.15 - 0.0065 * 116.47638778910209, rel=1e-9)
    assert row["ssrd_oct"] == pytest.approx(3434260.410100637 / 86400, rel=1e-9)
    assert np.isnan(row["t2m_jun"])  # a winter period (Oct-Apr): later months are not part of it
    assert row["cpdd"] == pytest.approx(0.0)  # a winter on the ice cap: no positive month
    assert tab["cpdd"].max() > 100
