"""Issue 18 item 1: forcing readers (CF/CMIP, CESM, ERA5/CERA-20C) -> the normalised monthly cube, with known
answers for every calendar and time-stamp convention on small synthetic files."""

from __future__ import annotations

from pathlib import Path

import cftime
import numpy as np
import pytest
import xarray as xr

from glacgrid.exceptions import InputDataError, MissingVariableError, TimeAxisError, UnitsError
from glacgrid.ingest import read_forcing
from glacgrid.testing import DATA, requires_data

LAT = np.array([47.5, 46.0])  # descending, as many files
LON = np.array([10.0, 12.5, 15.0])


def _months(y0: int, n: int):
    return [(y0 + i // 12, i % 12 + 1) for i in range(n)]


def _num(dates, units, calendar):
    return cftime.date2num(dates, units, calendar)


def write_cf(path: Path, name: str, values: np.ndarray, units: str, *, calendar: str, stamp: str, y0: int = 2000,
             bounds: bool = True, time_units: str = "days since 1850-01-01") -> Path:
    """A CF monthly file: ``stamp`` is 'mid' (middle of the month), 'end' (first instant of the next month)
    or 'start'; ``bounds`` adds time_bnds."""
    n = values.shape[0]
    start = [cftime.datetime(y, m, 1, calendar=calendar) for y, m in _months(y0, n)]
    end = [cftime.datetime(y + (m == 12), m % 12 + 1, 1, calendar=calendar) for y, m in _months(y0, n)]
    b = np.stack([_num(start, time_units, calendar), _num(end, time_units, calendar)], axis=1)
    t = {"mid": b.mean(axis=1), "end": b[:, 1], "start": b[:, 0]}[stamp]
    ds = xr.Dataset({name: (("time", "lat", "lon"), values.astype("float32"), {"units": units})},
                    coords={"time": ("time", t, {"units": time_units, "calendar": calendar}),
                            "lat": LAT, "lon": LON})
    if bounds:
        ds["time"].attrs["bounds"] = "time_bnds"
        ds["time_bnds"] = (("time", "nbnd"), b)
    ds.to_netcdf(path)
    return path


def field(n: int, value) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype="float64").reshape(-1, 1, 1), (n, LAT.size, LON.size)).copy()


@pytest.mark.parametrize("calendar, stamp, bounds", [
    ("360_day", "mid", True), ("360_day", "end", True), ("noleap", "mid", False), ("noleap", "end", True),
    ("standard", "mid", True), ("standard", "mid", False), ("proleptic_gregorian", "start", False),
    ("julian", "mid", True), ("all_leap", "end", True),
])
def test_cf_calendars_and_stamps(tmp_path, calendar, stamp, bounds):
    n = 26  # Jan 2000 .. Feb 2002: two Februaries, one of them in a leap year of the standard calendar
    tas = field(n, 250.0 + np.arange(n))  # one K per month: the value says which month it is
    flux = 1e-5  # kg m-2 s-1
    files = [write_cf(tmp_path / "tas.nc", "tas", tas, "K", calendar=calendar, stamp=stamp, bounds=bounds),
             write_cf(tmp_path / "pr.nc", "pr", field(n, flux), "kg m-2 s-1", calendar=calendar, stamp=stamp,
                      bounds=bounds)]
    ds = read_forcing(files, "cf")
    assert ds["t2m"].dims == ("time", "lat", "lon")
    assert str(ds["time"].values[0])[:10] == "2000-01-01" and str(ds["time"].values[-1])[:10] == "2002-02-01"
    np.testing.assert_array_equal(ds["t2m"].values[:, 0, 0], 250.0 + np.arange(n))  # no month shifted
    np.testing.assert_array_equal(ds["lat"].values, [46.0, 47.5])  # ascending
    days = {"360_day": [30] * 12, "noleap": [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31],
            "all_leap": [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]}
    leap = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]  # 2000 is a leap year in standard and julian
    common = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    expected = days[calendar] * 2 + days[calendar][:2] if calendar in days else leap + common + common[:2]
    np.testing.assert_allclose(ds["tp"].values[:, 1, 2], np.array(expected) * 86400 * flux, rtol=1e-6)
    assert ds["tp"].attrs["units"] == "kg m-2" and ds["t2m"].attrs["units"] == "K"
    assert ds.attrs["calendar"] == calendar and ds.attrs["forcing_kind"] == "cf"


