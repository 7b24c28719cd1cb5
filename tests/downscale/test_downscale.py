import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.config import DownscaleParams
from glacgrid.downscale import _kernels, downscale, solid_precipitation
from glacgrid.exceptions import GridMismatchError, MissingVariableError
from glacgrid.grid import TargetGrid

from glacgrid.testing import raise_if_dask_computes

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
    with raise_if_dask_computes():  # fully lazy (the domain check uses the grid's outer ring only)
        out = downscale(cube, grid, dem, params)
    out = out.compute()
    base = 280.0 + 5.0 * np.sin(np.arange(24) * 2 * np.pi / 12)
    expected_t = base[:, None, None] - 0.0065 * z[None] - 273.15
    np.testing.assert_allclose(out["temp"].values, expected_t, atol=1e-4)  # float32 of ~280 K: ulp 3e-5
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
    xr.testing.assert_equal(one[["temp", "prcp"]], many[["temp", "prcp"]])  # every pixel from its own inputs


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


# ---------------------------------------------------------------------------- engines, methods, lapse rates
from glacgrid.downscale import regrid  # noqa: E402
from glacgrid.downscale.lapse import fit_lapse_rates  # noqa: E402
from glacgrid.exceptions import InputDataError  # noqa: E402

from glacgrid.testing import HEF, requires_data  # noqa: E402


@pytest.mark.parametrize("engine", ["glacgrid", "xarray-regrid", "odc-geo"])
def test_bilinear_engines_recover_linear_field_with_explicit_chunks(engine):
    cube = _cube(12)
    grid = TargetGrid.from_spec("EPSG:4326", 0.01, (10.2, 46.3, 10.9, 46.8), chunks=(13, 17))
    with raise_if_dask_computes():
        out = regrid(cube["orog"], grid, engine=engine)
        tout = regrid(cube["t2m"], grid, engine=engine, time_chunk=5)
    assert out.chunks == ((13,) * 3 + (11,), (17,) * 4 + (2,))
    assert tout.chunks[0] == (5, 5, 2) and tout.dims == ("time", "y", "x")
    expected = 1000.0 + 500.0 * (grid.y[:, None] - 46.0) + 300.0 * (grid.x[None, :] - 10.0)
    np.testing.assert_allclose(out.values, expected, atol=1e-8)  # whole metres at the cell centres: exact


def test_projected_engines_agree():
    cube = _cube(12)
    grid = TargetGrid.from_spec("EPSG:32632", 500.0, (640_000, 5_150_000, 665_000, 5_175_000), chunks=(13, 17))
    a = regrid(cube["t2m"], grid, engine="glacgrid").compute()
    b = regrid(cube["t2m"], grid, engine="odc-geo").compute()
    np.testing.assert_allclose(a.values, b.values, atol=2e-4)  # float32 of ~280 K: a few ulp


def test_conservative_preserves_cell_values_and_area_mean():
    # a step field: conservative keeps each cell's value inside it and the cell-area mean overall
    step = xr.DataArray(np.arange(LAT.size * LON.size, dtype="float64").reshape(LAT.size, LON.size),
                        dims=("lat", "lon"), coords={"lat": LAT, "lon": LON})
    # the target covers exactly cells 2..5 x 3..7 (edges half-way between centres)
    grid = TargetGrid.from_spec("EPSG:4326", 0.01, (10.25, 46.15, 10.75, 46.55), chunks=16)
    for engine in ("glacgrid", "xarray-regrid", "odc-geo"):
        out = regrid(step, grid, method="conservative", engine=engine).compute()
        centre = out.sel(y=46.305, x=10.405, method="nearest")  # inside cell lat 46.3, lon 10.4
        assert float(centre) == pytest.approx(float(step.sel(lat=46.3, lon=10.4, method="nearest")), abs=1e-6)
        cells = step.sel(lat=slice(46.19, 46.51), lon=slice(10.29, 10.71))
        w = np.cos(np.deg2rad(cells["lat"]))
        assert float(out.weighted(np.cos(np.deg2rad(out["y"]))).mean()) == pytest.approx(
            float(cells.weighted(w).mean()), rel=1e-3)
    with pytest.raises(InputDataError, match="needs a geographic"):
        regrid(step, TargetGrid.from_spec("EPSG:32632", 500.0, (640_000, 5_150_000, 665_000, 5_175_000)),
               method="conservative", engine="xarray-regrid")
    # a pixel straddling a cell edge (lon 10.45) in the middle: half of each cell
    g2 = TargetGrid.from_spec("EPSG:4326", 0.02, (10.44, 46.3, 10.46, 46.32))
    out = regrid(step, g2, method="conservative").compute()
    cell = lambda lo: float(step.sel(lat=46.3, lon=lo, method="nearest"))  # noqa: E731
    assert float(out[0, 0]) == pytest.approx((cell(10.4) + cell(10.5)) / 2, rel=1e-6)


