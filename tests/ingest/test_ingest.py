"""glacgrid.ingest: ERA5-Land monthly files -> normalised Zarr cube (synthetic known answers + HEF data)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import dask
import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid import cube
from glacgrid.exceptions import (
    GridMismatchError,
    InputDataError,
    MissingVariableError,
    StoreError,
    TimeAxisError,
    UnitsError,
)
from glacgrid.ingest import ingest, open_era5land
from glacgrid.testing._era5 import write_era5land_monthly

from glacgrid.testing import DATA, HEF as _HEF_DIR  # noqa: E402

HEF = _HEF_DIR / "climate"
HEF_FILES = [HEF / "sel_era5_land_monthly_t2m_1981-2018.nc", HEF / "sel_era5_land_monthly_prcp_1981-2018.nc"]
HEF_INVARIANT = HEF / "sel_era5_land_invariant.nc"
needs_hef = pytest.mark.skipif(not HEF_INVARIANT.exists(), reason="shared HEF data not available")

TIME = pd.date_range("2000-10-01", "2002-03-01", freq="MS")  # 18 months, three calendar years
LAT = np.array([46.7, 46.6, 46.9, 46.8, 47.0])  # unordered on purpose
LON = np.array([-0.2, -0.1, 0.0, 0.1])  # crosses Greenwich: 0..360 files wrap it
FEB_2001 = int(np.flatnonzero(TIME == "2001-02-01")[0])


def fields(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    shape = (TIME.size, LAT.size, LON.size)
    tp = rng.uniform(0.0, 0.01, shape)
    tp[FEB_2001] = 0.003  # 3 mm per day in a 28-day month
    z = np.full((LAT.size, LON.size), 9806.65)  # 1000 m
    z[0, 0] = 2 * 9806.65
    return {"t2m": rng.uniform(255.0, 290.0, shape), "tp": tp, "z": z, "lsm": rng.uniform(0.0, 1.0, z.shape)}


def write(directory, time=TIME, **kw) -> dict:
    """Synthetic files for the months ``time`` (a leading part of TIME by default all of it)."""
    f = fields()
    n = len(time)
    return write_era5land_monthly(directory, lat=LAT, lon=LON, time=time, **{**f, "t2m": f["t2m"][:n], "tp": f["tp"][:n], **kw})


def snapshot(store: Path) -> dict:
    return {str(p.relative_to(store)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(store.rglob("*")) if p.is_file()}


def values(ds: xr.Dataset) -> xr.Dataset:
    """Data and coordinates only (attributes such as file names and checksums differ between runs)."""
    return ds.compute().drop_attrs()


@pytest.fixture
def files(tmp_path):
    return write(tmp_path / "src")


@pytest.fixture
def store(tmp_path, files):
    """An existing, complete cube that error cases must leave untouched."""
    return ingest(files["files"], tmp_path / "cube.zarr", invariant=files["invariant"], chunks={"time": -1, "lat": 2, "lon": 2})


# ----------------------------------------------------------------------------- known answers
def test_tp_per_day_becomes_monthly_amount(tmp_path):
    f = write(tmp_path, packed=False)
    ds = open_era5land(f["files"], variables=["tp"])
    assert ds["tp"].attrs["units"] == "kg m-2"
    feb = ds["tp"].sel(time="2001-02-01").values
    np.testing.assert_allclose(feb, 84.0, rtol=1e-7)  # 0.003 m/day * 28 days * 1000 kg m-3
    src = fields()["tp"]
    days = TIME.days_in_month.to_numpy()[:, None, None]
    expected = (src * days * 1000.0)[:, np.argsort(LAT)].astype("float32")
    np.testing.assert_allclose(ds["tp"].values, expected, rtol=1e-6)


def test_t2m_equals_decoded_source_exactly(tmp_path, files):
    store = ingest(files["files"], tmp_path / "c.zarr", chunks={"time": -1, "lat": 2, "lon": 3})
    cube_t2m = cube.open_store(store)["t2m"]
    decoded = xr.concat([xr.open_dataset(p, engine="netcdf4")["t2m"] for p in files["files"]], "time")
    assert decoded.dtype == np.float64 and cube_t2m.dtype == np.float32
    np.testing.assert_array_equal(cube_t2m.values, decoded.values[:, ::-1].astype("float32"))
    np.testing.assert_allclose(cube_t2m.values, fields()["t2m"][:, np.argsort(LAT)], atol=3e-4)  # packing error


def test_normalised_coordinates_and_metadata(files):
    ds = open_era5land(files["files"], invariant=files["invariant"])
    assert list(ds.data_vars) == ["t2m", "tp", "orog", "lsm"]
    assert ds["t2m"].dims == ("time", "lat", "lon") and ds["orog"].dims == ("lat", "lon")
    np.testing.assert_array_equal(ds["lat"].values, np.sort(LAT))
    np.testing.assert_array_equal(ds["lon"].values, LON)
    assert ds["time"].dtype == "datetime64[ns]"
    np.testing.assert_array_equal(ds["time"].values, TIME.to_numpy())
    assert {v: ds[v].attrs["units"] for v in ds.data_vars} == {"t2m": "K", "tp": "kg m-2", "orog": "m", "lsm": "1"}
    assert all(ds[v].dtype == np.float32 for v in ds.data_vars)
    assert ds["lat"].attrs["standard_name"] == "latitude" and ds["lon"].attrs["units"] == "degrees_east"
    sources = json.loads(ds.attrs["source_files"])
    paths = [*files["files"], files["invariant"]]
    assert sources == [{"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in paths]
    assert "open_era5land(" in ds.attrs["history"]


def test_orography_from_geopotential(files):
    ds = open_era5land(files["files"], invariant=files["invariant"])
    orog = ds["orog"].values
    assert orog[np.argsort(LAT) == 0][0, 0] == 2000.0  # z[0, 0] at LAT[0] (46.7, second after sorting)
    assert (orog == 1000.0).sum() == orog.size - 1
    lsm = fields()["lsm"][np.argsort(LAT)]
    np.testing.assert_allclose(ds["lsm"].values, lsm, atol=2e-5)


def test_invariant_among_climate_files_is_skipped_with_a_warning(files):
    with pytest.warns(UserWarning, match="era5land_invariant.nc holds no ERA5-Land monthly variable"):
        ds = open_era5land([files["invariant"], *files["files"]])
    assert list(ds.data_vars) == ["t2m", "tp"]
    assert [s["name"] for s in json.loads(ds.attrs["source_files"])] == [p.name for p in files["files"]]


def test_open_is_lazy(files):
    def refuse(*args, **kwargs):
        raise AssertionError("open_era5land computed a dask graph")

    with dask.config.set(scheduler=refuse):
        ds = open_era5land(files["files"], invariant=files["invariant"], chunks={"time": -1, "lat": 2, "lon": 2})
    assert all(ds[v].chunks is not None for v in ds.data_vars)
    assert ds["t2m"].chunks == ((18,), (2, 2, 1), (2, 2))


def test_longitudes_0_360_are_wrapped_with_their_data(tmp_path):
    f360 = write(tmp_path / "a", lon_360=True, packed=False)
    lon = xr.open_dataset(f360["files"][0], engine="netcdf4")["longitude"].values
    np.testing.assert_allclose(lon, [0.0, 0.1, 359.8, 359.9], atol=1e-4)
    ds = open_era5land(f360["files"], invariant=f360["invariant"])
    np.testing.assert_array_equal(ds["lon"].values, LON)
    expected = fields()["t2m"][:, np.argsort(LAT)].astype("float32")
    np.testing.assert_array_equal(ds["t2m"].values, expected)
    ref = open_era5land(write(tmp_path / "b", packed=False)["files"])
    xr.testing.assert_equal(ds[["t2m", "tp"]].drop_attrs(), ref.drop_attrs())


def test_valid_time_layout_equals_time_layout(tmp_path):
    a = write(tmp_path / "a", layout="time")
    b = write(tmp_path / "b", layout="valid_time")
    assert "valid_time" in xr.open_dataset(b["files"][0], engine="netcdf4").dims
    ds_a = open_era5land(a["files"], invariant=a["invariant"])
    ds_b = open_era5land(b["files"], invariant=b["invariant"])
    assert set(ds_b.coords) == {"time", "lat", "lon"}  # number and expver dropped
    xr.testing.assert_identical(values(ds_a), values(ds_b))


@pytest.mark.parametrize("split", ["single", "month", "variable", "variable+month"])
def test_file_splits_give_identical_cubes(tmp_path, split):
    ref = write(tmp_path / "year", split="year")
    other = write(tmp_path / split, split=split)
    assert len(other["files"]) == {"single": 1, "month": 18, "variable": 2, "variable+month": 36}[split]
    shuffled = list(reversed(other["files"]))  # order of the file list does not matter
    a = cube.open_store(ingest(ref["files"], tmp_path / "a.zarr", invariant=ref["invariant"]))
    b = cube.open_store(ingest(shuffled, tmp_path / "b.zarr", invariant=other["invariant"]))
    xr.testing.assert_identical(values(a), values(b))


def test_more_era5land_variables(tmp_path, files):
    """Daily accumulations -> monthly amounts, J m-2 per day -> W m-2, instantaneous kept."""
    shape = (TIME.size, LAT.size, LON.size)
    extra = {
        "ssrd": (8.64e6, "J m**-2"),  # 100 W m-2
        "sf": (0.001, "m of water equivalent"),  # 1 mm per day
        "rsn": (250.0, "kg m**-3"),
        "fal": (0.6, "(0 - 1)"),
    }
    ds = xr.Dataset(
        {k: (("time", "latitude", "longitude"), np.full(shape, v), {"units": u}) for k, (v, u) in extra.items()},
        coords={"time": TIME, "latitude": np.sort(LAT)[::-1], "longitude": LON},
    )
    path = tmp_path / "extra.nc"
    ds.to_netcdf(path, engine="netcdf4")
    out = open_era5land([*files["files"], path], variables=["tp", "ssrd", "sf", "rsn", "fal"])
    np.testing.assert_allclose(out["ssrd"].values, 100.0, rtol=1e-7)
    assert out["ssrd"].attrs["units"] == "W m-2"
    np.testing.assert_allclose(out["sf"].sel(time="2001-02-01").values, 28.0, rtol=1e-7)
    np.testing.assert_allclose(out["sf"].sel(time="2001-03-01").values, 31.0, rtol=1e-7)
    assert out["rsn"].attrs["units"] == "kg m-3" and float(out["rsn"].max()) == 250.0
    assert out["fal"].attrs["units"] == "1"
    ds["rsn"].attrs["units"] = "furlongs"
    ds.to_netcdf(tmp_path / "bad.nc", engine="netcdf4")
    with pytest.raises(UnitsError, match="bad.nc has units 'furlongs'"):
        open_era5land([tmp_path / "bad.nc"], variables=["rsn"])


# ----------------------------------------------------------------------------- store behaviour
def test_ingest_writes_lat_bands_and_is_idempotent(tmp_path, files, store):
    assert cube.completed_regions(store) == {"lat[0:2]", "lat[2:4]", "lat[4:5]"}
    ds = cube.open_store(store, chunks={})
    assert ds["t2m"].chunks == ((18,), (2, 2, 1), (2, 2))  # whole time axis per spatial tile
    before = snapshot(store)
    ingest(files["files"], store, invariant=files["invariant"], chunks={"time": -1, "lat": 2, "lon": 2})
    assert snapshot(store) == before
    xr.testing.assert_identical(values(ds), values(open_era5land(files["files"], invariant=files["invariant"])))


def test_each_chunk_is_one_task_that_reads_only_its_tile(tmp_path, files, monkeypatch):
    """Peak memory: no task per file and no rechunk; a chunk's task reads its tile from each file."""
    from glacgrid.ingest import _tiles

    ds = open_era5land(files["files"], chunks={"time": -1, "lat": 2, "lon": 2})
    t2m = ds["t2m"].data
    assert t2m.chunks == ((18,), (2, 2, 1), (2, 2))
    assert len(dict(t2m.__dask_graph__())) == t2m.npartitions == 6  # the whole graph: one task per chunk
    real, reads = _tiles.HDF5Slab.read, []

    def record(self, time, lat, lon):
        reads.append((Path(self.path).name, self.name, time, lat, lon))
        return real(self, time, lat, lon)

    monkeypatch.setattr(_tiles.HDF5Slab, "read", record)
    block = t2m.blocks[0, 1, 1].compute()
    assert sorted(reads) == [(f"era5land_monthly_t2m_tp_{y}.nc", "t2m", slice(0, n), slice(2, 4), slice(2, 4))
                             for y, n in ((2000, 3), (2001, 12), (2002, 3))]
    np.testing.assert_array_equal(block, ds["t2m"].values[:, 2:4, 2:4])


