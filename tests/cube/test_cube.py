"""glacgrid.cube: template-then-region Zarr writes, idempotent resume, schema checks."""

from __future__ import annotations

import json

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from glacgrid import cube
from glacgrid.exceptions import InputDataError, StoreError


def make_ds(nlat: int = 10, nlon: int = 3, ntime: int = 5, lat_chunk: int = 4, seed: int = 0) -> xr.Dataset:
    """A small dask dataset: a (time, lat, lon) field, a (lat, lon) invariant, lat chunks not dividing nlat."""
    rng = np.random.default_rng(seed)
    field = rng.normal(270.0, 5.0, (ntime, nlat, nlon)).astype("float32")
    inv = rng.uniform(1000.0, 3000.0, (nlat, nlon))
    ds = xr.Dataset(
        {
            "t2m": (("time", "lat", "lon"), dsa.from_array(field, chunks=(-1, lat_chunk, -1)), {"units": "K"}),
            "orog": (("lat", "lon"), dsa.from_array(inv, chunks=(lat_chunk, -1)), {"units": "m"}),
        },
        coords={
            "time": pd.date_range("2001-01-01", periods=ntime, freq="MS"),
            "lat": 46.0 + 0.1 * np.arange(nlat),
            "lon": 10.0 + 0.1 * np.arange(nlon),
        },
        attrs={"title": "test"},
    )
    return ds


