"""The window builder (against the tile builder) and the synthetic global inventory and domain."""

import numpy as np
import pytest
import xarray as xr

from glacgrid.domain import domain_from_tiles, domain_from_windows
from glacgrid.exceptions import InputDataError
from glacgrid.mosaic import read_tile, scan_tiles
from glacgrid.testing import DATA, requires_data
from glacgrid.testing._globe import (RGI6_REGIONS, global_cube, global_domain, global_inventory, glacier_windows,
                                     volume_area_km3)

ALPS = DATA / "alps"
NUMBERS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1450, 1451, 1452]


def _values(dom):
    """Every data variable of the store, loaded (pixels and glaciers)."""
    ds = xr.open_zarr(dom.path).load()
    return {v: ds[v].values for v in ds.data_vars}, ds.attrs


@requires_data("alps", "farinotti_thickness")
def test_windows_equal_tiles(tmp_path):
    tiles = scan_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", read_values=False, numbers=NUMBERS)
    a = domain_from_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", tmp_path / "tiles.zarr",
                          numbers=NUMBERS, group_pixels=3000)

    def windows():
        for num, row in tiles.iterrows():  # one record per tile, read on demand
            h, z, _ = read_tile(row)
            yield {"rgi_id": row["rgi_id"], "source_index": num, "epsg": row["epsg"], "transform": row["transform"],
                   "surface": z, "thickness": h}

    b = domain_from_windows(windows(), tmp_path / "windows.zarr", group_pixels=3000)
    va, aa = _values(a)
    vb, ab = _values(b)
    assert a.n_groups == b.n_groups > 1
    assert sorted(va) == sorted(vb)
    for name in va:
        np.testing.assert_array_equal(va[name], vb[name], err_msg=name)
    for key in ("n_pixels", "n_glaciers", "group_pixels", "group_glaciers", "overlap_pixels", "negative_pixels",
                "ice_pixels_without_surface", "source_files"):
        assert aa[key] == ab[key], key
    assert ab["n_glaciers"] == len(NUMBERS)


def test_windows_rules(tmp_path):
    """Overlap (first window wins), halo slopes, NaN thickness = no ice, and the input checks."""
    z = np.add.outer(np.arange(4) * -10.0, np.arange(5) * 5.0) + 3000.0  # dz/dx = +5 per 10 m, dz/dy = +10
    h = np.full((4, 5), np.nan)
    h[1:3, 1:4] = 50.0
    tr = (10.0, 0.0, 1000.0, 0.0, -10.0, 5000.0)
    tr2 = (10.0, 0.0, 1020.0, 0.0, -10.0, 5000.0)  # shifted by two pixels: one column of ice overlaps
    rec = [{"rgi_id": "A", "epsg": 32632, "transform": tr, "surface": z, "thickness": h},
           {"rgi_id": "B", "crs": "EPSG:32632", "transform": tr2, "surface": z, "thickness": h, "name": "b"}]
    dom = domain_from_windows(rec, tmp_path / "w.zarr")
    t = dom.table
    assert t["n_pixels"].tolist() == [6, 4]  # B gives its first ice column (2 pixels) to A
    assert t["epsg"].tolist() == [32632, 32632] and t["name"].tolist() == ["", "b"]
    assert xr.open_zarr(dom.path).attrs["overlap_pixels"] == 2
    g = dom.group(0)
    n = g.n_real_pixels
    # interior pixels: central differences on real window neighbours: |grad| = hypot(0.5, 1.0)
    np.testing.assert_allclose(g.slope[:n], np.degrees(np.arctan(np.hypot(0.5, 1.0))), rtol=1e-6)
    np.testing.assert_allclose(g.pixel_area[:n], 100.0)
    with pytest.raises(InputDataError, match="geographic"):
        domain_from_windows([{**rec[0], "epsg": None, "crs": "EPSG:4326"}], tmp_path / "geo.zarr")
    with pytest.raises(InputDataError, match="shape"):
        domain_from_windows([{**rec[0], "thickness": h[:3]}], tmp_path / "shape.zarr")
    with pytest.raises(InputDataError, match="north-up"):
        domain_from_windows([{**rec[0], "transform": (10.0, 0.0, 0.0, 0.0, 10.0, 0.0)}], tmp_path / "up.zarr")
    with pytest.raises(InputDataError, match="No glacier pixel"):
        domain_from_windows([{**rec[0], "thickness": np.zeros((4, 5))}], tmp_path / "none.zarr")


