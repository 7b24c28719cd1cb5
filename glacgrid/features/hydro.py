"""Hydrological years: monthly ``time`` reshaped into ``(year, month)``.

A hydrological year starts on the first day of ``start_month`` and is labelled by the calendar year it
ends in. Defaults: northern hemisphere 1 October - 30 September (WGMS convention), southern hemisphere
1 April - 31 March. Partial years at the ends of a record are dropped with a warning naming them, never
silently; a requested year that the data does not fully cover is an error.
"""

from __future__ import annotations

import calendar
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import InputDataError, TimeAxisError

__all__ = ["HYDRO_START", "HydroYear", "PartialYearWarning", "hydrological_years", "month_labels"]

log = logging.getLogger(__name__)

#: First month of the hydrological year per hemisphere; the year is labelled by the calendar year it ends in.
HYDRO_START = {"north": 10, "south": 4}


class PartialYearWarning(UserWarning):
    """Months at the ends of a record that do not make up a whole hydrological year were dropped."""


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

    def label(self, times: pd.DatetimeIndex) -> np.ndarray:
        """Hydrological year label of each month start in ``times``."""
        m0 = self.first_month
        t = pd.DatetimeIndex(times)
        return np.asarray(t.year + ((t.month >= m0) & (m0 > 1)), dtype="int64")


def month_labels(hydro: HydroYear) -> list[str]:
    """Three-letter lower-case month names in hydrological-year order, e.g. ``['oct', ..., 'sep']``."""
    return [calendar.month_abbr[m].lower() for m in hydro.calendar_months()]


def _full_years(have: pd.DatetimeIndex, hydro: HydroYear) -> tuple[list[int], list[int]]:
    """(complete years, partial years) of the months in ``have``."""
    labels = hydro.label(have)
    years, counts = np.unique(labels, return_counts=True)
    full = [int(y) for y, c in zip(years, counts) if c == 12 and hydro.months_of(int(y)).isin(have).all()]
    partial = [int(y) for y in years if int(y) not in full]
    return full, partial


def hydrological_years(ds: xr.Dataset | xr.DataArray, start: int | None = None, end: int | None = None,
                       hemisphere: str = "north", *, hydro: HydroYear | None = None):
    """Select hydrological years ``start..end`` and reshape ``time`` into ``(year, month)``.

    Parameters
    ----------
    ds : Dataset or DataArray with a monthly ``time`` coordinate (month starts)
    start, end : int, optional
        First and last year (labels = end years). When both are omitted, every complete year of the
        record is used and the partial years at its ends are dropped with a :class:`PartialYearWarning`.
    hemisphere : {"north", "south"}
        Default year definition when ``hydro`` is not given.
    hydro : HydroYear, optional
        Explicit year definition (e.g. another first month).

    Returns
    -------
    (reshaped, days)
        ``reshaped`` has dims ``(year, month, ...)``; ``month`` runs 0..11 from the first month and
        carries the coordinate ``calendar_month``. ``days`` (year, month) holds the days of each month.

    Raises
    ------
    TimeAxisError
        A requested year is not fully covered, or the record holds no complete year.
    """
    hydro = hydro or HydroYear(hemisphere)
    have = pd.DatetimeIndex(ds["time"].values)
    if (start is None) != (end is None):
        raise InputDataError(f"Give both start and end years, or neither; got start={start}, end={end}.")
    if start is None:
        full, partial = _full_years(have, hydro)
        if not full:
            raise TimeAxisError(
                f"The monthly record {have.min():%Y-%m} .. {have.max():%Y-%m} holds no complete hydrological "
                f"year starting in {calendar.month_name[hydro.first_month]}; ingest more months."
            )
        start, end = full[0], full[-1]
        inside = [y for y in range(start, end + 1) if y not in full]
        if inside:
            raise TimeAxisError(
                f"Hydrological years {inside} inside the record are incomplete (months missing); "
                "ingest the missing months or request a shorter period."
            )
        if partial:
            msg = (f"dropped partial hydrological years {partial} at the ends of the record "
                   f"({have.min():%Y-%m} .. {have.max():%Y-%m}); using {start}-{end}")
            log.warning(msg)
            warnings.warn(msg, PartialYearWarning, stacklevel=2)
    if end < start:
        raise InputDataError(f"end year {end} is before start year {start}.")
    months = pd.DatetimeIndex(np.concatenate([hydro.months_of(y).to_numpy() for y in range(start, end + 1)]))
    missing = months.difference(have)
    if len(missing):
        bad = sorted(set(hydro.label(missing).tolist()))
        raise TimeAxisError(
            f"Hydrological years {bad} are not fully covered by the climate data "
            f"({have.min():%Y-%m} .. {have.max():%Y-%m}); a year needs its 12 months from "
            f"{calendar.month_name[hydro.first_month]}. Shorten [period] or ingest more months."
        )
    sel = ds.sel(time=months)
    years = np.arange(start, end + 1)
    out = sel.coarsen(time=12).construct(time=("year", "month"))
    out = out.assign_coords(year=("year", years), month=("month", np.arange(12)),
                            calendar_month=("month", hydro.calendar_months()))
    days = xr.DataArray(months.days_in_month.to_numpy().reshape(-1, 12).astype("float64"),
                        dims=("year", "month"), coords={"year": years})
    return out.drop_vars("time", errors="ignore"), days
