"""The hydrological year, and whether a climate record covers a run's years (:func:`check_period`).

:class:`HydroYear` is the one definition of the hydrological year in glacgrid (the features re-export
it): it starts on the first day of ``start_month`` and is labelled by the calendar year it ends in, so
hydrological year 2001 in the north runs from October 2000 to September 2001.

:func:`check_period` reads only the time axes of the raw climate files (or of a cube store), so a
run can refuse a period outside the record before any stage has run; :func:`check_months` is the
same check on months already in memory (used by :func:`glacgrid.features.hydrological_years`), so
both say it in the same words.
"""

from __future__ import annotations

import calendar
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import InputDataError, MissingVariableError, StoreError, TimeAxisError, import_optional
from ._open import ERA5LAND_MONTHLY
from ._readers import check_complete, is_grib, open_source

__all__ = ["HYDRO_START", "HydroYear", "check_months", "check_period"]

#: First month of the hydrological year per hemisphere; the year is labelled by the calendar year it ends in.
HYDRO_START = {"north": 10, "south": 4}


@dataclass(frozen=True)
class HydroYear:
    """Definition of the hydrological year.

    Parameters
    ----------
    hemisphere : {"north", "south"}
        Picks the default first month (October in the north, April in the south).
    start_month : int, optional
        Calendar month (1-12) the year starts in; overrides the hemisphere default.
    """

    hemisphere: str = "north"
    start_month: int | None = None

    def __post_init__(self) -> None:
        if self.hemisphere not in HYDRO_START:
            raise InputDataError(f"hemisphere must be 'north' or 'south', got {self.hemisphere!r}.")
        if self.start_month is not None and (not isinstance(self.start_month, (int, np.integer))
                                             or not 1 <= int(self.start_month) <= 12):
            raise InputDataError(f"start_month must be a calendar month 1..12, got {self.start_month!r}.")

    @property
    def first_month(self) -> int:
        return int(self.start_month) if self.start_month is not None else HYDRO_START[self.hemisphere]

    def calendar_months(self) -> np.ndarray:
        """Calendar month (1-12) of each of the 12 months of the year, in order."""
        return (np.arange(12) + self.first_month - 1) % 12 + 1

    def months_of(self, year: int) -> pd.DatetimeIndex:
        """Month starts of hydrological year ``year``."""
        m0 = self.first_month
        first = pd.Timestamp(year=year - 1 if m0 > 1 else year, month=m0, day=1)
        return pd.date_range(first, periods=12, freq="MS")

    def period_months(self, start: int, end: int) -> pd.DatetimeIndex:
        """Month starts of hydrological years ``start..end`` (inclusive)."""
        first = self.months_of(int(start))[0]
        return pd.date_range(first, periods=12 * max(int(end) - int(start) + 1, 0), freq="MS")

    def label(self, times: pd.DatetimeIndex) -> np.ndarray:
        """Hydrological year label of each month start in ``times``."""
        m0 = self.first_month
        t = pd.DatetimeIndex(times)
        return np.asarray(t.year + ((t.month >= m0) & (m0 > 1)), dtype="int64")

    def complete_years(self, have: pd.DatetimeIndex) -> tuple[list[int], list[int]]:
        """(complete years, partial years) of the month starts in ``have``."""
        labels = self.label(have)
        years, counts = np.unique(labels, return_counts=True)
        full = [int(y) for y, c in zip(years, counts) if c == 12 and self.months_of(int(y)).isin(have).all()]
        return full, [int(y) for y in years if int(y) not in full]


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``(first, last)`` of sorted integers."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _month_ranges(months: pd.DatetimeIndex, limit: int = 6) -> str:
    """``2002-04..2003-09, 2005-01``: consecutive months as ranges."""
    index = months.year * 12 + months.month - 1
    text = [f"{a // 12}-{a % 12 + 1:02d}" + (f"..{b // 12}-{b % 12 + 1:02d}" if b > a else "")
            for a, b in _runs(sorted(int(i) for i in index))]
    return ", ".join(text[:limit]) + (f" and {len(text) - limit} more gaps" if len(text) > limit else "")


def _year_ranges(years: Sequence[int]) -> str:
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in _runs(sorted(years)))


