"""Numpy kernels shared by every stage that works per glacier: where each pixel's glacier sits in a sorted
vector of glacier indices, and per-glacier values painted onto pixels. No xarray here."""

from __future__ import annotations

import numpy as np

__all__ = ["lookup", "glacier_positions", "paint_lookup"]


def lookup(gid: np.ndarray, glaciers: np.ndarray) -> np.ndarray:
    """Position of each pixel's glacier in the sorted vector ``glaciers``; -1 where absent (int32).

    A dense table (one gather) when the indices are small enough, else a binary search.
    """
    gid = np.asarray(gid)
    glaciers = np.asarray(glaciers)
    if glaciers.size == 0:
        return np.full(gid.shape, -1, dtype="int32")
    top = int(glaciers[-1])
    if 0 <= glaciers[0] and top <= 16 * glaciers.size + 65536:  # dense table: one gather
        table = np.full(top + 2, -1, dtype="int32")
        table[glaciers] = np.arange(glaciers.size, dtype="int32")
        return table[np.clip(gid, -1, top + 1)]
    pos = np.searchsorted(glaciers, gid).clip(0, glaciers.size - 1)
    return np.where(glaciers[pos] == gid, pos, -1).astype("int32")


def glacier_positions(ids: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each id in the sorted ``index`` (0 where absent) and whether it is there (:func:`lookup`)."""
    pos = lookup(ids, index)
    return np.maximum(pos, 0), pos >= 0


def paint_lookup(ids: np.ndarray, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values[k]`` for the pixels whose id is ``index[k]`` (``index`` sorted); NaN for unknown ids."""
    values = np.asarray(values).reshape(-1)
    if index.size == 0:
        return np.full(np.shape(ids), np.nan, dtype=values.dtype if values.dtype.kind == "f" else "float64")
    pos, found = glacier_positions(ids, index)
    return np.where(found, values[pos], np.nan)


def paint_flags(ids: np.ndarray, index: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Boolean ``flags[k]`` for the pixels whose id is ``index[k]`` (``index`` sorted); False elsewhere."""
    pos = lookup(ids, index)
    flags = np.asarray(flags, dtype=bool)
    return (pos >= 0) & flags[np.maximum(pos, 0)] if flags.size else np.zeros(np.shape(ids), bool)
