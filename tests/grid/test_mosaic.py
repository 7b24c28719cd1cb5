import numpy as np
import pytest

from glacgrid import mosaic
from glacgrid.exceptions import InputDataError
from glacgrid.testing._mosaic import write_tiles

from glacgrid.testing import DATA, raise_if_dask_computes, requires_data


@pytest.fixture(scope="module")
def tiles_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles")
    answers = write_tiles(root)
    return root, answers


def test_scan_takes_dem_crs_from_thickness(tiles_dir):
    root, ans = tiles_dir
    t = mosaic.scan_tiles(root / "thickness", root / "dem")
    assert list(t.index) == [1, 2, 3, 4]
    assert list(t["epsg"]) == [32632, 32632, 32632, 32633]
    assert list(t["dem_crs"]) == [32632, 32632, 32632, 32633]  # DEMs have no CRS tag
    assert t.loc[4, "negative_pixels"] == 1
    for n in (1, 2, 3, 4):
        assert t.loc[n, "tile_volume_km3"] == pytest.approx(ans["volume_m3"][n] / 1e9, rel=1e-6)
        assert t.loc[n, "tile_area_km2"] == pytest.approx(ans["area_m2"][n] / 1e6, rel=1e-9)


def test_grid_on_majority_lattice(tiles_dir):
    root, _ = tiles_dir
    t = mosaic.scan_tiles(root / "thickness", root / "dem")
    g = mosaic.mosaic_grid(t, 32632, chunks=4)
    assert g.resolution == (25.0, 25.0)
    assert g.transform[2] == 600_012.5 and g.transform[5] == 5_200_012.5
    left, bottom, right, top = g.bounds
    u = t[t["epsg"] == 32632]
    assert left <= u["left"].min() and right >= u["right"].max() and bottom <= u["bottom"].min()
    assert top >= u["top"].max()
    with pytest.raises(InputDataError, match="No tile in EPSG:4326"):
        mosaic.mosaic_grid(t, 4326)


def test_mosaic_known_answers_and_overlap_rule(tiles_dir):
    root, ans = tiles_dir
    t = mosaic.scan_tiles(root / "thickness", root / "dem")
    with raise_if_dask_computes():
        ds = mosaic.mosaic_dataset(t, 32632, chunks=(5))  # chunks that do not divide the grid
    ds = ds.compute()
    t1, t2 = ans["t1"], ans["t2"]
    th, gid = ds["thickness"].values, ds["glacier_id"].values
    # tile 1 pasted exactly, and wins the overlap
    np.testing.assert_array_equal(th[:10, :10], t1[:, :10].astype("float32"))
    np.testing.assert_array_equal(th[:3, 10:12], 0.0)
    assert (gid[2:8, 2:10] == 1).all()
    # tile 2 only where tile 1 has no ice
    np.testing.assert_array_equal(th[3:5, 10:14], t2[2:4, 2:6].astype("float32"))
    assert (gid[3:5, 10:14] == 2).all()
    assert (ds["claim_count"].values == 2).sum() == ans["overlap_pixels"]
    px = float(ds["pixel_area"])
    assert float(ds["thickness_overlap"].sum()) * px == pytest.approx(ans["overlap_volume_m3"], rel=1e-6)
    # surface from the DEM (3000 - 0.01 * (y - 5e6)) everywhere a tile covers, with the y of the grid
    zexp = 3000.0 - 0.01 * (ds["y"].values - 5_000_000)
    cov = np.isfinite(ds["surface"].values)
    zgrid = np.broadcast_to(zexp[:, None], th.shape) * np.where(cov, 1, np.nan)
    np.testing.assert_allclose(ds["surface"].values[:10, :22], zgrid[:10, :22], rtol=1e-6)  # pasted tiles
    # the bilinear resampling of the 50 m DEM clamps at its outer half pixel: within a quarter metre
    np.testing.assert_allclose(ds["surface"].values, zgrid, atol=0.26)
    assert cov[:10, :12].all() and not cov.all()
    # the 50 m tile off the lattice is resampled; volume conserved (average resampling, interior ice)
    tab = mosaic.mosaic_totals(ds)
    assert ds["resampled"].sel(glacier=3).item() == 1 and ds["resampled"].sel(glacier=1).item() == 0
    assert tab.loc[3, "volume_km3"] == pytest.approx(ans["volume_m3"][3] / 1e9, rel=1e-6)
    # totals: mosaic + overlap equals the sum over the tiles
    total = tab["volume_km3"].sum() + tab.attrs["overlap_volume_km3"]
    assert total == pytest.approx(tab["tile_volume_km3"].sum(), rel=1e-6)
    assert tab.loc[1, "volume_km3"] == pytest.approx(ans["volume_m3"][1] / 1e9, rel=1e-6)
    assert tab.loc[1, "area_km2"] == pytest.approx(ans["area_m2"][1] / 1e6)
    assert ds["thickness"].attrs["units"] == "m" and "mosaic" in ds["thickness"].attrs["history"]


