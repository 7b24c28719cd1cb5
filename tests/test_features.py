import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid import features as feat
from glacgrid.config import DownscaleParams
from glacgrid.exceptions import TimeAxisError
from glacgrid.features import _kernels
from glacgrid.grid import TargetGrid

from .conftest import raise_if_dask_computes


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
    # surface rises 10 m per 100 m eastward: slope atan(0.1), facing west
    assert gf["slope"].sel(glacier=2).item() == pytest.approx(np.degrees(np.arctan(0.1)), abs=2.0)
    assert gf["aspect_sin"].sel(glacier=2).item() == pytest.approx(-1.0, abs=0.1)
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
