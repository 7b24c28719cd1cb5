"""Write netCDF files that look like ERA5-Land monthly downloads from the Copernicus CDS.

Two layouts are reproduced:

* ``layout="time"``: the legacy CDS / ``grib_to_netcdf`` files (as in
  ``shared/data/hef/climate/sel_era5_land_*``): dimension ``time`` in ``hours since 1900-01-01``
  (int32), float32 ``latitude`` (descending) and ``longitude``, int16 packed variables.
* ``layout="valid_time"``: the current CDS files: dimension ``valid_time`` in
  ``seconds since 1970-01-01`` (int64), float64 coordinates, extra coordinates ``number`` and
  ``expver`` that carry no information.

Both write netCDF; ``fmt="grib"`` writes GRIB edition 1 instead (ECMWF parameter table 128, 16 bits
per value, as CDS GRIB downloads), read back with cfgrib.

Values follow the ERA5-Land conventions: ``t2m`` in K, ``tp``/``sf``/``smlt`` as the monthly mean of
the daily accumulation in metres of water **per day** (labelled ``"m"``), radiation and heat fluxes as
J m-2 **per day**, ``z`` geopotential in m2 s-2. :func:`era5land_fields` builds plausible seeded
fields for all 14 monthly variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..units import G0

__all__ = ["ATTRS", "GRIB_PARAM", "era5land_fields", "write_era5land_monthly", "pack_int16"]

_FILL = np.int16(-32767)

#: Attributes of each variable as the CDS netCDF files carry them.
ATTRS = {
    "t2m": {"units": "K", "long_name": "2 metre temperature"},
    "tp": {"units": "m", "long_name": "Total precipitation"},
    "sf": {"units": "m of water equivalent", "long_name": "Snowfall"},
    "smlt": {"units": "m of water equivalent", "long_name": "Snowmelt"},
    "sd": {"units": "m of water equivalent", "long_name": "Snow depth"},
    "rsn": {"units": "kg m**-3", "long_name": "Snow density"},
    "tsn": {"units": "K", "long_name": "Temperature of snow layer"},
    "fal": {"units": "(0 - 1)", "long_name": "Forecast albedo"},
    "sp": {"units": "Pa", "long_name": "Surface pressure", "standard_name": "surface_air_pressure"},
    "ssr": {"units": "J m**-2", "long_name": "Surface net short-wave (solar) radiation"},
    "ssrd": {"units": "J m**-2", "long_name": "Surface short-wave (solar) radiation downwards"},
    "str": {"units": "J m**-2", "long_name": "Surface net long-wave (thermal) radiation"},
    "sshf": {"units": "J m**-2", "long_name": "Surface sensible heat flux"},
    "slhf": {"units": "J m**-2", "long_name": "Surface latent heat flux"},
    "z": {"units": "m**2 s**-2", "long_name": "Geopotential", "standard_name": "geopotential"},
    "lsm": {"units": "(0 - 1)", "long_name": "Land-sea mask", "standard_name": "land_binary_mask"},
}
_ATTRS = ATTRS
#: GRIB edition 1 parameter numbers (ECMWF table 128) of the same variables.
GRIB_PARAM = {"t2m": 167, "tp": 228, "sf": 144, "smlt": 45, "sd": 141, "rsn": 33, "tsn": 238, "fal": 243,
              "sp": 134, "ssr": 176, "ssrd": 169, "str": 177, "sshf": 146, "slhf": 147, "z": 129, "lsm": 172}
#: The 14 monthly variables, in the order of the issue.
MONTHLY = ("t2m", "tp", "sf", "smlt", "sd", "rsn", "tsn", "fal", "sp", "ssr", "ssrd", "str", "sshf", "slhf")


def era5land_fields(lat, lon, time, *, seed: int = 0, variables: Sequence[str] = MONTHLY) -> dict[str, np.ndarray]:
    """Plausible seeded monthly fields ``(time, lat, lon)`` in ERA5-Land source units, plus ``z``, ``lsm``.

    Accumulations are per-day amounts (``tp`` 0..10 mm/day as metres, radiation in J m-2 per day),
    ``z`` is 500..3500 m of geopotential height times g0. Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    shape = (len(time), len(lat), len(lon))
    ranges = {"t2m": (255.0, 290.0), "tp": (0.0, 0.01), "sf": (0.0, 0.005), "smlt": (0.0, 0.004),
              "sd": (0.0, 2.0), "rsn": (100.0, 450.0), "tsn": (240.0, 273.15), "fal": (0.1, 0.9),
              "sp": (65000.0, 95000.0), "ssr": (0.0, 2.0e7), "ssrd": (1.0e6, 2.8e7), "str": (-9.0e6, -1.0e6),
              "sshf": (-6.0e6, 3.0e6), "slhf": (-1.0e7, 1.0e6)}
    out = {v: rng.uniform(*ranges[v], shape) for v in variables}
    out["z"] = rng.uniform(500.0, 3500.0, shape[1:]) * G0  # height -> geopotential
    out["lsm"] = rng.uniform(0.0, 1.0, shape[1:])
    return out