def check_months(have, start, end, *, hydro: HydroYear | None = None, source: str = "the climate data") -> None:
    """Raise :class:`TimeAxisError` unless the months ``have`` cover the requested period.

    Parameters
    ----------
    have : sequence of datetimes
        Month starts the climate record holds.
    start, end : int, or month-like
        First and last hydrological year (int; labelled by their end year, see :class:`HydroYear`),
        or first and last month (``"1989-10"``, a Timestamp, ...).
    hydro : HydroYear, optional
        The year definition (default: northern hemisphere, October to September).
    source : str
        What holds ``have``, for the message (e.g. the files or the store).

    Raises
    ------
    TimeAxisError
        Some months of the period are missing; the message gives the record's extent, the years (or
        months) missing and the complete years the record holds.
    InputDataError
        ``end`` is before ``start``.
    """
    hydro = hydro or HydroYear()
    have = pd.DatetimeIndex(have)
    years = isinstance(start, (int, np.integer)) and isinstance(end, (int, np.integer))
    if years:
        need = hydro.period_months(start, end)
    else:
        first, last = (pd.Timestamp(t).to_period("M").to_timestamp() for t in (start, end))
        need = pd.date_range(first, last, freq="MS")
    if (int(end) < int(start)) if years else (len(need) == 0):
        raise InputDataError(f"The period ends ({end}) before it starts ({start}); swap them.")
    missing = need.difference(have)
    if not len(missing):
        return
    extent = f"{have.min():%Y-%m} .. {have.max():%Y-%m}" if len(have) else "no month at all"
    full, _ = hydro.complete_years(have)
    holds = f"; it holds complete years {_year_ranges(full)}" if full else ""
    if years:
        bad = sorted({int(y) for y in hydro.label(missing)})
        year0 = hydro.months_of(bad[0])
        head = (f"Hydrological years {bad} are not fully covered by {source} ({extent}{holds}): a year needs its "
                f"12 months from {calendar.month_name[hydro.first_month]} (year {bad[0]} = {year0[0]:%Y-%m} .. "
                f"{year0[-1]:%Y-%m})")
    else:
        head = f"The months {need[0]:%Y-%m} .. {need[-1]:%Y-%m} are not fully covered by {source} ({extent}{holds})"
    raise TimeAxisError(f"{head}; {len(missing)} month(s) missing: {_month_ranges(missing)}. Shorten [period] to "
                        "years the data covers, or add (download and ingest) the missing months.")


def _grib_months(path: Path) -> dict[str, set]:
    """Per variable, the months of a GRIB file, from the message headers (no value decoded)."""
    import pyproj  # noqa: F401  -- must be loaded before eccodes (see glacgrid.ingest._readers)

    eccodes = import_optional("eccodes", "grib")
    out: dict[str, set] = {}
    try:
        with open(path, "rb") as fh:
            while (handle := eccodes.codes_grib_new_from_file(fh)) is not None:
                try:
                    name = str(eccodes.codes_get(handle, "cfVarName"))
                    date = str(eccodes.codes_get(handle, "dataDate"))
                finally:
                    eccodes.codes_release(handle)
                out.setdefault(name, set()).add(np.datetime64(f"{date[:4]}-{date[4:6]}", "M"))
    except Exception as err:  # eccodes raises its own classes
        raise InputDataError(f"Cannot read the GRIB messages of {path} ({type(err).__name__}: {err}); it is "
                             "truncated or corrupted. Download it again.") from err
    return out


def _file_months(path: Path) -> dict[str, set]:
    """Per variable (ERA5-Land short name), the months a raw climate file holds."""
    if not path.is_file():
        raise InputDataError(f"Climate file {path} does not exist (or is not a file); check [climate] files.")
    if is_grib(path):
        check_complete(path)
        return _grib_months(path)
    ds = open_source(path)  # coordinates and one value per variable (truncation, calendar, sub-monthly data)
    if "time" not in ds.dims:
        return {}
    months = set(ds["time"].values.astype("datetime64[M]"))
    return {str(v): months for v in ds.data_vars if "time" in ds[v].dims}