def test_cesm_month_end_stamps_with_and_without_bounds(tmp_path):
    n = 14
    for bounds in (True, False):
        d = tmp_path / str(bounds)
        d.mkdir()
        files = [write_cf(d / "T.nc", "TREFHT", field(n, 260.0 + np.arange(n)), "K", calendar="noleap", stamp="end",
                          bounds=bounds, y0=1600, time_units="days since 0850-01-01 00:00:00"),
                 write_cf(d / "C.nc", "PRECC", field(n, 1e-8), "m/s", calendar="noleap", stamp="end", bounds=bounds,
                          y0=1600, time_units="days since 0850-01-01 00:00:00"),
                 write_cf(d / "L.nc", "PRECL", field(n, 2e-8), "m/s", calendar="noleap", stamp="end", bounds=bounds,
                          y0=1600, time_units="days since 0850-01-01 00:00:00")]
        ds = read_forcing(files, "cesm")
        # the value stamped 1600-02-01 is January 1600; times before 1678 come as datetime64[s]
        assert ds["time"].dtype == np.dtype("datetime64[s]")
        assert str(ds["time"].values[0]) == "1600-01-01T00:00:00"
        np.testing.assert_array_equal(ds["t2m"].values[:, 0, 0], 260.0 + np.arange(n))
        # (PRECC + PRECL) m s-1 x seconds of the month x 1000 kg m-3; February has 28 days in noleap
        np.testing.assert_allclose(ds["tp"].values[:3, 0, 0], 3e-8 * 86400 * np.array([31, 28, 31]) * 1000, rtol=1e-6)
        assert ds["tp"].attrs["forcing_name"] == "PRECC + PRECL"
    sub = read_forcing(files, "cesm", years=(1601, 1601))
    assert sub.sizes["time"] == 2 and str(sub["time"].values[0])[:7] == "1601-01"


def write_era5(path: Path, name: str, values: np.ndarray, units: str, y0: int = 1901, members: int = 3) -> Path:
    n = values.shape[0]
    hours = cftime.date2num([cftime.datetime(y, m, 1) for y, m in _months(y0, n)], "hours since 1900-01-01",
                            "gregorian").astype("int32")
    data = np.repeat(values[:, None], members, axis=1) + np.arange(members)[None, :, None, None] * (
        0.0 if name == "tp" else 1.0)
    ds = xr.Dataset({name: (("time", "number", "latitude", "longitude"), data, {"units": units})},
                    coords={"time": ("time", hours, {"units": "hours since 1900-01-01", "calendar": "gregorian"}),
                            "number": np.arange(members, dtype="int32"), "latitude": LAT.astype("float32"),
                            "longitude": LON.astype("float32")})
    ds.to_netcdf(path)
    return path


def test_era5_ensemble_per_day_accumulations_and_invariant(tmp_path):
    n = 24  # 1904 is a leap year
    files = [write_era5(tmp_path / "t.nc", "t2m", field(n, 270.0), "K", y0=1904),
             write_era5(tmp_path / "p.nc", "tp", field(n, 0.004), "m", y0=1904)]
    inv = xr.Dataset({"z": (("time", "latitude", "longitude"), np.full((1, 2, 3), 9806.65), {"units": "m**2 s**-2"})},
                     coords={"time": [0], "latitude": LAT.astype("float32"), "longitude": LON.astype("float32")})
    inv.to_netcdf(tmp_path / "inv.nc")
    ds = read_forcing(files, "era5", invariant=tmp_path / "inv.nc")
    assert ds["t2m"].dims == ("time", "member", "lat", "lon")
    np.testing.assert_array_equal(ds["member"].values, [0, 1, 2])
    np.testing.assert_array_equal(ds["t2m"].values[0, :, 0, 0], [270.0, 271.0, 272.0])
    # 4 mm per day x days of the month = kg m-2 per month
    np.testing.assert_allclose(ds["tp"].values[:3, 0, 0, 0], [124.0, 116.0, 124.0], rtol=1e-6)
    np.testing.assert_allclose(ds["orog"].values, 1000.0, rtol=1e-6)
    assert ds["orog"].attrs["units"] == "m"
    two = read_forcing(files, "era5", members=[2, 0])
    np.testing.assert_array_equal(two["member"].values, [2, 0])
    np.testing.assert_array_equal(two["t2m"].values[0, :, 0, 0], [272.0, 270.0])


