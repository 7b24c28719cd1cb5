import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from glacgrid.exceptions import GeometryError
from glacgrid.grid import TargetGrid
from glacgrid.masks import glacier_table, rasterize_glaciers, read_outlines

from glacgrid.testing import HEF, requires_data


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


# ---------------------------------------------------------------------------- edge cases, v7, tiling
from glacgrid.exceptions import GridMismatchError  # noqa: E402
from glacgrid.masks import tile_glaciers, tile_grid  # noqa: E402


def test_overlap_first_wins_and_is_reported(tmp_path):
    grid = TargetGrid.from_spec("EPSG:32632", 10.0, (500_000, 5_000_000, 500_100, 5_000_100), chunks=(3, 4))
    # A: x 0..60, B: x 40..100 -> they share x 40..60 (2 pixel columns, 0.002 km2)
    path = _outlines(tmp_path, [box(500_000, 5_000_000, 500_060, 5_000_100),
                                box(500_040, 5_000_000, 500_100, 5_000_100)], ["A", "B"])
    gdf = read_outlines(path)
    assert [(a, b) for a, b, _ in gdf.attrs["overlaps"]] == [("A", "B")]
    assert gdf.attrs["overlaps"][0][2] == pytest.approx(0.002, rel=1e-3)
    from glacgrid.testing import raise_if_dask_computes

    with raise_if_dask_computes():
        lazy = rasterize_glaciers(gdf, grid)
    ids = lazy["glacier_id"].values
    assert (ids[:, :6] == 1).all() and (ids[:, 6:] == 2).all()  # A (first) keeps columns 4, 5
    table = glacier_table(gdf, rasterize_glaciers(gdf, grid)["glacier_id"], grid.pixel_area(), grid=grid)
    np.testing.assert_allclose(table["overlap_km2"], [0.002, 0.002], rtol=1e-3)
    assert table.loc[2, "status"] == "area mismatch"  # B lost a third of its pixels to A
    assert table.loc[1, "status"] == "ok"


def test_outside_partly_outside_tiny_and_repaired_are_reported(tmp_path):
    from shapely.geometry import Polygon

    x0, y0 = 500_000, 5_000_000
    grid = TargetGrid.from_spec("EPSG:32632", 10.0, (x0, y0, x0 + 200, y0 + 200), chunks=64)
    geoms = [box(x0 + 20, y0 + 20, x0 + 100, y0 + 100),                  # ok
             box(x0 + 500, y0 + 500, x0 + 600, y0 + 600),                # outside
             box(x0 + 150, y0 + 150, x0 + 260, y0 + 190),                # partly outside
             box(x0 + 121, y0 + 21, x0 + 124, y0 + 24),                  # 9 m2: no pixel centre inside
             Polygon([(x0 + 20, y0 + 120), (x0 + 60, y0 + 140), (x0 + 60, y0 + 120), (x0 + 20, y0 + 140)])]
    gdf = read_outlines(_outlines(tmp_path, geoms, ["ok", "out", "part", "tiny", "bow"]))
    ds = rasterize_glaciers(gdf, grid)
    t = glacier_table(gdf, ds["glacier_id"], grid.pixel_area(), grid=grid).set_index("rgi_id")
    assert t.loc["ok", "status"] == "ok" and t.loc["ok", "raster_area_km2"] == pytest.approx(0.0064)
    assert t.loc["out", "status"] == "outside grid" and t.loc["out", "raster_area_km2"] == 0
    assert t.loc["part", "status"] == "partly outside grid"
    assert t.loc["part", "raster_area_km2"] == pytest.approx(50 * 40 / 1e6)  # the part on the grid
    assert t.loc["tiny", "status"] == "no pixel"
    assert "repaired" in t.loc["bow", "status"]
    assert len(t) == 5  # nothing dropped


def test_crs_mismatch_is_reprojected_and_wrong_crs_raises(tmp_path):
    from pyproj import Transformer

    grid = TargetGrid.from_spec("EPSG:32632", 10.0, (500_000, 5_000_000, 500_200, 5_000_200))
    tr = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    lon0, lat0 = tr.transform(500_050, 5_000_050)
    lon1, lat1 = tr.transform(500_150, 5_000_150)
    path = _outlines(tmp_path, [box(lon0, lat0, lon1, lat1)], ["G"], crs="EPSG:4326", name="ll.gpkg")
    gdf = read_outlines(path)
    ds = rasterize_glaciers(gdf, grid)
    assert "reprojected_from='EPSG:4326'" in ds["glacier_id"].attrs["history"]
    assert (ds["glacier_id"].values == 1).sum() == pytest.approx(100, abs=12)
    # the same lon/lat numbers labelled as UTM 33N: nowhere near the grid
    wrong = _outlines(tmp_path, [box(lon0, lat0, lon1, lat1)], ["G"], crs="EPSG:32633", name="wrong.gpkg")
    with pytest.raises(GridMismatchError, match="intersects the grid"):
        rasterize_glaciers(read_outlines(wrong), grid)


def test_rgi_v7_columns_are_detected(tmp_path):
    path = tmp_path / "v7.gpkg"
    gpd.GeoDataFrame({"rgi_id": ["RGI2000-v7.0-G-11-00001"], "glac_name": ["X"], "area_km2": [0.01]},
                     geometry=[box(0, 0, 100, 100)], crs="EPSG:32632").to_file(path)
    gdf = read_outlines(path)
    assert gdf.attrs["rgi_version"] == "7"
    assert list(gdf["rgi_id"]) == ["RGI2000-v7.0-G-11-00001"] and list(gdf["name"]) == ["X"]
    assert float(gdf["inventory_area_km2"].iloc[0]) == 0.01
    with pytest.raises(GeometryError, match="v7: 'rgi_id'"):
        read_outlines(path, id_column="RGIId")


