"""ERA5-Land monthly archives (netCDF or GRIB) -> one normalised, analysis-ready Zarr cube.

* :func:`open_era5land` opens and checks files lazily (module ``_open``, files opened by ``_readers``)
  into dask arrays whose every chunk is read tile by tile from the files (``_tiles``);
* :func:`ingest` writes the cube, on dask or on Apache Beam (``beam``), appends new months and
  resumes killed runs (``_store``); :func:`rechunk` copies it with map-like chunks;
* :func:`run_recipe` executes a declarative TOML recipe (``recipe``).
"""

from __future__ import annotations

from ._open import ERA5LAND_INVARIANT, ERA5LAND_MONTHLY, Conversion, open_era5land
from ._store import CHUNK_BYTES, DEFAULT_CHUNKS, ENGINES, ingest, rechunk, time_series_chunks
from .recipe import Recipe, load_recipe, run_recipe

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_CHUNKS",
    "ENGINES",
    "ERA5LAND_INVARIANT",
    "ERA5LAND_MONTHLY",
    "Conversion",
    "Recipe",
    "ingest",
    "load_recipe",
    "open_era5land",
    "rechunk",
    "run_recipe",
    "time_series_chunks",
]
