"""Write the normalised ERA5-Land cube: create (dask or Beam), append new months, rechunk."""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from .. import cube
from ..atomic import clean_partials
from ..exceptions import GridMismatchError, InputDataError, StoreError, TimeAxisError
from ..metadata import provenance
from ._open import open_era5land
from ._tiles import CHUNK_BYTES, time_series_chunks

__all__ = ["CHUNK_BYTES", "DEFAULT_CHUNKS", "ENGINES", "ingest", "rechunk", "time_series_chunks"]

#: Store chunks for time-series access: the whole time axis per spatial tile of at most 64 x 64 cells.
DEFAULT_CHUNKS = {"time": -1, "lat": 64, "lon": 64}
ENGINES = ("dask", "beam")
_APPEND_KEY = re.compile(r"^time\[(\d+):(\d+)\]/lat\[(\d+):(\d+)\]$")


def ingest(
    files: Sequence[str | os.PathLike],
    store: str | os.PathLike,
    *,
    invariant: str | os.PathLike | None = None,
    variables: Sequence[str] | None = None,
    chunks: Mapping[str, int] | None = None,
    overwrite: bool = False,
    append: bool = False,
    engine: str = "dask",
    beam_options: Sequence[str] | None = None,
    recipe: Mapping | None = None,
) -> Path:
    """Ingest ERA5-Land monthly files into a Zarr climate cube.

    Parameters
    ----------
    files, invariant, variables
        As in :func:`glacgrid.ingest.open_era5land`.
    store : path
        Output Zarr store (format 3, consolidated).
    chunks : dict, optional
        Store chunks; default :func:`time_series_chunks` (whole time axis per spatial tile, the
        tile sized so that a chunk stays within :data:`CHUNK_BYTES`).
    overwrite : bool
        Replace an existing store (needed when its schema or source files differ). Without it,
        a store with the same schema and sources is resumed: finished regions are skipped.
    append : bool
        If ``store`` exists, add the months of ``files`` that follow its last month (see Notes).
        Months the store already holds are skipped, so appending the same files twice is a no-op.
    engine : {"dask", "beam"}
        ``"dask"`` writes the regions one after the other with the current dask scheduler;
        ``"beam"`` writes them from an Apache Beam pipeline through xarray-beam (see
        :mod:`glacgrid.ingest.beam`). Both write the same store. Appending always uses dask.
    beam_options : list of str, optional
        Beam pipeline options, e.g. ``["--runner=DirectRunner", "--direct_num_workers=2"]``.
    recipe : mapping, optional
        The recipe this run executes; stored as JSON in the ``recipe`` attribute.

    Returns
    -------
    pathlib.Path
        The store path.

    Notes
    -----
    Everything is opened and checked before anything is written, so bad input leaves an existing
    store untouched. Regions are bands of ``chunks["lat"]`` latitudes, planned, written and recorded
    in the store's progress file; a killed run resumes where it stopped.

    Memory: each store chunk is one dask task that reads only its tile from every file
    (:mod:`glacgrid.ingest._tiles`; netCDF-4 through h5py, GRIB and netCDF-3 through xarray's lazy
    indexing) and is written as soon as it is computed, so the peak is about one chunk (at most
    :data:`CHUNK_BYTES` with the default chunks) per dask thread, whatever the number of months.

    An append first records its regions as planned, then grows the time axis and writes the new
    months band by band. Until every band is written, ``open_store(require_complete=True)``
    refuses the store, and re-running the append finishes it.

    The ingest holds the store's run lock (``<store>.lock``, :func:`glacgrid.cube.store_lock`) from
    the start: a second ingest into the same store is refused at once with
    :class:`~glacgrid.exceptions.LockHeldError`. A full disk gives a
    :class:`~glacgrid.exceptions.StoreError`; free space and re-run: it resumes.
    """
    if engine not in ENGINES:
        raise InputDataError(f"engine={engine!r} is not known; use one of {ENGINES}.")
    with cube.store_lock(store, purpose="glacgrid ingest"):
        return _ingest(files, store, invariant=invariant, variables=variables, chunks=chunks, overwrite=overwrite,
                       append=append, engine=engine, beam_options=beam_options, recipe=recipe)


