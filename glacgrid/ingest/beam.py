"""Ingest on Apache Beam through xarray-beam: the same store as the dask engine, written by Beam workers.

The main process opens and checks the inputs, writes the template, plans the regions (latitude
bands) and writes the invariants (:func:`glacgrid.cube.prepare_regions`, exactly as the dask engine
does). The pipeline then splits the lazy cube with ``xarray_beam.DatasetToChunks`` into one element
per variable and Zarr chunk (so a worker holds one chunk at a time), skips the bands already recorded
as finished, writes each chunk in place with :func:`glacgrid.cube.write_region`, groups the written
chunks by band and records each complete band with :func:`glacgrid.cube.mark_done`. So a killed
pipeline resumes like a killed dask run (a band is rewritten unless it was recorded), and both
engines write byte-identical chunks.

The DirectRunner runs in the tests; any other runner works where the workers see the input files
and the store under the same paths (a shared filesystem).
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from .. import cube
from ..exceptions import import_optional

__all__ = ["write_with_beam"]


def _band(key, chunk: xr.Dataset, region_dim: str) -> slice:
    start = key.offsets[region_dim]
    return slice(start, start + chunk.sizes[region_dim])


def _chunk_key(key, chunk: xr.Dataset, region_dim: str) -> str:
    """Sidecar key of one variable's chunk, e.g. ``'lat[0:64]/lon[64:128]/t2m'``."""
    parts = [cube.region_key(d, slice(key.offsets[d], key.offsets[d] + chunk.sizes[d]))
             for d in chunk.dims if d in (region_dim, "lon", "x")]
    return "/".join(parts + [str(next(iter(chunk.data_vars)))])


def _write_chunk(key, chunk: xr.Dataset, *, store: str, region_dim: str, band_chunks: dict) -> str:
    """Write one variable's Zarr chunk in place, record it, and record its band once all are written."""
    band = _band(key, chunk, region_dim)
    others = {d: slice(key.offsets[d], key.offsets[d] + chunk.sizes[d]) for d in chunk.dims if d != region_dim}
    cube.write_region(chunk, store, region_dim=region_dim, index=band, region=others)
    cube.mark_done(store, _chunk_key(key, chunk, region_dim))
    band_key = cube.region_key(region_dim, band)
    if band_chunks[band_key] <= cube.completed_regions(store):  # read after our own mark: the last one sees all
        cube.mark_done(store, band_key)
    return band_key


def _all_chunk_keys(ds: xr.Dataset, chunks: dict, region_dim: str) -> list[str]:
    """Every key :func:`_chunk_key` gives for ``ds`` split into ``chunks`` one variable at a time."""
    keys = []
    for name, var in ds.data_vars.items():
        dims = [d for d in var.dims if d in (region_dim, "lon", "x")]
        grids = [[slice(a, min(a + chunks[d], ds.sizes[d])) for a in range(0, ds.sizes[d], chunks[d])] for d in dims]
        for combo in itertools.product(*grids):
            keys.append("/".join([cube.region_key(d, sl) for d, sl in zip(dims, combo)] + [str(name)]))
    return keys


def _pending(item, *, region_dim: str, done: frozenset) -> bool:
    key, chunk = item
    return not ({cube.region_key(region_dim, _band(key, chunk, region_dim)), _chunk_key(key, chunk, region_dim)} & done)


def write_with_beam(
    ds: xr.Dataset,
    store: str | os.PathLike,
    *,
    region_dim: str = "lat",
    overwrite: bool = False,
    options: Sequence[str] | None = None,
) -> Path:
    """Write ``ds`` (lazy) to ``store`` from a Beam pipeline; same contract as ``cube.write_dataset``.

    Parameters
    ----------
    ds : xarray.Dataset
        Dask-backed dataset; its chunks along ``region_dim`` are the bands Beam distributes.
    store : path
        Local (or shared-filesystem) path of the Zarr store.
    options : list of str, optional
        Beam pipeline options; default ``["--runner=DirectRunner"]``.

    Returns
    -------
    pathlib.Path
        The store path.
    """
    beam = import_optional("apache_beam", "beam")
    xbeam = import_optional("xarray_beam", "beam")
    from apache_beam.options.pipeline_options import PipelineOptions

    ds, pending = cube.prepare_regions(ds, store, region_dim=region_dim, overwrite=overwrite)
    if not pending:
        return Path(store)
    banded = ds.drop_vars([v for v in ds.data_vars if region_dim not in ds[v].dims])
    chunks = {d: banded.chunks[d][0] for d in banded.dims}  # the Zarr chunks (uniform)
    band_chunks: dict[str, set[str]] = {}
    for key in _all_chunk_keys(banded, chunks, region_dim):
        band_chunks.setdefault(key.split("/")[0], set()).add(key)
    done = frozenset(cube.completed_regions(store))
    opts = PipelineOptions(list(options) if options else ["--runner=DirectRunner"])
    with beam.Pipeline(options=opts) as pipeline:
        _ = (
            pipeline
            | "Split" >> xbeam.DatasetToChunks(banded, chunks=chunks, split_vars=True)
            | "SkipFinished" >> beam.Filter(functools.partial(_pending, region_dim=region_dim, done=done))
            | "WriteChunk" >> beam.MapTuple(functools.partial(_write_chunk, store=str(store), region_dim=region_dim,
                                                              band_chunks=band_chunks))
        )
    return Path(store)