def _store_months(path: Path) -> dict[str, set]:
    """Per variable, the months of a Zarr store (only its time coordinate is read)."""
    try:
        ds = xr.open_zarr(path, consolidated=None, decode_timedelta=False)
    except Exception as err:  # zarr raises many classes for a missing or damaged store
        raise InputDataError(f"Cannot open the climate store {path} ({type(err).__name__}: {err}); give the "
                             "cube written by `glacgrid ingest`, or the raw climate files.") from err
    if "time" not in ds.dims:
        raise InputDataError(f"The store {path} has no 'time' dimension; it is not a climate cube.")
    import zarr

    time = zarr.open_group(path, mode="r")["time"]
    if time.nchunks_initialized < time.nchunks:  # zarr would read a missing chunk as fill values
        raise StoreError(f"The time coordinate of the store {path} lacks {time.nchunks - time.nchunks_initialized} of "
                         f"its {time.nchunks} chunk(s): the store is incomplete or damaged. Ingest it again "
                         "(glacgrid ingest --overwrite).")
    months = set(ds["time"].values.astype("datetime64[M]"))
    return {str(v): months for v in ds.data_vars if "time" in ds[v].dims}


def check_period(sources: str | os.PathLike | Sequence[str | os.PathLike], start, end, *,
                 hemisphere: str = "north", hydro: HydroYear | None = None,
                 variables: Sequence[str] | None = None) -> None:
    """Refuse a period that the climate files (or a cube store) do not cover, reading only their time axes.

    Cheap (the header and coordinates of each file, or the time coordinate of a store), so a run
    calls it before any stage: a period outside the record is reported in seconds, not after ingest,
    masks and downscaling. Each raw file is also checked for truncation
    (:func:`glacgrid.ingest.check_complete`).

    Parameters
    ----------
    sources : path or sequence of paths
        Raw ERA5-Land files (netCDF or GRIB, as given to :func:`glacgrid.ingest.open_era5land`), or
        the path of a cube store (a directory) written by :func:`glacgrid.ingest.ingest`.
    start, end : int, or month-like
        First and last hydrological year of the run (labelled by their end year: year 2001 needs
        October 2000 to September 2001 in the north), or first and last month (``"1989-10"``).
    hemisphere : {"north", "south"}
        The year definition when ``hydro`` is not given (:class:`HydroYear`).
    hydro : HydroYear, optional
        Explicit year definition (e.g. another first month).
    variables : sequence of str, optional
        Variables that must cover the period (ERA5-Land short names, e.g. ``("t2m", "tp")``); default
        every ERA5-Land monthly variable found (every variable with a time axis in a store).

    Raises
    ------
    TimeAxisError
        The period is not covered by every variable (message: the record's extent, the years and
        months missing, the complete years it holds).
    MissingVariableError
        A requested variable is in none of the sources.
    StoreError
        A chunk of the store's time coordinate is missing.
    InputDataError
        A file is missing, unreadable or truncated; no source given; ``end`` before ``start``.
    """
    hydro = hydro or HydroYear(hemisphere)
    if isinstance(sources, (str, os.PathLike)) and Path(sources).is_dir():
        store = Path(sources)
        per_var, where = _store_months(store), f"the store {store}"
        default = sorted(per_var)
    else:
        paths = [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(p) for p in sources]
        if not paths:
            raise InputDataError("No climate files were given; list them in [climate] files.")
        per_var: dict[str, set] = {}
        for path in paths:
            for name, months in _file_months(path).items():
                per_var.setdefault(name, set()).update(months)
        names = ", ".join(p.name for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        where = f"the climate file(s) {names}"
        default = [v for v in ERA5LAND_MONTHLY if v in per_var]
    wanted = list(variables) if variables is not None else default
    absent = [v for v in wanted if v not in per_var]
    if absent or not wanted:
        raise MissingVariableError(f"Variable(s) {absent or 'of ERA5-Land monthly means'} not found in {where} (they "
                                   f"hold {sorted(per_var)} with a time axis). Download them, or list the files "
                                   "that hold them.")
    for name in wanted:
        check_months(sorted(per_var[name]), start, end, hydro=hydro, source=f"{name!r} in {where}")
