"""Dask arrays of ERA5-Land variables whose every block is read, tile by tile, from the source files.

One dask task per output chunk (e.g. the whole time axis of one 33 x 33 tile). The task reads only
that tile's hyperslab from each file holding months of the chunk, places the months on the output
time axis, converts the units and casts to float32. netCDF-4 (HDF5) files are read with h5py
(:class:`HDF5Slab`: open, read, close, so no file stays open between tasks) and decoded with
xarray's CF decoder; netCDF-3 and GRIB (cfgrib) files through xarray's lazy indexing of the opened
file (:func:`glacgrid.ingest._readers.open_source`), which also reorders latitude and longitude.
There is no dask task per file and no rechunk: the memory a chunk needs is the chunk itself plus
at most :data:`BATCH_BYTES` of decoded values, so it does not grow with the number of months or
files (see ``benchmarks/ingest.py``).

The values are those of concatenating the decoded files along time, converting and casting to
float32 (the same operations in the same order, only on a smaller array).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

__all__ = ["CHUNK_BYTES", "FilePiece", "HDF5Slab", "normalise_chunks", "tiled_variable", "time_series_chunks"]

#: Byte budget of one float32 chunk of the default layout. A chunk holds the whole time axis, so the
#: spatial tile shrinks as the archive grows (64 x 64 up to 128 months, 33 x 33 at 480): the memory
#: an ingest needs is bounded by this budget, not by the number of months.
CHUNK_BYTES = 2 * 2**20
#: Bytes of decoded values a task gathers before converting them and casting into its float32 chunk.
BATCH_BYTES = 2**19
_DIMS = ("time", "lat", "lon")


def time_series_chunks(n_months: int, *, budget: int = CHUNK_BYTES, max_tile: int = 64, min_tile: int = 8) -> dict:
    """The default store chunks for ``n_months``: all months per square tile of at most ``budget`` bytes."""
    tile = int(np.sqrt(budget / (4 * max(n_months, 1))))
    return {"time": -1, "lat": int(np.clip(tile, min_tile, max_tile)), "lon": int(np.clip(tile, min_tile, max_tile))}


def normalise_chunks(chunks: Mapping[str, int] | None, sizes: Mapping[str, int]) -> dict[str, int]:
    """``chunks`` as one positive size per dimension of ``sizes``; -1, None or a missing dim: whole.

    ``chunks=None`` gives :func:`time_series_chunks` for ``sizes["time"]`` months.
    """
    if chunks is None:
        chunks = time_series_chunks(sizes.get("time", 1))
    out = {}
    for dim, n in sizes.items():
        c = chunks.get(dim, -1)
        out[dim] = max(int(n), 1) if c is None or int(c) == -1 else int(c)
    return out


#: CF encoding attributes that decide how packed values decode (as :func:`xarray.open_dataset` does).
_CODING = ("_FillValue", "missing_value", "scale_factor", "add_offset", "_Unsigned")


@dataclass(frozen=True, eq=False)
class HDF5Slab:
    """Direct hyperslab reads of one variable of a netCDF-4 (HDF5) file, decoded as xarray does.

    Each read opens the file with h5py's low-level API, reads the bounding box of the wanted indices and closes it,
    so no HDF5 file stays open between tasks (an open HDF5 file holds about 1.4 MiB of library
    caches: forty open files would cost more memory than a chunk). Values are decoded with
    :func:`xarray.conventions.decode_cf_variable` from the encoding xarray found when it opened
    the file, so they equal those of the file opened with ``xr.open_dataset(engine="netcdf4")``.

    Attributes
    ----------
    path, name : str
        File and variable name in it.
    dims, shape : tuple
        The variable's dims in file order, canonical names (``time``, ``lat``, ``lon``), and shape.
    index : dict
        ``lat`` and ``lon``: the file index of each value of the canonical (sorted) coordinate.
    coding : dict
        The CF packing attributes (``_FillValue``, ``scale_factor``, ...).
    """

    path: str
    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    index: Mapping[str, np.ndarray]
    coding: Mapping[str, object]

    def read(self, time: slice | np.ndarray, lat: slice, lon: slice) -> np.ndarray:
        """Decoded values at file time indices ``time`` and canonical ``lat``/``lon``, in file dim order."""
        import h5py
        from xarray.backends.locks import HDF5_LOCK

        wanted = {"time": time, "lat": self.index["lat"][lat], "lon": self.index["lon"][lon]}
        box, take = [], []
        for dim in self.dims:
            ix = wanted[dim]
            if isinstance(ix, slice):
                box.append(ix)
                take.append(None)
            else:
                lo = int(ix.min())
                box.append(slice(lo, int(ix.max()) + 1))
                take.append(ix - lo)
        start = [0 if b.start is None else b.start for b in box]  # h5py's low-level API: no Python File
        count = [(n if b.stop is None else b.stop) - a for b, a, n in zip(box, start, self.shape)]
        with HDF5_LOCK:  # the lock xarray's netCDF4 backend holds around libhdf5
            fid = h5py.h5f.open(os.fsencode(self.path), h5py.h5f.ACC_RDONLY)
            try:
                dset = h5py.h5d.open(fid, self.name.encode())
                raw = np.empty(count, dtype=dset.dtype)
                if raw.size:
                    space = dset.get_space()
                    space.select_hyperslab(tuple(start), tuple(count))
                    dset.read(h5py.h5s.create_simple(tuple(count)), space, raw)
                dset.close()
            finally:
                fid.close()
        for axis, ix in enumerate(take):
            if ix is not None and not (ix.size == raw.shape[axis] and np.all(np.diff(ix) == 1)):
                raw = np.take(raw, ix, axis=axis)
        var = xr.Variable(self.dims, raw, attrs={k: v for k, v in self.coding.items()})
        decoded = xr.conventions.decode_cf_variable(self.name, var, decode_times=False, decode_timedelta=False)
        return np.asarray(decoded.values)


def hdf5_slab(path: str, da: xr.DataArray, index_key: str) -> HDF5Slab | None:
    """An :class:`HDF5Slab` for variable ``da`` of the netCDF-4 file ``path``; None if it has other dims."""
    if set(da.dims) != set(_DIMS):
        return None
    return HDF5Slab(path, str(da.name), tuple(map(str, da.dims)), tuple(da.shape),
                    {d: np.asarray(da[d].encoding[index_key]) for d in ("lat", "lon")},
                    {k: da.encoding[k] for k in _CODING if k in da.encoding})


@dataclass(frozen=True, eq=False)
class FilePiece:
    """One file's months of one variable.

    Attributes
    ----------
    path : str
        The source file (in dask keys and error messages).
    data : xarray.Variable
        Lazily indexed (not dask), CF-decoded, latitude ascending and longitude in -180..180: indexing
        it reads only the indexed hyperslab from the file.
    rows : numpy.ndarray
        Position of each of its time steps on the output time axis.
    slab : HDF5Slab, optional
        Direct reader for netCDF-4 files (faster, and holds no file open); else ``data`` is indexed.
    """

    path: str
    data: xr.Variable
    rows: np.ndarray
    slab: HDF5Slab | None = None
    _token: str = field(init=False, repr=False)

    def __post_init__(self):
        try:
            stat = os.stat(self.path)
            ident = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            ident = None
        object.__setattr__(self, "_token", tokenize(self.path, ident, self.data.dims, self.data.shape,
                                                    str(self.data.dtype), self.rows.tobytes()))

    def __dask_tokenize__(self):  # never hash (or load) the data itself
        return self._token

    def read(self, time: slice | np.ndarray, lat: slice, lon: slice) -> np.ndarray:
        """The decoded hyperslab ``(time, lat, lon)`` (indices into this piece), as a numpy array."""
        if self.slab is not None:
            values = self.slab.read(time, lat, lon)
        else:
            key = {"time": time, "lat": lat, "lon": lon}
            values = np.asarray(self.data[tuple(key[d] for d in self.data.dims)].values)
        return np.transpose(values, [self.data.dims.index(d) for d in _DIMS])


def _contiguous(k: np.ndarray) -> slice | np.ndarray:
    return slice(int(k[0]), int(k[-1]) + 1) if k[-1] - k[0] + 1 == k.size else k


def read_block(pieces: Sequence[FilePiece], time: slice, lat: slice, lon: slice, *, months: np.ndarray,
               dtype: np.dtype, convert: Callable[[xr.DataArray], xr.DataArray] | None) -> np.ndarray:
    """One output chunk: months ``time`` of the tile ``(lat, lon)``, converted, as float32.

    ``months`` are the datetimes of the whole output time axis; ``dtype`` the common decoded dtype
    of the pieces (the dtype their concatenation has). Consecutive pieces are gathered in the decoded
    dtype up to :data:`BATCH_BYTES`, converted (elementwise, so the values equal those of converting
    the concatenation) and cast into the float32 chunk.
    """
    out = np.empty((time.stop - time.start, lat.stop - lat.start, lon.stop - lon.start), dtype="float32")
    per_month = out.shape[1] * out.shape[2] * np.dtype(dtype).itemsize
    batch: list[tuple[FilePiece, np.ndarray]] = []

    def flush():
        rows = np.concatenate([piece.rows[k] for piece, k in batch])
        work = np.empty((rows.size, *out.shape[1:]), dtype=dtype)
        start = 0
        for piece, k in batch:
            work[start:start + k.size] = piece.read(_contiguous(k), lat, lon)
            start += k.size
        if convert is not None:
            work = convert(xr.DataArray(work, dims=_DIMS, coords={"time": months[rows]})).values
        out[_contiguous(rows - time.start)] = work
        batch.clear()

    months_held = 0
    for piece in pieces:
        k = np.flatnonzero((piece.rows >= time.start) & (piece.rows < time.stop))
        if k.size:
            batch.append((piece, k))
            months_held += k.size
            if months_held * per_month >= BATCH_BYTES:
                flush()
                months_held = 0
    if batch:
        flush()
    return out


def _task(pieces, time, lat, lon, months, dtype, convert):  # positional: legacy dask task tuples
    return read_block(pieces, time, lat, lon, months=months, dtype=dtype, convert=convert)


def tiled_variable(name: str, pieces: Sequence[FilePiece], months: np.ndarray, shape: tuple[int, int, int],
                   chunks: Mapping[str, int], convert: Callable[[xr.DataArray], xr.DataArray] | None) -> da.Array:
    """A float32 dask array ``(time, lat, lon)`` of ``shape`` with one :func:`read_block` task per chunk.

    Every output month must be covered by exactly one piece row (checked by the caller). Each task
    holds only the pieces overlapping its months.
    """
    pieces = tuple(pieces)
    dtype = np.result_type(*[p.data.dtype for p in pieces])
    bounds = [[(a, min(a + chunks[d], n)) for a in range(0, n, chunks[d])] for d, n in zip(_DIMS, shape)]
    token = tokenize(name, pieces, months, shape, [chunks[d] for d in _DIMS], str(dtype),
                     getattr(convert, "__qualname__", None))
    key = f"era5land-{name}-{token}"
    graph = {}
    for it, (t0, t1) in enumerate(bounds[0]):
        used = tuple(p for p in pieces if np.any((p.rows >= t0) & (p.rows < t1)))
        for iy, (y0, y1) in enumerate(bounds[1]):
            for ix, (x0, x1) in enumerate(bounds[2]):
                graph[(key, it, iy, ix)] = (_task, used, slice(t0, t1), slice(y0, y1), slice(x0, x1), months, dtype,
                                            convert)
    dask_chunks = tuple(tuple(b - a for a, b in bd) for bd in bounds)
    hlg = HighLevelGraph.from_collections(key, graph, dependencies=())
    return da.Array(hlg, key, dask_chunks, meta=np.empty((0, 0, 0), dtype="float32"))