def test_typed_errors(tmp_path):
    n = 12
    tas = write_cf(tmp_path / "tas.nc", "tas", field(n, 270.0), "K", calendar="standard", stamp="mid")
    pr = write_cf(tmp_path / "pr.nc", "pr", field(n, 1e-5), "kg m-2 s-1", calendar="standard", stamp="mid")
    with pytest.raises(InputDataError, match="Unknown forcing kind 'cmip'"):
        read_forcing([tas, pr], "cmip")
    with pytest.raises(MissingVariableError, match=r"\['pr'\]"):
        read_forcing([tas], "cf")
    with pytest.raises(MissingVariableError, match="TREFHT"):
        read_forcing([tas, pr], "cesm")
    bad = write_cf(tmp_path / "cal.nc", "tas", field(n, 270.0), "K", calendar="standard", stamp="mid")
    with xr.open_dataset(bad, decode_times=False) as raw:
        raw = raw.load()
    raw["time"].attrs["calendar"] = "lunar"
    raw.to_netcdf(tmp_path / "lunar.nc")
    with pytest.raises(TimeAxisError, match="calendar 'lunar'"):
        read_forcing([tmp_path / "lunar.nc", pr], "cf")
    mmday = write_cf(tmp_path / "mmday.nc", "pr", field(n, 1.0), "mm/day", calendar="standard", stamp="mid")
    with pytest.raises(UnitsError, match="mm/day"):
        read_forcing([tas, mmday], "cf")
    gap = write_cf(tmp_path / "later.nc", "tas", field(n, 270.0), "K", calendar="standard", stamp="mid", y0=2002)
    pr2 = write_cf(tmp_path / "pr2.nc", "pr", field(n, 1e-5), "kg m-2 s-1", calendar="standard", stamp="mid", y0=2002)
    with pytest.raises(TimeAxisError, match="misses months between 2000-12 and 2002-01"):
        read_forcing([tas, gap, pr, pr2], "cf")
    with pytest.raises(TimeAxisError, match="appears twice"):
        read_forcing([tas, tas, pr], "cf")
    with pytest.raises(InputDataError, match="no ensemble dimension"):
        read_forcing([tas, pr], "cf", members=[1])
    with pytest.raises(InputDataError, match="does not exist"):
        read_forcing([tmp_path / "nope.nc"], "cf")
    daily = write_cf(tmp_path / "d.nc", "tas", field(n, 270.0), "K", calendar="standard", stamp="mid")
    with xr.open_dataset(daily, decode_times=False) as raw:
        raw = raw.load()
    raw["time_bnds"].values[:, 1] = raw["time_bnds"].values[:, 0] + 1.0
    raw.to_netcdf(tmp_path / "daily.nc")
    with pytest.raises(TimeAxisError, match="bounds of one month"):
        read_forcing([tmp_path / "daily.nc", pr], "cf")


FORCING = DATA / "forcing"


@requires_data("forcing")
def test_real_ccsm4():
    ds = read_forcing([FORCING / "tas_mon_CCSM4_rcp26_r1i1p1_g025.nc", FORCING / "pr_mon_CCSM4_rcp26_r1i1p1_g025.nc"], "cf")
    assert ds.sizes == {"time": 2772, "lat": 1, "lon": 1}
    assert str(ds["time"].values[0])[:10] == "1870-01-01" and str(ds["time"].values[-1])[:10] == "2100-12-01"
    t = ds["t2m"].sel(time=slice("1981", "2005")).groupby("time.month").mean().values.ravel() - 273.15
    assert t.argmin() in (0, 1) and t.argmax() == 6  # mid-month stamps: winter coldest (CCSM4: Feb by 0.09 K), July warmest
    assert t[6] - t[0] > 14.0
    assert 4.0 < float(ds["t2m"].sel(time=slice("1981", "2005")).mean()) - 273.15 < 9.0
    annual = float(ds["tp"].sel(time=slice("1981", "2005")).sum()) / 25
    assert 900 < annual < 1500  # kg m-2 per year


