"""CF metadata from one registry (``variables.toml``) and provenance stamping of outputs."""

from __future__ import annotations

import datetime as _dt
import functools
import tomllib
from importlib import resources
from typing import Any

import xarray as xr

from .exceptions import GlacgridError

__all__ = ["CONVENTIONS", "GRID_MAPPING", "SMB_RATE_UNITS", "SMB_STANDARD_NAME", "registry", "stamp", "stamp_dataset",
           "provenance", "software_versions", "cf_dataset"]


@functools.cache
def registry() -> dict[str, dict[str, Any]]:
    """The variable registry: ``{name: {"units", "long_name", ["standard_name", "cell_methods", "flag_values",
    "flag_meanings"]}}`` (``flag_values`` a list of integers, everything else text)."""
    text = resources.files("glacgrid").joinpath("variables.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _entry(name: str) -> dict[str, str]:
    reg = registry()
    if name not in reg:
        raise GlacgridError(
            f"Variable {name!r} is not in glacgrid's metadata registry (variables.toml). "
            f"Known variables: {', '.join(sorted(reg))}. Add it there with units and long_name."
        )
    return reg[name]


def provenance(step: str, **params: Any) -> str:
    """A one-line history entry: time, glacgrid version, step and its parameters."""
    from . import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"{now} glacgrid {__version__}: {step}({args})"


def stamp(da: xr.DataArray, name: str | None = None, *, history: str | None = None) -> xr.DataArray:
    """Return ``da`` named ``name`` with units, long_name (and standard_name) from the registry.

    ``history`` (see :func:`provenance`) is appended to the array's ``history`` attribute.
    """
    name = name or da.name
    if name is None:
        raise GlacgridError("stamp() needs a name: give the DataArray a name or pass name=.")
    attrs = dict(da.attrs)
    attrs.update(_entry(str(name)))
    if history:
        attrs["history"] = (attrs["history"] + "\n" + history) if attrs.get("history") else history
    return da.rename(name).assign_attrs(attrs)


def stamp_dataset(ds: xr.Dataset, *, history: str | None = None) -> xr.Dataset:
    """Stamp every data variable of ``ds`` that the registry knows; others must already have units."""
    out = ds.copy()
    for name in list(out.data_vars):
        if str(name) in registry():
            out[name] = stamp(out[name], str(name))
        elif "units" not in out[name].attrs:
            raise GlacgridError(
                f"Output variable {name!r} has no units and is not in variables.toml; "
                "register it there before writing it."
            )
    if history:
        out.attrs["history"] = (out.attrs["history"] + "\n" + history) if out.attrs.get("history") else history
    return out


def software_versions(*packages: str) -> dict[str, str]:
    """Versions of glacgrid, numpy and ``packages`` (distribution or import names), for provenance.

    Recorded in every artifact whose bytes depend on them: a cube's ``software_versions`` attribute, a
    model artifact's ``versions``. A package that is not installed is listed as ``"not installed"``.
    """
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np

    from . import __version__

    out = {"glacgrid": __version__, "numpy": np.__version__}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            try:
                out[name] = str(importlib.import_module(name).__version__)
            except (ImportError, AttributeError):
                out[name] = "not installed"
    return out


#: The CF version every store and export of glacgrid declares (global ``Conventions``).
CONVENTIONS = "CF-1.10"
#: Name of the CF grid-mapping variable (rioxarray's and GDAL's default) every gridded variable refers to.
GRID_MAPPING = "spatial_ref"
#: Standard name of the annual SMB (CF: liquid water equivalent, canonical units m s-1).
SMB_STANDARD_NAME = "land_ice_lwe_surface_specific_mass_balance_rate"
#: Units of the SMB variables in a CF store: one value per hydrological year, metres of water equivalent.
SMB_RATE_UNITS = "m yr-1"
# the variables holding one year's SMB (m w.e.): stored in CF as a rate per (hydrological) year; those
# with a standard name get SMB_STANDARD_NAME (a spread across ensemble members has none)
_SMB_AMOUNTS = {"smb": True, "smb_glacier": True, "smb_observed": True, "smb_spread": False,
                "smb_glacier_spread": False}
_SMB_COMMENT = ("m w.e. a-1: metres of liquid water equivalent per hydrological year; each value is the "
                "balance of the one hydrological year it is labelled with ('yr' is the UDUNITS year, the "
                "CF way to write a-1)")
_YEAR_ATTRS = {"long_name": "Hydrological year, labelled by the calendar year it ends in", "units": "1"}
_GEOGRAPHIC = ("lat", "lon")
_PROJECTED = ("y", "x")


def _grid_mapping(crs: Any) -> xr.Variable:
    """The CF grid-mapping variable of ``crs``: pyproj's CF attributes plus the WKT under ``spatial_ref``
    (the attribute GDAL and rioxarray read)."""
    import numpy as np
    from pyproj import CRS

    try:
        c = CRS.from_user_input(crs)
    except Exception as err:  # noqa: BLE001 - pyproj raises several types for an unknown CRS
        raise GlacgridError(
            f"Cannot read the coordinate reference system {str(crs)[:80]!r} ({err}); expected WKT, an EPSG "
            "code ('EPSG:32632') or a PROJ string. Fix the store's 'crs' attribute or the [grid] crs setting."
        ) from err
    attrs = {k: v for k, v in c.to_cf().items() if v is not None}
    attrs["spatial_ref"] = attrs.get("crs_wkt", c.to_wkt())
    attrs["long_name"] = f"Coordinate reference system ({c.name})"
    return xr.Variable((), np.int32(0), attrs)


def _hydro_time(years, start_month: int) -> tuple[Any, Any]:
    """``time`` (middle of each hydrological year) and its ``time_bnds`` (first day of the year, first
    day of the next) as datetime64 arrays."""
    import numpy as np

    y = np.asarray(years, dtype="int64")
    first = y - 1 if start_month > 1 else y  # year Y starts in start_month of Y-1 (January: of Y)
    lo = np.array([np.datetime64(f"{a:04d}-{start_month:02d}-01", "ns") for a in first])
    hi = np.array([np.datetime64(f"{a + 1:04d}-{start_month:02d}-01", "ns") for a in first])
    return lo + (hi - lo) // 2, np.stack([lo, hi], axis=1)


def _fixed(column) -> Any:
    """A text column as fixed-width numpy unicode (missing -> ""): Zarr stores it with a size dask can chunk."""
    import numpy as np

    values = column.fillna("").astype(str).to_numpy()
    return values.astype(f"U{max(1, max((len(v) for v in values), default=1))}")


def cf_dataset(ds: xr.Dataset, *, title: str, crs: Any = None, glaciers: Any = None, year_start_month: int = 10,
               history: str | None = None) -> xr.Dataset:
    """``ds`` made CF-1.10: what every store glacgrid writes passes through before its template is written.

    Sets the global ``Conventions``, ``title`` and ``history``; adds the grid-mapping variable
    :data:`GRID_MAPPING` (``spatial_ref``) and points every variable on the ``(y, x)`` (or ``(lat, lon)``)
    grid at it with ``grid_mapping``, so that ``ds[name].rio.crs`` is set; gives the ``year`` axis (the
    hydrological year, an integer label) an auxiliary CF time coordinate ``time(year)`` with bounds
    ``time_bnds``; labels the glaciers with ``rgi_id`` and ``glacier_name`` coordinates; stores the annual
    SMB variables as :data:`SMB_RATE_UNITS` with :data:`SMB_STANDARD_NAME`; writes the flag variables
    (registry entries with ``flag_meanings``) with ``flag_values`` of their own dtype.

    Parameters
    ----------
    ds : xarray.Dataset
        The store's content (lazy or not); data are not touched, only attributes and coordinates.
    title : str
        The global ``title``.
    crs : object, optional
        The CRS of the ``(y, x)`` grid (WKT, ``"EPSG:..."``); default: that of an existing ``spatial_ref``,
        else ``ds.attrs["crs"]``. A ``(lat, lon)`` grid is WGS 84 (EPSG:4326) unless given.
    glaciers : pandas.DataFrame, optional
        Glacier index -> ``rgi_id`` (and ``name``), e.g. ``Prepared.table``; used when ``ds`` has a
        ``glacier`` dimension and no ``rgi_id`` coordinate yet.
    year_start_month : int
        First calendar month of the hydrological year (10 in the north, 4 in the south): the time bounds.
    history : str, optional
        Appended to the global ``history`` (default: a :func:`provenance` line of this call).

    Returns
    -------
    xarray.Dataset
        A copy; the input is not modified.

    Raises
    ------
    GlacgridError
        When the CRS cannot be read.
    """
    import numpy as np

    out = ds.copy()
    reg = registry()
    for name, var in out.variables.items():
        entry = reg.get(str(name), {})
        if str(name) in _SMB_AMOUNTS and var.attrs.get("units") in ("m", SMB_RATE_UNITS):
            var.attrs["units"] = SMB_RATE_UNITS
            if _SMB_AMOUNTS[str(name)]:
                var.attrs["standard_name"] = SMB_STANDARD_NAME
            var.attrs["comment"] = _SMB_COMMENT
        meanings = var.attrs.get("flag_meanings", entry.get("flag_meanings"))
        if meanings is not None and var.dtype.kind in "iu":
            values = var.attrs.get("flag_values", entry.get("flag_values", list(range(len(str(meanings).split())))))
            var.attrs["flag_values"] = np.asarray(values, dtype=var.dtype)
            var.attrs["flag_meanings"] = str(meanings)
    if "glacier" in out.dims:
        if "glacier" in out.coords:
            out["glacier"].attrs.update(long_name="Glacier index (1..N; 0 is no glacier in the glacier_id raster)")
        if glaciers is not None and "rgi_id" not in out.coords and "glacier" in out.coords:
            tab = glaciers.reindex(out["glacier"].values)  # padding slots (no glacier) get ""
            out = out.assign_coords(rgi_id=("glacier", _fixed(tab["rgi_id"]),
                                            {"long_name": "Glacier outline id (e.g. RGI id)"}))
            if "name" in glaciers:
                names = _fixed(tab["name"])
                out = out.assign_coords(glacier_name=("glacier", names,
                                                      {"long_name": "Glacier name (empty when the outlines have none)"}))
    if "year" in out.dims and "year" in out.coords and "time" not in out.variables:
        mid, bnds = _hydro_time(out["year"].values, int(year_start_month))
        out["year"].attrs.update(_YEAR_ATTRS)
        enc = {"units": "days since 1850-01-01", "calendar": "proleptic_gregorian", "dtype": "float64"}
        out = out.assign_coords(
            time=("year", mid, {"standard_name": "time", "long_name": "Middle of the hydrological year",
                                "bounds": "time_bnds"}),
            time_bnds=(("year", "bnds"), bnds))
        out["time"].encoding.update(enc)
        out["time_bnds"].encoding.update(enc)
    if "member" in out.dims and "member" in out.coords:
        out["member"].attrs.setdefault("long_name", "Ensemble member index")
    grid = _PROJECTED if set(_PROJECTED) <= set(out.dims) else _GEOGRAPHIC if set(_GEOGRAPHIC) <= set(out.dims) else None
    if grid is not None:
        if crs is None and GRID_MAPPING in out.variables:  # a CF store read back: its grid mapping stays
            crs = out[GRID_MAPPING].attrs.get("crs_wkt") or out[GRID_MAPPING].attrs.get("spatial_ref")
        crs = crs if crs is not None else out.attrs.get("crs", "EPSG:4326" if grid == _GEOGRAPHIC else None)
        if crs is None:
            raise GlacgridError(
                f"cf_dataset got a dataset on the {grid} grid without a CRS (no crs= and no 'crs' attribute); "
                "pass crs= (the grid's CRS, e.g. TargetGrid.crs) so every gridded variable gets a grid mapping.")
        out = out.assign_coords({GRID_MAPPING: _grid_mapping(crs)})
        for name, var in out.variables.items():
            if set(grid) <= set(var.dims) and name not in grid:
                var.attrs["grid_mapping"] = GRID_MAPPING
    out.attrs.update(Conventions=CONVENTIONS, title=title)
    line = history or provenance("cf_dataset", title=title)
    out.attrs["history"] = (out.attrs["history"] + "\n" + line) if out.attrs.get("history") else line
    return out