def _ingest(files, store, *, invariant, variables, chunks, overwrite, append, engine, beam_options, recipe) -> Path:
    """:func:`ingest` under the store's run lock."""
    if chunks is None and append and Path(store).exists():  # an append reads by the store's own tiles
        chunks = _store_chunks(Path(store))
    ds = open_era5land(files, invariant=invariant, variables=variables, chunks=chunks)
    chunks = dict(chunks) if chunks is not None else time_series_chunks(ds.sizes["time"])
    ds.attrs["history"] += "\n" + provenance("ingest", store=str(store), chunks=chunks)
    if recipe is not None:
        ds.attrs["recipe"] = json.dumps(dict(recipe), sort_keys=True, default=str)
    if append and Path(store).exists():
        return _append(ds, Path(store))
    if engine == "beam":
        from .beam import write_with_beam

        return write_with_beam(ds, store, region_dim="lat", overwrite=overwrite, options=beam_options)
    # template, then latitude bands, resumably; every chunk of ``ds`` is one dask task that reads its
    # tile from the files (._tiles) and is stored once computed: about one chunk per thread in memory
    return cube.write_dataset(ds, store, region_dim="lat", overwrite=overwrite)


def _store_chunks(path: Path) -> dict[str, int] | None:
    """Spatial chunks of the first time variable of the cube at ``path`` (whole time axis); None if none."""
    try:
        group = zarr.open_group(path, mode="r")
        for name, arr in group.arrays():
            dims = arr.metadata.dimension_names or ()
            if "time" in dims and "lat" in dims and "lon" in dims:
                return {"time": -1, "lat": arr.chunks[dims.index("lat")], "lon": arr.chunks[dims.index("lon")]}
    except Exception:  # not a (readable) Zarr store: _append reports it
        return None
    return None


def _append(ds: xr.Dataset, path: Path) -> Path:
    """Append the months of ``ds`` after the last one of the store at ``path`` (resumably)."""
    clean_partials(path)  # what a killed append left (the caller holds the store's run lock)
    missing = cube.missing_regions(path)
    if any(not _APPEND_KEY.match(k) for k in missing):
        raise StoreError(
            f"Zarr store {path} is incomplete from an interrupted ingest ({len(missing)} region(s) "
            "missing). Re-run that ingest without --append to finish it, then append."
        )
    if missing:  # an interrupted append: its planned months decide, and a kill while the time axis grew may
        # have left arrays of two lengths, which no reader opens: even them out first
        start, stop = (int(g) for g in _APPEND_KEY.match(sorted(missing)[0]).groups()[:2])
        _resize_time(path, stop)
    stored = cube.open_store(path, chunks=None)
    ds = ds.drop_vars([v for v in ds.data_vars if "time" not in ds[v].dims])  # invariants stay
    want = sorted(v for v in stored.data_vars if "time" in stored[v].dims)
    if sorted(map(str, ds.data_vars)) != want:
        raise StoreError(
            f"Cannot append to {path}: it holds {want} along time, the new files give "
            f"{sorted(map(str, ds.data_vars))}. Append files with the same variables (or --variables)."
        )
    for dim in ("lat", "lon"):
        if not np.array_equal(stored[dim].values, ds[dim].values):
            raise GridMismatchError(
                f"Cannot append to {path}: the new files' {dim} ({ds.sizes[dim]} values "
                f"{ds[dim].values.min():g}..{ds[dim].values.max():g}) differ from the store's "
                f"({stored.sizes[dim]} values). Download the new months on the store's grid."
            )
    times = pd.DatetimeIndex(stored["time"].values)
    have = pd.DatetimeIndex(ds["time"].values)
    if not missing:
        start = times.size
        stop = start + int((have > times[-1]).sum())
        if stop == start:
            return path  # nothing new: idempotent
    target = times[:start].append(pd.date_range(times[start - 1], periods=stop - start + 1, freq="MS")[1:])
    absent = target[start:stop].difference(have)
    if len(absent):
        raise TimeAxisError(
            f"Cannot append to {path}: it ends in {times[start - 1]:%Y-%m}, the new files cover "
            f"{have[0]:%Y-%m}..{have[-1]:%Y-%m} and lack {', '.join(f'{t:%Y-%m}' for t in absent[:6])}"
            f"{' ...' if len(absent) > 6 else ''}. Add the files of the missing months (months must follow "
            "the store's last month without a gap)."
        )
    part = ds.sel(time=target[start:stop])
    band = zarr.open_array(path / want[0], mode="r").chunks[stored[want[0]].dims.index("lat")]
    nlat = stored.sizes["lat"]
    bands = [slice(a, min(a + band, nlat)) for a in range(0, nlat, band)]
    keys = {f"time[{start}:{stop}]/lat[{b.start}:{b.stop}]": b for b in bands}
    cube.plan_regions(path, keys)  # planned before the time axis grows: a kill leaves it incomplete
    _grow_time(path, part, start, stop)
    done = cube.completed_regions(path)
    for key, lat in keys.items():
        if key not in done:
            cube.write_region(part.isel(lat=lat), path, region_dim="lat", index=lat, region={"time": slice(start, stop)})
            cube.mark_done(path, key)
    return _append(ds, path) if missing else path  # after a resumed append, add any later months


