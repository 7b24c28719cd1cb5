"""Open ERA5-Land monthly files as one normalised, checked, lazy Dataset (:func:`open_era5land`).

Normalisation:

* dims ``(time, lat, lon)``; invariants ``(lat, lon)``; extra coordinates (``number``,
  ``expver``) dropped; ``valid_time`` (current CDS files) renamed ``time``;
* latitude ascending, longitude in -180..180 (0..360 grids are wrapped and sorted, data moved
  with them); float32 coordinates as float64 by their shortest decimal form (47.1, not 47.09999847);
* time stamped on the first day of each month (datetime64[ns]), contiguous, no duplicates;
* int16 packed values decoded (CF ``scale_factor``/``add_offset``/``_FillValue``) to float32;
* units converted at the boundary with :mod:`glacgrid.units` (table :data:`ERA5LAND_MONTHLY`);
* every variable stamped from the registry, ``source_files`` (names and sha256) and ``history``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import units
from ..exceptions import (
    GridMismatchError,
    InputDataError,
    MissingVariableError,
    TimeAxisError,
    UnitsError,
)
from ..metadata import CONVENTIONS, provenance, software_versions, stamp
from ._readers import GRIB_SUFFIXES, SOURCE_INDEX, is_hdf5, open_source, sha256
from ._tiles import FilePiece, hdf5_slab, normalise_chunks, tiled_variable

__all__ = ["ERA5LAND_MONTHLY", "ERA5LAND_INVARIANT", "Conversion", "open_era5land"]


def _cube_packages(grib: bool) -> tuple[str, ...]:
    """The packages that decide a cube's bytes (recorded in its ``software_versions``)."""
    return ("xarray", "dask", "zarr", "netCDF4") + (("cfgrib", "eccodes") if grib else ())


@dataclass(frozen=True)
class Conversion:
    """How one ERA5-Land variable enters the cube.

    Attributes
    ----------
    source_units : str
        Units the source file must declare (any spelling :func:`glacgrid.units.canonical` knows).
    convert : callable or None
        Function of the decoded DataArray returning it in the registry units; None keeps values.
    name : str
        Output name (an entry of ``variables.toml``).
    """

    source_units: str
    convert: Callable[[xr.DataArray], xr.DataArray] | None
    name: str


_ACCUM = units.era5_daily_accumulation_to_monthly_amount  # m per day -> kg m-2 per month
_ENERGY = units.era5_daily_energy_to_flux  # J m-2 per day -> W m-2

#: ERA5-Land monthly means: source name -> conversion. Accumulations are mean daily amounts.
ERA5LAND_MONTHLY: dict[str, Conversion] = {
    "t2m": Conversion("K", None, "t2m"),
    "tp": Conversion("m", _ACCUM, "tp"),
    "sf": Conversion("m", _ACCUM, "sf"),
    "smlt": Conversion("m", _ACCUM, "smlt"),
    "ssr": Conversion("J m-2", _ENERGY, "ssr"),
    "ssrd": Conversion("J m-2", _ENERGY, "ssrd"),
    "str": Conversion("J m-2", _ENERGY, "str"),
    "sshf": Conversion("J m-2", _ENERGY, "sshf"),
    "slhf": Conversion("J m-2", _ENERGY, "slhf"),
    "sd": Conversion("m", None, "sd"),
    "rsn": Conversion("kg m-3", None, "rsn"),
    "tsn": Conversion("K", None, "tsn"),
    "fal": Conversion("1", None, "fal"),
    "sp": Conversion("Pa", None, "sp"),
}

#: Invariant fields: source name -> conversion (``z`` is required, ``lsm`` optional).
ERA5LAND_INVARIANT: dict[str, Conversion] = {
    "z": Conversion("m2 s-2", units.geopotential_to_height, "orog"),
    "lsm": Conversion("1", None, "lsm"),
}