def snapshot(store) -> dict:
    """Every file of the store -> (bytes, mtime_ns)."""
    return {
        str(p.relative_to(store)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def count_regions(monkeypatch):
    """Count the calls of cube.write_region made by write_dataset."""
    calls = []
    real = cube.write_region

    def counting(ds_part, store, *, region_dim, index):
        calls.append(cube.region_key(region_dim, index))
        return real(ds_part, store, region_dim=region_dim, index=index)

    monkeypatch.setattr(cube, "write_region", counting)
    return calls


def test_write_then_reopen_is_identical(tmp_path):
    ds = make_ds()
    store = cube.write_dataset(ds, tmp_path / "c.zarr", region_dim="lat")
    back = cube.open_store(store, chunks={})
    xr.testing.assert_identical(back.compute(), ds.compute())
    assert back["t2m"].dtype == np.float32
    assert back["t2m"].chunks == ((5,), (4, 4, 2), (3,))  # dask chunks became Zarr chunks
    assert cube.completed_regions(store) == {"lat[0:4]", "lat[4:8]", "lat[8:10]"}
    assert json.loads((store / cube.DONE_FILE).read_text())["done"] == ["lat[0:4]", "lat[4:8]", "lat[8:10]"]


def test_template_is_metadata_only(tmp_path):
    store = cube.create_template(make_ds(), tmp_path / "c.zarr")
    assert (store / "zarr.json").is_file()
    assert not (store / "t2m" / "c").exists()  # no data chunk written
    assert not (store / "orog" / "c").exists()
    assert cube.completed_regions(store) == set()
    back = cube.open_store(store, chunks=None)
    np.testing.assert_array_equal(back["lat"].values, make_ds()["lat"].values)
    assert np.isnan(back["t2m"].values).all()  # unwritten regions read as the fill value


def test_rerun_is_idempotent(tmp_path, count_regions):
    ds = make_ds()
    store = cube.write_dataset(ds, tmp_path / "c.zarr", region_dim="lat")
    assert len(count_regions) == 3
    before = snapshot(store)
    cube.write_dataset(ds, store, region_dim="lat")
    assert len(count_regions) == 3  # nothing rewritten
    assert snapshot(store) == before  # same bytes, same modification times


def test_resume_after_killed_run_equals_uninterrupted(tmp_path, count_regions):
    ds = make_ds(nlat=13, lat_chunk=3)
    full = cube.write_dataset(ds, tmp_path / "full.zarr", region_dim="lat")
    count_regions.clear()

    store = tmp_path / "killed.zarr"
    cube.create_template(ds, store)
    for index in (slice(0, 3), slice(6, 9)):  # finished and recorded
        cube.write_region(ds.isel(lat=index), store, region_dim="lat", index=index)
        cube.mark_done(store, cube.region_key("lat", index))
    # written but killed before it was recorded: must be written again
    cube.write_region(ds.isel(lat=slice(3, 6)), store, region_dim="lat", index=slice(3, 6))
    count_regions.clear()

    cube.write_dataset(ds, store, region_dim="lat")
    assert sorted(count_regions) == ["lat[12:13]", "lat[3:6]", "lat[9:12]"]
    xr.testing.assert_identical(cube.open_store(store).compute(), cube.open_store(full).compute())
    assert cube.completed_regions(store) == cube.completed_regions(full)


def test_step_must_be_multiple_of_chunk(tmp_path, count_regions):
    ds = make_ds(nlat=10, lat_chunk=4)
    store = cube.write_dataset(ds, tmp_path / "c.zarr", region_dim="lat", step=8)
    assert count_regions == ["lat[0:8]", "lat[8:10]"]
    xr.testing.assert_identical(cube.open_store(store).compute(), ds.compute())
    with pytest.raises(InputDataError, match="multiple of the chunk size 4"):
        cube.write_dataset(ds, tmp_path / "d.zarr", region_dim="lat", step=3)
    with pytest.raises(InputDataError, match="not a dimension"):
        cube.write_dataset(ds, tmp_path / "e.zarr", region_dim="x")
    assert not (tmp_path / "d.zarr").exists() and not (tmp_path / "e.zarr").exists()


def test_numpy_backed_dataset_and_conflicting_encodings(tmp_path):
    ds = make_ds().compute()  # no dask: one region along lat
    ds["t2m"].encoding = {"chunksizes": (1, 2, 3), "zlib": True, "source": "x.nc", "original_shape": (5, 10, 3)}
    store = cube.write_dataset(ds, tmp_path / "c.zarr", region_dim="lat")
    assert cube.completed_regions(store) == {"lat[0:10]"}
    xr.testing.assert_identical(cube.open_store(store).compute(), ds)


@pytest.mark.parametrize(
    "change",
    [
        lambda ds: ds.rename({"t2m": "temp"}),
        lambda ds: ds.drop_vars("orog"),
        lambda ds: ds.isel(lat=slice(0, 9)),
        lambda ds: ds.assign_coords(lat=ds["lat"] + 0.05),
        lambda ds: ds.assign_coords(time=ds["time"] + pd.Timedelta(days=365)),
        lambda ds: ds.astype("float64"),
        lambda ds: ds.assign(orog=ds["orog"].expand_dims(time=ds["time"])),
    ],
    ids=["renamed", "dropped", "size", "lat-values", "time-values", "dtype", "dims"],
)
def test_schema_mismatch_raises_and_leaves_store_unchanged(tmp_path, change):
    ds = make_ds()
    store = cube.write_dataset(ds, tmp_path / "c.zarr", region_dim="lat")
    before = snapshot(store)
    with pytest.raises(StoreError, match="different schema.*overwrite=True"):
        cube.write_dataset(change(ds), store, region_dim="lat")
    assert snapshot(store) == before


def test_overwrite_replaces_store(tmp_path):
    store = cube.write_dataset(make_ds(), tmp_path / "c.zarr", region_dim="lat")
    other = make_ds(nlat=7, seed=3).rename({"t2m": "temp"})
    cube.write_dataset(other, store, region_dim="lat", overwrite=True)
    back = cube.open_store(store).compute()
    xr.testing.assert_identical(back, other.compute())
    assert cube.completed_regions(store) == {"lat[0:4]", "lat[4:7]"}


def test_missing_or_foreign_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        cube.open_store(tmp_path / "nope.zarr")
    with pytest.raises(StoreError, match="does not exist"):
        cube.completed_regions(tmp_path / "nope.zarr")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a Zarr store"):
        cube.open_store(folder)
    for overwrite in (False, True):  # never deletes a folder that is not a store
        with pytest.raises(StoreError, match="not a Zarr store"):
            cube.write_dataset(make_ds(), folder, region_dim="lat", overwrite=overwrite)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_mark_done_is_atomic_and_cumulative(tmp_path):
    store = cube.create_template(make_ds(), tmp_path / "c.zarr")
    cube.mark_done(store, "time[0:12]")
    cube.mark_done(store, 2001)
    cube.mark_done(store, "time[0:12]")
    assert cube.completed_regions(store) == {"time[0:12]", "2001"}
    assert [p.name for p in store.iterdir() if p.name.startswith(cube.DONE_FILE)] == [cube.DONE_FILE]
    (store / cube.DONE_FILE).write_text("{not json")
    with pytest.raises(StoreError, match="Delete it"):
        cube.completed_regions(store)


def test_write_region_along_time_year_by_year(tmp_path):
    """The annual loop: template with 12-month chunks, then one (unaligned) slab at a time."""
    ds = make_ds(ntime=30).chunk(time=12)
    store = cube.create_template(ds, tmp_path / "c.zarr")
    for index in (slice(0, 12), slice(12, 18), slice(18, 30)):  # 12:18 covers half a Zarr chunk
        cube.write_region(ds.isel(time=index), store, region_dim="time", index=index)
        cube.mark_done(store, cube.region_key("time", index))
    back = cube.open_store(store).compute()
    np.testing.assert_array_equal(back["t2m"].values, ds["t2m"].values)
    assert np.isnan(back["orog"].values).all()  # no time dim: neither template nor regions write it
    assert cube.write_static(ds, store, region_dim="time")
    np.testing.assert_array_equal(cube.open_store(store)["orog"].values, ds["orog"].values)
    with pytest.raises(StoreError, match="Could not write region"):
        cube.write_region(ds.isel(time=slice(0, 5)), store, region_dim="time", index=slice(0, 6))


@settings(max_examples=8, deadline=None)
@given(nlat=st.integers(1, 9), lat_chunk=st.integers(1, 5), factor=st.integers(1, 3))
def test_chunking_and_step_do_not_change_values(tmp_path_factory, nlat, lat_chunk, factor):
    ds = make_ds(nlat=nlat, ntime=2, lat_chunk=lat_chunk)
    store = tmp_path_factory.mktemp("prop") / "c.zarr"
    cube.write_dataset(ds, store, region_dim="lat", step=lat_chunk * factor)
    xr.testing.assert_identical(cube.open_store(store).compute(), ds.compute())
    n_regions = -(-nlat // (lat_chunk * factor))
    assert len(cube.completed_regions(store)) == n_regions


def test_variables_without_region_dim_are_written_once(tmp_path, count_regions):
    ds = make_ds(ntime=7).chunk(time=3)
    store = cube.write_dataset(ds, tmp_path / "c.zarr", region_dim="time")
    assert cube.completed_regions(store) == {"static", "time[0:3]", "time[3:6]", "time[6:7]"}
    xr.testing.assert_identical(cube.open_store(store).compute(), ds.compute())
    before = snapshot(store)
    cube.write_dataset(ds, store, region_dim="time")
    assert snapshot(store) == before


def test_interrupted_write_is_incomplete_until_resumed(tmp_path, monkeypatch):
    ds = make_ds(nlat=10, lat_chunk=4)
    real = cube.write_region

    def killed_on_second(part, store, *, region_dim, index, region=None):
        if index.start == 4:
            raise KeyboardInterrupt("killed")
        return real(part, store, region_dim=region_dim, index=index, region=region)

    monkeypatch.setattr(cube, "write_region", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        cube.write_dataset(ds, tmp_path / "c.zarr", region_dim="lat")
    store = tmp_path / "c.zarr"
    assert cube.missing_regions(store) == {"lat[4:8]", "lat[8:10]"}
    with pytest.raises(StoreError, match=r"incomplete: 2 region\(s\).*lat\[4:8\], lat\[8:10\]"):
        cube.open_store(store, require_complete=True)
    cube.open_store(store)  # still readable on request (e.g. to inspect it)
    monkeypatch.setattr(cube, "write_region", real)
    cube.write_dataset(ds, store, region_dim="lat")
    assert cube.missing_regions(store) == set()
    xr.testing.assert_identical(cube.open_store(store, require_complete=True).compute(), ds.compute())


def test_concurrent_mark_done_loses_no_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = cube.create_template(make_ds(), tmp_path / "c.zarr")
    keys = [f"k{i}" for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: cube.mark_done(store, k), keys))
    assert cube.completed_regions(store) == set(keys)


def test_prepare_regions_plans_and_skips_done(tmp_path):
    ds = make_ds(nlat=10, lat_chunk=4)
    store = tmp_path / "c.zarr"
    _, pending = cube.prepare_regions(ds, store, region_dim="lat")
    assert [k for k, _ in pending] == ["lat[0:4]", "lat[4:8]", "lat[8:10]"]
    assert [i for _, i in pending] == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert cube.missing_regions(store) == {"lat[0:4]", "lat[4:8]", "lat[8:10]"}
    cube.mark_done(store, "lat[4:8]")
    _, pending = cube.prepare_regions(ds, store, region_dim="lat")
    assert [k for k, _ in pending] == ["lat[0:4]", "lat[8:10]"]
