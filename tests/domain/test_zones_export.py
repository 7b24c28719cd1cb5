"""A two-zone domain (UTM 32N + 33N tiles), zone rasterisation, GeoTIFF export, overlapping tiles."""

import numpy as np
import pytest
import rasterio
import xarray as xr
from pyproj import Transformer

from glacgrid.domain import domain_from_tiles, export, rasterise
from glacgrid.exceptions import InputDataError
from glacgrid.grid import TargetGrid
from glacgrid.mosaic import mosaic_dataset, read_tile, scan_tiles
from glacgrid.testing import DATA, requires_data

ALPS = DATA / "alps"
NUMBERS = [3881, 3884, 3886, 3890, 3892, 3893]  # neighbouring small tiles: three in EPSG:32632, three in 32633


@pytest.fixture(scope="module")
def two_zones(tmp_path_factory):
    store = tmp_path_factory.mktemp("dom") / "zones.zarr"
    d = domain_from_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", store, numbers=NUMBERS,
                          group_pixels=100)
    tiles = scan_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", read_values=False, numbers=NUMBERS)
    return d, tiles


@requires_data("alps", "farinotti_thickness")
def test_two_zones_lonlat(two_zones):
    d, tiles = two_zones
    assert sorted(set(d.table["epsg"])) == [32632, 32633]
    p = d.pixels.compute()
    for slot, row in d.table.iterrows():
        tile = tiles.loc[row["source_index"]]
        a, _, c, _, e, f = tile["transform"]
        f0, n = int(d.glaciers["first_pixel"].values[slot - 1]), row["n_pixels"]
        r, cc = p["row"].values[f0:f0 + n], p["col"].values[f0:f0 + n]
        lon, lat = Transformer.from_crs(f"EPSG:{tile['epsg']}", "EPSG:4326", always_xy=True).transform(
            c + a * (cc + 0.5), f + e * (r + 0.5))
        np.testing.assert_array_equal(p["lon"].values[f0:f0 + n], lon)
        np.testing.assert_array_equal(p["lat"].values[f0:f0 + n], lat)
        assert 5.5 < lon.min() and lon.max() < 17 and 43 < lat.min() and lat.max() < 48.5


@requires_data("alps", "farinotti_thickness")
def test_rasterise_zone_round_trips_thickness(two_zones):
    d, tiles = two_zones
    for epsg in (32632, 32633):
        out = rasterise(d.pixels["thickness"], d, epsg=epsg)
        assert out.rio.crs.to_epsg() == epsg
        a, _, c, _, e, f = tuple(out.rio.transform())[:6]
        seen = 0
        for num, tile in tiles[tiles["epsg"] == epsg].iterrows():
            h, z, _ = read_tile(tile)
            ice = (np.nan_to_num(h) > 0) & np.isfinite(z)
            j0 = int(round((tile["top"] - f) / e))
            i0 = int(round((tile["left"] - c) / a))
            win = out.values[j0:j0 + h.shape[0], i0:i0 + h.shape[1]]
            np.testing.assert_array_equal(win[ice], h[ice])
            seen += ice.sum()
        assert np.isfinite(out.values).sum() == seen  # nothing else painted


@requires_data("alps", "farinotti_thickness")
def test_rasterise_onto_a_grid(two_zones):
    d, tiles = two_zones
    tile = tiles.loc[3881]
    grid = TargetGrid("EPSG:32632", tile["transform"], (tile["ny"], tile["nx"]))
    out = rasterise(d.pixels["thickness"], d, grid=grid)  # the tile's own grid: one pixel each
    h, z, _ = read_tile(tile)
    ice = (np.nan_to_num(h) > 0) & np.isfinite(z)
    np.testing.assert_allclose(out.values[ice], h[ice], rtol=1e-12)
    assert np.isfinite(out.values).sum() == ice.sum()
    with pytest.raises(InputDataError, match="exactly one"):
        rasterise(d.pixels["thickness"], d)


@requires_data("alps", "farinotti_thickness")
def test_export_geotiffs(two_zones, tmp_path):
    d, tiles = two_zones
    n = d.pixels.sizes["pixel"]
    rng = np.random.default_rng(0)
    thick = d.pixels["thickness"].values
    res = xr.Dataset({"smb": (("year", "member", "pixel"), rng.normal(size=(2, 2, n))),
                      "thickness": (("year", "pixel"), np.stack([thick, thick + 1.0]))},
                     coords={"year": [2001, 2002], "member": [0, 1]})
    files = export(res, d, tmp_path / "g", variables=("thickness",), by="glacier")
    assert len(files) == len(d.table)
    tile = tiles.loc[3884]
    h, z, _ = read_tile(tile)
    ice = (np.nan_to_num(h) > 0) & np.isfinite(z)
    with rasterio.open(tmp_path / "g" / "thickness_RGI60-11.03884.tif") as src:
        assert src.crs.to_epsg() == 32632 and tuple(src.transform)[:6] == tile["transform"]
        assert src.count == 2 and src.descriptions == ("2001", "2002")
        band2 = src.read(2)
    np.testing.assert_array_equal(band2[ice], (h[ice] + 1.0).astype("float32"))
    assert np.isnan(band2[~ice]).all()
    zf = export(res, d, tmp_path / "z", variables=("smb",), by="zone", years=[2002])
    assert sorted(p.name for p in zf) == ["smb_EPSG32632_m0.tif", "smb_EPSG32632_m1.tif",
                                          "smb_EPSG32633_m0.tif", "smb_EPSG32633_m1.tif"]
    want = rasterise(res["smb"].sel(year=2002, member=1), d, epsg=32633)
    with rasterio.open(tmp_path / "z" / "smb_EPSG32633_m1.tif") as src:
        assert src.crs.to_epsg() == 32633 and src.descriptions == ("2002",)
        assert tuple(src.transform)[:6] == tuple(want.rio.transform())[:6]
        np.testing.assert_array_equal(src.read(1), want.values.astype("float32"))