_COORD_ATTRS = {
    "lat": {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"},
    "lon": {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"},
    "time": {"standard_name": "time", "long_name": "time (first day of the month)", "axis": "T"},
}
_TIME_ENCODING = {"units": "days since 1900-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"}


def _same_units(got: str | None, expected: str) -> bool:
    if got is None:
        return False
    canon = units.canonical(got)
    if canon is not None:
        return canon == units.canonical(expected)
    return str(got).replace("**", "").strip() == expected  # e.g. 'kg m**-3', 'Pa'


def _check_grid(ref: xr.Dataset, ref_path: Path, other: xr.Dataset, other_path: Path, what: str = "") -> None:
    for dim in ("lat", "lon"):
        if not np.array_equal(ref[dim].values, other[dim].values):
            def desc(d: xr.Dataset) -> str:
                v = d[dim].values
                return f"{v.size} values {v.min():g}..{v.max():g}" if v.size else "empty"

            raise GridMismatchError(
                f"{what}Grid of {other_path} differs from that of {ref_path} along {dim}: "
                f"{desc(other)} vs {desc(ref)}. Download every file on the same grid and area."
            )


def _time_axis(name: str, pieces: list[tuple[Path, xr.DataArray]]) -> tuple[np.ndarray, list[FilePiece]]:
    """The months of one variable (unique, contiguous, sorted) and each file's piece placed on them."""
    pieces = sorted(pieces, key=lambda p: p[1]["time"].values.min())
    seen: dict[np.datetime64, Path] = {}
    for path, da in pieces:
        for t in da["time"].values:
            if t in seen:
                raise TimeAxisError(
                    f"Month {str(t)[:7]} of {name!r} appears twice: in {seen[t]} and in {path}. "
                    "Remove the duplicated file (or month) from the input list."
                )
            seen[t] = path
    times = pd.DatetimeIndex(sorted(seen))
    missing = pd.date_range(times[0], times[-1], freq="MS").difference(times)
    if len(missing):
        listed = ", ".join(f"{t:%Y-%m}" for t in missing[:12]) + (" ..." if len(missing) > 12 else "")
        raise TimeAxisError(
            f"{len(missing)} month(s) of {name!r} are missing between {times[0]:%Y-%m} and "
            f"{times[-1]:%Y-%m}: {listed}. Add the files that hold them; months must be contiguous."
        )
    months = times.to_numpy()
    placed = [FilePiece(str(path), da.variable, np.searchsorted(months, da["time"].values),
                        hdf5_slab(str(path), da, SOURCE_INDEX) if is_hdf5(path) else None) for path, da in pieces]
    return months, placed


def _convert(da: xr.DataArray, conv: Conversion, src_name: str, src_units: str | None) -> xr.DataArray:
    """Cube attributes (registry entry, ERA5 name and units) on a converted float32 array."""
    da.attrs = {"era5_name": src_name, "era5_units": str(src_units)}
    da.encoding = {}
    return stamp(da, conv.name)


def _monthly(name: str, months: np.ndarray, placed: list[FilePiece], units_: str | None, ref: xr.Dataset,
             chunks: Mapping[str, int]) -> xr.DataArray:
    """One monthly variable as a dask array read tile by tile from its files (:mod:`._tiles`)."""
    conv = ERA5LAND_MONTHLY[name]
    shape = (months.size, ref.sizes["lat"], ref.sizes["lon"])
    sizes = dict(zip(("time", "lat", "lon"), shape))
    data = tiled_variable(name, placed, months, shape, normalise_chunks(chunks, sizes), conv.convert)
    out = xr.DataArray(data, dims=("time", "lat", "lon"),
                       coords={"time": months, "lat": ref["lat"].values, "lon": ref["lon"].values})
    return _convert(out, conv, name, units_)


def _collect(opened: list[tuple[Path, xr.DataArray]], wanted: list[str], warn_skipped: bool):
    """Per variable, the (file, DataArray) pieces; checks grids and units. Also the files used."""
    pieces: dict[str, list[tuple[Path, xr.DataArray]]] = {v: [] for v in wanted}
    used: list[Path] = []
    ref_path, ref = None, None
    for path, ds in opened:
        names = [v for v in wanted if v in ds.data_vars]
        if not names:
            if warn_skipped:
                warnings.warn(
                    f"{path} holds no ERA5-Land monthly variable ({sorted(map(str, ds.data_vars))}); "
                    "skipped. Pass an invariant file as invariant=.",
                    UserWarning,
                    stacklevel=3,
                )
            continue
        if "time" not in ds.dims:
            raise TimeAxisError(f"{path} has no 'time' or 'valid_time' dimension; it is not a monthly ERA5-Land file.")
        if ref is None:
            ref_path, ref = path, ds
        _check_grid(ref, ref_path, ds, path)
        for name in names:
            conv = ERA5LAND_MONTHLY[name]
            if not _same_units(ds[name].attrs.get("units"), conv.source_units):
                raise UnitsError(
                    f"{name!r} in {path} has units {ds[name].attrs.get('units')!r}; ERA5-Land monthly "
                    f"means carry {conv.source_units!r}. Use the original ERA5-Land monthly file."
                )
            pieces[name].append((path, ds[name]))
        used.append(path)
    return pieces, used, ref_path, ref


def open_era5land(
    files: Sequence[str | os.PathLike],
    *,
    invariant: str | os.PathLike | None = None,
    variables: Sequence[str] | None = None,
    chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Open ERA5-Land monthly netCDF or GRIB files as one normalised, lazy (dask) Dataset.

    Parameters
    ----------
    files : sequence of paths
        netCDF files (``time`` or ``valid_time`` layout) or GRIB files (read with cfgrib, by
        suffix ``.grib``/``.grb``/... or content), split per year, per month and/or per variable,
        in any combination. Files holding none of ``variables`` are skipped.
    invariant : path, optional
        File with ``z`` (geopotential, m2 s-2; required) and ``lsm`` (fraction; optional), possibly
        with a length-1 time dimension. Gives ``orog`` (m) and ``lsm`` (1) on ``(lat, lon)``.
    variables : sequence of str, optional
        ERA5-Land short names (keys of :data:`ERA5LAND_MONTHLY`); default every known one found.
    chunks : dict, optional
        Dask chunks of the result, e.g. ``{"time": -1, "lat": 64, "lon": 64}`` (-1 or a missing
        dimension: whole); default :func:`glacgrid.ingest.time_series_chunks` for the number of
        months. Each chunk is one dask task that reads only its hyperslab from each file.

    Returns
    -------
    xarray.Dataset
        ``t2m`` (K), ``tp`` (kg m-2 per month), ... on ``(time, lat, lon)``, float32.

    Raises
    ------
    InputDataError
        Empty file list, unknown variable name, or a file missing, unreadable or truncated.
    MissingVariableError
        A requested variable is in none of the files, or ``z`` is not in the invariant file.
    GridMismatchError
        Files, or the invariant file and the climate files, are on different grids.
    TimeAxisError
        Duplicated or missing months, or variables covering different months.
    UnitsError
        A variable carries units other than those in :data:`ERA5LAND_MONTHLY`.
    """
    paths = [Path(f) for f in files]
    opened, wanted = _open_sources(paths, variables)
    pieces, used, ref_path, ref = _collect(opened, wanted, warn_skipped=variables is None)
    axes = _common_time_axes(wanted, pieces)
    t0 = axes[wanted[0]][0]
    chunks = normalise_chunks(chunks, {"time": t0.size, "lat": ref.sizes["lat"], "lon": ref.sizes["lon"]})
    out = {ERA5LAND_MONTHLY[v].name: _monthly(v, *axes[v], pieces[v][0][1].attrs.get("units"), ref, chunks)
           for v in wanted}
    if invariant is not None:
        used.append(Path(invariant))
        out.update(_open_invariant(Path(invariant), ref, ref_path, chunks))
    ds = xr.Dataset(out)
    ds = ds.assign_coords({dim: ds[dim].assign_attrs(attrs) for dim, attrs in _COORD_ATTRS.items()})
    ds["time"].encoding.update(_TIME_ENCODING)
    ds.attrs = _cube_attrs(paths, used, invariant, wanted)
    return ds


def _open_sources(paths: list[Path], variables: Sequence[str] | None) -> tuple[list, list[str]]:
    """Every file opened lazily (metadata only) and the variables to read; typed errors for bad requests."""
    if not paths:
        raise InputDataError("No ERA5-Land files were given; pass a list of netCDF files (e.g. sorted(glob('*.nc'))).")
    if variables is not None:
        unknown = [v for v in variables if v not in ERA5LAND_MONTHLY]
        if unknown:
            raise InputDataError(f"Unknown ERA5-Land variable(s) {unknown}; supported: {sorted(ERA5LAND_MONTHLY)}.")
    opened = [(p, open_source(p)) for p in paths]
    found = {str(v) for _, ds in opened for v in ds.data_vars}
    wanted = list(variables) if variables is not None else [v for v in ERA5LAND_MONTHLY if v in found]
    missing = [v for v in wanted if v not in found]
    if missing or not wanted:
        raise MissingVariableError(
            f"Variable(s) {missing or sorted(ERA5LAND_MONTHLY)} not found in any of {len(paths)} file(s) "
            f"{[p.name for p in paths]} (they hold {sorted(found)}). Download them, or request only "
            "variables that are there."
        )
    return opened, wanted


def _common_time_axes(wanted: list[str], pieces: dict) -> dict:
    """The time axis of each variable; :class:`TimeAxisError` unless all cover the same months."""
    axes = {v: _time_axis(v, pieces[v]) for v in wanted}
    t0 = axes[wanted[0]][0]
    for v in wanted[1:]:
        if not np.array_equal(axes[v][0], t0):
            t = axes[v][0]
            raise TimeAxisError(
                f"{v!r} covers {str(t[0])[:7]}..{str(t[-1])[:7]} but {wanted[0]!r} covers "
                f"{str(t0[0])[:7]}..{str(t0[-1])[:7]}; give files covering the same months."
            )
    return axes


def _cube_attrs(paths: list[Path], used: list[Path], invariant, wanted: list[str]) -> dict[str, str]:
    """Global attributes of the cube: CF conventions, sources with their sha256, software, history."""
    sources = [{"name": p.name, "sha256": sha256(p)} for p in used]
    grib = any(p.suffix.lower() in GRIB_SUFFIXES for p in used)
    return {
        "Conventions": CONVENTIONS,
        "title": "ERA5-Land monthly climate cube",
        "source": "ERA5-Land monthly averaged reanalysis (ECMWF / Copernicus C3S)",
        "source_files": json.dumps(sources),
        "software_versions": json.dumps(software_versions(*_cube_packages(grib))),
        "history": provenance(
            "open_era5land", files=[p.name for p in paths], invariant=Path(invariant).name if invariant else None, variables=wanted
        ),
    }


def _open_invariant(path: Path, ref: xr.Dataset, ref_path: Path, chunks: Mapping[str, int]) -> dict[str, xr.DataArray]:
    ds = open_source(path)
    if "z" not in ds.data_vars:
        raise MissingVariableError(
            f"Invariant file {path} has no 'z' (geopotential); it holds {sorted(map(str, ds.data_vars))}. "
            "Download the ERA5-Land geopotential invariant."
        )
    if "time" in ds.dims:
        if ds.sizes["time"] != 1:
            raise TimeAxisError(f"Invariant file {path} has {ds.sizes['time']} time steps; expected one.")
        ds = ds.isel(time=0, drop=True)
    _check_grid(ref, ref_path, ds, path, what="Invariant and climate grids differ. ")
    out = {}
    for name, conv in ERA5LAND_INVARIANT.items():
        if name not in ds.data_vars:
            continue
        if not _same_units(ds[name].attrs.get("units"), conv.source_units):
            raise UnitsError(
                f"{name!r} in {path} has units {ds[name].attrs.get('units')!r}; expected {conv.source_units!r}."
            )
        da = ds[name].chunk({"lat": chunks["lat"], "lon": chunks["lon"]})  # dask tasks read tiles
        converted = (conv.convert(da) if conv.convert is not None else da).astype("float32")
        out[conv.name] = _convert(converted, conv, name, ds[name].attrs.get("units"))
    return out
