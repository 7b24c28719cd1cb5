"""domain_from_rasters on a small geographic grid with known answers (no real data needed)."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.domain import domain_from_rasters, open_domain, rasterise
from glacgrid.exceptions import InputDataError
from glacgrid.features import topo_pixel_features
from glacgrid.grid import EARTH_RADIUS, TargetGrid
from glacgrid.cube import completed_regions, missing_regions


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    grid = TargetGrid.from_spec("EPSG:4326", 0.001, (10.70, 46.70, 10.72, 46.71), chunks=(4, 7))  # 10 x 20
    ny, nx = grid.shape
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:ny, 0:nx]
    z = 3000.0 + 7.0 * yy - 3.0 * xx + rng.normal(0, 0.5, (ny, nx))
    gid = np.zeros((ny, nx), "int32")
    gid[0:4, 0:5] = 1  # touches the north and west edges of the raster
    gid[5:9, 12:20] = 3  # touches the east edge; glacier 2 has no pixel
    th = np.where(gid > 0, 50.0, np.nan)
    th[5:9, 12:17] = np.nan  # glacier 3: 5 of 8 columns without thickness data
    static = xr.Dataset({"glacier_id": (("y", "x"), gid), "surface": (("y", "x"), z),
                         "thickness": (("y", "x"), th), "pixel_area": grid.pixel_area()}).chunk({"y": 4, "x": 7})
    table = pd.DataFrame({"rgi_id": ["A", "B", "C"], "name": ["a", "b", None]},
                         index=pd.Index([1, 2, 3], name="glacier"))
    store = tmp_path_factory.mktemp("dom") / "syn.zarr"
    return grid, static, table, store, domain_from_rasters(static, grid, table, store, group_pixels=24)


def test_layout_and_empty_glacier(case):
    grid, static, table, store, d = case
    assert (d.group_pixels, d.group_glaciers, d.n_groups) == (32, 8, 2)  # 20 + 0 fit in 24; 32 alone
    t = d.table
    assert list(t.index) == [1, 2, 9] and list(t["n_pixels"]) == [20, 0, 32] and list(t["group"]) == [0, 0, 1]
    assert list(t["source_index"]) == [1, 2, 3] and list(t["name"]) == ["a", "b", ""]
    np.testing.assert_array_equal(d.glaciers["first_pixel"].values[[0, 1, 8]], [0, -1, 32])
    np.testing.assert_array_equal(d.glaciers["has_thickness"].values[[0, 1, 8]], [True, False, False])
    np.testing.assert_array_equal(d.glaciers["window_shape"].values[[0, 8]], [[4, 5], [4, 8]])
    a, _, c, _, e, f = grid.transform
    np.testing.assert_allclose(d.glaciers["transform"].values[8], [a, 0, c + 12 * a, 0, e, f + 5 * e])
    assert d.glaciers["epsg"].values[0] == 4326


def test_slope_lonlat_dx_equal_dense(case):
    grid, static, table, store, d = case
    topo = topo_pixel_features(static["surface"], grid).compute()
    p = d.pixels.compute()
    gid = p["glacier_id"].values
    for slot, (r0, c0) in ((1, (0, 0)), (9, (5, 12))):
        sel = gid == slot
        r, c = p["row"].values[sel] + r0, p["col"].values[sel] + c0
        for v in ("slope", "aspect_cos", "aspect_sin"):
            np.testing.assert_array_equal(p[v].values[sel], topo[v].values[r, c], err_msg=v)
        np.testing.assert_array_equal(p["lon"].values[sel], grid.x[c])
        np.testing.assert_array_equal(p["lat"].values[sel], grid.y[r])
        np.testing.assert_array_equal(p["dx"].values[sel], EARTH_RADIUS * np.deg2rad(0.001) * np.cos(np.deg2rad(grid.y[r])))
        np.testing.assert_array_equal(p["dy"].values[sel], EARTH_RADIUS * np.deg2rad(0.001))
        z = static["surface"].values
        np.testing.assert_array_equal(p["neighbour_surface"].values[sel, 2], z[np.maximum(r - 1, 0), c])  # N, replicated
    th = p["thickness"].values[gid == 9]
    assert (th == 0).sum() == 20 and (th == 50).sum() == 12  # 0 where no thickness data


def test_rasterise_glacier_round_trip(case):
    grid, static, table, store, d = case
    out = rasterise(d.pixels["surface"], d, glacier="C")
    np.testing.assert_array_equal(out.values, static["surface"].values[5:9, 12:20])
    np.testing.assert_allclose(out["x"].values, grid.x[12:20], rtol=0, atol=1e-12)
    years = xr.DataArray(np.stack([d.pixels["surface"].values] * 2), dims=("year", "pixel"), coords={"year": [1, 2]})
    two = rasterise(years, d, glacier=1)
    assert two.dims == ("year", "y", "x") and list(two["year"].values) == [1, 2]
    np.testing.assert_array_equal(two.values[1], static["surface"].values[0:4, 0:5])
    with pytest.raises(InputDataError, match="not a real glacier"):
        rasterise(d.pixels["surface"], d, glacier=5)


def test_rebuild_resumes_and_writes_nothing(case):
    grid, static, table, store, d = case
    assert not missing_regions(store)
    before = sorted(p.stat().st_mtime_ns for p in store.rglob("c/*") if p.is_file())
    again = domain_from_rasters(static, grid, table, store, group_pixels=24)
    after = sorted(p.stat().st_mtime_ns for p in store.rglob("c/*") if p.is_file())
    assert before == after and len(completed_regions(store)) == 4
    assert again.table.equals(open_domain(store).table)


def test_unknown_ids_are_refused(case, tmp_path):
    grid, static, table, store, d = case
    with pytest.raises(InputDataError, match="not in the table"):
        domain_from_rasters(static, grid, table.iloc[:2], tmp_path / "x.zarr")