def test_hdf5_reader_equals_xarray_decoding(tmp_path, monkeypatch):
    """netCDF-4 tiles are read with h5py; the cube equals the one read through xarray's lazy indexing."""
    import glacgrid.ingest._open as opener

    src = write(tmp_path / "src", lon_360=True, split="month")  # descending lat, 0..360 lon: reordered
    kw = {"invariant": src["invariant"], "chunks": {"time": 5, "lat": 2, "lon": 3}}  # time blocks cut files
    direct = cube.open_store(ingest(src["files"], tmp_path / "h5.zarr", **kw))
    monkeypatch.setattr(opener, "is_hdf5", lambda path: False)
    lazy = cube.open_store(ingest(src["files"], tmp_path / "xr.zarr", **kw))
    xr.testing.assert_identical(values(direct), values(lazy))
    decoded = xr.concat([xr.open_dataset(p, engine="netcdf4")["t2m"] for p in src["files"]], "time")
    decoded = decoded.assign_coords(longitude=(decoded["longitude"] + 180) % 360 - 180).sortby("longitude")
    np.testing.assert_array_equal(direct["t2m"].values, decoded.values[:, ::-1].astype("float32"))


def test_peak_memory_does_not_grow_with_the_number_of_months(tmp_path):
    """tracemalloc peak of an ingest (2 variables, 24 x 48 cells, one file per year): 12 vs 240 months.

    The tile reader holds one chunk plus a batch of decoded file slices, so the peak grows only with
    the chunk (240 months x 8 x 8 cells: 60 KiB): by 0.4 MiB here. Reading whole files and rechunking
    (the former design) grew by 2.4 MiB.
    """
    import tracemalloc

    from glacgrid.testing._era5 import era5land_fields

    lat, lon = np.round(45.0 + 0.1 * np.arange(24), 1), np.round(8.0 + 0.1 * np.arange(48), 1)

    def peak_mib(months: int) -> float:
        t = pd.date_range("1990-01-01", periods=months, freq="MS")
        f = era5land_fields(lat, lon, t, seed=1, variables=("t2m", "tp"))
        src = write_era5land_monthly(tmp_path / f"s{months}", lat=lat, lon=lon, time=t, t2m=f["t2m"], tp=f["tp"],
                                     z=f["z"], split="year")
        with dask.config.set(scheduler="sync"):
            tracemalloc.start()
            try:
                ingest(src["files"], tmp_path / f"c{months}.zarr", invariant=src["invariant"],
                       chunks={"time": -1, "lat": 8, "lon": 8})
                return tracemalloc.get_traced_memory()[1] / 2**20
            finally:
                tracemalloc.stop()

    peak_mib(12)  # warm up: lazy imports and caches are not the ingest's memory
    small, large = peak_mib(12), peak_mib(240)
    assert large - small < 1.2, (small, large)


