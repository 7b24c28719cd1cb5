"""CF-1.10, geo-referenced stores and their exports (issue 19, item 1): every store of the small demo run
passes the CF checker (compliance-checker, suite cf:1.10, its bundled standard-name table: no network)
with no error and no warning; rioxarray reads the CRS of every gridded variable; GDAL opens the netCDF
export and the Cloud-Optimised GeoTIFFs with the grid's CRS, transform and values."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from glacgrid.cli import app
from glacgrid.cube import open_store
from glacgrid.exceptions import InputDataError
from glacgrid.metadata import CONVENTIONS, GRID_MAPPING, SMB_RATE_UNITS, SMB_STANDARD_NAME, cf_dataset
from glacgrid.outputs import export_geotiff, export_netcdf, export_store
from glacgrid.pipeline import run
from glacgrid.testing import DATA, prepare_demo, requires_data

pytest.importorskip("compliance_checker")
rasterio = pytest.importorskip("rasterio")
pytest.importorskip("rioxarray")

UTM32 = 32632  # the demo region's CRS


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("cf")
    cfg, region = prepare_demo(out, size="small", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(cfg, progress=False)
    return result


def cf_check(path) -> dict[str, list[str]]:
    """The messages of compliance-checker's cf:1.10 suite on ``path``: ``errors`` (its high-priority
    failures) and ``warnings`` (medium priority), one entry per failed check."""
    from compliance_checker.runner import CheckSuite

    suite = CheckSuite()
    suite.load_all_available_checkers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups, _ = suite.run_all(suite.load_dataset(str(path)), ["cf:1.10"], skip_checks=[])["cf:1.10"]
    out = {"errors": [], "warnings": []}
    for r in groups:
        passed, total = r.value if isinstance(r.value, tuple) else ((1, 1) if r.value else (0, 1))
        if passed < total and r.weight >= 2:
            out["errors" if r.weight == 3 else "warnings"].append(f"{r.name}: {'; '.join(r.msgs)}")
    return out


def test_the_checker_finds_what_the_issue_found(tmp_path):
    """The checker is real: a store written as before CF-1.10 (invalid standard name, no Conventions)."""
    ds = xr.Dataset({"glacier_area": ("glacier", [1.0, 2.0], {"units": "km2", "standard_name": "land_ice_area"})},
                    coords={"glacier": [1, 2]})
    ds.to_netcdf(tmp_path / "old.nc")
    found = cf_check(tmp_path / "old.nc")
    assert any("land_ice_area is not defined" in m for m in found["errors"])
    assert any("Conventions" in m for m in found["warnings"])


@pytest.mark.parametrize("name", ["results.zarr", "work/static.zarr", "work/downscaled.zarr", "work/cube.zarr"])
def test_every_store_of_a_run_passes_the_cf_checker(demo, tmp_path, name):
    nc = export_netcdf(demo.output / name, tmp_path / "store.nc")
    found = cf_check(nc)
    assert found == {"errors": [], "warnings": []}
    back = xr.open_dataset(nc, decode_coords="all")
    assert back.attrs["Conventions"] == CONVENTIONS and back.attrs["title"] and back.attrs["history"]
    assert open_store(demo.output / name).attrs["Conventions"] == CONVENTIONS  # the store itself says so


def test_results_store_is_cf_and_georeferenced(demo):
    res = open_store(demo.files.results_zarr)
    assert res.attrs["Conventions"] == CONVENTIONS and "glacgrid" in res.attrs["title"]
    assert "cf_dataset" in res.attrs["history"]
    gridded = [v for v in res.data_vars if {"y", "x"} <= set(res[v].dims)]
    assert set(gridded) == {"smb", "thickness", "surface"}
    for v in gridded:  # the CRS per variable (issue 19: ds.smb.rio.crs was None)
        assert res[v].rio.crs.to_epsg() == UTM32, v
    assert res[GRID_MAPPING].attrs["grid_mapping_name"] == "transverse_mercator"
    assert res["smb"].attrs["standard_name"] == SMB_STANDARD_NAME and res["smb"].attrs["units"] == SMB_RATE_UNITS
    assert res["smb_glacier"].attrs["units"] == SMB_RATE_UNITS
    assert "standard_name" not in res["glacier_area"].attrs and "standard_name" not in res["volume"].attrs
    for flag, meanings in (("failed", "simulated isolated"), ("disappeared", "ice_left no_ice_left")):
        assert res[flag].attrs["flag_meanings"] == meanings and list(res[flag].attrs["flag_values"]) == [0, 1]
    # glaciers named as in the glacier-year table
    gy = pd.read_csv(demo.files.glacier_years_csv, dtype={"rgi_id": str})
    ids = gy.drop_duplicates("glacier").set_index("glacier")["rgi_id"]
    assert list(res["rgi_id"].values) == list(ids.loc[res["glacier"].values])
    assert res["glacier_name"].sizes["glacier"] == res.sizes["glacier"]
    # hydrological year 2001 (north): 1 October 2000 .. 1 October 2001, time in its middle
    bnds = res["time_bnds"].sel(year=2001).values
    assert list(bnds.astype("datetime64[D]").astype(str)) == ["2000-10-01", "2001-10-01"]
    assert bnds[0] < res["time"].sel(year=2001).values < bnds[1]
    # readers of the store still work: the table's SMB is the store's, year by year
    np.testing.assert_allclose(gy.pivot(index="year", columns="glacier")["smb_mwe"].values,
                               res["smb_glacier"].values, rtol=1e-5)


def test_static_and_downscaled_stores_carry_the_crs(demo):
    for name in ("static.zarr", "downscaled.zarr"):
        ds = open_store(demo.output / "work" / name)
        assert ds.attrs["Conventions"] == CONVENTIONS and ds.attrs["title"]
        for v in ds.data_vars:
            assert ds[v].rio.crs.to_epsg() == UTM32, (name, v)


def test_gdal_opens_the_netcdf_export_with_crs_and_values(demo, tmp_path):
    res = open_store(demo.files.results_zarr)
    nc = export_store(demo.files.results_zarr, "netcdf", tmp_path / "results.nc")[0]
    with rasterio.open(f'NETCDF:"{nc}":smb') as src:
        assert src.crs.to_epsg() == UTM32 and src.count == res.sizes["year"]
        assert tuple(src.transform)[:6] == tuple(res.attrs["transform"])
        np.testing.assert_array_equal(src.read(3), res["smb"].isel(year=2).values)
    back = xr.open_dataset(nc, decode_coords="all")
    assert back["smb"].rio.crs.to_epsg() == UTM32
    assert list(back["rgi_id"].values) == list(res["rgi_id"].values)


def test_geotiff_export_writes_one_cog_per_year(demo, tmp_path):
    res = open_store(demo.files.results_zarr)
    files = export_geotiff(demo.files.results_zarr, tmp_path / "tif", variables=["smb", "thickness"])
    years = res["year"].values
    assert sorted(f.name for f in files) == sorted(f"{v}_{y}.tif" for v in ("smb", "thickness") for y in years)
    with rasterio.open(tmp_path / "tif" / f"smb_{years[-1]}.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.crs.to_epsg() == UTM32 and tuple(src.transform)[:6] == tuple(res.attrs["transform"])
        assert src.tags()["units"] == SMB_RATE_UNITS and src.tags()["year"] == str(years[-1])
        np.testing.assert_array_equal(src.read(1), res["smb"].isel(year=-1).values)
    with pytest.raises(InputDataError, match="no gridded variable"):
        export_geotiff(demo.files.results_zarr, tmp_path / "bad", variables=["volume"])


def test_cli_export(demo, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(demo.files.results_zarr), "--to", "netcdf", "--out", str(tmp_path / "r.nc")])
    assert res.exit_code == 0, res.output
    assert "wrote 1 netCDF file" in res.output and (tmp_path / "r.nc").stat().st_size > 10_000
    static = demo.output / "work" / "static.zarr"
    res = runner.invoke(app, ["export", str(static), "--to", "geotiff", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "s").glob("*.tif")) == sorted(
        f"{v}.tif" for v in ("glacier_fraction", "glacier_id", "pixel_area", "surface", "thickness"))
    res = runner.invoke(app, ["export", str(static), "--to", "shapefile"])
    assert res.exit_code != 0 and "not one of netcdf, geotiff" in res.output


def test_cf_dataset_southern_years_padding_glaciers_and_no_crs():
    ds = xr.Dataset({"smb_glacier": (("year", "glacier"), np.zeros((2, 3)), {"units": "m"}),
                     "smb_glacier_spread": (("year", "glacier"), np.zeros((2, 3)), {"units": "m"})},
                    coords={"year": [2001, 2002], "glacier": [1, 2, 3]})
    table = pd.DataFrame({"rgi_id": ["RGI60-11.00001", "RGI60-11.00002"], "name": ["A", None]}, index=[1, 2])
    out = cf_dataset(ds, title="t", glaciers=table, year_start_month=4)
    assert list(out["rgi_id"].values) == ["RGI60-11.00001", "RGI60-11.00002", ""]  # slot 3: padding
    assert list(out["glacier_name"].values) == ["A", "", ""]
    assert str(out["time_bnds"].values[0, 0])[:10] == "2000-04-01"
    assert out["smb_glacier"].attrs["standard_name"] == SMB_STANDARD_NAME
    assert "standard_name" not in out["smb_glacier_spread"].attrs  # a spread has no standard name
    assert out["smb_glacier_spread"].attrs["units"] == SMB_RATE_UNITS
    assert ds["smb_glacier"].attrs["units"] == "m"  # the input is not modified
    grid = xr.Dataset({"a": (("y", "x"), np.zeros((2, 2)), {"units": "1"})}, coords={"y": [1.0, 0.0], "x": [0.0, 1.0]})
    with pytest.raises(Exception, match="without a CRS"):
        cf_dataset(grid, title="t")
    assert cf_dataset(grid, title="t", crs="EPSG:3035")["a"].rio.crs.to_epsg() == 3035


@requires_data("alps", "farinotti_thickness")
def test_domain_results_are_cf_and_export_rasterises(tmp_path):
    """A domain run's packed store (pixel, glacier) passes the checker; --to geotiff rasterises it per glacier."""
    from glacgrid.domain import domain_from_tiles
    from glacgrid.simulate import DomainRun, simulate_domain
    from glacgrid.testing._domain import DOMAIN_FEATURES, domain_cube, domain_model

    alps = DATA / "alps"
    d = domain_from_tiles(alps / "farinotti_thickness", alps / "farinotti_dem", tmp_path / "work" / "domain.zarr",
                          numbers=[401, 426, 651], group_pixels=8192)
    px = d.pixels[["lon", "lat", "glacier_id"]].compute()
    real = px["glacier_id"].values > 0
    cube = domain_cube(px["lon"].values[real], px["lat"].values[real], tmp_path / "cube.zarr", start=2001, end=2002)
    model = domain_model().to_artifact(tmp_path / "model")
    run_ = DomainRun("evolve", np.arange(2001, 2003), DOMAIN_FEATURES)
    store = simulate_domain(d, cube, model, tmp_path / "results.zarr", run_, fingerprint="cf")
    res = open_store(store)
    assert res.attrs["Conventions"] == CONVENTIONS and res["smb"].attrs["units"] == SMB_RATE_UNITS
    assert set(res["rgi_id"].values[res["glacier"].values <= len(d.table)]) >= set(d.table["rgi_id"])
    assert cf_check(export_netcdf(store, tmp_path / "results.nc")) == {"errors": [], "warnings": []}
    # the domain store itself (packed pixels, text tables) exports to a CF netCDF as well
    assert cf_check(export_netcdf(d.path, tmp_path / "domain.nc")) == {"errors": [], "warnings": []}
    files = export_geotiff(store, tmp_path / "tif", variables=["smb"])  # domain: <store folder>/work/domain.zarr
    assert sorted(f.name for f in files) == sorted(f"smb_{r}.tif" for r in d.table["rgi_id"])
    with rasterio.open(files[0]) as src:
        assert src.crs.to_epsg() == 32633 and src.count == 2 and np.isfinite(src.read(1)).any()
