import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.config import DownscaleParams
from glacgrid.downscale import _kernels, downscale, solid_precipitation
from glacgrid.exceptions import GridMismatchError, MissingVariableError
from glacgrid.grid import TargetGrid

from .conftest import raise_if_dask_computes

LAT = np.arange(46.0, 47.01, 0.1)
LON = np.arange(10.0, 11.21, 0.1)


def _cube(nt=24):
    time = pd.date_range("2000-01-01", periods=nt, freq="MS")
    lat2, lon2 = np.meshgrid(LAT, LON, indexing="ij")
    orog = 1000.0 + 500.0 * (lat2 - 46.0) + 300.0 * (lon2 - 10.0)  # linear -> bilinear is exact
    base = 280.0 + 5.0 * np.sin(np.arange(nt) * 2 * np.pi / 12)
    t2m = base[:, None, None] - 0.0065 * orog[None] + 0.0 * lat2
    tp = 50.0 * (1 + 0.5 * (lon2 - 10.0))[None] * np.ones((nt, 1, 1))
    return xr.Dataset(
        {"t2m": (("time", "lat", "lon"), t2m.astype("float32")),
         "tp": (("time", "lat", "lon"), tp.astype("float32")),
         "orog": (("lat", "lon"), orog.astype("float32"))},
        coords={"time": time, "lat": LAT, "lon": LON},
    )


def test_kernels_known_answers():
    src = np.array([0.0, 1.0, 2.0])
    i, w = _kernels.bilinear_weights(src, np.array([0.25, 1.5, -1.0, 3.0]))
    np.testing.assert_array_equal(i, [0, 1, 0, 1])
    np.testing.assert_allclose(w, [0.25, 0.5, 0.0, 1.0])
    field = np.array([[0.0, 1.0], [2.0, 3.0]])  # f = 2*row + col
    out = _kernels.bilinear_apply(field, np.array([0]), np.array([0.5]), np.array([0]), np.array([0.25]))
    np.testing.assert_allclose(out, [1.25])
    assert _kernels.lapse_rate_correction(10.0, 1000.0, 2000.0, -0.0065) == pytest.approx(3.5)
    np.testing.assert_allclose(_kernels.solid_fraction(np.array([-1.0, 0.0, 0.5, 2.0, 5.0]), 0.0, 2.0),
                               [1.0, 1.0, 0.75, 0.0, 0.0])


def test_downscale_recovers_linear_fields_and_lapse_rate():
    cube = _cube()
    grid = TargetGrid.from_spec("EPSG:4326", 0.01, (10.2, 46.3, 10.9, 46.8), chunks=(13, 17))
    z = 2000.0 + 1000.0 * np.random.default_rng(0).random(grid.shape)
    dem = xr.DataArray(z, dims=("y", "x"), coords=grid.coords()).chunk(dict(zip("yx", grid.chunks)))
    params = DownscaleParams(lapse_rate=-0.0065, precip_factor=1.2, precip_gradient=0.0)
    with raise_if_dask_computes(max_computes=1):  # only the domain-coverage check computes
        out = downscale(cube, grid, dem, params)
    out = out.compute()
    base = 280.0 + 5.0 * np.sin(np.arange(24) * 2 * np.pi / 12)
    expected_t = base[:, None, None] - 0.0065 * z[None] - 273.15
    np.testing.assert_allclose(out["temp"].values, expected_t, atol=2e-3)
    lon2d = np.broadcast_to(grid.x[None, :], grid.shape)
    np.testing.assert_allclose(out["prcp"].values[0], 1.2 * 50.0 * (1 + 0.5 * (lon2d - 10.0)), rtol=1e-5)
    assert out["temp"].attrs["units"] == "degC" and out["prcp"].attrs["units"] == "kg m-2"
    assert "downscale" in out["temp"].attrs["history"]
    # temperature decreases with elevation at the configured lapse rate
    slope = np.polyfit(z.ravel(), out["temp"].values[5].ravel(), 1)[0]
    assert slope == pytest.approx(-0.0065, rel=1e-3)


def test_dask_equals_numpy_for_any_chunking():
    cube = _cube(12)
    a = TargetGrid.from_spec("EPSG:32632", 500.0, (640_000, 5_110_000, 660_000, 5_130_000), chunks=1000)
    b = a.with_chunks((7, 11))
    z = np.linspace(1500, 3500, a.shape[0] * a.shape[1]).reshape(a.shape)
    dem = xr.DataArray(z, dims=("y", "x"), coords=a.coords())
    one = downscale(cube, a, dem).compute()
    many = downscale(cube, b, dem.chunk({"y": 7, "x": 11})).compute()
    xr.testing.assert_allclose(one[["temp", "prcp"]], many[["temp", "prcp"]], rtol=0, atol=1e-5)


def test_precipitation_gradient_and_snow_split():
    cube = _cube(12)
    grid = TargetGrid.from_spec("EPSG:4326", 0.05, (10.3, 46.3, 10.6, 46.6))
    dem = xr.DataArray(np.full(grid.shape, 3000.0), dims=("y", "x"), coords=grid.coords())
    flat = downscale(cube, grid, dem, DownscaleParams(precip_gradient=0.0)).compute()
    steep = downscale(cube, grid, dem, DownscaleParams(precip_gradient=1e-4)).compute()
    orog_px = 1000.0 + 500.0 * (grid.y[:, None] - 46.0) + 300.0 * (grid.x[None, :] - 10.0)
    np.testing.assert_allclose(steep["prcp"].values[0] / flat["prcp"].values[0], 1 + 1e-4 * (3000.0 - orog_px), rtol=1e-4)
    temp = xr.DataArray([-3.0, 1.0, 4.0])
    snow = solid_precipitation(temp, xr.DataArray([10.0, 10.0, 10.0]))
    np.testing.assert_allclose(snow.values, [10.0, 5.0, 0.0])


def test_errors():
    cube = _cube(12)
    grid = TargetGrid.from_spec("EPSG:4326", 0.05, (12.0, 46.3, 12.5, 46.6))  # east of the cube
    dem = xr.DataArray(np.zeros(grid.shape), dims=("y", "x"), coords=grid.coords())
    with pytest.raises(GridMismatchError, match="beyond the climate cube"):
        downscale(cube, grid, dem)
    with pytest.raises(MissingVariableError, match="orog"):
        downscale(cube.drop_vars("orog"), grid, dem)