def test_killed_ingest_resumes(tmp_path, files, monkeypatch):
    real, calls = cube.write_region, []

    def dies_after_two(*args, **kwargs):  # killed when the third band starts (bands are written per variable)
        band = (kwargs["index"].start, kwargs["index"].stop)
        if band not in calls and len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(band) if band not in calls else None
        return real(*args, **kwargs)

    monkeypatch.setattr(cube, "write_region", dies_after_two)
    kw = {"invariant": files["invariant"], "chunks": {"time": -1, "lat": 2, "lon": 2}}
    with pytest.raises(KeyboardInterrupt):
        ingest(files["files"], tmp_path / "c.zarr", **kw)
    assert cube.completed_regions(tmp_path / "c.zarr") == {"lat[0:2]", "lat[2:4]"}
    monkeypatch.setattr(cube, "write_region", real)
    ingest(files["files"], tmp_path / "c.zarr", **kw)
    full = ingest(files["files"], tmp_path / "full.zarr", **kw)
    resumed, uninterrupted = cube.open_store(tmp_path / "c.zarr"), cube.open_store(full)
    xr.testing.assert_identical(values(resumed), values(uninterrupted))
    assert resumed.attrs["source_files"] == uninterrupted.attrs["source_files"]  # history differs: its time


def test_other_inputs_do_not_resume_a_store(tmp_path, files, store):
    other = write(tmp_path / "other", split="month")  # same values, other files: other checksums
    before = snapshot(store)
    with pytest.raises(StoreError, match="source_files"):
        ingest(other["files"], store, invariant=other["invariant"], chunks={"time": -1, "lat": 2, "lon": 2})
    assert snapshot(store) == before


