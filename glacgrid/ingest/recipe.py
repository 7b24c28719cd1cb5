"""Ingest recipes: declarative TOML files naming the inputs, the target store, variables and chunks.

A recipe holds no logic; :func:`run_recipe` executes it on dask (default) or on Apache Beam::

    [input]
    pattern = "era5land/era5land_monthly_*.nc"   # glob(s), relative to the recipe file
    invariant = "era5land/era5land_invariant.nc"
    variables = ["t2m", "tp"]                     # optional: default every one found

    [target]
    store = "cube.zarr"
    chunks = { time = -1, lat = 64, lon = 64 }
    append = false                                # true: add new months to an existing store

See ``recipes/era5land_monthly.toml`` in the repository for a complete, commented example.
"""

from __future__ import annotations

import glob
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..exceptions import ConfigError, InputDataError
from ._open import ERA5LAND_MONTHLY
from ._store import ingest

__all__ = ["Recipe", "load_recipe", "run_recipe"]

_SECTIONS = {"input": {"pattern", "invariant", "variables"}, "target": {"store", "chunks", "append"}, "recipe": {"name", "description"}}


@dataclass(frozen=True)
class Recipe:
    """One ingest: which files, which variables, where to, with which chunks.

    Attributes
    ----------
    pattern : tuple of str
        Glob patterns (``**`` allowed) of the monthly files, absolute or relative to ``root``.
    store : str
        Target Zarr store, absolute or relative to ``root``.
    invariant : str or None
        Invariant file (geopotential ``z``, land-sea mask ``lsm``).
    variables : tuple of str or None
        ERA5-Land short names; None takes every one found.
    chunks : dict or None
        Store chunks (``-1`` = whole dimension); None (no ``chunks`` in the file) gives
        :func:`glacgrid.ingest.time_series_chunks` for the number of months ingested.
    append : bool
        Add new months to an existing store instead of refusing other inputs.
    name : str
        Label recorded in the store.
    root : str
        Folder the relative paths start from (the recipe file's folder).
    """

    pattern: tuple[str, ...]
    store: str
    invariant: str | None = None
    variables: tuple[str, ...] | None = None
    chunks: Mapping[str, int] | None = None
    append: bool = False
    name: str = ""
    root: str = "."

    def _path(self, p: str) -> Path:
        return Path(p) if os.path.isabs(p) else Path(self.root) / p

    def files(self) -> list[Path]:
        """The files the patterns match, sorted; raises :class:`InputDataError` if none."""
        found = sorted({Path(f) for pat in self.pattern for f in glob.glob(str(self._path(pat)), recursive=True)})
        found = [f for f in found if f.is_file()]
        if not found:
            raise InputDataError(
                f"The recipe's pattern {list(self.pattern)} matched no file (relative to {self.root}). "
                "Check the pattern and that the files were downloaded."
            )
        return found

    def store_path(self) -> Path:
        return self._path(self.store)

    def invariant_path(self) -> Path | None:
        return self._path(self.invariant) if self.invariant else None


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read a TOML recipe; relative paths in it are relative to the file's folder.

    Raises
    ------
    ConfigError
        Unreadable TOML, unknown sections or keys, missing ``input.pattern`` or ``target.store``,
        unknown variables, or chunks that are not integers.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"Cannot read recipe {path}: {err}. Give a TOML file like recipes/era5land_monthly.toml.") from err
    for section, body in raw.items():
        if section not in _SECTIONS or not isinstance(body, dict):
            raise ConfigError(f"Recipe {path}: unknown section [{section}]; expected {sorted(_SECTIONS)}.")
        extra = set(body) - _SECTIONS[section]
        if extra:
            raise ConfigError(f"Recipe {path}: unknown key(s) {sorted(extra)} in [{section}]; allowed {sorted(_SECTIONS[section])}.")
    inp, tgt = raw.get("input", {}), raw.get("target", {})
    if "pattern" not in inp or "store" not in tgt:
        raise ConfigError(f"Recipe {path} needs input.pattern and target.store (got [input] {sorted(inp)}, [target] {sorted(tgt)}).")
    pattern = (inp["pattern"],) if isinstance(inp["pattern"], str) else tuple(inp["pattern"])
    variables = tuple(inp["variables"]) if "variables" in inp else None
    unknown = [v for v in variables or () if v not in ERA5LAND_MONTHLY]
    if unknown:
        raise ConfigError(f"Recipe {path}: unknown variable(s) {unknown}; supported: {sorted(ERA5LAND_MONTHLY)}.")
    chunks = dict(tgt["chunks"]) if "chunks" in tgt else None  # None: time_series_chunks (a byte budget)
    if chunks is not None and (not all(isinstance(v, int) and (v > 0 or v == -1) for v in chunks.values())
                               or not set(chunks) <= {"time", "lat", "lon"}):
        raise ConfigError(f"Recipe {path}: target.chunks {chunks} must map time/lat/lon to positive integers or -1.")
    return Recipe(pattern=pattern, store=str(tgt["store"]), invariant=inp.get("invariant"), variables=variables,
                  chunks=chunks, append=bool(tgt.get("append", False)), name=str(raw.get("recipe", {}).get("name", path.stem)),
                  root=str(path.resolve().parent))


def run_recipe(
    recipe: Recipe | str | os.PathLike,
    *,
    engine: str = "dask",
    overwrite: bool = False,
    append: bool | None = None,
    beam_options: Sequence[str] | None = None,
) -> Path:
    """Execute a recipe (a :class:`Recipe` or the path of its TOML file) on ``engine``.

    ``engine="dask"`` uses the current dask scheduler (threads by default, or a distributed
    ``Client`` if one is active); ``engine="beam"`` runs an Apache Beam pipeline with
    ``beam_options`` (DirectRunner by default). Both write the same store; see
    :func:`glacgrid.ingest.ingest`. ``append`` overrides the recipe's ``target.append``.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if append is not None:
        recipe = replace(recipe, append=append)
    described = {k: v for k, v in asdict(recipe).items() if k != "root"}
    return ingest(recipe.files(), recipe.store_path(), invariant=recipe.invariant_path(),
                  variables=list(recipe.variables) if recipe.variables else None, chunks=dict(recipe.chunks) if recipe.chunks else None,
                  overwrite=overwrite, append=recipe.append, engine=engine, beam_options=beam_options, recipe=described)
