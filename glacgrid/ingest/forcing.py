"""Climate forcings other than ERA5-Land (GCMs, CESM, reanalyses) as the same normalised monthly cube.

:func:`read_forcing` reads the files of one forcing *kind* and returns what :func:`open_era5land` returns for
ERA5-Land: ``t2m`` (K) and ``tp`` (kg m-2 per month) on ``(time, lat, lon)``, latitude ascending, longitude in
-180..180, every month stamped on its first day, ``orog`` (m) when an invariant file is given, each variable
stamped from the registry. An ensemble dimension (ERA5's ``number``) becomes ``member``.

Kinds (table :data:`FORCING_VARIABLES`):

``cf``
    CF / CMIP output: ``tas`` (K) and ``pr`` (kg m-2 s-1, a mean flux: times the seconds of the month *in the
    file's calendar*); invariant ``orog`` (m).
``cesm``
    CESM atmosphere history names: ``TREFHT`` (K) and ``PRECC`` + ``PRECL`` (m s-1 of liquid water, summed);
    invariant ``PHIS`` (m2 s-2). Stamps at the end of their month are resolved from ``time_bnds``, or
    without bounds by the CESM convention (the stamp minus one day).
``era5``
    ERA5 and CERA-20C monthly means: ``t2m`` (K) and ``tp`` (m per day: the mean of daily accumulations,
    times the days of the month); invariant ``z`` (m2 s-2).

Times in any CF calendar (``standard``, ``proleptic_gregorian``, ``julian``, ``noleap``, ``all_leap``,
``360_day``) are decoded with cftime. The month of each value is the middle of its ``time_bnds`` when the
file has bounds (month-end or mid-month stamps alike), else the month of its stamp. Months are labelled
in the standard calendar (the 1st of each month), ``datetime64[ns]`` when every month lies within
1678..2261, else ``datetime64[s]`` (e.g. CESM from 1600: select with ``np.datetime64`` bounds or ``years=``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ..exceptions import GridMismatchError, InputDataError, MissingVariableError, TimeAxisError, UnitsError
from ..metadata import provenance, software_versions, stamp
from . import _forcing
from ._open import _COORD_ATTRS
from ._readers import sha256

__all__ = ["FORCING_KINDS", "FORCING_VARIABLES", "FORCING_INVARIANTS", "CALENDARS", "ForcingVariable", "read_forcing"]

CALENDARS = _forcing.CALENDARS


@dataclass(frozen=True)
class ForcingVariable:
    """How one cube variable is made from the variables of a forcing's files.

    Attributes
    ----------
    sources : tuple of str
        Source variable names; several are summed (CESM ``PRECC`` + ``PRECL``).
    units : str
        The units each source must declare.
    convert : {"temperature", "flux", "rate", "daily", "geopotential", "none"}
        The conversion to registry units (see :mod:`glacgrid.ingest._forcing`).
    """

    sources: tuple[str, ...]
    units: str
    convert: str


#: The forcing kinds :func:`read_forcing` knows.
FORCING_KINDS = ("cf", "cesm", "era5")
#: Per kind, cube name -> how it is made.
FORCING_VARIABLES: dict[str, dict[str, ForcingVariable]] = {
    "cf": {"t2m": ForcingVariable(("tas",), "K", "temperature"),
           "tp": ForcingVariable(("pr",), "kg m-2 s-1", "flux")},
    "cesm": {"t2m": ForcingVariable(("TREFHT",), "K", "temperature"),
             "tp": ForcingVariable(("PRECC", "PRECL"), "m s-1", "rate")},
    "era5": {"t2m": ForcingVariable(("t2m",), "K", "temperature"),
             "tp": ForcingVariable(("tp",), "m", "daily")},
}
#: Per kind, the orography of the invariant file.
FORCING_INVARIANTS: dict[str, ForcingVariable] = {
    "cf": ForcingVariable(("orog",), "m", "none"),
    "cesm": ForcingVariable(("PHIS",), "m2 s-2", "geopotential"),
    "era5": ForcingVariable(("z",), "m2 s-2", "geopotential"),
}
_MONTHLY: dict[str, Callable[[xr.DataArray, xr.DataArray], xr.DataArray]] = {
    "flux": _forcing.flux_to_total, "rate": _forcing.rate_to_total, "daily": _forcing.daily_to_total,
}
_DIMS = ("time", "member", "lat", "lon")


def _check_kind(kind: str) -> dict[str, ForcingVariable]:
    if kind not in FORCING_VARIABLES:
        raise InputDataError(f"Unknown forcing kind {kind!r}; glacgrid reads {', '.join(FORCING_KINDS)} (CF/CMIP "
                             "tas + pr, CESM TREFHT + PRECC + PRECL, ERA5/CERA-20C t2m + tp).")
    return FORCING_VARIABLES[kind]


def _piece(ds: xr.Dataset, name: str, path: Path, months: np.ndarray, days: np.ndarray, calendar: str) -> xr.DataArray:
    """One source variable of one file on ``(time[, member], lat, lon)``, its month lengths as ``days``."""
    da = ds[name]
    if "time" not in da.dims:
        raise TimeAxisError(f"{name!r} in {path} has no time dimension (dims {da.dims}).")
    extra = [d for d in da.dims if d not in _DIMS]
    for d in extra:
        if da.sizes[d] != 1:
            raise GridMismatchError(f"{name!r} in {path} has a dimension {d!r} of length {da.sizes[d]}; a forcing "
                                    "variable is (time[, member], lat, lon). Select one level first.")
    da = da.squeeze(extra, drop=True).reset_coords(drop=True)
    da = da.assign_coords(time=months.astype("datetime64[s]"), days=("time", days)).load()
    da.attrs["calendar"] = calendar
    return da


def _combine(name: str, pieces: list[tuple[Path, xr.DataArray]]) -> xr.DataArray:
    """The pieces of one source variable joined along time: same grid, no duplicated or missing month."""
    ref_path, ref = pieces[0]
    for path, da in pieces[1:]:
        for dim in ("lat", "lon", "member"):
            a = ref[dim].values if dim in ref.dims else None
            b = da[dim].values if dim in da.dims else None
            if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                raise GridMismatchError(f"{name!r}: {path} and {ref_path} differ along {dim!r}; give files on one grid "
                                        "and with the same members.")
        if da.attrs.get("calendar") != ref.attrs.get("calendar"):
            raise TimeAxisError(f"{name!r}: {path} uses the calendar {da.attrs.get('calendar')!r}, {ref_path} "
                                f"{ref.attrs.get('calendar')!r}; give files of one simulation.")
    da = xr.concat([p[1] for p in pieces], dim="time") if len(pieces) > 1 else ref
    t = da["time"].values
    uniq, counts = np.unique(t, return_counts=True)
    if (counts > 1).any():
        raise TimeAxisError(f"Month {str(uniq[counts > 1][0])[:7]} of {name!r} appears twice in the files "
                            f"{[p.name for p, _ in pieces]}; remove the duplicated file.")
    da = da.isel(time=np.argsort(t, kind="stable"))
    t = da["time"].values
    steps = np.diff(t.astype("datetime64[M]").astype("int64"))
    if steps.size and (steps != 1).any():
        gap = int(np.argmax(steps != 1))
        raise TimeAxisError(f"{name!r} misses months between {str(t[gap])[:7]} and {str(t[gap + 1])[:7]}; months "
                            "must be contiguous. "
                            "Add the files that hold them.")
    return da


def _monthly_variable(out_name: str, spec: ForcingVariable, combined: dict[str, xr.DataArray],
                      where: dict[str, Path]) -> xr.DataArray:
    parts = []
    for src in spec.sources:
        da = combined[src]
        if spec.convert == "temperature":
            da = _forcing.to_kelvin(da, where[src], src)
        elif not _forcing.same_units(da.attrs.get("units"), spec.units):
            raise UnitsError(f"{src!r} in {where[src]} has units {da.attrs.get('units')!r}; a forcing of this kind "
                             f"carries {spec.units!r}. Use the original model output.")
        parts.append(da)
    ref = parts[0]
    for src, da in zip(spec.sources[1:], parts[1:]):
        if not np.array_equal(da["time"].values, ref["time"].values):
            raise TimeAxisError(f"{src!r} and {spec.sources[0]!r} cover different months; give files of the same period.")
    total = parts[0].reset_coords("days", drop=True)
    for da in parts[1:]:
        total = total + da.reset_coords("days", drop=True)
    if spec.convert in _MONTHLY:
        total = _MONTHLY[spec.convert](total, ref["days"].reset_coords(drop=True))
    total = total.astype("float32")
    first = combined[spec.sources[0]]
    total.attrs = {"forcing_name": " + ".join(spec.sources), "forcing_units": str(first.attrs.get("units")),
                   "forcing_calendar": first.attrs.get("calendar", "")}
    return stamp(total, out_name)


def _time_unit(months: np.ndarray) -> np.ndarray:
    years = months.astype("datetime64[Y]").astype("int64") + 1970
    unit = "ns" if years.size == 0 or (years.min() >= 1678 and years.max() <= 2261) else "s"
    return months.astype(f"datetime64[{unit}]")


def _orography(path: Path, kind: str, grid: xr.Dataset) -> xr.DataArray:
    spec = FORCING_INVARIANTS[kind]
    with _forcing.open_raw(path) as raw:
        ds = _forcing.normalise_grid(raw, path).load()
    name = spec.sources[0]
    if name not in ds.data_vars:
        raise MissingVariableError(f"Invariant file {path} has no {name!r} (it holds {sorted(map(str, ds.data_vars))}); "
                                   f"a {kind!r} forcing's orography is {name!r} in {spec.units!r}.")
    da = ds[name]
    drop = [d for d in da.dims if d not in ("lat", "lon")]
    for d in drop:
        if da.sizes[d] != 1:
            raise TimeAxisError(f"{name!r} in invariant file {path} has {da.sizes[d]} values along {d!r}; expected one.")
    da = da.squeeze(drop, drop=True).reset_coords(drop=True)
    if not _forcing.same_units(da.attrs.get("units"), spec.units):
        raise UnitsError(f"{name!r} in {path} has units {da.attrs.get('units')!r}; expected {spec.units!r}.")
    for dim in ("lat", "lon"):
        if not np.array_equal(da[dim].values, grid[dim].values):
            raise GridMismatchError(f"Invariant file {path} and the forcing differ along {dim}: "
                                    f"{da[dim].values} vs {grid[dim].values}. Give the invariant of the same grid.")
    if spec.convert == "geopotential":
        da = _forcing.geopotential_to_orog(da)
    da = da.astype("float32")
    da.attrs = {"forcing_name": name, "forcing_units": spec.units}
    return stamp(da, "orog")


def read_forcing(
    files: Sequence[str | os.PathLike],
    kind: str,
    *,
    invariant: str | os.PathLike | None = None,
    members: Sequence[int] | None = None,
    years: tuple[int, int] | None = None,
) -> xr.Dataset:
    """Read a climate forcing as the normalised monthly cube of ERA5-Land (``t2m`` K, ``tp`` kg m-2 per month).

    Parameters
    ----------
    files : sequence of paths
        netCDF files, split per variable and/or per period in any combination (e.g. the ``tas`` and ``pr``
        files of a CMIP run; the ``TREFHT``, ``PRECC`` and ``PRECL`` files of CESM).
    kind : {"cf", "cesm", "era5"}
        How the files name and store the variables (see :data:`FORCING_VARIABLES`; CERA-20C is ``era5``).
    invariant : path, optional
        File with the forcing's orography (``orog`` in m; CESM ``PHIS`` or ERA5 ``z`` in m2 s-2), on the
        same grid: gives ``orog`` (m).
    members : sequence of int, optional
        Ensemble members to keep (values of ``number``); default all.
    years : (int, int), optional
        First and last calendar year to keep (inclusive); default all.

    Returns
    -------
    xarray.Dataset
        ``t2m`` (K) and ``tp`` (kg m-2 per month), float32, on ``(time, lat, lon)`` or
        ``(time, member, lat, lon)`` for an ensemble; ``orog`` (m) on ``(lat, lon)`` with ``invariant``.
        Attributes ``forcing_kind``, ``calendar`` (of the source), ``source_files`` (names and sha256),
        ``history``. The values are read into memory (forcings are coarse: CESM's 3 x 3 cells over 406
        years are 0.4 MB); ``.chunk()`` the result for dask.

    Raises
    ------
    InputDataError
        Unknown kind, no files, a file missing or unreadable, or requested members absent.
    MissingVariableError
        A variable of the kind (e.g. ``PRECL``) is in none of the files.
    TimeAxisError
        An unknown calendar, non-monthly steps or bounds, duplicated or missing months, variables covering
        different months.
    UnitsError
        A variable in other units than the kind's.
    GridMismatchError
        Files on different grids, or a dimension other than time, member, lat and lon.
    """
    table = _check_kind(kind)
    paths = [Path(f) for f in files]
    if not paths:
        raise InputDataError(f"No forcing files were given for kind {kind!r}; pass a list of netCDF files.")
    wanted = {src: out for out, spec in table.items() for src in spec.sources}
    pieces: dict[str, list[tuple[Path, xr.DataArray]]] = {src: [] for src in wanted}
    found: set[str] = set()
    for path in paths:
        with _forcing.open_raw(path) as raw:
            ds = _forcing.normalise_grid(raw, path)
            found |= {str(v) for v in ds.data_vars}
            names = [v for v in wanted if v in ds.data_vars]
            if not names:
                continue
            months, days, calendar = _forcing.month_labels(ds, path, month_end=kind == "cesm")
            for name in names:
                pieces[name].append((path, _piece(ds, name, path, months, days, calendar)))
    missing = [src for src, got in pieces.items() if not got]
    if missing:
        raise MissingVariableError(
            f"Variable(s) {missing} of a {kind!r} forcing are in none of {[p.name for p in paths]} (they hold "
            f"{sorted(found)}). Add the files, or choose the kind that matches them ({', '.join(FORCING_KINDS)})."
        )
    combined = {src: _combine(src, got) for src, got in pieces.items()}
    where = {src: got[0][0] for src, got in pieces.items()}
    out = {name: _monthly_variable(name, spec, combined, where) for name, spec in table.items()}
    t_ref = out["t2m"]["time"].values
    if not np.array_equal(out["tp"]["time"].values, t_ref):
        t = out["tp"]["time"].values
        raise TimeAxisError(f"'tp' covers {t[0]}..{t[-1]} but 't2m' covers {t_ref[0]}..{t_ref[-1]}; give files "
                            "covering the same months.")
    for dim in ("lat", "lon"):
        if not np.array_equal(out["tp"][dim].values, out["t2m"][dim].values):
            raise GridMismatchError(f"'tp' and 't2m' of the forcing are on different grids along {dim}.")
    ds = xr.Dataset(out)
    if "member" in ds.dims:
        ds = ds.transpose("time", "member", "lat", "lon")
        if members is not None:
            absent = sorted(set(members) - set(ds["member"].values.tolist()))
            if absent:
                raise InputDataError(f"Member(s) {absent} are not in the forcing (members "
                                     f"{ds['member'].values.tolist()}); choose among them.")
            ds = ds.sel(member=list(members))
    elif members is not None:
        raise InputDataError(f"members={list(members)} was given but the {kind!r} forcing in "
                             f"{[p.name for p in paths]} has no ensemble dimension ({', '.join(_forcing.ENSEMBLE_DIMS)}).")
    if years is not None:
        y = ds["time"].values.astype("datetime64[Y]").astype("int64") + 1970
        keep = (y >= years[0]) & (y <= years[1])
        if not keep.any():
            raise TimeAxisError(f"years={tuple(years)} selects no month of the forcing ({y.min()}..{y.max()}).")
        ds = ds.isel(time=np.flatnonzero(keep))
    ds = ds.assign_coords(time=_time_unit(ds["time"].values.astype("datetime64[M]")))
    if invariant is not None:
        ds["orog"] = _orography(Path(invariant), kind, ds)
    ds = ds.assign_coords({dim: ds[dim].assign_attrs(attrs) for dim, attrs in _COORD_ATTRS.items()})
    if "member" in ds.dims:
        ds["member"].attrs = {"long_name": "ensemble member of the forcing"}
    used = [p for p in paths if any(p == q for got in pieces.values() for q, _ in got)]
    if invariant is not None:
        used.append(Path(invariant))
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": f"Climate forcing ({kind}) as a glacgrid monthly cube",
        "forcing_kind": kind,
        "calendar": out["t2m"].attrs["forcing_calendar"],
        "source_files": json.dumps([{"name": p.name, "sha256": sha256(p)} for p in used]),
        "software_versions": json.dumps(software_versions("xarray", "cftime", "netCDF4")),
        "history": provenance("read_forcing", kind=kind, files=[p.name for p in paths],
                              invariant=Path(invariant).name if invariant else None,
                              members=list(members) if members is not None else None,
                              years=tuple(years) if years is not None else None),
    }
    return ds
