"""The :class:`Domain` hand-off: a lazily opened domain store and its per-group numpy arrays."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import cube as cube_mod
from ..exceptions import InputDataError, StoreError

__all__ = ["Domain", "GroupArrays", "open_domain"]

_PIXEL = ("glacier_id", "surface", "thickness", "pixel_area", "lon", "lat", "slope", "aspect_cos", "aspect_sin",
          "row", "col", "neighbours", "neighbour_surface", "dx", "dy")
_GLACIER = ("rgi_id", "n_pixels", "first_pixel", "has_thickness", "epsg")


@dataclass(frozen=True, eq=False)
class GroupArrays:
    """The numpy arrays of one group: per-pixel arrays of length ``C``, per-glacier ones of length ``G``.

    ``neighbours`` and ``neighbour_surface`` are ``(C, 4)`` (sides W, E, N, S); ``glacier`` holds the
    group's slot numbers (``glacier_id`` values); ``first_pixel`` is the position of each glacier's
    first pixel inside the group (-1 on padding slots and glaciers without pixel).
    """

    k: int
    glacier_id: np.ndarray
    surface: np.ndarray
    thickness: np.ndarray
    pixel_area: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    slope: np.ndarray
    aspect_cos: np.ndarray
    aspect_sin: np.ndarray
    row: np.ndarray
    col: np.ndarray
    neighbours: np.ndarray
    neighbour_surface: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    glacier: np.ndarray
    rgi_id: np.ndarray
    n_pixels: np.ndarray
    first_pixel: np.ndarray
    has_thickness: np.ndarray
    epsg: np.ndarray

    @property
    def n_real_pixels(self) -> int:
        """Number of glacier (non-padding) pixels of the group."""
        return int(self.n_pixels.sum())


@dataclass(frozen=True, eq=False)
class Domain:
    """A glacier domain store: glacier pixels packed along ``pixel`` in groups of whole glaciers.

    Group ``k`` owns pixels ``[k*C, (k+1)*C)`` and glacier slots ``[k*G, (k+1)*G)``, each exactly one
    Zarr chunk. ``pixels`` is lazy (dask); ``glaciers`` is numpy (small).
    """

    path: Path
    pixels: xr.Dataset
    glaciers: xr.Dataset
    group_pixels: int
    group_glaciers: int

    @property
    def n_groups(self) -> int:
        """Number of groups."""
        return self.glaciers.sizes["glacier"] // self.group_glaciers

    @property
    def table(self) -> pd.DataFrame:
        """The real glaciers, indexed by ``glacier`` (slot + 1).

        Columns: rgi_id, name, source_index, epsg, area_km2, n_pixels, group.
        """
        g = self.glaciers
        rgi = g["rgi_id"].values.astype(object)
        real = rgi != ""
        slots = g["glacier"].values[real]
        return pd.DataFrame({
            "rgi_id": rgi[real], "name": g["name"].values.astype(object)[real],
            "source_index": g["source_index"].values[real], "epsg": g["epsg"].values[real],
            "area_km2": g["area_km2"].values[real], "n_pixels": g["n_pixels"].values[real],
            "group": (slots - 1) // self.group_glaciers,
        }, index=pd.Index(slots, name="glacier"))

    def _check(self, k: int) -> int:
        k = int(k)
        if not 0 <= k < self.n_groups:
            raise InputDataError(f"Group {k} does not exist; this domain has groups 0..{self.n_groups - 1}.")
        return k

    def pixel_slice(self, k: int) -> slice:
        """The global pixel positions of group ``k``."""
        k = self._check(k)
        return slice(k * self.group_pixels, (k + 1) * self.group_pixels)

    def glacier_slice(self, k: int) -> slice:
        """The glacier slot positions (0-based) of group ``k``."""
        k = self._check(k)
        return slice(k * self.group_glaciers, (k + 1) * self.group_glaciers)

    def group(self, k: int, skip: tuple[str, ...] = ()) -> GroupArrays:
        """The numpy arrays of group ``k`` (one chunk of each per-pixel variable); the per-pixel variables
        named in ``skip`` are not read (empty arrays: a caller that does not need them saves the read)."""
        ps, gs = self.pixel_slice(k), self.glacier_slice(k)
        pix = self._read_pixels(ps, tuple(name for name in _PIXEL if name not in skip))
        pix.update({name: np.zeros(0, dtype=self.pixels[name].dtype) for name in _PIXEL if name not in pix})
        gl = self.glaciers.isel(glacier=gs)
        first = gl["first_pixel"].values
        first = np.where(first >= 0, first - ps.start, -1)
        return GroupArrays(
            k=int(k), **pix,
            glacier=gl["glacier"].values, rgi_id=gl["rgi_id"].values.astype(object),
            n_pixels=gl["n_pixels"].values, first_pixel=first, has_thickness=gl["has_thickness"].values,
            epsg=gl["epsg"].values)

    def with_pixels(self, g: GroupArrays, names: tuple[str, ...]) -> GroupArrays:
        """``g`` with the per-pixel variables ``names`` read (those skipped by :meth:`group` until needed)."""
        return replace(g, **self._read_pixels(self.pixel_slice(g.k), names))

    def _read_pixels(self, ps: slice, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        return cube_mod.read_arrays(self.path, {name: ps for name in names})  # one chunk of each, together


_OPENED: dict = {}
_OPENED_LOCK = threading.Lock()


def _stamp(path: Path) -> tuple:
    """What changes when a store is rewritten: the modification times of its metadata files."""
    return tuple(os.stat(p).st_mtime_ns if p.exists() else 0 for p in (path / "zarr.json", path / cube_mod.DONE_FILE))


def open_domain(store: str | os.PathLike) -> Domain:
    """Open a domain store lazily (nothing is computed; the small per-glacier variables are read).

    The opened domain is kept per process (a domain store is written once and then only read): the group
    tasks of a run open it once per worker, not once per task. A store rewritten since is opened again.

    Raises
    ------
    StoreError
        If the store is missing, incomplete (an interrupted build), or not a domain store.
    """
    path = Path(store)
    key = (str(path.resolve()), _stamp(path)) if path.exists() else None
    with _OPENED_LOCK:
        hit = _OPENED.get(key) if key else None
    if hit is not None:
        return hit
    dom = _open_domain(path)
    with _OPENED_LOCK:
        _OPENED[key] = dom
        while len(_OPENED) > 8:
            _OPENED.pop(next(iter(_OPENED)))
    return dom


def _open_domain(path: Path) -> Domain:
    ds = cube_mod.open_store(path, chunks={}, require_complete=True)
    if ds.attrs.get("glacgrid_domain") != 1:
        raise StoreError(f"{path} is a Zarr store but not a glacier domain (no attribute glacgrid_domain=1); "
                         "build one with glacgrid.domain.domain_from_tiles or domain_from_rasters.")
    pixels = ds[[v for v in ds.data_vars if "pixel" in ds[v].dims]]
    lazy = cube_mod.open_store(path, chunks=None)
    glaciers = lazy[[v for v in lazy.data_vars if "glacier" in lazy[v].dims]].load()
    return Domain(path, pixels, glaciers, int(ds.attrs["group_pixels"]), int(ds.attrs["group_glaciers"]))
