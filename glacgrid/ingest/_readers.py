"""Open one ERA5-Land file (netCDF or GRIB) lazily as ``(time, lat, lon)`` with canonical coordinates.

Pure file handling: no unit conversion, no checks across files (see :mod:`._open`).

Truncation: :func:`check_complete` compares a file's size with the size its own header implies
(netCDF-3: the data offsets and record count of the header; netCDF-4/HDF5: the end-of-file address
of the superblock; GRIB: the declared length of every message), so a file cut short by a download
or a copy is refused with the bytes expected and received, before any of its values is read.
netCDF-C returns zeros (not an error) past the end of a cut classic file, and a cut coordinate
would otherwise be misdiagnosed (duplicated longitudes, sub-monthly times, a grid mismatch).
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ..exceptions import GridMismatchError, InputDataError, TimeAxisError, import_optional

__all__ = ["GRIB_SUFFIXES", "SOURCE_INDEX", "check_complete", "is_grib", "is_hdf5", "open_source", "sha256"]

#: File name endings read with cfgrib (others must be netCDF). Files starting with ``GRIB`` are too.
GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grib2", ".grb1", ".grb2")
#: Encoding key of the ``lat``/``lon`` coordinates of :func:`open_source`: the file index of each value.
SOURCE_INDEX = "glacgrid_source_index"
# coordinates that carry no information for monthly means (ensemble member, level, step, ...)
_RENAME = {"valid_time": "time", "latitude": "lat", "longitude": "lon"}


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 checksum of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_grib(path: Path) -> bool:
    """Whether ``path`` is GRIB: by its suffix, or by the ``GRIB`` magic bytes at its start."""
    if path.suffix.lower() in GRIB_SUFFIXES:
        return True
    with open(path, "rb") as fh:
        return fh.read(4) == b"GRIB"


def _degrees(values: np.ndarray) -> np.ndarray:
    """Coordinates as float64: float32 ones by their shortest decimal form (47.1f -> 47.1)."""
    if values.dtype == np.float32:
        return values.astype(str).astype("float64")
    return np.round(values.astype("float64"), 9)


def _unreadable(path: Path, err: Exception) -> InputDataError:
    return InputDataError(
        f"Cannot read {path}: {type(err).__name__}: {err}. The file is unreadable, truncated or "
        "not netCDF/GRIB; download it again."
    )


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file (netCDF-4), by its signature at offset 0."""
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


# ----------------------------------------------------------------------------- truncation checks
#: Bytes per value of the netCDF-3 external types (CDF-1/2: 1..6; CDF-5 adds 7..11).
_NC3_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
_NC3_STREAMING = (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)  # numrecs of a file still being written
_NC3_FORMATS = {1: "classic", 2: "64-bit offset", 5: "CDF-5"}


class _CutHeader(Exception):
    """The file ends inside its own header."""


class _Nc3Header:
    """Sequential big-endian reads of a netCDF-3 header (classic, 64-bit offset or CDF-5)."""

    def __init__(self, fh, version: int):
        self.fh = fh
        self.count = 8 if version == 5 else 4  # NON_NEG: element counts, dimension lengths, vsize
        self.offset = 4 if version == 1 else 8  # OFFSET: a variable's begin

    def raw(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) < n:
            raise _CutHeader
        return data

    def int(self, size: int = 4) -> int:
        return int.from_bytes(self.raw(size), "big")

    def name(self) -> str:
        n = self.int(self.count)
        return self.raw(n + (-n % 4))[:n].decode("utf-8", "replace")

    def skip_attributes(self) -> None:
        self.int()  # NC_ATTRIBUTE tag, or 0 when absent
        for _ in range(self.int(self.count)):
            self.name()
            kind, n = self.int(), self.int(self.count)
            size = n * _NC3_TYPE_SIZE.get(kind, 1)
            self.fh.seek(size + (-size % 4), os.SEEK_CUR)


