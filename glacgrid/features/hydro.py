"""Hydrological years: monthly ``time`` reshaped into ``(year, month)``.

A hydrological year starts on the first day of ``start_month`` and is labelled by the calendar year it
ends in (:class:`HydroYear`, defined once in :mod:`glacgrid.ingest`, whose ``check_period`` checks a run's
period against the climate files before any stage, in the same words as :func:`hydrological_years`).
Defaults: northern hemisphere 1 October - 30 September (WGMS convention), southern hemisphere
1 April - 31 March. Partial years at the ends of a record are dropped with a warning naming them, never
silently; a requested year that the data does not fully cover is an error.
"""

from __future__ import annotations

import calendar
import logging
import warnings

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import InputDataError, TimeAxisError
from ..ingest import HYDRO_START, HydroYear, check_months

__all__ = ["HYDRO_START", "HydroYear", "PartialYearWarning", "hydrological_years", "month_labels"]

log = logging.getLogger(__name__)


class PartialYearWarning(UserWarning):
    """Months at the ends of a record that do not make up a whole hydrological year were dropped."""


def month_labels(hydro: HydroYear) -> list[str]:
    """Three-letter lower-case month names in hydrological-year order, e.g. ``['oct', ..., 'sep']``."""
    return [calendar.month_abbr[m].lower() for m in hydro.calendar_months()]


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
        full, partial = hydro.complete_years(have)
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
    check_months(have, start, end, hydro=hydro)  # the words of glacgrid.ingest.check_period, run before any stage
    months = hydro.period_months(start, end)
    sel = ds.sel(time=months)
    years = np.arange(start, end + 1)
    out = sel.coarsen(time=12).construct(time=("year", "month"))
    out = out.assign_coords(year=("year", years), month=("month", np.arange(12)),
                            calendar_month=("month", hydro.calendar_months()))
    days = xr.DataArray(months.days_in_month.to_numpy().reshape(-1, 12).astype("float64"),
                        dims=("year", "month"), coords={"year": years})
    return out.drop_vars("time", errors="ignore"), days
