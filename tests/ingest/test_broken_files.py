"""Issue 16: truncated climate files are refused with the bytes expected and received, and a run's period
is checked against the climate files from their time axes alone (glacgrid.ingest.check_period)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.exceptions import InputDataError, MissingVariableError, StoreError, TimeAxisError
from glacgrid.features import hydrological_years
from glacgrid.ingest import HydroYear, check_complete, check_months, check_period, ingest, open_era5land
from glacgrid.testing import HEF, requires_data
from glacgrid.testing._era5 import write_era5land_monthly

TIME = pd.date_range("2000-10-01", "2002-03-01", freq="MS")  # 18 months: hydrological year 2001 and a half
LAT = np.array([46.6, 46.7, 46.8, 46.9, 47.0])
LON = np.array([-0.2, -0.1, 0.0, 0.1])


def era5(directory: Path, **kw) -> dict:
    rng = np.random.default_rng(3)
    shape = (TIME.size, LAT.size, LON.size)
    return write_era5land_monthly(directory, lat=LAT, lon=LON, time=TIME, t2m=rng.uniform(255.0, 290.0, shape),
                                  tp=rng.uniform(0.0, 0.01, shape), z=np.full(shape[1:], 9806.65), split="single", **kw)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> dict:
    return era5(tmp_path_factory.mktemp("era5"))


def netcdf3(src: dict, path: Path, fmt: str = "NETCDF3_CLASSIC", unlimited: bool = False) -> Path:
    """The climate file as netCDF-3, its data variables defined last (so the file ends with ``tp``), packed
    int16 as ERA5 files are."""
    raw = xr.open_dataset(src["files"][0], decode_cf=False).load()
    ds = xr.Dataset(coords={k: raw[k] for k in ("time", "latitude", "longitude")}, attrs=raw.attrs)
    for name in ("t2m", "tp"):
        ds[name] = raw[name]
    ds.to_netcdf(path, format=fmt, engine="netcdf4", unlimited_dims=["time"] if unlimited else None)
    return path


def cut(path: Path, keep: int, out: Path) -> Path:
    """The first ``keep`` bytes of ``path`` written to ``out``."""
    out.write_bytes(path.read_bytes()[:keep])
    return out


def test_netcdf3_cut_in_its_last_variable_is_refused_not_read_as_garbage(src, tmp_path):
    """Issue 16.2: netCDF-C reads past the end of a cut classic file without an error (packed zeros decode to
    the add_offset), so the ingest ended with exit 0 and invented values in the last months of 'tp'."""
    good = netcdf3(src, tmp_path / "good.nc")
    size = good.stat().st_size
    check_complete(good)  # the intact file passes
    bad = cut(good, size - 6, tmp_path / "cut_tp.nc")  # the last 3 int16 values of tp
    with pytest.raises(InputDataError) as err:
        open_era5land([bad], invariant=src["invariant"])
    msg = str(err.value)
    assert type(err.value) is InputDataError
    assert f"{bad} is not a complete netCDF-3 (classic) file: it is truncated" in msg
    assert f"holds {size:,} bytes, but the file has {size - 6:,} (6 missing; cut: variable 'tp')" in msg
    assert msg.endswith("download it again.")
    with pytest.raises(InputDataError, match="cut_tp.nc is not a complete"):
        ingest([bad], tmp_path / "cube.zarr", invariant=src["invariant"])
    assert not (tmp_path / "cube.zarr").exists()


@pytest.mark.parametrize("fmt", ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET"])
@pytest.mark.parametrize("unlimited", [False, True], ids=["fixed", "records"])
def test_every_cut_of_a_netcdf3_file_gets_the_truncation_diagnosis(src, tmp_path, fmt, unlimited):
    """Cut in the data, in the coordinates (once 'duplicated longitudes', 'hourly data', a grid or month
    mismatch) or in the header: always the truncation, with the variables that lost bytes."""
    good = netcdf3(src, tmp_path / "good.nc", fmt, unlimited)
    size = good.stat().st_size
    kind = {"NETCDF3_CLASSIC": "classic", "NETCDF3_64BIT_OFFSET": "64-bit offset"}[fmt]
    for keep in (size - 1, size - 40, size - 200, size // 2, 400, 120, 20):
        bad = cut(good, keep, tmp_path / f"cut{keep}.nc")
        with pytest.raises(InputDataError) as err:
            open_era5land([bad], invariant=src["invariant"])
        assert type(err.value) is InputDataError, (keep, err.value)  # not GridMismatchError / TimeAxisError
        msg = str(err.value)
        assert f"cut{keep}.nc is not a complete netCDF-3 ({kind}) file: it is truncated" in msg, (keep, msg)
        if "inside its own header" not in msg:
            assert f"the file has {keep:,} ({size - keep:,} missing" in msg, (keep, msg)
    if unlimited:  # a record file cut in its last record names the record
        with pytest.raises(InputDataError, match=r"cut: variable 'tp' \(record 18 of 18\)"):
            check_complete(cut(good, size - 2, tmp_path / "rec.nc"))


def test_truncated_netcdf4_names_the_sizes(src, tmp_path):
    good = src["files"][0]
    size = good.stat().st_size
    for keep in (size - 1, size // 2):
        bad = cut(good, keep, tmp_path / f"nc4_{keep}.nc")
        with pytest.raises(InputDataError) as err:
            open_era5land([bad])
        assert type(err.value) is InputDataError
        assert (f"nc4_{keep}.nc is not a complete netCDF-4/HDF5 file: it is truncated. By its header it holds "
                f"{size:,} bytes, but the file has {keep:,}") in str(err.value)
    with pytest.raises(InputDataError, match=r"nc4_head.nc is not a complete .* ending \(10 bytes\) inside its own header"):
        check_complete(cut(good, 10, tmp_path / "nc4_head.nc"))


def test_truncated_grib_names_the_cut_message(tmp_path):
    grib = era5(tmp_path / "g", fmt="grib")["files"][0]
    check_complete(grib)
    data = grib.read_bytes()
    starts = [m.start() for m in re.finditer(b"GRIB", data)]
    bad = cut(grib, len(data) - 10, tmp_path / "cut.grib")
    with pytest.raises(InputDataError) as err:
        open_era5land([bad])
    msg = str(err.value)
    assert "cut.grib is not a complete GRIB file: it is truncated" in msg
    assert f"GRIB message {len(starts)} (from byte {starts[-1]:,})" in msg


@requires_data("hef")
def test_real_climate_files_pass_the_truncation_check():
    for path in sorted((HEF / "climate").glob("*.nc")):
        check_complete(path)


# ----------------------------------------------------------------------------- period coverage
def test_check_period_reads_time_axes_and_names_the_missing_years(src, tmp_path):
    """Issue 16.8: the files hold 2000-10 .. 2002-03: hydrological year 2001 (Oct 2000 - Sep 2001) is
    covered, 2002 is not (its last 6 months are missing), nor is 2000 (it needs Oct 1999)."""
    files = src["files"]
    check_period(files, 2001, 2001)
    with pytest.raises(TimeAxisError) as err:
        check_period(files, 2001, 2002, variables=("t2m", "tp"))
    msg = str(err.value)
    assert msg.startswith("Hydrological years [2002] are not fully covered by 't2m' in the climate file(s) "
                          f"{files[0].name} (2000-10 .. 2002-03; it holds complete years 2001): a year needs its "
                          "12 months from October (year 2002 = 2001-10 .. 2002-09); 6 month(s) missing: "
                          "2002-04..2002-09. Shorten [period]")
    with pytest.raises(TimeAxisError, match=r"years \[2000\].*12 month\(s\) missing: 1999-10..2000-09"):
        check_period(files, 2000, 2001)
    # the southern year 2001 runs April 2000 - March 2001
    with pytest.raises(TimeAxisError, match=r"\[2001\].*from April.*2000-04..2000-09"):
        check_period(files, 2001, 2001, hemisphere="south")
    check_period(files, 2002, 2002, hydro=HydroYear(start_month=4))  # Apr 2001 - Mar 2002
    # months instead of years, as a pipeline that computed them passes them
    check_period(files, pd.Timestamp("2000-10-01"), pd.Timestamp("2002-03-01"))
    with pytest.raises(TimeAxisError, match=r"months 2000-09 .. 2001-09 are not fully covered.*missing: 2000-09\."):
        check_period(files, "2000-09", "2001-09")
    with pytest.raises(MissingVariableError, match=r"\['sf'\] not found"):
        check_period(files, 2001, 2001, variables=("t2m", "sf"))
    with pytest.raises(InputDataError, match="before it starts"):
        check_period(files, 2002, 2001)


def test_check_period_of_a_store_grib_files_and_a_cut_file(src, tmp_path):
    store = ingest(src["files"], tmp_path / "cube.zarr", invariant=src["invariant"])
    check_period(store, 2001, 2001)
    with pytest.raises(TimeAxisError, match=r"\[2002\] are not fully covered by 't2m' in the store .*cube.zarr"):
        check_period(store, 2002, 2002)
    for chunk in (store / "time" / "c").iterdir():  # zarr reads a missing chunk as fill values: refused
        chunk.unlink()
    with pytest.raises(StoreError, match=r"time coordinate of the store .*cube.zarr lacks 1 of its 1 chunk"):
        check_period(store, 2001, 2001)
    grib = era5(tmp_path / "g", fmt="grib")["files"]
    check_period(grib, 2001, 2001)
    with pytest.raises(TimeAxisError, match=r"\[2002\].*2002-04..2002-09"):
        check_period(grib, 2002, 2002)
    bad = cut(src["files"][0], 5000, tmp_path / "cut.nc")
    with pytest.raises(InputDataError, match="cut.nc is not a complete netCDF-4/HDF5 file"):
        check_period([bad], 2001, 2001)
    with pytest.raises(InputDataError, match="nope.nc does not exist"):
        check_period([tmp_path / "nope.nc"], 2001, 2001)


def test_hydrological_years_words_a_gap_as_check_period_does():
    """One definition, one wording: the later check of the features says what check_period says."""
    have = pd.date_range("2000-10-01", "2002-03-01", freq="MS")
    da = xr.DataArray(np.arange(have.size, dtype=float), dims="time", coords={"time": have})
    with pytest.raises(TimeAxisError) as late:
        hydrological_years(da, 2001, 2002)
    with pytest.raises(TimeAxisError) as early:
        check_months(have, 2001, 2002)
    assert str(late.value) == str(early.value)
    assert str(late.value).startswith("Hydrological years [2002] are not fully covered by the climate data "
                                      "(2000-10 .. 2002-03; it holds complete years 2001)")