@contextlib.contextmanager
def _quiet_zarr():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        warnings.filterwarnings("ignore", message=r"Object at \.glacgrid_done")  # our sidecar, not Zarr
        yield


def _consolidate(path: Path) -> None:
    with _quiet_zarr():
        zarr.consolidate_metadata(path)


def _resize_time(path: Path, stop: int) -> zarr.Group:
    """Every array of the store along ``time`` resized to ``stop`` months (a no-op for those that are), and the
    consolidated metadata rewritten: idempotent, so a kill at any point is repaired by running it again."""
    try:
        group = zarr.open_group(path, mode="r+", use_consolidated=False)
        changed = False
        with _quiet_zarr():
            arrays = list(group.arrays())
        for _, arr in arrays:
            dims = tuple(arr.metadata.dimension_names or ())
            if "time" in dims and arr.shape[dims.index("time")] != stop:
                axis = dims.index("time")
                arr.resize(arr.shape[:axis] + (stop,) + arr.shape[axis + 1:])
                changed = True
        if changed:
            _consolidate(path)
    except OSError as err:
        raise StoreError(f"Could not grow the time axis of {path} to {stop} months: {type(err).__name__}: {err}. "
                         "Free space (or fix permissions) there, then re-run the append: it resumes.") from err
    return group


def _grow_time(path: Path, part: xr.Dataset, start: int, stop: int) -> None:
    """Grow every time variable of the store to ``stop`` months, write the time values of months
    ``start:stop`` (``part``'s) and record the new source files; every step is idempotent (absolute sizes,
    values written in place, attributes updated once in one write), so a re-run after a kill finishes it."""
    group = _resize_time(path, stop)
    tarr = group["time"]
    coder = xr.coders.CFDatetimeCoder()
    encoded = coder.encode(xr.Variable("time", part["time"].values, encoding={
        "units": tarr.attrs["units"], "calendar": tarr.attrs.get("calendar", "proleptic_gregorian"),
        "dtype": tarr.dtype}))
    try:
        if not np.array_equal(tarr[start:stop], encoded.values):
            tarr[start:stop] = encoded.values
        old = json.loads(group.attrs.get("source_files", "[]"))
        new = [s for s in json.loads(part.attrs.get("source_files", "[]")) if s not in old]
        if new:  # (source files and history in one metadata write: recorded once)
            group.attrs.update({
                "source_files": json.dumps(old + new),
                "history": group.attrs.get("history", "") + "\n" + provenance(
                    "append", store=str(path), months=f"{pd.Timestamp(part['time'].values[0]):%Y-%m}.."
                    f"{pd.Timestamp(part['time'].values[-1]):%Y-%m}"),
            })
        _consolidate(path)
    except OSError as err:
        raise StoreError(f"Could not write the new months' time axis to {path}: {type(err).__name__}: {err}. "
                         "Free space (or fix permissions) there, then re-run the append: it resumes.") from err


def rechunk(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    chunks: Mapping[str, int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy a cube to another store with other chunks, e.g. for map-like access.

    Parameters
    ----------
    source : path
        A complete cube (from :func:`ingest`); time-series chunks ``(all months, 64, 64)``.
    target : path
        The new store (Zarr format 3, consolidated), written resumably along ``time``.
    chunks : dict, optional
        Target chunks; default ``{"time": 1, "lat": -1, "lon": -1}`` (one map per chunk).

    Notes
    -----
    Regions are blocks of ``chunks["time"]`` months (whole time axis per region when it is -1);
    each reads its months from every source tile, so memory stays at one region's size.
    """
    chunks = dict(chunks) if chunks is not None else {"time": 1, "lat": -1, "lon": -1}
    ds = cube.open_store(source, chunks={}, require_complete=True)
    unknown = [d for d in chunks if d not in ds.dims]
    if unknown:
        raise InputDataError(f"Cannot rechunk along {unknown}: {source} has dims {list(ds.dims)}.")
    ds = ds.chunk({d: chunks.get(d, -1) for d in ds.dims})
    ds.attrs["history"] = ds.attrs.get("history", "") + "\n" + provenance("rechunk", source=str(source), chunks=chunks)
    region_dim = "time" if "time" in ds.dims else next(iter(ds.dims))
    with cube.store_lock(target, purpose="glacgrid rechunk"):
        return cube.write_dataset(ds, target, region_dim=region_dim, overwrite=overwrite)
