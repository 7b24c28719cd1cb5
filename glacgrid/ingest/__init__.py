"""ERA5-Land monthly archives (netCDF or GRIB) -> one normalised, analysis-ready Zarr cube.

* :func:`open_era5land` opens and checks files lazily (module ``_open``, files opened by ``_readers``)
  into dask arrays whose every chunk is read tile by tile from the files (``_tiles``);
* :func:`ingest` writes the cube, on dask or on Apache Beam (``beam``), appends new months and
  resumes killed runs (``_store``); :func:`rechunk` copies it with map-like chunks;
* :func:`run_recipe` executes a declarative TOML recipe (``recipe``);
* :func:`read_forcing` reads other climate forcings (CF/CMIP GCMs, CESM, ERA5/CERA-20C ensembles) as the
  same normalised monthly cube (``forcing``);
* :func:`check_period` refuses a run's hydrological years (:class:`HydroYear`) that the climate files
  do not cover, reading only their time axes (``_period``); :func:`check_complete` refuses a file
  shorter than its header says (``_readers``).
"""

from __future__ import annotations

from ._open import ERA5LAND_INVARIANT, ERA5LAND_MONTHLY, Conversion, open_era5land
from ._period import HYDRO_START, HydroYear, check_months, check_period
from ._readers import check_complete
from .forcing import FORCING_KINDS, FORCING_VARIABLES, read_forcing
from ._store import CHUNK_BYTES, DEFAULT_CHUNKS, ENGINES, ingest, rechunk, time_series_chunks
from .recipe import Recipe, load_recipe, run_recipe

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_CHUNKS",
    "ENGINES",
    "ERA5LAND_INVARIANT",
    "ERA5LAND_MONTHLY",
    "FORCING_KINDS",
    "FORCING_VARIABLES",
    "HYDRO_START",
    "Conversion",
    "HydroYear",
    "Recipe",
    "check_complete",
    "check_months",
    "check_period",
    "ingest",
    "load_recipe",
    "open_era5land",
    "read_forcing",
    "rechunk",
    "run_recipe",
    "time_series_chunks",
]