def _bad_inputs(tmp_path: Path, files: dict):
    """(name, files, invariant, variables, expected error, message pattern) for every bad-input case."""
    good, inv = files["files"], files["invariant"]
    trunc = tmp_path / "truncated.nc"
    trunc.write_bytes(good[0].read_bytes()[: good[0].stat().st_size // 2])
    text = tmp_path / "notes.nc"
    text.write_text("not a netCDF file")
    badunits = tmp_path / "badunits.nc"
    shutil.copy(good[1], badunits)
    with netCDF4.Dataset(badunits, "a") as nc:
        nc["tp"].units = "mm"
    shifted = write(tmp_path / "shifted", time=TIME[:3], split="single")
    shifted_nc = shifted["files"][0]
    for path in (shifted_nc, shifted["invariant"]):
        with netCDF4.Dataset(path, "a") as nc:
            nc["longitude"][:] = nc["longitude"][:] + 0.05
    months = write(tmp_path / "months", split="month")["files"]
    short = write(tmp_path / "short", split="variable", time=TIME[:-1])["files"]
    byvar = write(tmp_path / "byvar", split="variable")["files"]
    no_z = tmp_path / "no_z.nc"
    xr.open_dataset(inv, engine="netcdf4").drop_vars("z").to_netcdf(no_z, engine="netcdf4")
    return [
        ("empty", [], inv, None, InputDataError, "No ERA5-Land files"),
        ("missing file", [*good, tmp_path / "nope.nc"], inv, None, InputDataError, "nope.nc does not exist"),
        ("truncated", [trunc, *good[1:]], inv, None, InputDataError, "truncated.nc.*download it again"),
        ("not netcdf", [*good, text], inv, None, InputDataError, "notes.nc"),
        ("unknown name", good, inv, ["t2m", "foo"], InputDataError, "Unknown ERA5-Land variable"),
        ("absent variable", good, inv, ["t2m", "sf"], MissingVariableError, r"\['sf'\] not found"),
        ("no known variable", [no_z], None, None, MissingVariableError, "not found in any"),
        ("units", [good[0], badunits, *good[2:]], inv, None, UnitsError, "badunits.nc.*'mm'"),
        ("grid", [*good[:1], shifted_nc], inv, None, GridMismatchError, "along lon"),
        ("duplicate", [*good, months[4]], inv, None, TimeAxisError, "2001-02 of 't2m' appears twice"),
        ("gap", months[:4] + months[5:], inv, None, TimeAxisError, "missing.*2001-02"),
        ("overlap", [*good, short[1]], inv, None, TimeAxisError, "of 'tp' appears twice"),
        ("different months", [byvar[0], short[1]], inv, None, TimeAxisError, "'tp' covers 2000-10..2002-02"),
        ("invariant grid", good, shifted["invariant"], None, GridMismatchError, "Invariant and climate grids"),
        ("invariant no z", good, no_z, None, MissingVariableError, "no 'z'"),
    ]


@pytest.mark.filterwarnings("ignore:.*holds no ERA5-Land monthly variable")
def test_every_bad_input_raises_typed_error_and_leaves_store_untouched(tmp_path, files, store):
    before = snapshot(store)
    cases = _bad_inputs(tmp_path, files)
    for name, bad, inv, variables, error, pattern in cases:
        try:
            ingest(bad, store, invariant=inv, variables=variables, chunks={"time": -1, "lat": 2, "lon": 2})
        except error as err:
            assert re.search(pattern, str(err)), f"{name}: {err}"
        else:
            pytest.fail(f"{name}: no {error.__name__} raised")
        assert snapshot(store) == before, name


def test_schema_change_needs_overwrite(tmp_path, files, store):
    before = snapshot(store)
    with pytest.raises(StoreError, match="different schema.*overwrite=True"):
        ingest(files["files"], store, variables=["t2m"], chunks={"time": -1, "lat": 2, "lon": 2})
    assert snapshot(store) == before
    ingest(files["files"], store, variables=["t2m"], overwrite=True)
    assert list(cube.open_store(store).data_vars) == ["t2m"]


# ----------------------------------------------------------------------------- real data (HEF)
@needs_hef
@pytest.mark.slow
def test_hef_era5land_cube(tmp_path):
    store = ingest(HEF_FILES, tmp_path / "hef.zarr", invariant=HEF_INVARIANT)
    ds = cube.open_store(store)
    assert ds.sizes == {"time": 456, "lat": 6, "lon": 7}
    assert np.all(np.diff(ds["lat"].values) > 0)

    src = xr.open_dataset(HEF_FILES[0], engine="netcdf4")["t2m"]
    np.testing.assert_array_equal(ds["t2m"].values, src.values[:, ::-1].astype("float32"))

    tp = ds["tp"].sel(lat=46.8, lon=10.8, method="nearest").sel(time=slice("1981-10-01", "2018-09-01"))
    hydro_year = tp["time"].dt.year + (tp["time"].dt.month >= 10)
    annual = tp.groupby(hydro_year).sum()
    assert annual.size == 37  # hydrological years 1982..2018
    assert float(annual.mean()) == pytest.approx(1160.0, rel=0.005)  # mm w.e. per year (issue: ~1160)
    assert float(annual.mean()) == pytest.approx(1162.4, abs=0.05)  # the value this data gives

    orog = ds["orog"].values
    assert 1000 < orog.min() < 1100 and 2850 < orog.max() < 2900  # 1052..2871 m


# ----------------------------------------------------------------------------- 14 variables, GRIB
from glacgrid.ingest._readers import open_source  # noqa: E402
from glacgrid.testing._era5 import MONTHLY, era5land_fields  # noqa: E402

SHORT = TIME[:14]  # 14 months over two calendar years


def all_fields(seed: int = 7) -> dict:
    return era5land_fields(LAT, LON, SHORT, seed=seed)


def write_all(directory, **kw) -> dict:
    f = all_fields()
    extra = {k: f[k] for k in MONTHLY if k not in ("t2m", "tp")}
    return write_era5land_monthly(directory, lat=LAT, lon=LON, time=SHORT, t2m=f["t2m"], tp=f["tp"], z=f["z"],
                                  lsm=f["lsm"], extra=extra, **kw)


def convert_by_hand(v: str, x: np.ndarray) -> np.ndarray:
    """Known answers: a source field (time, lat ascending, lon) converted to the cube's units by hand."""
    days = SHORT.days_in_month.to_numpy()[:, None, None]
    if v in ("tp", "sf", "smlt"):
        return x * days * 1000.0  # m per day -> kg m-2 per month
    if v in ("ssr", "ssrd", "str", "sshf", "slhf"):
        return x / 86400.0  # J m-2 per day -> W m-2
    return x / 9.80665 if v == "orog" else x


UNITS = {"t2m": "K", "tp": "kg m-2", "sf": "kg m-2", "smlt": "kg m-2", "sd": "m", "rsn": "kg m-3", "tsn": "K",
         "fal": "1", "sp": "Pa", "ssr": "W m-2", "ssrd": "W m-2", "str": "W m-2", "sshf": "W m-2", "slhf": "W m-2",
         "orog": "m", "lsm": "1"}


@pytest.mark.parametrize(
    "fmt, layout, split",
    [("netcdf", "time", "year"), ("netcdf", "valid_time", "variable+year"), ("grib", "time", "month"),
     ("grib", "time", "variable+year")],
)
def test_all_14_variables_every_layout_known_answers(tmp_path, fmt, layout, split):
    src = write_all(tmp_path / "src", fmt=fmt, layout=layout, split=split)
    ds = cube.open_store(ingest(src["files"], tmp_path / "c.zarr", invariant=src["invariant"],
                                chunks={"time": -1, "lat": 2, "lon": 3})).compute()
    assert sorted(ds.data_vars) == sorted(UNITS)
    assert {v: ds[v].attrs["units"] for v in ds.data_vars} == UNITS
    f, order = all_fields(), np.argsort(LAT)
    for v in UNITS:
        x = f[v if v != "orog" else "z"]
        x = x[order] if x.ndim == 2 else x[:, order]
        # 16-bit packing error: half a step of the source range (int16 netCDF), a whole step for GRIB
        # simple packing, whose binary scale factor can double the step
        tol = (x.max() - x.min()) / 65533 * (1.0 if fmt == "grib" else 0.5) + 1e-7 * np.abs(x).max()
        got, want = ds[v].values, convert_by_hand(v, x)
        np.testing.assert_array_less(np.abs(got - want), convert_by_hand(v, np.full_like(x, tol)) * 1.0001 + 1e-6 * np.abs(want).max(), err_msg=v)
    # t2m equals the decoded source values exactly, whatever the format
    opened = [open_source(p) for p in src["files"]]
    decoded = xr.concat([o["t2m"] for o in opened if "t2m" in o], "time")
    np.testing.assert_array_equal(ds["t2m"].values, decoded.sortby("time").values.astype("float32"))


def test_grib_and_netcdf_give_the_same_cube_structure(tmp_path):
    g = open_era5land(write_all(tmp_path / "g", fmt="grib")["files"])
    n = open_era5land(write_all(tmp_path / "n")["files"])
    assert list(g.data_vars) == list(n.data_vars) and g.sizes == n.sizes
    for v in g.data_vars:
        assert g[v].attrs == n[v].attrs, v  # era5_units spelled alike: cfgrib and netCDF agree
    np.testing.assert_array_equal(g["time"].values, n["time"].values)


def test_truncated_and_corrupted_grib_are_refused(tmp_path):
    src = write_all(tmp_path / "g", fmt="grib", split="single")
    bad = tmp_path / "cut.grib"
    bad.write_bytes(src["files"][0].read_bytes()[:-100])
    with pytest.raises(InputDataError, match="cut.grib is not a complete GRIB file"):
        open_era5land([bad])
    junk = tmp_path / "junk.grib"
    junk.write_bytes(b"GRIB" + b"\0" * 200)
    with pytest.raises(InputDataError, match="junk.grib"):
        open_era5land([junk])


# ----------------------------------------------------------------------------- append
APPEND_CHUNKS = {"time": -1, "lat": 2, "lon": 2}


def month_files(directory) -> list[Path]:
    return write(directory, split="month")["files"]


def until(files: list[Path], last: str) -> list[Path]:
    return [p for p in files if p.stem[-7:] <= last]


def test_append_new_months_equals_a_full_ingest_and_is_idempotent(tmp_path, files):
    months = month_files(tmp_path / "m")
    inv = files["invariant"]
    store = ingest(until(months, "2001-06"), tmp_path / "a.zarr", invariant=inv, chunks=APPEND_CHUNKS)
    assert cube.open_store(store).sizes["time"] == 9
    ingest(until(months, "2001-09"), store, invariant=inv, chunks=APPEND_CHUNKS, append=True)  # 3 months
    ingest(months, store, invariant=inv, chunks=APPEND_CHUNKS, append=True)  # 6 more: a second time chunk
    full = ingest(months, tmp_path / "full.zarr", invariant=inv, chunks=APPEND_CHUNKS)
    a = cube.open_store(store, require_complete=True)
    xr.testing.assert_identical(values(a), values(cube.open_store(full)))
    assert len(json.loads(a.attrs["source_files"])) == len(months) + 1
    assert a.attrs["history"].count("append(") == 2
    assert cube.completed_regions(store) >= {"time[9:12]/lat[0:2]", "time[12:18]/lat[4:5]"}
    before = snapshot(store)
    ingest(months, store, invariant=inv, chunks=APPEND_CHUNKS, append=True)  # nothing new: no write
    assert snapshot(store) == before


def test_killed_append_is_incomplete_then_resumes(tmp_path, files, monkeypatch):
    months = month_files(tmp_path / "m")
    inv = files["invariant"]
    store = ingest(until(months, "2001-06"), tmp_path / "a.zarr", invariant=inv, chunks=APPEND_CHUNKS)
    real, calls = cube.write_region, []

    def dies_on_second(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(cube, "write_region", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        ingest(months, store, invariant=inv, chunks=APPEND_CHUNKS, append=True)
    assert cube.missing_regions(store) == {"time[9:18]/lat[2:4]", "time[9:18]/lat[4:5]"}
    with pytest.raises(StoreError, match="incomplete: 2 region"):
        cube.open_store(store, require_complete=True)
    calls.clear()
    monkeypatch.setattr(cube, "write_region", lambda *a, **k: (calls.append(k), real(*a, **k)))
    ingest(months, store, invariant=inv, chunks=APPEND_CHUNKS, append=True)
    assert [c["index"] for c in calls] == [slice(2, 4), slice(4, 5)]  # the finished band is not rewritten
    full = ingest(months, tmp_path / "full.zarr", invariant=inv, chunks=APPEND_CHUNKS)
    xr.testing.assert_identical(values(cube.open_store(store, require_complete=True)), values(cube.open_store(full)))


def test_bad_append_leaves_store_untouched(tmp_path, files):
    months = month_files(tmp_path / "m")
    inv = files["invariant"]
    store = ingest(until(months, "2001-01"), tmp_path / "a.zarr", invariant=inv, chunks=APPEND_CHUNKS)
    before = snapshot(store)
    later = [p for p in months if p.stem[-7:] >= "2001-06"]
    with pytest.raises(TimeAxisError, match="ends in 2001-01, the new files cover 2001-06..2002-03 and lack 2001-02, 2001-03"):
        ingest(later, store, invariant=inv, chunks=APPEND_CHUNKS, append=True)
    with pytest.raises(StoreError, match=r"holds \['t2m', 'tp'\] along time"):
        ingest(months, store, invariant=inv, variables=["t2m"], chunks=APPEND_CHUNKS, append=True)
    shifted = write(tmp_path / "s", split="single", lon_360=False)["files"]
    with netCDF4.Dataset(shifted[0], "a") as nc:
        nc["longitude"][:] = nc["longitude"][:] + 0.05
    with pytest.raises(GridMismatchError, match="Cannot append.*lon"):
        ingest(shifted, store, chunks=APPEND_CHUNKS, append=True)
    assert snapshot(store) == before


# ----------------------------------------------------------------------------- real GRIB
GRIB = DATA / "era5-grib"


@pytest.mark.slow
@pytest.mark.skipif(not GRIB.exists(), reason="shared GRIB data not available")
def test_real_grib(tmp_path):
    """ERA5 t2m (one time, 0.25 deg, 30-60 N, 10 W-40 E) decodes exactly; hourly data is refused."""
    path = GRIB / "era5-single-level-scalar-time.grib"
    store = ingest([path], tmp_path / "g.zarr", variables=["t2m"])
    ds = cube.open_store(store)
    assert ds.sizes == {"time": 1, "lat": 121, "lon": 201}
    assert str(ds["time"].values[0])[:10] == "2017-01-01"
    np.testing.assert_array_equal(ds["lat"].values, np.linspace(30.0, 60.0, 121))
    decoded = open_source(path)["t2m"].values  # cfgrib's decoding, reordered to ascending lat
    np.testing.assert_array_equal(ds["t2m"].values, decoded)
    import cfgrib

    raw = cfgrib.open_dataset(str(path), indexpath="")["t2m"].values  # north to south as stored
    np.testing.assert_array_equal(ds["t2m"].values[0], raw[::-1])
    with pytest.raises(TimeAxisError, match="744 time steps in 1 month"):
        open_era5land([GRIB / "era5-2mt-2019-03-uk.grib"])


def test_default_chunks_keep_a_byte_budget_as_the_archive_grows():
    from glacgrid.ingest import CHUNK_BYTES, time_series_chunks

    assert time_series_chunks(12) == {"time": -1, "lat": 64, "lon": 64}
    assert time_series_chunks(128) == {"time": -1, "lat": 64, "lon": 64}  # 64*64*128*4 B = 2 MiB exactly
    assert time_series_chunks(480) == {"time": -1, "lat": 33, "lon": 33}
    assert time_series_chunks(10**6)["lat"] == 8  # never below 8 x 8
    for months in (12, 120, 480, 900):
        c = time_series_chunks(months)
        assert months * c["lat"] * c["lon"] * 4 <= CHUNK_BYTES
