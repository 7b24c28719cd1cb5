import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid import features as feat
from glacgrid.config import DownscaleParams
from glacgrid.exceptions import InputDataError, MissingVariableError, TimeAxisError
from glacgrid.features import _kernels
from glacgrid.glaciers import GlacierGeometry, area_weighted_mean, paint
from glacgrid.grid import TargetGrid

from glacgrid.testing import REPO, HEF, raise_if_dask_computes, requires_data


def test_climate_kernel_known_answer():
    temp = np.array([-5.0, 1.0, 3.0] + [0.0] * 9)
    prcp = np.array([100.0, 100.0, 100.0] + [10.0] * 9)
    days = np.array([31, 30, 31, 31, 28, 31, 30, 31, 30, 31, 31, 30], dtype=float)
    winter = np.arange(12) < 7
    cpdd, sw, ss = _kernels.climate_features(temp, prcp, days, winter, 0.0, 2.0)
    assert cpdd == pytest.approx(1.0 * 30 + 3.0 * 31)
    # snow: month 0 all (100), month 1 half (50), month 2 none; months 3..6 at 0 degC all (4 x 10)
    assert sw == pytest.approx(100 + 50 + 0 + 40)
    assert ss == pytest.approx(50)


def test_slope_aspect_of_planes():
    x = np.arange(20) * 10.0
    east_up = np.tile(0.1 * x, (15, 1))  # rises eastward -> faces west
    sa = _kernels.slope_aspect(east_up, 10.0, 10.0)
    np.testing.assert_allclose(sa[..., 0], np.degrees(np.arctan(0.1)), rtol=1e-6)
    np.testing.assert_allclose(sa[..., 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(sa[..., 2], -1.0)
    rows = np.arange(15)[:, None] * 10.0
    south_up = np.tile(0.2 * rows, (1, 20))  # rows go south; rising southward -> faces north
    sa = _kernels.slope_aspect(south_up, 10.0, 10.0)
    np.testing.assert_allclose(sa[..., 1], 1.0)
    np.testing.assert_allclose(sa[..., 0], np.degrees(np.arctan(0.2)), rtol=1e-6)


def test_hydrological_years_reshape_and_missing_months():
    time = pd.date_range("2000-01-01", "2002-12-01", freq="MS")
    da = xr.DataArray(np.arange(time.size, dtype=float), dims="time", coords={"time": time})
    hy, days = feat.hydrological_years(da, 2001, 2002)
    assert hy.dims == ("year", "month")
    assert hy.sel(year=2001, month=0).item() == 9  # October 2000
    assert hy.sel(year=2002, month=11).item() == 32  # September 2002
    assert days.sel(year=2001).values[4] == 28  # February 2001
    with pytest.raises(TimeAxisError, match=r"\[2003\]"):
        feat.hydrological_years(da, 2001, 2003)
    south, _ = feat.hydrological_years(da, 2001, 2002, hemisphere="south")
    assert south.sel(year=2001, month=0).item() == 3  # April 2000: year 2001 runs Apr 2000 - Mar 2001


def _setup(chunks):
    grid = TargetGrid.from_spec("EPSG:32632", 100.0, (500_000, 5_000_000, 502_300, 5_001_700), chunks=chunks)
    rng = np.random.default_rng(1)
    ids = np.zeros(grid.shape, dtype="int32")
    ids[2:8, 3:12] = 1
    ids[9:15, 5:20] = 2
    ids[10:12, 21:23] = 3
    z = 2500 + 10.0 * np.arange(grid.shape[1])[None, :] + rng.normal(0, 5, grid.shape)
    c = dict(zip("yx", grid.chunks))
    gid = xr.DataArray(ids, dims=("y", "x"), coords=grid.coords()).chunk(c)
    surface = xr.DataArray(z, dims=("y", "x"), coords=grid.coords()).chunk(c)
    time = pd.date_range("2000-10-01", "2002-09-01", freq="MS")
    temp = 5.0 + 8.0 * np.sin(np.arange(time.size) / 12 * 2 * np.pi)[:, None, None] - 0.0065 * (z - 2500)[None]
    down = xr.Dataset({"temp": (("time", "y", "x"), temp.astype("float32")),
                       "prcp": (("time", "y", "x"), np.full(temp.shape, 80.0, "float32")),
                       "reference_elevation": (("y", "x"), z.astype("float32"))},
                      coords={"time": time, **grid.coords()}, attrs={"lapse_rate": -0.0065})
    down = down.chunk({"time": 12, **c})
    return grid, gid, surface, down


def test_glacier_features_match_a_numpy_reference_and_stay_lazy():
    grid, gid, surface, down = _setup((5, 7))
    index = np.array([1, 2, 3, 4])  # glacier 4 has no pixel -> NaN, kept
    active = gid > 0
    area = grid.pixel_area()
    with raise_if_dask_computes(max_computes=0):
        climate = feat.climate_pixel_features(down, surface, DownscaleParams(), start=2001, end=2002)
        topo = feat.topo_pixel_features(surface, grid)
    const = feat.glacier_constants(gid, surface, active, area, index).compute()
    with raise_if_dask_computes(max_computes=0):
        pix = feat.pixel_features(climate, topo, const, gid, active)
        gf = feat.glacier_features(pix, gid, active, area, index)
    gf = gf.compute()
    ids = gid.values
    z = surface.values
    for g in (1, 2, 3):
        m = ids == g
        assert gf["mean_elevation"].sel(glacier=g).values[()] == pytest.approx(z[m].mean(), rel=1e-6)
        assert gf["max_elevation"].sel(glacier=g).item() == pytest.approx(z[m].max(), rel=1e-6)
        assert gf["area"].sel(glacier=g).item() == pytest.approx(m.sum() * 0.01)
        cp = pix["cpdd"].sel(year=2002).values[m].mean()
        assert gf["cpdd"].sel(glacier=g, year=2002).item() == pytest.approx(cp, rel=1e-5)
    assert np.isnan(gf["cpdd"].sel(glacier=4)).all()
    # slope and aspect from central differences of the edge-padded surface (numpy), area-weighted: the
    # surface rises 10 m per 100 m eastward (slope atan(0.1), facing west) under 5 m of noise
    dz_drow, dz_dcol = (d[1:-1, 1:-1] for d in np.gradient(np.pad(z, 1, mode="edge")))
    gx, gy = dz_dcol / 100.0, -dz_drow / 100.0
    slope = np.degrees(np.arctan(np.hypot(gx, gy))).astype("float32")
    sin = (-gx / np.hypot(gx, gy)).astype("float32")
    m = ids == 2  # equal pixel areas: the area-weighted mean is the mean
    assert gf["slope"].sel(glacier=2).item() == pytest.approx(slope[m].astype("float64").mean(), rel=1e-6)
    assert gf["aspect_sin"].sel(glacier=2).item() == pytest.approx(sin[m].astype("float64").mean(), rel=1e-6)
    assert abs(gf["slope"].sel(glacier=2).item() - np.degrees(np.arctan(0.1))) < 0.5  # the noise: 0.26 deg
    assert gf["cpdd"].attrs["units"] == "K d"


def test_features_dask_chunking_invariant():
    a = _setup((5, 7))
    b = _setup((100, 100))
    out = []
    for grid, gid, surface, down in (a, b):
        active = gid > 0
        area = grid.pixel_area()
        climate = feat.climate_pixel_features(down, surface, DownscaleParams(), start=2001, end=2002)
        topo = feat.topo_pixel_features(surface, grid)
        const = feat.glacier_constants(gid, surface, active, area, np.array([1, 2, 3])).compute()
        pix = feat.pixel_features(climate, topo, const, gid, active)
        out.append(feat.glacier_features(pix, gid, active, area, np.array([1, 2, 3])).compute())
    xr.testing.assert_allclose(out[0], out[1], rtol=1e-5)


def test_surface_change_moves_temperature_with_the_lapse_rate():
    grid, gid, surface, down = _setup((100, 100))
    base = feat.climate_pixel_features(down, surface, DownscaleParams(), start=2002, end=2002)["cpdd"].compute()
    lowered = feat.climate_pixel_features(down, surface - 200.0, DownscaleParams(), start=2002, end=2002)["cpdd"].compute()
    assert (lowered >= base - 1e-3).all() and float((lowered - base).mean()) > 50.0


# ---------------------------------------------------------------- hydrological years and climate predictors

def test_partial_years_are_dropped_with_a_warning_and_start_month_is_configurable():
    time = pd.date_range("2000-03-01", "2003-11-01", freq="MS")  # partial hydro years 2000 and 2004
    da = xr.DataArray(np.arange(time.size, dtype=float), dims="time", coords={"time": time})
    with pytest.warns(feat.PartialYearWarning, match=r"\[2000, 2004\]"):
        hy, days = feat.hydrological_years(da)
    assert hy["year"].values.tolist() == [2001, 2002, 2003]
    assert hy.sel(year=2001, month=0).item() == 7  # October 2000 is the 8th month of the record
    assert hy["calendar_month"].values.tolist() == [10, 11, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    jan, _ = feat.hydrological_years(da, 2001, 2002, hydro=feat.HydroYear(start_month=1))
    assert jan.sel(year=2001, month=0).item() == 10  # a calendar year: January 2001
    assert feat.month_labels(feat.HydroYear("south")) == ["apr", "may", "jun", "jul", "aug", "sep", "oct",
                                                          "nov", "dec", "jan", "feb", "mar"]
    gap = da.drop_sel(time=[pd.Timestamp("2002-02-01")])
    with pytest.raises(TimeAxisError, match=r"\[2002\]"):
        feat.hydrological_years(gap)
    with pytest.raises(InputDataError, match="start_month"):
        feat.HydroYear(start_month=13)


def test_ablation_season_kernel_known_answer():
    days = np.full(12, 30.0)
    temp = np.array([-5.0] * 7 + [2.0, 4.0, 6.0, 4.0, 2.0])  # PDD 60, 120, 180, 120, 60 = 540 K d
    prcp = np.full(12, 10.0)
    winter = np.arange(12) < 7
    out = _kernels.annual_climate(temp, prcp, days, winter, ~winter, 0.0, 2.0, ablation=(0.1, 0.9))
    np.testing.assert_allclose(out, [540, 540, 5, 70, 0])  # summer months are all >= 2 degC: rain
    # cumulative PDD 60, 180, 360, 480, 540: 20 % (108) is passed in month 8, 80 % (432) in month 10
    out = _kernels.annual_climate(temp, prcp, days, winter, ~winter, 0.0, 2.0, ablation=(0.2, 0.8))
    np.testing.assert_allclose(out[:3], [540, 120 + 180 + 120, 3])
    cold = _kernels.annual_climate(np.full(12, -3.0), prcp, days, winter, ~winter, 0.0, 2.0)
    np.testing.assert_allclose(cold, [0, 0, 0, 70, 50])
    nan = _kernels.annual_climate(np.full(12, np.nan), prcp, days, winter, ~winter, 0.0, 2.0)
    assert np.isnan(nan[:3]).all()


def test_season_bounds_defaults_and_checks():
    north = feat.ClimateFeatureParams()
    w, s = north.masks()
    assert w.tolist() == [True] * 7 + [False] * 5 and s.tolist() == [False] * 7 + [True] * 5
    south = feat.ClimateFeatureParams(feat.HydroYear("south"))
    assert sorted(south.seasons()[0]) == [4, 5, 6, 7, 8, 9, 10] and sorted(south.seasons()[1]) == [1, 2, 3, 11, 12]
    short = feat.ClimateFeatureParams(winter=(11, 3), summer=(6, 8))
    w, s = short.masks()  # Oct-Sep order: Nov..Mar winter, Jun..Aug summer, Oct/Apr/May/Sep in neither
    assert np.flatnonzero(w).tolist() == [1, 2, 3, 4, 5] and np.flatnonzero(s).tolist() == [8, 9, 10]
    with pytest.raises(InputDataError, match="share months"):
        feat.ClimateFeatureParams(winter=(10, 5), summer=(5, 9))
    with pytest.raises(InputDataError, match="ablation"):
        feat.ClimateFeatureParams(ablation=(0.9, 0.1))


def _linear_climate(years: int = 4):
    """One-pixel-column downscaled climate: temp = 10 sin(month) + year offset, uniform 50 kg m-2."""
    grid = TargetGrid.from_spec("EPSG:32632", 100.0, (500_000, 5_000_000, 500_300, 5_000_200), chunks=(2, 2))
    time = pd.date_range("2000-10-01", periods=12 * years, freq="MS")
    k = np.arange(time.size)
    t = (10.0 * np.sin(2 * np.pi * (k % 12 - 3) / 12) + (k // 12))[:, None, None] * np.ones((1, *grid.shape))
    z = np.full(grid.shape, 2000.0)
    down = xr.Dataset({"temp": (("time", "y", "x"), t.astype("float32")),
                       "prcp": (("time", "y", "x"), np.full(t.shape, 50.0, "float32")),
                       "reference_elevation": (("y", "x"), z.astype("float32"))},
                      coords={"time": time, **grid.coords()}, attrs={"lapse_rate": -0.0065})
    return grid, down, xr.DataArray(z, dims=("y", "x"), coords=grid.coords())


def test_monthly_values_and_anomalies_against_a_reference_period():
    grid, down, z = _linear_climate(4)  # years 2001..2004, each 1 K warmer than the last
    params = feat.ClimateFeatureParams(monthly=True, reference=(2001, 2002))
    ds = feat.climate_pixel_features(down.chunk({"time": 12}), z, DownscaleParams(), start=2003, end=2004,
                                     features=params)
    assert list(ds.data_vars) == params.names()
    assert ds["year"].values.tolist() == [2003, 2004]  # reference years computed, not returned
    px = ds.isel(y=0, x=0).compute()
    # month index 3 of the year (January) has sin(0) = 0: temperature = year offset (2 in 2003)
    assert px["temp_jan"].sel(year=2003).item() == pytest.approx(2.0, abs=1e-5)
    # reference mean offset is 0.5: anomaly of any monthly temperature in 2004 is 3 - 0.5
    np.testing.assert_allclose(px["temp_jul_anom"].values, [1.5, 2.5], atol=1e-5)
    np.testing.assert_allclose(px["snow_jan"].values, [0.0, 0.0], atol=1e-6)  # 2 and 3 degC: rain
    assert px["temp_jan"].attrs["units"] == "degC" and px["temp_jan_anom"].attrs["units"] == "K"
    assert "January" in px["temp_jan"].attrs["long_name"] or "Jan" in px["temp_jan"].attrs["long_name"]
    assert px["cpdd_anom"].attrs["reference_period"] == "2001-2002"
    ref = feat.climate_pixel_features(down, z, DownscaleParams(), start=2001, end=2004,
                                      features=feat.ClimateFeatureParams()).isel(y=0, x=0)
    np.testing.assert_allclose(px["cpdd_anom"].values,
                               ref["cpdd"].sel(year=[2003, 2004]).values - ref["cpdd"].sel(year=[2001, 2002]).values.mean(),
                               rtol=1e-5)


def test_era5_variables_are_sampled_bilinearly():
    time = pd.date_range("2000-10-01", periods=12, freq="MS")
    lat = np.array([46.0, 46.5, 47.0])
    lon = np.array([10.0, 10.5, 11.0, 11.5])
    f = (100.0 * lat[:, None] + lon[None, :])[None] + np.arange(12)[:, None, None]
    cube = xr.Dataset({"ssrd": (("time", "lat", "lon"), f)}, coords={"time": time, "lat": lat, "lon": lon})
    plat = xr.DataArray([[46.2, 46.9]], dims=("y", "x")).chunk(1)
    plon = xr.DataArray([[10.3, 11.4]], dims=("y", "x")).chunk(1)
    with raise_if_dask_computes():
        out = feat.era5_monthly_features(cube, plon, plat, ["ssrd"], start=2001, end=2001)
    out = out.compute()
    assert out["ssrd_oct"].attrs["units"] == "W m-2"
    np.testing.assert_allclose(out["ssrd_oct"].sel(year=2001).values, [[4630.3, 4701.4]], rtol=1e-6)
    np.testing.assert_allclose(out["ssrd_sep"].sel(year=2001).values, [[4641.3, 4712.4]], rtol=1e-6)
    with pytest.raises(MissingVariableError, match="sshf"):
        feat.era5_monthly_features(cube, plon, plat, ["sshf"], start=2001, end=2001)


# ---------------------------------------------------------------- topography and sampling

def _ramp(chunks):
    """A glacier on a two-slope ramp: 50 m per 100 m pixel up to 2200 m, then 10 m per pixel to 2350 m."""
    grid = TargetGrid.from_spec("EPSG:32632", 100.0, (500_000, 5_000_000, 502_500, 5_001_100),
                                 chunks=chunks or (100, 100))
    c = np.arange(grid.shape[1], dtype=float)
    prof = np.where(c <= 6, 2000 + 50 * (c - 2), 2200 + 10 * (c - 6))
    z = np.tile(prof, (grid.shape[0], 1))
    ids = np.zeros(grid.shape, "int32")
    ids[3:8, 2:22] = 1  # 5 x 20 pixels, 2000 .. 2350 m
    ids[9:11, 23:25] = 2
    th = np.where(ids > 0, 100.0, 0.0)
    th[3:8, 2:4] = 0.0  # the two lowest columns of glacier 1 have melted away
    coords = grid.coords()
    def da(a):
        out = xr.DataArray(a, dims=("y", "x"), coords=coords)
        return out.chunk(dict(zip("yx", chunks))) if chunks else out
    return grid, da(ids), da(z), da(th)


def test_topographic_features_known_answers_and_evolving_geometry():
    grid, gid, z, th = _ramp((4, 7))
    area = grid.pixel_area()
    index = np.array([1, 2, 3])
    topo = feat.topo_pixel_features(z, grid)
    const = feat.glacier_constants(gid, z, gid > 0, area, index, topo=topo).compute()
    g1 = const.sel(glacier=1)
    assert g1["area"].item() == pytest.approx(100 * 0.01)
    assert (g1["min_elevation"].item(), g1["max_elevation"].item()) == (2000.0, 2350.0)
    # lowest 20 % of 2000..2350 m = up to 2070 m: columns at 2000 and 2050 m, slope 50 m / 100 m
    assert g1["slope_lower20"].item() == pytest.approx(np.degrees(np.arctan(0.5)), rel=1e-5)
    assert np.isnan(const["slope_lower20"].sel(glacier=3)) and const["area"].sel(glacier=3).item() == 0
    # the surface rises eastward: it faces west, aspect 3 pi / 2
    assert float(topo["aspect"].isel(y=5, x=10)) == pytest.approx(1.5 * np.pi, rel=1e-6)
    # with the thickness, the melted columns no longer count: 90 pixels, from 2100 m
    ev = feat.glacier_constants(gid, z, feat.active_pixels(gid, th), area, index, topo=topo).compute()
    assert ev["area"].sel(glacier=1).item() == pytest.approx(0.9)
    assert ev["min_elevation"].sel(glacier=1).item() == 2100.0
    # lower 20 % of 2100..2350 = up to 2150 m: columns 2100, 2150 m; slopes 0.5 and (2200-2100)/200
    assert ev["slope_lower20"].sel(glacier=1).item() == pytest.approx(np.degrees(np.arctan(0.5)), rel=1e-5)


def test_area_weighted_mean_leaves_nan_pixels_out_of_the_weights():
    ids = xr.DataArray(np.array([[1, 1, 1], [2, 2, 0]]), dims=("y", "x")).chunk({"x": 2})
    area = xr.DataArray(np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 9.0]]), dims=("y", "x"))
    v = xr.DataArray(np.array([[10.0, np.nan, 40.0], [np.nan, np.nan, 5.0]]), dims=("y", "x"), name="v")
    out = area_weighted_mean(v, ids, ids > 0, area, np.array([1, 2, 3])).compute()
    np.testing.assert_allclose(out.values, [(10 * 1 + 40 * 3) / 4, np.nan, np.nan])
    ds = area_weighted_mean(xr.Dataset({"v": v, "one": v * 0 + 1}), ids, ids > 0, area, np.array([1])).compute()
    assert ds["v"].item() == pytest.approx(32.5) and ds["one"].item() == 1.0


def test_paint_puts_glacier_values_on_their_pixels_lazily():
    ids = xr.DataArray(np.array([[0, 5, 5], [2, 2, 9]]), dims=("y", "x")).chunk({"x": 2})
    vals = xr.DataArray([20.0, 50.0], dims="glacier", coords={"glacier": [5, 2]}).chunk()
    with raise_if_dask_computes():
        out = paint(vals, ids)
    np.testing.assert_array_equal(out.values, [[np.nan, 20.0, 20.0], [50.0, 50.0, np.nan]])


def _features_inputs(chunks):
    grid, gid, z, th = _ramp(chunks)
    time = pd.date_range("2000-10-01", periods=36, freq="MS")
    rng = np.random.default_rng(7)
    t = 4.0 + 9.0 * np.sin(2 * np.pi * (np.arange(36) % 12 - 3) / 12)[:, None, None] + rng.normal(0, 1, (36, *grid.shape))
    p = rng.gamma(2.0, 40.0, (36, *grid.shape))
    down = xr.Dataset({"temp": (("time", "y", "x"), t.astype("float32")),
                       "prcp": (("time", "y", "x"), p.astype("float32")),
                       "reference_elevation": (("y", "x"), np.asarray(z).astype("float32"))},
                      coords={"time": time, **grid.coords()}, attrs={"lapse_rate": -0.0065})
    if chunks:
        down = down.chunk({"time": 12, "y": chunks[0], "x": chunks[1]})
    return grid, gid, z, th, down


def test_compute_features_is_lazy_and_dask_equals_numpy():
    params = feat.ClimateFeatureParams(monthly=True, reference=(2001, 2003))
    out = []
    for chunks in ((4, 7), None):
        grid, gid, z, th, down = _features_inputs(chunks)
        with raise_if_dask_computes():
            glaciers = GlacierGeometry(gid, z - 5.0, grid.pixel_area(), np.array([1, 2, 3]), grid, th)
            gf = feat.compute_features(down, glaciers, start=2001, end=2003, climate=params)
        out.append(gf.compute())
    xr.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-4)
    gf = out[0]
    assert gf["cpdd"].dims == ("glacier", "year") and gf["area"].dims == ("glacier",)
    assert list(gf.data_vars)[:3] == ["cpdd", "snow_winter", "snow_summer"]
    assert gf["area"].sel(glacier=1).item() == pytest.approx(0.9)
    assert np.isnan(gf["cpdd"].sel(glacier=3)).all()  # no pixel: kept, NaN
    # glacier 2 (2 x 2 pixels at 2250/2260 m, lowered 5 m): its CPDD is the mean of its pixel CPDDs
    grid, gid, z, th, down = _features_inputs(None)
    m = np.asarray(gid) == 2
    t = down["temp"].values[:, m] - 0.0065 * (-5.0)
    days = pd.date_range("2000-10-01", periods=36, freq="MS").days_in_month.to_numpy()
    cp = (np.maximum(t, 0) * days[:, None]).reshape(3, 12, -1).sum(axis=1).mean(axis=1)
    np.testing.assert_allclose(gf["cpdd"].sel(glacier=2).values, cp, rtol=1e-5)
    np.testing.assert_allclose(gf["cpdd_anom"].sel(glacier=2).values, cp - cp.mean(), rtol=1e-4, atol=1e-3)
    # normalised elevation: glacier 1 (2100..2350 after melt) -> area-weighted mean of (z - 2095) / 250
    zz = np.asarray(z)[3:8, 4:22] - 5.0
    assert gf["elevation_norm"].sel(glacier=1).item() == pytest.approx(((zz - zz.min()) / 250).mean(), rel=1e-5)
    assert gf["aspect"].sel(glacier=1).item() == pytest.approx(1.5 * np.pi, rel=1e-6)
    pix = feat.compute_features(down, GlacierGeometry(gid, z, grid.pixel_area(), np.array([1, 2]), grid),
                                start=2001, end=2001, mode="pixel")
    assert pix["cpdd"].dims == ("year", "y", "x") and np.isnan(pix["cpdd"].values[0, 0, 0])


def test_packed_glacier_pixels_give_the_raster_features():
    grid, gid, z, th, down = _features_inputs((4, 7))
    index = np.array([1, 2, 3])
    params = feat.ClimateFeatureParams(reference=(2001, 2003))
    ref = feat.compute_features(down, GlacierGeometry(gid, z, grid.pixel_area(), index, grid, th), start=2001,
                                end=2003, climate=params).compute()
    packed = feat.pack_feature_pixels(gid, z, grid, thickness=th, chunk=37)
    assert packed.sizes["pixel"] == 104 and packed["pixel_area"].attrs["units"] == "m2"
    rows, cols = packed["row"].values, packed["col"].values
    pdown = xr.Dataset({"temp": down["temp"].isel(y=xr.DataArray(rows, dims="pixel"), x=xr.DataArray(cols, dims="pixel")),
                        "prcp": down["prcp"].isel(y=xr.DataArray(rows, dims="pixel"), x=xr.DataArray(cols, dims="pixel")),
                        "reference_elevation": ("pixel", packed["surface"].data)}, attrs=down.attrs)
    with raise_if_dask_computes():
        out = feat.compute_features(pdown.drop_vars(["x", "y"]), GlacierGeometry.from_dataset(packed, index),
                                    start=2001, end=2003, climate=params, topo=packed)
    xr.testing.assert_allclose(out.compute(), ref, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------- real data: the Oetztal glaciers

@pytest.mark.slow
@requires_data("hef")
def test_hef_features_against_srtm_outline_and_wgms(tmp_path):
    from glacgrid.config import load_config
    from glacgrid.pipeline import prepare

    cfg = load_config(REPO / "examples" / "hef.toml")
    prep = prepare(cfg, tmp_path)
    s = prep.static
    params = feat.ClimateFeatureParams(monthly=True, reference=(1982, 2018))
    gf = feat.compute_features(prep.down, prep.glaciers.with_thickness(None), start=1982, end=2018,
                               downscale=cfg.downscale, climate=params).compute()
    assert gf.sizes == {"glacier": 20, "year": 37}
    hef = gf.sel(glacier=int(prep.table.index[prep.table["rgi_id"] == "RGI50-11.00897"][0]))
    print(f"HEF: mean elevation {float(hef.mean_elevation):.1f} m, area {float(hef.area):.4f} km2, "
          f"min/max {float(hef.min_elevation):.0f}/{float(hef.max_elevation):.0f} m, "
          f"slope_lower20 {float(hef.slope_lower20):.2f} deg, aspect {np.degrees(float(hef.aspect)):.0f} deg")
    assert abs(float(hef["mean_elevation"]) - 3030.0) < 30.0  # SRTM inside the outline
    assert float(hef["area"]) == pytest.approx(8.03, rel=0.01)
    jja = (hef["temp_jun_anom"] + hef["temp_jul_anom"] + hef["temp_aug_anom"]) / 3
    wgms = pd.read_csv(HEF / "mb" / "mbdata_WGMS-00491.csv").set_index("YEAR")["ANNUAL_BALANCE"]
    r = np.corrcoef(jja.values, wgms.reindex(range(1982, 2019)).values)[0, 1]
    print(f"HEF JJA temperature anomaly vs WGMS 491 annual balance 1982-2018: r = {r:.3f}")
    assert -0.8 < r < -0.45
    # a stake at a HEF pixel centre, at that pixel's elevation, gets that pixel's CPDD
    gid = s["glacier_id"].values
    j, i = np.argwhere(gid == int(hef["glacier"]))[len(np.argwhere(gid == int(hef["glacier"]))) // 2]
    pts = pd.DataFrame({"lat": [float(prep.grid.y[j])], "lon": [float(prep.grid.x[i])],
                        "elevation": [float(s["surface"].values[j, i])]})
    pt = feat.sample_points(prep.down, pts, prep.grid, cfg.downscale, start=2000, end=2002).compute()
    px = feat.climate_pixel_features(prep.down, s["surface"], cfg.downscale, start=2000, end=2002)
    np.testing.assert_allclose(pt["cpdd"].isel(point=0).values, px["cpdd"].isel(y=j, x=i).values, rtol=1e-4)