def _nc3_extents(fh, version: int) -> list[tuple[str, int]]:
    """(variable, byte where its data ends) of every variable of a netCDF-3 file, by its header.

    The record size follows netCDF-C (each record variable's slab padded to 4 bytes, unless there is
    only one); a variable's final padding is not required, so no valid file is refused.
    """
    head = _Nc3Header(fh, version)
    numrecs = head.int(head.count)
    head.int()  # NC_DIMENSION tag
    dims = []
    for _ in range(head.int(head.count)):
        head.name()
        dims.append(head.int(head.count))  # 0: the record (unlimited) dimension
    head.skip_attributes()
    head.int()  # NC_VARIABLE tag
    variables = []
    for _ in range(head.int(head.count)):
        name = head.name()
        dimids = [head.int(head.count) for _ in range(head.int(head.count))]
        head.skip_attributes()
        kind = head.int()
        head.int(head.count)  # vsize: recomputed (it saturates at 2**32 - 1 for large variables)
        begin = head.int(head.offset)
        record = bool(dimids) and dims[dimids[0]] == 0
        shape = [dims[d] for d in dimids[1:]] if record else [dims[d] for d in dimids]
        variables.append((name, record, begin, int(np.prod(shape, dtype=np.int64)) * _NC3_TYPE_SIZE.get(kind, 1)))
    records = [size for _, rec, _, size in variables if rec]
    recsize = records[0] if len(records) == 1 else sum(s + (-s % 4) for s in records)
    out = [("the header", fh.tell())]
    for name, record, begin, size in variables:
        if not record:
            out.append((f"variable {name!r}", begin + size))
        elif numrecs and numrecs not in _NC3_STREAMING:
            out.append((f"variable {name!r} (record {numrecs} of {numrecs})", begin + (numrecs - 1) * recsize + size))
    return out


def _hdf5_extents(fh) -> list[tuple[str, int]]:
    """The end-of-file address an HDF5 superblock (versions 0 to 3, at byte 0) records."""
    head = fh.read(64)
    if len(head) < 12:
        raise _CutHeader
    version = head[8]
    if version in (0, 1):
        size = head[13]
        base = 24 + (4 if version == 1 else 0)
    else:
        size, base = head[9], 12
    fmt = {4: "<I", 8: "<Q"}.get(size)
    if fmt is None:
        return []  # an unusual address size: HDF5 itself will tell
    need = base + 3 * size
    if len(head) < need:
        raise _CutHeader
    base_address = struct.unpack(fmt, head[base:base + size])[0]
    eof = struct.unpack(fmt, head[base + 2 * size:base + 3 * size])[0]
    return [("the file's data (end-of-file address of the superblock)", base_address + eof)]


def _grib_extents(fh, size: int) -> list[tuple[str, int]]:
    """(message, byte where it ends by its declared length) of every GRIB message; padding is skipped."""
    pos, out = 0, []
    while pos < size:
        fh.seek(pos)
        block = fh.read(1 << 16)
        found = block.find(b"GRIB")
        if found < 0:
            if len(block) < 1 << 16:
                break  # padding at the end of the file
            pos += len(block) - 3
            continue
        pos += found
        fh.seek(pos)
        head = fh.read(16)
        label = f"GRIB message {len(out) + 1} (from byte {pos:,})"
        if len(head) < 16:
            return [*out, (label, pos + 16)]
        if head[7] == 1:
            length = int.from_bytes(head[4:7], "big")
            if length & 0x800000:  # ECMWF's encoding of messages over 8 MiB: leave it to eccodes
                return out
        elif head[7] == 2:
            length = int.from_bytes(head[8:16], "big")
        else:
            return out  # not a message header: eccodes reports it
        out.append((label, pos + length))
        pos += max(length, 4)
    return out


