import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from glacgrid.exceptions import GeometryError
from glacgrid.grid import TargetGrid
from glacgrid.masks import glacier_table, rasterize_glaciers, read_outlines

from .conftest import HEF, requires_data


def _outlines(tmp_path, geoms, ids, crs="EPSG:32632", name="o.gpkg"):
    path = tmp_path / name
    gpd.GeoDataFrame({"RGIId": ids}, geometry=geoms, crs=crs).to_file(path)
    return path


def test_aligned_squares_rasterise_exactly(tmp_path):
    # near the UTM central meridian (x = 500 km), where projected and true areas agree to 1e-4
    x0, y0 = 500_000, 5_000_000
    grid = TargetGrid.from_spec("EPSG:32632", 10.0, (x0, y0, x0 + 200, y0 + 150), chunks=(7, 9))
    path = _outlines(tmp_path, [box(x0 + 10, y0 + 10, x0 + 60, y0 + 40), box(x0 + 100, y0 + 50, x0 + 180, y0 + 140)],
                     ["A", "B"])
    gdf = read_outlines(path)
    ds = rasterize_glaciers(gdf, grid)
    ids = ds["glacier_id"].values
    assert ds["glacier_id"].chunks == ((7,) * 2 + (1,), (9,) * 2 + (2,))
    assert (ids == 1).sum() == 5 * 3 and (ids == 2).sum() == 8 * 9
    # pixel rows count from the top: box A spans y 10..40 -> rows 11..13
    assert ids[11:14, 1:6].min() == 1 and ids[10, 1] == 0
    frac = ds["glacier_fraction"].values
    assert frac[ids > 0].min() == 1.0 and frac[ids == 0].max() == 0.0
    table = glacier_table(gdf, ds["glacier_id"], grid.pixel_area())
    np.testing.assert_allclose(table["raster_area_km2"], [1500 / 1e6, 7200 / 1e6])
    np.testing.assert_allclose(table["outline_area_km2"], [1500 / 1e6, 7200 / 1e6], rtol=1e-3)
    assert list(table["rgi_id"]) == ["A", "B"] and list(table.index) == [1, 2]


def test_partial_cover_fraction(tmp_path):
    grid = TargetGrid.from_spec("EPSG:32632", 10.0, (0, 0, 40, 40))
    path = _outlines(tmp_path, [box(0, 0, 15, 40)], ["A"])  # covers half of column 1
    ds = rasterize_glaciers(read_outlines(path), grid, supersample=4).compute()
    np.testing.assert_allclose(ds["glacier_fraction"].values[:, 1], 0.5)
    np.testing.assert_allclose(ds["glacier_fraction"].values[:, 0], 1.0)


def test_chunking_does_not_change_the_raster(tmp_path):
    geoms = [box(3, 7, 77, 91).buffer(9), box(120, 20, 190, 60).buffer(4)]
    path = _outlines(tmp_path, geoms, ["A", "B"])
    gdf = read_outlines(path)
    one = rasterize_glaciers(gdf, TargetGrid.from_spec("EPSG:32632", 5.0, (0, 0, 200, 120), chunks=1000))
    many = rasterize_glaciers(gdf, TargetGrid.from_spec("EPSG:32632", 5.0, (0, 0, 200, 120), chunks=(7, 11)))
    np.testing.assert_array_equal(one["glacier_id"].values, many["glacier_id"].values)
    np.testing.assert_array_equal(one["glacier_fraction"].values, many["glacier_fraction"].values)


def test_outline_errors(tmp_path):
    dup = _outlines(tmp_path, [box(0, 0, 1, 1), box(2, 2, 3, 3)], ["A", "A"], name="dup.gpkg")
    with pytest.raises(GeometryError, match="duplicated ids"):
        read_outlines(dup)
    ok = _outlines(tmp_path, [box(0, 0, 1, 1)], ["A"], name="ok.gpkg")
    with pytest.raises(GeometryError, match="no column 'rgi'"):
        read_outlines(ok, id_column="rgi")


def test_invalid_geometry_is_repaired_and_reported(tmp_path):
    from shapely.geometry import Polygon

    bowtie = Polygon([(0, 0), (40, 40), (40, 0), (0, 40)])
    path = _outlines(tmp_path, [bowtie], ["X"])
    gdf = read_outlines(path)
    assert gdf.attrs["repaired"] == ["X"]
    assert gdf.geometry.is_valid.all()


@requires_data("hef", "outlines", "Hintereisferner_RGI6.shp")
def test_hef_outline_on_farinotti_grid():
    """RGI6 Hintereisferner on its 25 m Farinotti grid (UTM 32N): 8.036 km2 within 1 %."""
    grid = TargetGrid.from_raster(HEF / "thickness" / "RGI60-11.00897_thickness.tif", chunks=64)
    gdf = read_outlines(HEF / "outlines" / "Hintereisferner_RGI6.shp")  # EPSG:4326 -> reprojected
    ds = rasterize_glaciers(gdf, grid)
    table = glacier_table(gdf, ds["glacier_id"], grid.pixel_area())
    assert table.loc[1, "raster_area_km2"] == pytest.approx(8.036, rel=0.01)
    assert abs(table.loc[1, "area_rel_diff"]) < 0.01