def test_tiles_never_split_a_glacier(tmp_path):
    rng = np.random.default_rng(5)
    x0, y0 = 500_000, 5_000_000
    grid = TargetGrid.from_spec("EPSG:32632", 10.0, (x0, y0, x0 + 2000, y0 + 1500), chunks=(37, 53))
    cx, cy = rng.uniform(100, 1900, 40), rng.uniform(100, 1400, 40)
    geoms = [box(x0 + a - w, y0 + b - h, x0 + a + w, y0 + b + h).buffer(5)
             for a, b, w, h in zip(cx, cy, rng.uniform(10, 90, 40), rng.uniform(10, 90, 40))]
    geoms.append(box(x0 + 5000, y0, x0 + 5100, y0 + 100))  # off the grid
    gdf = read_outlines(_outlines(tmp_path, geoms, [f"G{k}" for k in range(41)]))
    tiles = tile_glaciers(gdf, grid, tile_size=50, buffer=20.0)
    members = [g for lst in tiles["glacier_index"] for g in lst]
    assert sorted(members) == list(range(1, 41))  # every on-grid glacier in exactly one tile
    assert tiles.attrs["outside"] == ["G40"]
    full = rasterize_glaciers(gdf, grid)["glacier_id"].values
    rows, cols = np.indices(full.shape)
    for _, t in tiles.iterrows():
        sub = tile_grid(grid, t)
        assert sub.bounds == (t["left"], t["bottom"], t["right"], t["top"])
        for g in t["glacier_index"]:
            gb = gdf.geometry.iloc[g - 1].bounds  # the whole outline, plus the buffer, inside the tile
            assert gb[0] >= t["left"] and gb[2] <= t["right"] and gb[1] >= t["bottom"] and gb[3] <= t["top"]
            r, c = rows[full == g], cols[full == g]
            if r.size == 0:  # entirely under an earlier (winning) overlapping outline
                continue
            # all of the glacier's pixels, plus the 2-pixel buffer where the grid allows, inside the window
            assert r.min() >= t["j0"] and r.max() < t["j1"] and c.min() >= t["i0"] and c.max() < t["i1"]
            assert r.min() - t["j0"] >= min(2, r.min()) and c.min() - t["i0"] >= min(2, c.min())
        # rasterising only the tile's window gives the same raster there
        part = rasterize_glaciers(gdf, sub)["glacier_id"].values
        np.testing.assert_array_equal(part, full[t["j0"]:t["j1"], t["i0"]:t["i1"]])


@requires_data("hef", "outlines", "rgi7g_hef_complex.shp")
def test_rgi7_hef_complex_on_utm_grid():
    """23 RGI v7 glaciers of the HEF complex at 25 m: every rasterised area within its tolerance."""
    gdf = read_outlines(HEF / "outlines" / "rgi7g_hef_complex.shp")
    assert gdf.attrs["rgi_version"] == "7" and len(gdf) == 23 and gdf.attrs["overlaps"] == []
    b = gdf.to_crs("EPSG:32632").total_bounds
    grid = TargetGrid.from_spec("EPSG:32632", 25.0, (b[0] - 100, b[1] - 100, b[2] + 100, b[3] + 100), chunks=256)
    ds = rasterize_glaciers(gdf, grid)
    t = glacier_table(gdf, ds["glacier_id"], grid.pixel_area(), grid=grid)
    assert (t["status"] == "ok").all(), t[t["status"] != "ok"]
    hef = t.set_index("name").loc["Hintereisferner"]
    assert hef["raster_area_km2"] == pytest.approx(8.036, rel=0.01)
    np.testing.assert_allclose(t["outline_area_km2"], t["inventory_area_km2"], rtol=0.005)
    assert t["raster_area_km2"].sum() == pytest.approx(t["outline_area_km2"].sum(), rel=0.005)


def test_cli_mask_writes_store_and_report(tmp_path):
    import pandas as pd
    import rasterio
    from typer.testing import CliRunner

    from glacgrid.cli import app
    from glacgrid.cube import open_store

    x0, y0 = 500_000, 5_000_000
    dem = tmp_path / "dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", height=20, width=30, count=1, dtype="float32", crs="EPSG:32632",
                       transform=rasterio.Affine(10.0, 0, x0, 0, -10.0, y0 + 200)) as dst:
        dst.write(np.full((20, 30), 2500.0, dtype="float32"), 1)
    path = _outlines(tmp_path, [box(x0 + 10, y0 + 10, x0 + 60, y0 + 40), box(x0 + 900, y0, x0 + 950, y0 + 50)],
                     ["A", "B"])
    res = CliRunner().invoke(app, ["mask", str(path), "--grid", str(dem), "--out", str(tmp_path / "m.zarr"),
                                   "--chunks", "8"])
    assert res.exit_code == 0, res.output
    assert "2 outlines" in res.output and "1 flagged" in res.output
    ds = open_store(tmp_path / "m.zarr")
    assert int((ds["glacier_id"] == 1).sum()) == 15
    table = pd.read_csv(tmp_path / "m.glaciers.csv", index_col=0)
    assert list(table["status"]) == ["ok", "outside grid"]