@requires_data("forcing")
def test_real_cesm_lme():
    files = [FORCING / f"cesm.{v}.160001-200512.selection.nc" for v in ("TREFHT", "PRECC", "PRECL")]
    ds = read_forcing(files, "cesm")
    assert ds.sizes == {"time": 4872, "lat": 3, "lon": 3} and ds.attrs["calendar"] == "noleap"
    assert str(ds["time"].values[0])[:7] == "1600-01" and str(ds["time"].values[-1])[:7] == "2005-12"
    clim = ds["t2m"].groupby("time.month").mean().mean(("lat", "lon")).values
    assert clim.argmin() == 0 and clim.argmax() in (6, 7)  # month-end stamps resolved: January is the coldest
    annual = float(ds["tp"].mean()) * 12
    assert 600 < annual < 1300


@requires_data("forcing")
def test_real_cera20c():
    ds = read_forcing([FORCING / "sel_cera-20c_t2m_1901-2010.nc", FORCING / "sel_cera-20c_pcp_1901-2010.nc"], "era5",
                      invariant=FORCING / "sel_cera-20c_invariant.nc")
    assert ds.sizes == {"time": 1320, "member": 10, "lat": 3, "lon": 3}
    np.testing.assert_array_equal(ds["lat"].values, [46.0, 47.0, 48.0])
    annual = ds["tp"].sel(time=slice("1981", "2000")).groupby("time.year").sum().mean("year")
    assert 900 < float(annual.mean()) < 1800  # per-day accumulations x days of the month, kg m-2 per year
    spread = float(ds["t2m"].sel(time=slice("1901", "1910")).std("member").mean())
    assert 0.05 < spread < 3.0  # the members differ
    assert 800 < float(ds["orog"].min()) and float(ds["orog"].max()) < 1400


def _config(tmp_path, forcing: dict) -> dict:
    for name in ("a.nc", "inv.nc", "dem.tif", "o.shp", "obs.csv", "tas.nc", "pr.nc"):
        (tmp_path / name).write_text("x")
    return {"climate": {"files": ["a.nc"], "invariant": "inv.nc"}, "grid": {"dem": "dem.tif"},
            "glaciers": {"outlines": "o.shp"}, "period": {"start": 2000, "end": 2005},
            "observations": {"files": ["obs.csv"]}, "forcing": forcing}


def test_forcing_config_section(tmp_path):
    from glacgrid.config import ForcingConfig, config_from_dict
    from glacgrid.downscale import METHODS
    from glacgrid.exceptions import ConfigError
    from glacgrid.ingest import FORCING_KINDS

    cfg = config_from_dict(_config(tmp_path, {"files": ["*.nc"], "kind": "cf", "method": "eqm",
                                              "overlap": ["1981-01", "2005-12"]}), base=tmp_path)
    assert isinstance(cfg.forcing, ForcingConfig)
    assert cfg.forcing.kind == "cf" and cfg.forcing.method == "eqm" and cfg.forcing.overlap == ("1981-01", "2005-12")
    assert tmp_path / "tas.nc" in cfg.forcing.files and cfg.forcing.members == () and cfg.forcing.n_quantiles == 20
    raw = _config(tmp_path, {"files": ["tas.nc"], "kind": "era5"})
    raw.pop("forcing")
    assert config_from_dict(raw, base=tmp_path).forcing is None
    with pytest.raises(ConfigError) as info:
        config_from_dict(_config(tmp_path, {"files": ["tas.nc", "gone.nc"], "kind": "cmip", "method": "cdft",
                                            "overlap": ["1981"], "members": [-1], "n_quantiles": 2}), base=tmp_path)
    msg = str(info.value)
    assert "[forcing] kind = 'cmip' is not one of cf, cesm, era5" in msg
    assert "[forcing] method = 'cdft' is not one of delta, eqm, qdm" in msg
    with pytest.raises(ConfigError) as info:
        config_from_dict(_config(tmp_path, {"files": ["tas.nc", "gone.nc"], "kind": "cf", "overlap": ["1981"],
                                            "members": [-1], "n_quantiles": 2}), base=tmp_path)
    msg = str(info.value)
    assert "gone.nc does not exist" in msg and "overlap = ['1981']" in msg
    assert "members = [-1]" in msg and "n_quantiles = 2" in msg
    # the config's choices are the readers' and the adjustment's
    from glacgrid.config import _CHOICES
    assert _CHOICES[("forcing", "kind")] == FORCING_KINDS and _CHOICES[("forcing", "method")] == METHODS