def pack_int16(values: np.ndarray) -> tuple[float, float]:
    """``(scale_factor, add_offset)`` that pack ``values`` into int16 as ``grib_to_netcdf`` does.

    The finite range is spread over -32766..32767 (-32767 is the fill value). A constant field gets
    ``scale_factor=1`` and ``add_offset`` equal to the constant, so it decodes exactly.
    """
    finite = np.asarray(values, dtype="float64")
    finite = finite[np.isfinite(finite)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if vmax == vmin:
        return 1.0, vmin
    scale = (vmax - vmin) / (2**16 - 3)
    return scale, vmin + 32766 * scale


def _time_coord(time: pd.DatetimeIndex, layout: str) -> xr.Variable:
    if layout == "time":
        hours = ((time - pd.Timestamp("1900-01-01")) // pd.Timedelta(hours=1)).to_numpy().astype("int32")
        return xr.Variable("time", hours, {"long_name": "time", "units": "hours since 1900-01-01", "calendar": "gregorian"})
    secs = ((time - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)).to_numpy().astype("int64")
    attrs = {"long_name": "time", "standard_name": "time", "units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian"}
    return xr.Variable("valid_time", secs, attrs)


def _dataset(data: dict, lat, lon, time, layout: str) -> xr.Dataset:
    """One file's content: ``data`` maps name -> array (time, lat, lon); times are month starts."""
    tdim = "time" if layout == "time" else "valid_time"
    cdtype = "float32" if layout == "time" else "float64"
    coords = {
        tdim: _time_coord(pd.DatetimeIndex(time), layout),
        "latitude": ("latitude", np.asarray(lat, cdtype), {"units": "degrees_north", "long_name": "latitude"}),
        "longitude": ("longitude", np.asarray(lon, cdtype), {"units": "degrees_east", "long_name": "longitude"}),
    }
    if layout == "valid_time":
        coords["latitude"][2]["standard_name"] = "latitude"
        coords["longitude"][2]["standard_name"] = "longitude"
        coords["number"] = ((), np.int64(0), {"long_name": "ensemble member numerical id", "units": "1"})
        coords["expver"] = (tdim, np.full(len(time), "0001", dtype=object), {"long_name": "experiment version"})
    dvars = {k: ((tdim, "latitude", "longitude"), np.asarray(v), dict(ATTRS[k])) for k, v in data.items()}
    if layout == "time":
        attrs = {"Conventions": "CF-1.6", "history": "glacgrid.testing: ERA5-Land-like file (grib_to_netcdf layout)"}
    else:
        attrs = {
            "GRIB_centre": "ecmf",
            "institution": "European Centre for Medium-Range Weather Forecasts",
            "Conventions": "CF-1.7",
            "history": "glacgrid.testing: ERA5-Land-like file (CDS 2024 layout)",
        }
    return xr.Dataset(dvars, coords=coords, attrs=attrs)


def _write(ds: xr.Dataset, path: Path, packing: dict | None) -> Path:
    encoding = {}
    for name in ds.data_vars:
        if packing is not None:
            scale, offset = packing[name]
            encoding[name] = {"dtype": "int16", "scale_factor": scale, "add_offset": offset,
                              "_FillValue": _FILL, "missing_value": _FILL}
        else:
            encoding[name] = {"dtype": "float32", "_FillValue": np.float32(np.nan)}
    if "valid_time" in ds.dims:
        encoding.update({k: {"zlib": True, "complevel": 1, **encoding[k]} for k in ds.data_vars})
    for name in ("latitude", "longitude"):
        encoding[name] = {"_FillValue": None}
    ds.to_netcdf(path, format="NETCDF4", engine="netcdf4", encoding=encoding)
    return path


def _split_tokens(split: str, fmt: str, layout: str) -> set[str]:
    """The parts of ``split`` (``"variable+year"`` -> {"variable", "year"}), with ``fmt`` and ``layout`` checked."""
    if fmt not in ("netcdf", "grib"):
        raise ValueError(f"fmt must be 'netcdf' or 'grib', got {fmt!r}")
    if layout not in ("time", "valid_time"):
        raise ValueError(f"layout must be 'time' or 'valid_time', got {layout!r}")
    tokens = set(split.split("+"))
    if not tokens <= {"single", "year", "month", "variable"} or ("single" in tokens and len(tokens) > 1):
        raise ValueError(f"split must be 'single', 'year', 'month', 'variable' or a '+' combination; got {split!r}")
    return tokens


def _era5_order(lat: np.ndarray, lon: np.ndarray, fields: dict, inv: dict, lon_360: bool):
    """Coordinates and ``(time, lat, lon)`` fields in ERA5's stored order: latitude descending, longitude
    ascending in the stored convention (0..360 with ``lon_360``, else -180..180)."""
    ilat = np.argsort(-lat, kind="stable")
    lon = lon % 360.0 if lon_360 else (lon + 180.0) % 360.0 - 180.0
    ilon = np.argsort(lon, kind="stable")
    order = lambda d: {k: v[:, ilat][:, :, ilon] for k, v in d.items()}  # noqa: E731
    return lat[ilat], lon[ilon], order(fields), order(inv)


def _time_groups(time: pd.DatetimeIndex, tokens: set[str]) -> list[tuple[str, np.ndarray]]:
    """(file label, month selection) of each file of a split: per year, per month or one for all."""
    if "year" in tokens:
        return [(str(y), np.asarray(time.year == y)) for y in sorted(set(time.year))]
    if "month" in tokens:
        return [(t.strftime("%Y-%m"), np.asarray(time == t)) for t in time]
    return [(f"{time[0]:%Y%m}-{time[-1]:%Y%m}", np.ones(len(time), bool))]


def write_era5land_monthly(
    directory: str | os.PathLike,
    *,
    lat: Sequence[float],
    lon: Sequence[float],
    time: Sequence,
    t2m: np.ndarray,
    tp: np.ndarray,
    z: np.ndarray,
    lsm: np.ndarray | None = None,
    layout: str = "time",
    split: str = "year",
    packed: bool = True,
    lon_360: bool = False,
    extra: Mapping[str, np.ndarray] | None = None,
    fmt: str = "netcdf",
) -> dict:
    """Write ERA5-Land-like monthly files and an invariant file into ``directory``.

    Parameters
    ----------
    directory : path
        Output folder (created if needed).
    lat, lon : 1-D arrays
        Cell-centre latitudes (any order; files store them descending, like ERA5) and longitudes
        (degrees east, -180..180 or 0..360).
    time : sequence of datetimes
        Month starts.
    t2m : array (time, lat, lon)
        2 m temperature (K).
    tp : array (time, lat, lon)
        Total precipitation, monthly mean of the daily accumulation (m of water per day).
    z : array (lat, lon)
        Surface geopotential (m2 s-2).
    lsm : array (lat, lon), optional
        Land-sea mask fraction (1); default all land.
    layout : {"time", "valid_time"}
        Legacy ``grib_to_netcdf`` layout or the current CDS layout.
    split : str
        ``"single"`` (one file), ``"year"``, ``"month"``, ``"variable"``, or a combination such as
        ``"variable+year"``.
    packed : bool
        Pack as int16 with ``scale_factor``/``add_offset`` (computed over the whole array of each
        variable, so every split decodes to the same values); otherwise float32.
    lon_360 : bool
        Store longitudes as 0..360 (sorted ascending), as global ERA5 files do.
    extra : mapping, optional
        More monthly variables ``name -> (time, lat, lon)`` array in source units (names of
        :data:`ATTRS`, e.g. from :func:`era5land_fields`), written like ``t2m`` and ``tp``.
    fmt : {"netcdf", "grib"}
        File format; GRIB needs a regular grid (constant spacing) and ignores ``layout``/``packed``.

    Returns
    -------
    dict
        ``{"files": [Path, ...], "invariant": Path}``.
    """
    tokens = _split_tokens(split, fmt, layout)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    time = pd.DatetimeIndex(time)
    lat, lon = np.asarray(lat, "float64"), np.asarray(lon, "float64")
    fields = {"t2m": np.asarray(t2m, "float64"), "tp": np.asarray(tp, "float64")}
    fields.update({k: np.asarray(v, "float64") for k, v in (extra or {}).items()})
    inv = {"z": np.asarray(z, "float64")[None], "lsm": (np.ones_like(z, dtype="float64") if lsm is None else np.asarray(lsm, "float64"))[None]}

    for name, arr in {**fields, **inv}.items():
        want = (time.size if name in fields else 1, lat.size, lon.size)
        if arr.shape != want:
            raise ValueError(f"{name} has shape {arr.shape}; expected {want} from time, lat and lon.")

    lat, lon, fields, inv = _era5_order(lat, lon, fields, inv, lon_360)
    packing = {k: pack_int16(v) for k, v in {**fields, **inv}.items()} if packed else None
    groups = _time_groups(time, tokens)
    names = [[k] for k in fields] if "variable" in tokens else [list(fields)]

    files = []
    suffix = ".grib" if fmt == "grib" else ".nc"
    for varnames in names:
        for label, sel in groups:
            path = out / f"era5land_monthly_{'_'.join(varnames)}_{label}{suffix}"
            data = {k: fields[k][sel] for k in varnames}
            if fmt == "grib":
                files.append(_write_grib(data, lat, lon, time[sel], path))
            else:
                files.append(_write(_dataset(data, lat, lon, time[sel], layout), path, packing))
    if fmt == "grib":
        invariant = _write_grib(inv, lat, lon, time[:1], out / "era5land_invariant.grib")
    else:
        invariant = _write(_dataset(inv, lat, lon, time[:1], layout), out / "era5land_invariant.nc", packing)
    return {"files": files, "invariant": invariant}


def _write_grib(data: dict, lat: np.ndarray, lon: np.ndarray, time: pd.DatetimeIndex, path: Path) -> Path:
    """GRIB 1 messages, one per variable and month, on the regular grid ``lat`` (descending) x ``lon``."""
    import pyproj  # noqa: F401  -- pyproj before eccodes: the other order crashes Python at exit

    import eccodes

    def step(v: np.ndarray) -> float:
        d = np.diff(v)
        if v.size > 1 and not np.allclose(d, d[0], atol=1e-6):
            raise ValueError("GRIB needs a regular grid: constant latitude and longitude spacing")
        return float(abs(d[0])) if v.size > 1 else 0.1

    keys = {"Ni": lon.size, "Nj": lat.size, "latitudeOfFirstGridPointInDegrees": lat[0],
            "latitudeOfLastGridPointInDegrees": lat[-1], "longitudeOfFirstGridPointInDegrees": lon[0],
            "longitudeOfLastGridPointInDegrees": lon[-1], "iDirectionIncrementInDegrees": step(lon),
            "jDirectionIncrementInDegrees": step(lat), "jScansPositively": 0}
    with open(path, "wb") as fh:
        for name, arr in data.items():
            for i, t in enumerate(time):
                h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib1")
                try:
                    eccodes.codes_set(h, "paramId", GRIB_PARAM[name])
                    for k, v in keys.items():
                        eccodes.codes_set(h, k, v)
                    eccodes.codes_set(h, "dataDate", int(t.strftime("%Y%m%d")))
                    eccodes.codes_set(h, "dataTime", 0)
                    eccodes.codes_set(h, "bitsPerValue", 16)
                    eccodes.codes_set_values(h, np.ascontiguousarray(arr[i], dtype="float64").ravel())
                    eccodes.codes_write(h, fh)
                finally:
                    eccodes.codes_release(h)
    return path