def test_chunking_invariance(tiles_dir):
    root, _ = tiles_dir
    t = mosaic.scan_tiles(root / "thickness", root / "dem")
    a = mosaic.mosaic_dataset(t, 32632, chunks=1000).compute()
    b = mosaic.mosaic_dataset(t, 32632, chunks=3).compute()
    for v in ("thickness", "surface", "glacier_id", "claim_count", "thickness_overlap"):
        np.testing.assert_array_equal(a[v].values, b[v].values)


def test_build_writes_one_store_per_projection_and_resumes(tiles_dir, tmp_path):
    root, ans = tiles_dir
    out = mosaic.build_mosaic(root / "thickness", root / "dem", tmp_path, chunks=4)
    assert [s.epsg for s in out] == [32632, 32633]
    assert out[0].resampled == ("RGI60-11.00003",)
    ds = mosaic.open_mosaic(out[1].path)
    assert ds["glacier_id"].dtype == "int32" and list(ds["rgi_id"].values) == ["RGI60-11.00004"]
    assert ds["thickness"].chunks[0][0] == 4
    vol = float((ds["thickness"].astype("float64").sum() * ds["pixel_area"]).compute())
    assert vol == pytest.approx(ans["volume_m3"][4], rel=1e-6)  # the negative pixel became 0
    assert float(ds["thickness"].min()) == 0.0  # unwritten chunks read as 0 (fill value)
    # resume: a finished store is not rewritten (its chunk files keep their modification times)
    chunk_files = sorted((out[1].path / "thickness").rglob("c/*/*"))
    before = [p.stat().st_mtime_ns for p in chunk_files]
    mosaic.build_mosaic(root / "thickness", root / "dem", tmp_path, chunks=4, epsgs=[32633])
    assert [p.stat().st_mtime_ns for p in chunk_files] == before


@pytest.mark.slow
@requires_data("alps", "farinotti_thickness", "RGI60-11.00897_thickness.tif")
def test_hef_neighbourhood_of_alps_mosaic():
    """HEF and its neighbours from the real Alps tiles: volume 0.578 km3, area 8.03 km2."""
    alps = DATA / "alps"
    assert len(list((alps / "farinotti_thickness").glob("RGI60-11.*_thickness.tif"))) == 3927
    sub = mosaic.scan_tiles(alps / "farinotti_thickness", alps / "farinotti_dem", numbers=range(885, 911))
    assert len(sub) == 26
    ds = mosaic.mosaic_dataset(sub, 32632, chunks=1024)
    tab = mosaic.mosaic_totals(ds)
    assert tab.loc[897, "volume_km3"] == pytest.approx(0.578, abs=0.0005)
    assert tab.loc[897, "area_km2"] == pytest.approx(8.03, rel=0.001)
    total = tab["volume_km3"].sum() + tab.attrs["overlap_volume_km3"]
    assert total == pytest.approx(tab["tile_volume_km3"].sum(), rel=1e-9)


@pytest.mark.slow
@requires_data("alps", "farinotti_thickness", "RGI60-11.03643_thickness.tif")
def test_off_lattice_and_50m_tiles_of_the_alps():
    """Aletsch (50 m) and Mer de Glace (off the 25 m lattice, DEM shifted half a pixel) are resampled."""
    alps = DATA / "alps"
    t = mosaic.scan_tiles(alps / "farinotti_thickness", alps / "farinotti_dem", numbers=[1450, 3643])
    assert list(t["res"]) == [50.0, 25.0] and t.loc[3643, "negative_pixels"] > 0
    assert t.loc[3643, "dem_transform"][2] - t.loc[3643, "transform"][2] == pytest.approx(12.5, abs=1e-3)
    ds = mosaic.mosaic_dataset(t, 32632, chunks=1024)
    assert ds["resampled"].values.tolist() == [1, 1]
    tab = mosaic.mosaic_totals(ds)
    # average resampling keeps the volume (measured 13.7513 vs 13.7523 km3 in the full mosaic)
    assert tab.loc[1450, "volume_km3"] == pytest.approx(tab.loc[1450, "tile_volume_km3"], rel=2e-4)
    assert tab.loc[3643, "volume_km3"] == pytest.approx(tab.loc[3643, "tile_volume_km3"], rel=2e-3)
    assert float(ds["surface"].where(ds["glacier_id"] == 3643).max()) > 4000


def test_cli_mosaic(tiles_dir, tmp_path):
    from typer.testing import CliRunner

    from glacgrid.cli import app

    root, ans = tiles_dir
    res = CliRunner().invoke(app, ["mosaic", str(root / "thickness"), str(root / "dem"), "--out", str(tmp_path),
                                   "--chunks", "8", "--epsg", "32633"])
    assert res.exit_code == 0, res.output
    assert "EPSG:32633: 1 glaciers" in res.output and (tmp_path / "alps_32633.zarr").exists()
    table = __import__("pandas").read_csv(tmp_path / "alps_32633.glaciers.csv", index_col=0)
    assert table.loc[4, "volume_km3"] == pytest.approx(ans["volume_m3"][4] / 1e9, rel=1e-6)
    res = CliRunner().invoke(app, ["mosaic", str(root / "thickness"), str(root / "dem"), "--out", str(tmp_path),
                                   "--epsg", "4326"])
    assert res.exit_code == 2 and "No tile in EPSG [4326]" in res.output