def _write(path, arr, transform, crs="EPSG:32632"):
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1,
                       dtype="float32", transform=rasterio.Affine(*transform), crs=crs) as dst:
        dst.write(arr.astype("float32"), 1)


def test_overlapping_tiles_follow_the_mosaic_rule(tmp_path):
    """Two tiles whose ice overlaps: the overlap goes to the lower number, as in the mosaic."""
    td, dd = tmp_path / "t", tmp_path / "d"
    td.mkdir()
    dd.mkdir()
    h1 = np.zeros((6, 6))
    h1[1:5, 1:5] = 10.0
    h2 = np.zeros((6, 6))
    h2[1:5, 1:5] = 20.0  # tile 2 is shifted by 2 columns: its first two ice columns overlap tile 1's last two
    z = 3000.0 + np.arange(36.0).reshape(6, 6)
    _write(td / "RGI60-11.00001_thickness.tif", h1, (25, 0, 1000, 0, -25, 5000))
    _write(td / "RGI60-11.00002_thickness.tif", h2, (25, 0, 1050, 0, -25, 5000))
    _write(dd / "dem_00001.asc.tif", z, (25, 0, 1000, 0, -25, 5000), crs=None)
    _write(dd / "dem_00002.asc.tif", z + 2, (25, 0, 1050, 0, -25, 5000), crs=None)
    d = domain_from_tiles(td, dd, tmp_path / "o.zarr", group_pixels=64)
    assert d.pixels.attrs["overlap_pixels"] == 8
    np.testing.assert_array_equal(d.table["n_pixels"], [16, 8])
    tiles = scan_tiles(td, dd, read_values=False)
    ms = mosaic_dataset(tiles, 32632).compute()
    zone = rasterise(d.pixels["thickness"], d, epsg=32632)
    owner = rasterise(d.pixels["glacier_id"].astype("float64"), d, epsg=32632)
    assert zone.shape == ms["thickness"].shape
    np.testing.assert_array_equal(zone["x"].values, ms["x"].values)
    np.testing.assert_array_equal(zone["y"].values, ms["y"].values)
    ice = ms["glacier_id"].values > 0
    np.testing.assert_array_equal(np.isfinite(zone.values), ice)
    np.testing.assert_array_equal(zone.values[ice], ms["thickness"].values[ice])
    np.testing.assert_array_equal(owner.values[ice], ms["glacier_id"].values[ice])  # slots 1, 2 = numbers 1, 2
    g = d.group(0)
    assert g.n_real_pixels == 24
    # tile 2's pixels next to the overlap see tile 1's pixels (same group, same lattice) as neighbours
    west = g.neighbours[16:24, 0]
    assert ((west >= 0) & (g.glacier_id[np.maximum(west, 0)] == 1)).sum() == 4


@requires_data("alps", "farinotti_thickness")
def test_export_by_zone_of_a_zone_with_two_resolutions(tmp_path):
    """EPSG:32632 holds 25 m and 50 m Farinotti tiles: one GeoTIFF per resolution, each glacier's thickness on it."""
    numbers = [3881, 2822]  # a 25 m and a 50 m tile, both in EPSG:32632
    d = domain_from_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", tmp_path / "mixed.zarr",
                          numbers=numbers)
    res = xr.Dataset({"thickness": d.pixels["thickness"].astype("float32").expand_dims(year=[2000])})
    files = sorted(p.name for p in export(res, d, tmp_path / "tifs", variables=("thickness",), by="zone"))
    assert files == ["thickness_EPSG32632_25m.tif", "thickness_EPSG32632_50m.tif"]
    tiles = scan_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", read_values=False, numbers=numbers)
    for num, name in ((3881, "25m"), (2822, "50m")):
        h, _, _ = read_tile(tiles.loc[num])
        ice = np.where(np.isfinite(h) & (h > 0), h, np.nan)
        with rasterio.open(tmp_path / "tifs" / f"thickness_EPSG32632_{name}.tif") as src:
            got = src.read(1)
            assert src.res[0] == float(tiles.loc[num, "res"])
        assert np.nansum(got) == pytest.approx(np.nansum(ice).astype("float32"), rel=1e-6)
        assert np.isfinite(got).sum() == np.isfinite(ice).sum()