def check_complete(path: str | os.PathLike) -> None:
    """Refuse a netCDF-3, netCDF-4 (HDF5) or GRIB file that is shorter than its header says.

    Reads only the header (netCDF-3, HDF5) or the 16-byte header of each GRIB message, not the data.
    Files of other formats pass unchecked (the reader reports them).

    Parameters
    ----------
    path : path
        The file.

    Raises
    ------
    InputDataError
        The file is cut short: the message gives the bytes expected and received, and which
        variable or message the missing bytes belong to.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(4)
        try:
            if magic[:3] == b"CDF" and magic[3] in _NC3_FORMATS:
                kind = f"netCDF-3 ({_NC3_FORMATS[magic[3]]})"
                extents = _nc3_extents(fh, magic[3])
            elif magic == b"\x89HDF":
                kind = "netCDF-4/HDF5"
                fh.seek(0)
                extents = _hdf5_extents(fh)
            elif magic == b"GRIB" or path.suffix.lower() in GRIB_SUFFIXES:
                kind = "GRIB"
                extents = _grib_extents(fh, size)
            else:
                return
        except _CutHeader:
            raise InputDataError(
                f"{path} is not a complete {kind} file: it is truncated, ending ({size:,} bytes) inside its own "
                "header. The download or copy was cut short; download it again."
            ) from None
    cut = [label for label, stop in extents if stop > size]
    if cut:
        end = max(stop for _, stop in extents)
        listed = ", ".join(cut[:4]) + (f" and {len(cut) - 4} more" if len(cut) > 4 else "")
        raise InputDataError(
            f"{path} is not a complete {kind} file: it is truncated. By its header it holds {end:,} bytes, but "
            f"the file has {size:,} ({end - size:,} missing; cut: {listed}). The download or copy was cut short "
            "(readers return zeros or garbage past the end); download it again."
        )


def _open_netcdf(path: Path) -> xr.Dataset:
    try:
        ds = xr.open_dataset(path, engine="netcdf4", decode_timedelta=False, cache=False)
        for var in ds.variables.values():  # read each variable's last value: fails early on truncation
            if var.size:
                var[(-1,) * var.ndim].values
        return ds
    except (OSError, ValueError, RuntimeError, IndexError) as err:
        raise _unreadable(path, err) from err


def _check_grib_messages(path: Path, eccodes) -> None:
    """Walk and decode every GRIB message: eccodes fails on a truncated or corrupted one."""
    total, size = 0, path.stat().st_size
    try:
        with open(path, "rb") as fh:
            while True:
                handle = eccodes.codes_grib_new_from_file(fh)
                if handle is None:
                    break
                try:
                    total += int(eccodes.codes_get(handle, "totalLength"))
                    eccodes.codes_get_values(handle)  # decodes: fails on a corrupted message
                finally:
                    eccodes.codes_release(handle)
        # GRIB 1 messages may be padded (to 120 bytes), so the lengths need not add up to the size
        problem = "" if total else f"no GRIB message in its {size} bytes"
    except Exception as err:  # eccodes raises its own classes (PrematureEndOfFileError, ...)
        problem = f"{type(err).__name__}: {err}"
    if problem:
        raise InputDataError(
            f"{path} is not a complete GRIB file ({problem}): truncated or corrupted. Download it again."
        )


def _open_grib(path: Path) -> xr.Dataset:
    import pyproj  # noqa: F401  -- must be loaded before eccodes: the other order crashes Python at exit

    eccodes = import_optional("eccodes", "grib")
    cfgrib = import_optional("cfgrib", "grib")
    try:
        _check_grib_messages(path, eccodes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # cfgrib's own xr.merge defaults
            try:  # one pass over the file when every field shares one hypercube (the usual case)
                parts = [xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""}, cache=False)]
            except cfgrib.dataset.DatasetBuildError:  # e.g. levels or steps that differ: one per variable
                parts = cfgrib.open_datasets(str(path), backend_kwargs={"indexpath": ""})
    except InputDataError:
        raise
    except Exception as err:  # eccodes raises its own error classes (GribInternalError, ...)
        raise _unreadable(path, err) from err
    if not parts:
        raise InputDataError(f"{path} holds no GRIB field cfgrib can read; download it again.")
    normed = []
    for ds in parts:
        for dim in ("step", "number"):
            if dim in ds.dims and ds.sizes[dim] > 1:
                raise TimeAxisError(
                    f"{path} has {ds.sizes[dim]} values of '{dim}' for {sorted(map(str, ds.data_vars))}: it is "
                    "not an ERA5-Land monthly-means file (forecast steps or ensemble members). Download "
                    "'monthly_averaged_reanalysis' of reanalysis-era5-land-monthly-means."
                )
        ds = ds.squeeze([d for d in ("step", "number") if d in ds.dims])
        if "time" not in ds.dims:
            ds = ds.expand_dims("time") if "time" in ds.coords else ds
        keep = {"time", "latitude", "longitude"}
        ds = ds.drop_vars([c for c in ds.coords if c not in keep])
        for name in ds.data_vars:
            ds[name].attrs = {k: v for k, v in ds[name].attrs.items() if not k.startswith("GRIB_")}
        normed.append(ds)
    try:
        return xr.merge(normed, join="exact", compat="no_conflicts", combine_attrs="drop_conflicts")
    except ValueError as err:
        raise GridMismatchError(
            f"The GRIB messages of {path} are on different grids or dates ({err}); "
            "split the file per grid, or download it again."
        ) from err


def _order(values: np.ndarray):
    """Indexer that sorts ``values`` ascending: a reversing slice when they descend, else argsort."""
    if values.size > 1 and np.all(np.diff(values) < 0):
        return slice(None, None, -1)  # keeps dask chunks regular, reads contiguous slabs
    return np.argsort(values, kind="stable")


def open_source(path: Path) -> xr.Dataset:
    """Open one netCDF or GRIB file lazily and bring it to (time, lat, lon) with canonical coordinates.

    The variables are lazily indexed, not dask: indexing one reads only that hyperslab from the file,
    CF-decoded and reordered (see :mod:`glacgrid.ingest._tiles`, which reads the store's tiles so).
    ``ds[dim].encoding[SOURCE_INDEX]`` (``dim`` lat or lon) gives the file index of each value.

    Latitude ascending, longitude in -180..180 (data moved with it), float64 coordinates, extra
    coordinates (``number``, ``expver``, ``step``, ...) dropped, ``valid_time`` renamed ``time`` and
    every time stamped on the first day of its month.

    Raises
    ------
    InputDataError
        Missing, unreadable, truncated (see :func:`check_complete`) or corrupted file.
    GridMismatchError
        No 1-D latitude/longitude, or duplicated longitudes once wrapped.
    TimeAxisError
        Times that are not standard-calendar dates.
    """
    if not path.is_file():
        raise InputDataError(f"ERA5-Land file {path} does not exist (or is not a file); check the path.")
    check_complete(path)  # before anything is decoded: a cut file gives this diagnosis, no other
    ds = opened = _open_grib(path) if is_grib(path) else _open_netcdf(path)
    ds = ds.rename({k: v for k, v in _RENAME.items() if k in ds.variables})
    for dim in ("lat", "lon"):
        if dim not in ds.dims or ds[dim].ndim != 1:
            raise GridMismatchError(
                f"{path} has no 1-D '{dim}' ('latitude'/'longitude') coordinate (dims: {dict(ds.sizes)}); "
                "glacgrid ingests regular lat/lon ERA5-Land grids only."
            )
    ds = ds.reset_coords(drop=True)  # number, expver, ...
    lon = np.round((_degrees(ds["lon"].values) + 180.0) % 360.0 - 180.0, 9)
    if np.unique(lon).size != lon.size:
        raise GridMismatchError(f"{path} has duplicated longitudes once wrapped to -180..180; remove the repeated column.")
    ds = ds.assign_coords(lat=_degrees(ds["lat"].values), lon=lon)
    order = {"lat": _order(ds["lat"].values), "lon": _order(lon) if not np.all(np.diff(lon) > 0) else slice(None)}
    ds = ds.isel(order)
    for dim, indexer in order.items():  # where each (reordered) value sits in the file
        ds[dim].encoding[SOURCE_INDEX] = np.arange(ds.sizes[dim])[indexer]
    if "time" in ds.dims:
        if not np.issubdtype(ds["time"].dtype, np.datetime64):
            raise TimeAxisError(f"{path}: time values {ds['time'].values[:3]} are not standard-calendar dates.")
        months = ds["time"].values.astype("datetime64[M]").astype("datetime64[ns]")
        if np.unique(months).size != months.size:
            raise TimeAxisError(
                f"{path} has {months.size} time steps in {np.unique(months).size} month(s): it holds "
                "sub-monthly (e.g. hourly) data, not monthly means. Download ERA5-Land monthly "
                "averaged reanalysis, or average it to months first."
            )
        ds = ds.assign_coords(time=months)
    if is_hdf5(path):  # an open HDF5 file holds ~1.4 MiB of library caches: read tiles with h5py instead
        opened.close()  # (the lazy variables reopen the file if indexed)
    return ds
