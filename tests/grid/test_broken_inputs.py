"""Issue 16: damaged DEMs, outline files and WGMS tables give typed errors naming the file (and the line and
column of a bad cell), never a raw GDAL/pandas traceback or a wrong diagnosis."""

from __future__ import annotations

import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box

from glacgrid.exceptions import GridMismatchError, InputDataError
from glacgrid.grid import TargetGrid, check_raster
from glacgrid.masks import rasterize_glaciers, read_outlines
from glacgrid.observations import read_areas, read_observations, read_profiles
from glacgrid.testing import HEF, requires_data

DEM = np.arange(300 * 200, dtype="float32").reshape(300, 200)


def dem(path, **layout):
    with rasterio.open(path, "w", driver="GTiff", height=300, width=200, count=1, dtype="float32", crs="EPSG:32632",
                       transform=Affine(25.0, 0.0, 600_000.0, 0.0, -25.0, 5_200_000.0), nodata=-9999, **layout) as dst:
        dst.write(DEM, 1)
    return path


def cut(path, keep, out):
    out.write_bytes(path.read_bytes()[:keep])
    return out


@pytest.mark.parametrize("layout", [{}, {"tiled": True, "blockxsize": 64, "blockysize": 64, "compress": "deflate"}],
                         ids=["strips", "tiles"])
