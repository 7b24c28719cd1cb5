"""The Ötztal domain built from the Farinotti tiles and from their mosaic: same pixels, same values."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.domain import domain_from_rasters, domain_from_tiles, open_domain, rasterise
from glacgrid.exceptions import StoreError
from glacgrid.features import topo_pixel_features
from glacgrid.mosaic import mosaic_dataset, mosaic_grid, read_tile, scan_tiles
from glacgrid.testing import DATA, HEF, raise_if_dask_computes, requires_data

pytestmark = [requires_data("alps", "farinotti_thickness"), requires_data("hef", "outlines", "rgi_oetztal.shp")]
ALPS = DATA / "alps"
GROUP = 20_000  # small groups: several glaciers per group, several groups, one glacier larger than a group


@pytest.fixture(scope="module")
def numbers():
    import geopandas as gpd

    o = gpd.read_file(HEF / "outlines" / "rgi_oetztal.shp")
    nums = sorted({int(r.split(".")[1][:5]) for r in o["RGIId"]})
    have = {int(p.name[9:14]) for p in (ALPS / "farinotti_thickness").glob("RGI60-11.*_thickness.tif")}
    return [n for n in nums if n in have]


@pytest.fixture(scope="module")
def tiles(numbers):
    return scan_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", read_values=False, numbers=numbers)


@pytest.fixture(scope="module")
def from_tiles(numbers, tmp_path_factory):
    store = tmp_path_factory.mktemp("dom") / "tiles.zarr"
    return domain_from_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", store, numbers=numbers,
                             group_pixels=GROUP)


@pytest.fixture(scope="module")
def mosaic(tiles):
    grid = mosaic_grid(tiles, 32632, chunks=300)  # chunks that do not divide the grid
    ms = mosaic_dataset(tiles, 32632, chunks=300)
    num = ms["glacier_id"].values
    ice = (ms["thickness"].values > 0) & np.isfinite(ms["surface"].values)
    index = np.searchsorted(tiles.index.to_numpy(), num)  # RGI number -> 0..N-1
    gid = np.where(ice & (num > 0), index + 1, 0).astype("int32")
    static = xr.Dataset({
        "glacier_id": (("y", "x"), gid),
        "surface": ms["surface"],
        "thickness": ms["thickness"].where(gid > 0),
        "pixel_area": grid.pixel_area(),
    }).chunk({"y": 300, "x": 300})
    table = pd.DataFrame({"rgi_id": tiles["rgi_id"].to_numpy(), "name": ""},
                         index=pd.Index(np.arange(1, len(tiles) + 1), name="glacier"))
    return static, grid, table


@pytest.fixture(scope="module")
def from_rasters(mosaic, tmp_path_factory):
    static, grid, table = mosaic
    return domain_from_rasters(static, grid, table, tmp_path_factory.mktemp("dom") / "rasters.zarr",
                               group_pixels=GROUP)


def _frame(dom):
    """Every real pixel: epsg, x, y (pixel centre), rgi_id and values, sorted."""
    p = dom.pixels.compute()
    g = dom.glaciers
    real = p["glacier_id"].values > 0
    slot = p["glacier_id"].values[real] - 1
    tr = g["transform"].values[slot]
    row, col = p["row"].values[real], p["col"].values[real]
    df = pd.DataFrame({
        "epsg": g["epsg"].values[slot], "x": tr[:, 2] + tr[:, 0] * (col + 0.5),
        "y": tr[:, 5] + tr[:, 4] * (row + 0.5), "rgi_id": g["rgi_id"].values.astype(object)[slot],
        **{v: p[v].values[real] for v in ("surface", "thickness", "pixel_area", "slope", "aspect_cos", "aspect_sin",
                                          "lon", "lat")}})
    return df.sort_values(["rgi_id", "y", "x"], ascending=[True, False, True]).reset_index(drop=True)


def test_store_layout(from_tiles, tiles):
    d = from_tiles
    C, G = d.group_pixels, d.group_glaciers
    n = d.table["n_pixels"]
    assert C == max(GROUP, int(n.max())) == 26582  # Gepatschferner (RGI60-11.00746) is larger than GROUP
    assert G % 8 == 0 and d.n_groups == 7
    assert d.pixels["surface"].encoding["chunks"] == (C,)
    assert d.pixels["neighbours"].encoding["chunks"] == (C, 4)
    assert d.pixels.sizes["pixel"] == d.n_groups * C and d.glaciers.sizes["glacier"] == d.n_groups * G
    assert list(d.table["source_index"]) == list(tiles.index)
    p = d.pixels.compute()
    gid = p["glacier_id"].values
    first = d.glaciers["first_pixel"].values
    npx = d.glaciers["n_pixels"].values
    for slot in d.table.index:  # every glacier in one chunk, contiguous, exactly its pixels
        f, k = first[slot - 1], npx[slot - 1]
        assert f // C == (f + k - 1) // C == (slot - 1) // G
        assert (gid[f:f + k] == slot).all()
    assert np.bincount(gid, minlength=gid.max() + 1)[1:].sum() == npx.sum() == d.table["n_pixels"].sum()
    pad = gid == 0
    assert (p["pixel_area"].values[pad] == 1.0).all() and (p["neighbours"].values[pad] == -1).all()
    # the glacier's pixels are row-major in its window
    s = d.table.index[0]
    r, c = p["row"].values[gid == s], p["col"].values[gid == s]
    assert np.all(np.diff(r * 10_000 + c) > 0)


def test_tiles_equal_tile_pixels(from_tiles, tiles):
    d = from_tiles
    row = tiles.loc[897]
    h, z, area = read_tile(row)
    ice = (np.nan_to_num(h) > 0) & np.isfinite(z)
    back = rasterise(d.pixels["thickness"], d, glacier="RGI60-11.00897")
    assert back.shape == h.shape and back.rio.crs.to_epsg() == 32632
    assert tuple(back.rio.transform())[:6] == row["transform"]
    np.testing.assert_array_equal(back.values, np.where(ice, h, np.nan))
    slot = int(d.table.index[d.table["rgi_id"] == "RGI60-11.00897"][0])
    assert d.table.loc[slot, "n_pixels"] == ice.sum()
    np.testing.assert_allclose(d.table.loc[slot, "area_km2"], ice.sum() * area / 1e6, rtol=1e-12)
    # surface round trip too, via the slot number
    zb = rasterise(d.pixels["surface"], d, glacier=slot)
    np.testing.assert_array_equal(zb.values, np.where(ice, z, np.nan))


def test_tiles_equal_rasters(from_tiles, from_rasters):
    a, b = _frame(from_tiles), _frame(from_rasters)
    assert len(a) == len(b) == from_tiles.pixels.attrs["n_pixels"]
    for col in ("epsg", "x", "y", "rgi_id"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    np.testing.assert_array_equal(a["surface"], b["surface"].astype("float32").astype("float64"))
    np.testing.assert_array_equal(a["thickness"].astype("float32"), b["thickness"].astype("float32"))
    np.testing.assert_array_equal(a["pixel_area"], b["pixel_area"])
    np.testing.assert_array_equal(a["lon"], b["lon"])
    np.testing.assert_array_equal(a["lat"], b["lat"])
    for col in ("slope", "aspect_cos", "aspect_sin"):
        np.testing.assert_array_equal(a[col], b[col], err_msg=col)
    np.testing.assert_array_equal(from_tiles.table["area_km2"], from_rasters.table["area_km2"])


def test_raster_slope_equals_dense_topo(from_rasters, mosaic):
    static, grid, _ = mosaic
    d = from_rasters
    topo = topo_pixel_features(static["surface"], grid).compute()
    p = d.pixels.compute()
    real = p["glacier_id"].values > 0
    slot = p["glacier_id"].values[real] - 1
    tr = d.glaciers["transform"].values[slot]
    a, _, c, _, e, f = grid.transform
    grow = np.round((tr[:, 5] - f) / e).astype(int) + p["row"].values[real]
    gcol = np.round((tr[:, 2] - c) / a).astype(int) + p["col"].values[real]
    for v in ("slope", "aspect_cos", "aspect_sin"):
        np.testing.assert_array_equal(p[v].values[real], topo[v].values[grow, gcol], err_msg=v)
    np.testing.assert_array_equal(p["dx"].values[real], 25.0)
    # lon/lat exactly as the downscaling computes them (pyproj on the grid's pixel centres)
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(grid.x[gcol], grid.y[grow])
    np.testing.assert_array_equal(p["lon"].values[real], lon)
    np.testing.assert_array_equal(p["lat"].values[real], lat)


def test_neighbours_point_at_adjacent_pixels(from_tiles):
    tr_all = from_tiles.glaciers["transform"].values
    cross = 0
    for k in range(from_tiles.n_groups):
        g = from_tiles.group(k)
        n = g.n_real_pixels
        assert (g.glacier_id[:n] > 0).all() and (g.glacier_id[n:] == 0).all()
        assert (g.neighbours[n:] == -1).all()
        nb = g.neighbours[:n]
        tr = tr_all[g.glacier_id[:n] - 1]
        ix = np.floor((tr[:, 2] + tr[:, 0] * (g.col[:n] + 0.5)) / 25.0).astype(int)
        iy = np.floor((tr[:, 5] + tr[:, 4] * (g.row[:n] + 0.5)) / -25.0).astype(int)  # one UTM zone here
        pos = {(a, b): i for i, (a, b) in enumerate(zip(iy, ix))}
        for s, (dr, dc) in enumerate([(0, -1), (0, 1), (-1, 0), (1, 0)]):
            want = np.array([pos.get((a + dr, b + dc), -1) for a, b in zip(iy, ix)])
            np.testing.assert_array_equal(nb[:, s], want)
            found = nb[:, s] >= 0
            same = found & (g.glacier_id[np.maximum(nb[:, s], 0)] == g.glacier_id[:n])
            cross += int((found & ~same).sum())
            # within a glacier the neighbour's surface is the source surface at that neighbour
            np.testing.assert_array_equal(g.neighbour_surface[:n, s][same], g.surface[nb[same, s]])
            np.testing.assert_array_equal(g.row[nb[same, s]], g.row[:n][same] + dr)
            np.testing.assert_array_equal(g.col[nb[same, s]], g.col[:n][same] + dc)
        f = g.first_pixel[g.n_pixels > 0]
        assert f[0] == 0 and (np.diff(f) > 0).all()
    assert cross > 0  # adjacent glaciers of one group see each other


def test_open_domain_is_lazy(from_tiles):
    with raise_if_dask_computes():
        d = open_domain(from_tiles.path)
        assert d.group_pixels == from_tiles.group_pixels
        assert len(d.table) == 19


def test_open_domain_refuses_other_stores(tmp_path):
    xr.Dataset({"a": ("x", np.arange(3))}).to_zarr(tmp_path / "other.zarr", zarr_format=3)
    with pytest.raises(StoreError, match="not a glacier domain"):
        open_domain(tmp_path / "other.zarr")
