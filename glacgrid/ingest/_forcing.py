"""File handling of the forcing readers (:func:`glacgrid.ingest.read_forcing`): one file at a time.

* :func:`open_raw` opens a netCDF file undecoded in time (any CF calendar is decoded here, with cftime);
* :func:`month_labels` turns its time axis into calendar months: the middle of ``time_bnds`` when the
  file has bounds (month-end and mid-month stamps alike), else the stamp itself (CESM: the stamp
  minus one day, its month-end convention), and the length of each month *in the file's calendar*;
* :func:`normalise_grid` brings ``lat`` ascending, ``lon`` to -180..180, and an ensemble dimension
  (``number``, ``realization``) to ``member``;
* the unit conversions of the forcings (rates and fluxes to monthly totals, per-day accumulations to
  monthly totals, geopotential to height) with the constants of :mod:`glacgrid.units`.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import cftime
import numpy as np
import xarray as xr

from ..exceptions import GridMismatchError, InputDataError, TimeAxisError, UnitsError
from ..units import G0, RHO_WATER, SECONDS_PER_DAY, T0, canonical
from ._readers import _degrees, _order, check_complete

__all__ = ["CALENDARS", "ENSEMBLE_DIMS", "open_raw", "month_labels", "normalise_grid", "to_kelvin", "flux_to_total",
           "rate_to_total", "daily_to_total", "geopotential_to_orog", "same_units"]

#: CF calendars that cftime decodes (``gregorian`` is ``standard``; ``365_day``/``366_day`` are aliases).
CALENDARS = ("standard", "gregorian", "proleptic_gregorian", "julian", "noleap", "365_day", "all_leap",
             "366_day", "360_day")
#: Ensemble dimensions of source files; each becomes ``member``.
ENSEMBLE_DIMS = ("number", "realization", "member", "ensemble")
_RENAME = {"latitude": "lat", "longitude": "lon", "valid_time": "time"}

# spellings of the forcing units that glacgrid.units does not list
_UNITS = {
    "kg m-2 s-1": {"kg m-2 s-1", "kg m**-2 s**-1", "kg/m2/s", "kg m-2 s**-1", "kg/(m2 s)", "mm s-1", "mm/s"},
    "m s-1": {"m s-1", "m/s", "m s**-1", "m.s-1"},
}


def same_units(got: str | None, expected: str) -> bool:
    """Whether ``got`` spells the units ``expected`` (glacgrid's aliases plus the forcing fluxes)."""
    if got is None:
        return False
    got = str(got).strip()
    if expected in _UNITS:
        return got in _UNITS[expected]
    canon = canonical(got)
    return canon == canonical(expected) if canon is not None else got == expected


def open_raw(path: Path) -> xr.Dataset:
    """A netCDF file opened lazily with CF scaling decoded but times left as numbers."""
    if not path.is_file():
        raise InputDataError(f"Forcing file {path} does not exist (or is not a file); check the path.")
    check_complete(path)
    try:
        return xr.open_dataset(path, engine="netcdf4", decode_times=False, decode_timedelta=False, cache=False)
    except (OSError, ValueError, RuntimeError) as err:
        raise InputDataError(f"Cannot read {path}: {type(err).__name__}: {err}. The file is unreadable or not "
                             "netCDF; download it again.") from err


def _bounds(ds: xr.Dataset) -> xr.DataArray | None:
    name = ds["time"].attrs.get("bounds")
    for candidate in (name, "time_bnds", "time_bounds"):
        if candidate and candidate in ds.variables and ds[candidate].ndim == 2:
            return ds[candidate]
    return None


def month_labels(ds: xr.Dataset, path: Path, *, month_end: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """The calendar month of every time step, the length of that month in days, and the calendar.

    Parameters
    ----------
    ds : Dataset
        Opened by :func:`open_raw` (times undecoded).
    path : Path
        For messages.
    month_end : bool
        Without ``time_bnds``, the stamps are at the end of their month (CESM): the month is that of
        the stamp minus one day.

    Returns
    -------
    months : ndarray of datetime64[M]
    days : ndarray of float64
        Days of each month in the file's calendar (30 in every month of ``360_day``, 28 in every
        February of ``noleap``).
    calendar : str
    """
    if "time" not in ds.variables:
        raise TimeAxisError(f"{path} has no 'time' coordinate (variables: {sorted(map(str, ds.variables))}); "
                            "a forcing file needs a monthly time axis.")
    time = ds["time"]
    units = time.attrs.get("units")
    calendar = str(time.attrs.get("calendar", "standard")).strip().lower()
    if calendar not in CALENDARS:
        raise TimeAxisError(f"{path}: time has calendar {calendar!r}; glacgrid reads the CF calendars "
                            f"{', '.join(CALENDARS)}. Fix the 'calendar' attribute if it is misspelled.")
    if not units or " since " not in str(units):
        raise TimeAxisError(f"{path}: time has units {units!r}; expected CF units such as 'days since 1850-01-01'.")
    bounds = _bounds(ds)
    try:
        if bounds is not None:
            b = np.asarray(bounds.values, dtype="float64")
            lo = cftime.num2date(b[:, 0], units, calendar)
            hi = cftime.num2date(b[:, 1], units, calendar)
            length = np.array([(h - l).total_seconds() / SECONDS_PER_DAY for l, h in zip(lo, hi)])
            if length.size and (length.min() < 27.9 or length.max() > 31.1):
                raise TimeAxisError(
                    f"{path}: the time bounds span {length.min():g} to {length.max():g} days; monthly means have "
                    "bounds of one month (28 to 31 days). Average the file to months first."
                )
            stamps = cftime.num2date(b.mean(axis=1), units, calendar)
        else:
            stamps = cftime.num2date(np.asarray(time.values, dtype="float64"), units, calendar)
            if month_end:
                stamps = np.array([s - _dt.timedelta(days=1) for s in np.atleast_1d(stamps)])
    except (ValueError, TypeError) as err:
        raise TimeAxisError(f"{path}: cannot decode time with units {units!r} and calendar {calendar!r} ({err}).") from err
    stamps = np.atleast_1d(stamps)
    year = np.array([s.year for s in stamps], dtype="int64")
    month = np.array([s.month for s in stamps], dtype="int64")
    labels = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    if np.unique(labels).size != labels.size:
        raise TimeAxisError(
            f"{path} has {labels.size} time steps in {np.unique(labels).size} month(s): not monthly means "
            "(sub-monthly data, or month-end stamps without time_bnds). Average to months, or add time_bnds."
        )
    return labels, days_in_month(year, month, calendar), calendar


def days_in_month(year: np.ndarray, month: np.ndarray, calendar: str) -> np.ndarray:
    """Days of each (year, month) in ``calendar`` (cftime: 1582-10 has 21 days in ``standard``)."""
    first = [cftime.datetime(int(y), int(m), 1, calendar=calendar) for y, m in zip(year, month)]
    nxt = [cftime.datetime(int(y) + (m == 12), 1 if m == 12 else int(m) + 1, 1, calendar=calendar)
           for y, m in zip(year, month)]
    return np.array([(b - a).total_seconds() / SECONDS_PER_DAY for a, b in zip(first, nxt)], dtype="float64")


def normalise_grid(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """``lat`` ascending, ``lon`` in -180..180 and sorted, the ensemble dimension named ``member``."""
    ds = ds.rename({k: v for k, v in _RENAME.items() if k in ds.variables})
    ens = [d for d in ENSEMBLE_DIMS if d in ds.dims]
    if len(ens) > 1:
        raise GridMismatchError(f"{path} has several ensemble dimensions {ens}; keep one.")
    if ens and ens[0] != "member":
        ds = ds.rename({ens[0]: "member"})
    for dim in ("lat", "lon"):
        if dim not in ds.dims or ds[dim].ndim != 1:
            raise GridMismatchError(f"{path} has no 1-D '{dim}' coordinate (dims: {dict(ds.sizes)}); glacgrid "
                                    "reads forcings on regular lat/lon grids only: regrid the file first.")
    lon = np.round((_degrees(ds["lon"].values) + 180.0) % 360.0 - 180.0, 9)
    if np.unique(lon).size != lon.size:
        raise GridMismatchError(f"{path} has duplicated longitudes once wrapped to -180..180.")
    ds = ds.assign_coords(lat=_degrees(ds["lat"].values), lon=lon)
    order = {"lat": _order(ds["lat"].values), "lon": _order(lon) if not np.all(np.diff(lon) > 0) else slice(None)}
    return ds.isel(order)


def to_kelvin(da: xr.DataArray, path: Path, name: str) -> xr.DataArray:
    """A temperature in K (values in degC are moved)."""
    got = da.attrs.get("units")
    if same_units(got, "K"):
        return da
    if same_units(got, "degC"):
        return da + T0
    raise UnitsError(f"{name!r} in {path} has units {got!r}; expected a temperature in 'K' (or 'degC').")


def flux_to_total(da: xr.DataArray, days: xr.DataArray) -> xr.DataArray:
    """Mean flux (kg m-2 s-1) -> monthly total (kg m-2): times the seconds of the month in its calendar."""
    return da * (days * SECONDS_PER_DAY)


def rate_to_total(da: xr.DataArray, days: xr.DataArray) -> xr.DataArray:
    """Mean rate of liquid water (m s-1) -> monthly total (kg m-2): times the month's seconds and 1000 kg m-3."""
    return da * (days * SECONDS_PER_DAY * RHO_WATER)


def daily_to_total(da: xr.DataArray, days: xr.DataArray) -> xr.DataArray:
    """ERA5 monthly mean of daily accumulations (m per day) -> monthly total (kg m-2)."""
    return da * (days * RHO_WATER)


def geopotential_to_orog(da: xr.DataArray) -> xr.DataArray:
    """Surface geopotential (m2 s-2) -> height (m)."""
    return da / G0