def test_monthly_lapse_rates_are_fitted_and_applied():
    cube = _cube(24)
    rates = np.array([-4.0, -4.5, -5.0, -5.5, -6.0, -6.5, -7.0, -6.5, -6.0, -5.5, -5.0, -4.5]) / 1000
    month = cube["time"].dt.month.values
    base = 280.0 + 5.0 * np.sin(np.arange(24) * 2 * np.pi / 12)
    cube["t2m"] = (("time", "lat", "lon"), (base[:, None, None] + rates[month - 1][:, None, None]
                                            * cube["orog"].values[None]).astype("float32"))
    grid = TargetGrid.from_spec("EPSG:4326", 0.05, (10.3, 46.3, 10.8, 46.7), chunks=(5, 7))
    fitted = fit_lapse_rates(cube, grid, margin=1)
    np.testing.assert_allclose(fitted.values, rates, atol=1e-7)
    assert fitted.attrs["units"] == "K m-1" and fitted.attrs["n_cells"] == 7 * 8
    z = np.full(grid.shape, 3000.0)
    dem = xr.DataArray(z, dims=("y", "x"), coords=grid.coords())
    with raise_if_dask_computes():
        out = downscale(cube, grid, dem, lapse_rates=fitted)
    out = out.compute()
    np.testing.assert_allclose(out["temp"].values, (base + rates[month - 1] * 3000.0 - 273.15)[:, None, None]
                               * np.ones(grid.shape), atol=1e-4)
    with pytest.raises(InputDataError, match="K per metre"):
        downscale(cube, grid, dem, lapse_rates=fitted * 1000)
    with pytest.raises(InputDataError, match="cells"):
        fit_lapse_rates(cube, TargetGrid.from_spec("EPSG:4326", 0.01, (10.0, 46.0, 10.02, 46.02)), margin=0)


def test_conservative_downscale_is_lazy_and_chunking_invariant():
    cube = _cube(12)
    a = TargetGrid.from_spec("EPSG:32632", 500.0, (640_000, 5_110_000, 660_000, 5_130_000), chunks=1000)
    b = a.with_chunks((7, 11))
    z = np.linspace(1500, 3500, a.shape[0] * a.shape[1]).reshape(a.shape)
    dem = xr.DataArray(z, dims=("y", "x"), coords=a.coords())
    with raise_if_dask_computes():
        lazy = downscale(cube, b, dem.chunk({"y": 7, "x": 11}), method="conservative")
    one = downscale(cube, a, dem, method="conservative").compute()
    xr.testing.assert_equal(one[["temp", "prcp"]], lazy.compute()[["temp", "prcp"]])  # bitwise
    assert lazy["temp"].chunks[1][0] == 7 and lazy.attrs["regrid_method"] == "conservative"


@pytest.mark.slow
@requires_data("hef", "dem", "srtm_oetztal.tif")
def test_oetztal_srtm_temperature_follows_lapse_rate():
    """ERA5-Land t2m downscaled over the Oetztal SRTM DEM decreases with elevation at -6.5 K/km."""
    from glacgrid.ingest import open_era5land

    clim = HEF / "climate"
    cube = open_era5land([clim / "sel_era5_land_monthly_t2m_1981-2018.nc", clim / "sel_era5_land_monthly_prcp_1981-2018.nc"],
                         invariant=clim / "sel_era5_land_invariant.nc", variables=["t2m", "tp"]).sel(time=slice("2000-01", "2000-12"))
    grid = TargetGrid.from_raster(HEF / "dem" / "srtm_oetztal.tif", chunks=256)
    # crop to the ERA5-Land domain (cell centres 46.6-47.1 N, 10.6-11.2 E)
    grid = grid.crop((10.62, 46.62, 11.18, 47.08))
    dem = grid.read(HEF / "dem" / "srtm_oetztal.tif")
    out = downscale(cube.load(), grid, dem).compute()
    z_era = regrid(cube["orog"], grid).values
    dz = dem.values - z_era
    resid = out["temp"].values[6] - (regrid(cube["t2m"], grid).values[6] - 273.15)
    ok = np.isfinite(dz)
    slope = np.polyfit(dz[ok].ravel(), resid[ok].ravel(), 1)[0]
    assert slope == pytest.approx(-0.0065, rel=1e-3)
    # and the raw July field over the DEM: colder on higher ground
    corr = np.corrcoef(dem.values[ok].ravel(), out["temp"].values[6][ok].ravel())[0, 1]
    assert corr < -0.9


def test_cli_downscale_with_monthly_lapse_rates_and_snow(tmp_path):
    import rasterio
    from typer.testing import CliRunner

    from glacgrid.cli import app
    from glacgrid.cube import open_store, write_dataset

    cube = _cube(12).chunk({"time": 12})
    write_dataset(cube, tmp_path / "cube.zarr", region_dim="time")
    dem = tmp_path / "dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", height=10, width=12, count=1, dtype="float32", crs="EPSG:4326",
                       transform=rasterio.Affine(0.02, 0, 10.3, 0, -0.02, 46.7)) as dst:
        dst.write(np.full((10, 12), 3000.0, dtype="float32"), 1)
    res = CliRunner().invoke(app, ["downscale", str(tmp_path / "cube.zarr"), "--grid", str(dem), "--out",
                                   str(tmp_path / "d.zarr"), "--monthly-lapse-rates", "--chunks", "4",
                                   "--method", "conservative"])
    assert res.exit_code == 0, res.output
    assert "monthly lapse rates (K/km): -6.50" in res.output
    out = open_store(tmp_path / "d.zarr")
    assert set(out.data_vars) >= {"temp", "prcp", "prcp_solid", "reference_elevation"}
    t, p, s = (out[v].values for v in ("temp", "prcp", "prcp_solid"))
    frac = np.clip((2.0 - t) / 2.0, 0, 1)
    np.testing.assert_allclose(s, p * frac, rtol=1e-5, atol=1e-5)
    res = CliRunner().invoke(app, ["downscale", str(tmp_path / "cube.zarr"), "--grid", str(dem), "--out",
                                   str(tmp_path / "e.zarr"), "--method", "cubic"])
    assert res.exit_code == 2 and "'--method': 'cubic' is not one of bilinear, conservative" in res.output