def test_global_inventory_totals():
    inv = global_inventory(seed=0)
    assert len(inv) == 215_547 == int(RGI6_REGIONS["count"].sum())
    counts = inv.groupby("region").size()
    np.testing.assert_array_equal(counts.to_numpy(), RGI6_REGIONS["count"].to_numpy())
    area = inv.groupby("region")["area_km2"].sum()
    np.testing.assert_allclose(area.to_numpy(), RGI6_REGIONS["area_km2"].to_numpy(), rtol=1e-6)
    assert abs(inv["area_km2"].sum() - 706_000) < 0.01 * 706_000
    cap = RGI6_REGIONS.loc[inv["region"], "cap_km2"].to_numpy()
    assert (inv["area_km2"] >= 0.01).all() and (inv["area_km2"].to_numpy() <= cap + 1e-9).all()
    assert inv["rgi_id"].is_unique and inv["rgi_id"].iloc[0] == "RGI60-01.00001"
    box = RGI6_REGIONS.loc[inv["region"]]
    assert ((inv["lat"].to_numpy() >= box["lat0"].to_numpy()) & (inv["lat"].to_numpy() <= box["lat1"].to_numpy())).all()
    assert global_inventory(seed=0)["area_km2"].equals(inv["area_km2"])  # seeded


def test_polar_windows(tmp_path):
    """Beyond 80 degrees the windows are polar stereographic; the ice sits at the glacier's lon/lat, with
    the area and the volume-area-scaling volume of the inventory."""
    import pandas as pd

    inv = pd.DataFrame({"region": [3, 19, 11], "rgi_id": ["RGI60-03.00001", "RGI60-19.00001", "RGI60-11.00001"],
                        "area_km2": [40.0, 25.0, 10.0], "lon": [-80.0, 60.0, 10.5], "lat": [81.5, -80.5, 46.5]})
    dom = domain_from_windows(glacier_windows(inv, 100.0), tmp_path / "polar.zarr")
    t = dom.table
    assert t["epsg"].tolist() == [3413, 3031, 32632]
    np.testing.assert_allclose(t["area_km2"], inv["area_km2"], rtol=0.02)
    p = dom.pixels.compute()
    real = p["glacier_id"].values > 0
    gid = p["glacier_id"].values[real] - 1
    lon, lat = p["lon"].values[real], p["lat"].values[real]
    for k in range(3):
        sel = gid == k
        assert abs(np.median(lat[sel]) - inv["lat"][k]) < 0.02
        assert abs(np.median(lon[sel]) - inv["lon"][k]) < 0.02 / np.cos(np.deg2rad(inv["lat"][k]))
        vol = (p["thickness"].values[real][sel] * p["pixel_area"].values[real][sel]).sum() / 1e9
        np.testing.assert_allclose(vol, volume_area_km3(inv["area_km2"][k]), rtol=0.03)


def test_tiny_global_domain_runs(tmp_path):
    from glacgrid import cube as cube_mod
    from glacgrid.simulate import DomainRun, simulate_domain
    from glacgrid.testing._domain import DOMAIN_FEATURES, domain_model

    dom = global_domain(tmp_path / "globe.zarr", fraction=1e-4, resolution=100.0)
    t = dom.table
    assert len(t) == 30  # at least one glacier in each of the 19 regions
    assert t["name"].nunique() == 19 and t["epsg"].nunique() >= 10
    px = dom.pixels[["lon", "lat", "glacier_id"]].compute()
    real = px["glacier_id"].values > 0
    cube = global_cube(px["lon"].values[real], px["lat"].values[real], tmp_path / "cube.zarr", start=2001, end=2001,
                       resolution=0.5)
    run = DomainRun("reconstruct", np.array([2001]), DOMAIN_FEATURES)
    store = simulate_domain(dom, cube, domain_model(), tmp_path / "res.zarr", run)
    res = cube_mod.open_store(store, chunks=None)
    smb = res["smb_glacier"].sel(glacier=t.index.to_numpy()).values
    assert np.isfinite(smb).all() and (res["failed"].sel(glacier=t.index.to_numpy()).values == 0).all()
    assert -20.0 < smb.min() and smb.max() < 10.0