def test_truncated_geotiff_is_refused_with_the_sizes(tmp_path, layout):
    """Issue 16.2/16.7: a cut DEM was a RasterioIOError traceback ('Read failed'), or, cut inside its GeoTIFF
    keys, the wrong diagnosis 'has no CRS'."""
    good = dem(tmp_path / "dem.tif", **layout)
    size = good.stat().st_size
    grid = TargetGrid.from_raster(good, chunks=64)
    np.testing.assert_array_equal(grid.read(good).values, DEM)  # the intact file reads back exactly
    what = "tile 20 of 20" if layout else "strip"
    for keep in (size - 1, size // 2, 500):
        bad = cut(good, keep, tmp_path / f"dem{keep}.tif")
        with pytest.raises(InputDataError) as err:
            TargetGrid.from_raster(bad)
        msg = str(err.value)
        assert f"Raster {bad} is not a complete GeoTIFF: it is truncated" in msg
        assert f"the file has {keep:,} ({size - keep:,} missing" in msg and "download or export it again" in msg
        if keep > 500:
            assert what in msg
        with pytest.raises(InputDataError, match="is not a complete GeoTIFF"):
            grid.read(bad)
    with pytest.raises(InputDataError, match=r"dem100.tif is not a complete GeoTIFF.*cut: its header"):
        check_raster(cut(good, 100, tmp_path / "dem100.tif"))


def test_corrupt_dem_gives_a_typed_error(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"this is not a GeoTIFF" * 50)
    with pytest.raises(InputDataError, match=r"Cannot read raster .*junk.tif: RasterioIOError.*damaged"):
        TargetGrid.from_raster(junk)
    # a whole file whose compressed bytes are damaged: GDAL fails to decode a block when it is read
    flipped = dem(tmp_path / "flip.tif", compress="deflate")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2:len(data) // 2 + 500] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 500])
    flipped.write_bytes(bytes(data))
    grid = TargetGrid.from_raster(flipped)  # the header is intact
    with pytest.raises(InputDataError, match=r"Cannot read raster .*flip.tif: RasterioIOError: Read failed \("):
        grid.read(flipped)


@requires_data("hef")
def test_real_rasters_pass_the_truncation_check():
    for path in (HEF / "dem" / "hef_srtm.tif", HEF / "thickness" / "RGI60-11.00897_thickness.tif"):
        check_raster(path)


# ----------------------------------------------------------------------------- outlines
def outlines(path):
    gpd.GeoDataFrame({"RGIId": [f"RGI60-11.{i:05d}" for i in range(40)]},
                     geometry=[box(500_000 + 100 * i, 5_000_000, 500_050 + 100 * i, 5_000_050) for i in range(40)],
                     crs="EPSG:32632").to_file(path)
    return path


@pytest.mark.parametrize("suffix", [".gpkg", ".shp"])
def test_truncated_or_corrupt_outline_file_gives_a_typed_error(tmp_path, suffix):
    """Issue 16.7: a damaged outline file was a pyogrio DataSourceError traceback; a cut shapefile read as
    outlines with empty geometries."""
    good = outlines(tmp_path / f"o{suffix}")
    assert len(read_outlines(good)) == 40
    size = good.stat().st_size
    bad_dir = tmp_path / "cut"
    bad_dir.mkdir()
    for part in tmp_path.glob("o.*"):
        (bad_dir / part.name).write_bytes(part.read_bytes())
    bad = cut(good, size // 2, bad_dir / good.name)
    with pytest.raises(InputDataError) as err:
        read_outlines(bad)
    assert type(err.value) is InputDataError
    assert f"Outline file {bad} is truncated: by its header it holds {size:,} bytes, but the file has " \
           f"{size // 2:,}" in str(err.value)
    junk = tmp_path / f"junk{suffix}"
    junk.write_bytes(b"not an outline file" * 20)
    with pytest.raises(InputDataError, match=f"Cannot read outline file {junk}: DataSourceError.*export it again"):
        read_outlines(junk)


# ----------------------------------------------------------------------------- WGMS tables
HEADER = "YEAR,WGMS_ID,NAME,AREA,WINTER_BALANCE,ANNUAL_BALANCE,REMARKS,RGI_ID\n"


def wgms(tmp_path, rows: str, name="mbdata_WGMS-00042.csv"):
    path = tmp_path / name
    path.write_text(HEADER + rows)
    return path


def test_wgms_thousands_separators_are_read_when_unambiguous(tmp_path):
    f = wgms(tmp_path, '2000,42,"TEST F.",2.5,,"-1,234",,RGI60-11.00042\n'
                       '2001,42,"TEST F.",2.4,900,-500.0,"seasonal, checked",RGI60-11.00042\n'
                       '2002,42,"TEST F.",,800,,,RGI60-11.00042\n'
                       '2003,42,"TEST F.",2.3,,"1,020.5",,RGI60-11.00042\n')
    obs = read_observations([f])
    assert obs["year"].tolist() == [2000, 2001, 2003]  # 2002: seasonal only, skipped
    np.testing.assert_allclose(obs["smb"], [-1.234, -0.5, 1.0205])
    assert read_areas([f])["area_km2"].tolist() == [2.5, 2.4, 2.3]


@pytest.mark.parametrize("row, pattern", [
    # a blank year in a row that holds a balance (pandas raised IntCastingNaNError after the run's other stages)
    (',42,"TEST F.",2.4,,-500,,RGI60-11.00042\n', r"column 'YEAR' is empty in 1 row\(s\) .*\(line 3: ''\)"),
    # a decimal comma: ambiguous, refused (was a TypeError deep in the unit conversion)
    ('2001,42,"TEST F.",2.4,,"-1,5",,RGI60-11.00042\n', r"column 'ANNUAL_BALANCE' holds 1 cell\(s\) that are not "
                                                         r"numbers \(line 3: '-1,5'\)"),
    # an unquoted thousands separator splits the cell: the columns shifted silently before
    ('2001,42,"TEST F.",2.4,,-1,234,,RGI60-11.00042\n', r"line 3 has 9 cells.* but the header has 8 columns"),
    ('2001,42,"TEST F.",2.4,,-500,,\n', r"column 'RGI_ID' is empty in 1 row\(s\).*line 3"),
    ('2001.5,42,"TEST F.",2.4,,-500,,RGI60-11.00042\n', r"column 'YEAR' must hold whole numbers; got line 3: '2001.5'"),
], ids=["blank year", "decimal comma", "unquoted separator", "blank id", "fractional year"])
def test_bad_wgms_cells_name_the_file_line_and_column(tmp_path, row, pattern):
    f = wgms(tmp_path, '2000,42,"TEST F.",2.5,,-1250.0,,RGI60-11.00042\n' + row)
    with pytest.raises(InputDataError) as err:
        read_observations([f])
    assert str(err.value).startswith(f"{f}: "), err.value
    assert re.search(pattern, str(err.value)), err.value


def test_bad_profile_cell_names_the_line(tmp_path):
    prof = tmp_path / "profile_WGMS-00042.csv"
    prof.write_text(',2425,2475\n2000,"-3,000",-2500.5\n2001,,-27O0\n')
    with pytest.raises(InputDataError, match=r"column '2475' holds 1 cell\(s\) that are not numbers \(line 3: '-27O0'\)"):
        read_profiles([prof], ids={"00042": "X"})
    prof.write_text(',2425,2475\n2000,"-3,000",-2500.5\n2001,,-2700\n')
    p = read_profiles([prof], ids={"00042": "X"})
    np.testing.assert_allclose(p["smb"], [-3.0, -2.5005, -2.7])


@requires_data("hef", "mb")
def test_real_wgms_files_read_as_before():
    """The checked reader gives the frame pandas gave on every clean WGMS file."""
    files = sorted((HEF / "mb").glob("mbdata_WGMS-00*.csv"))
    obs = read_observations(files)
    raw = pd.concat([pd.read_csv(f) for f in files]).dropna(subset=["ANNUAL_BALANCE"])
    assert obs["year"].tolist() == raw["YEAR"].astype(int).tolist()
    np.testing.assert_array_equal(obs["smb"], raw["ANNUAL_BALANCE"].to_numpy() / 1000.0)


def test_messages_print_plain_numbers(tmp_path):
    """Issue 16.8: bounds from numpy (the pipeline crops to ``tuple(outlines.total_bounds)``) printed as
    ``np.float64(...)``."""
    grid = TargetGrid.from_spec("EPSG:32632", 25.0, (600_000, 5_000_000, 601_000, 5_001_000))
    far = tuple(np.array([700_000.0, 5_100_000.0, 700_100.0, 5_100_100.5]))
    with pytest.raises(GridMismatchError) as err:
        grid.crop(far)
    assert str(err.value) == ("Bounds (700000, 5100000, 700100, 5100100.5) do not overlap the grid "
                              "(600000, 5000000, 601000, 5001000); check both CRSs.")
    gdf = read_outlines(outlines(tmp_path / "o.gpkg"))
    with pytest.raises(GridMismatchError) as err:
        rasterize_glaciers(gdf, TargetGrid.from_spec("EPSG:32632", 25.0, far))
    assert "np." not in str(err.value)
    assert "outline bounds in the grid CRS are (500000, 5000000, 503950, 5000050)" in str(err.value)
