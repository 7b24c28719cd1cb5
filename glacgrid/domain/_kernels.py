"""Numpy kernels of the glacier domain: group layout, lattice neighbours, window scatter (no xarray)."""

from __future__ import annotations

import numpy as np

__all__ = ["group_layout", "lattice_neighbours", "layout_positions", "edge_neighbours", "first_claims", "round_up"]

#: Sides of the neighbour arrays, in order: west, east, north (row - 1), south (row + 1).
SIDES = ("W", "E", "N", "S")
_DROW = np.array([0, 0, -1, 1])
_DCOL = np.array([-1, 1, 0, 0])


def round_up(n: int, m: int) -> int:
    """``n`` rounded up to a multiple of ``m`` (at least ``m``)."""
    return max(int(-(-int(n) // m) * m), m)


def group_layout(n_pixels: np.ndarray, group_pixels: int) -> tuple[np.ndarray, int, int]:
    """Next-fit assignment of whole glaciers, in their given order, to groups of ``C`` pixels.

    Parameters
    ----------
    n_pixels : ndarray of int
        Pixel count of each glacier, in packing order (zeros allowed).
    group_pixels : int
        Requested pixels per group; ``C = max(group_pixels, n_pixels.max())``.

    Returns
    -------
    group_of_glacier : ndarray of int64
        The group of each glacier (0-based, non-decreasing).
    C : int
        Pixels per group.
    G : int
        Glacier slots per group: the most glaciers in any group, rounded up to a multiple of 8.

    Notes
    -----
    A new group starts when the next glacier does not fit in what is left of ``C``. The loop is over
    groups (a cumulative sum and one ``searchsorted`` per group), not over glaciers.
    """
    n = np.asarray(n_pixels, dtype="int64").ravel()
    if group_pixels < 1:
        raise ValueError(f"group_pixels must be positive, got {group_pixels}")
    if (n < 0).any():
        raise ValueError("pixel counts must be >= 0")
    C = int(max(int(group_pixels), int(n.max()) if n.size else 0))
    group = np.zeros(n.size, dtype="int64")
    cs = np.concatenate([[0], np.cumsum(n)])  # cs[i] = pixels of glaciers before i
    start, k = 0, 0
    while start < n.size:
        # last glacier j such that glaciers start..j-1 fit: cs[j] - cs[start] <= C
        stop = int(np.searchsorted(cs, cs[start] + C, side="right")) - 1
        stop = max(stop, start + 1)
        group[start:stop] = k
        start, k = stop, k + 1
    counts = np.bincount(group, minlength=1) if n.size else np.zeros(1, "int64")
    G = round_up(int(counts.max()) if n.size else 1, 8)
    return group, C, G


def layout_positions(n_pixels: np.ndarray, group: np.ndarray, C: int, G: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Global first pixel and slot (0-based) of each glacier for a :func:`group_layout` result.

    Glaciers of a group are packed at the start of the group's pixel range and slot range, in order.
    """
    n = np.asarray(n_pixels, dtype="int64")
    group = np.asarray(group, dtype="int64")
    if n.size == 0:
        return np.zeros(0, "int64"), np.zeros(0, "int64")
    cs = np.cumsum(n) - n  # pixels before each glacier
    first_of_group = np.r_[True, group[1:] != group[:-1]]
    idx = np.arange(n.size)
    start_idx = np.maximum.accumulate(np.where(first_of_group, idx, 0))
    first = group * C + (cs - cs[start_idx])
    slot = group * G + (idx - start_idx)
    return first, slot


def edge_neighbours(z: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values of ``z`` at the W, E, N, S neighbours of pixels ``(rows, cols)``, edge-replicated.

    At the raster edge the pixel itself stands for the missing neighbour: what a central difference
    on the raster padded with its nearest values uses. Returns ``(n, 4)`` float64.
    """
    ny, nx = z.shape
    r = np.clip(rows[:, None] + _DROW[None, :], 0, ny - 1)
    c = np.clip(cols[:, None] + _DCOL[None, :], 0, nx - 1)
    return np.asarray(z, dtype="float64")[r, c]


def lattice_neighbours(group: np.ndarray, zone: np.ndarray, iy: np.ndarray, ix: np.ndarray,
                       local: np.ndarray) -> np.ndarray:
    """Position in the group of the W, E, N, S lattice neighbour of every pixel, -1 where none.

    Parameters
    ----------
    group, zone, iy, ix : ndarray of int
        Per pixel: its group, its lattice (zone) and its row/column on that lattice. Pixels of one
        group are neighbours when they share the zone and are 4-adjacent on it.
    local : ndarray of int
        Per pixel: its position inside its group.

    Returns
    -------
    ndarray of int32, shape (n, 4)
    """
    n = group.size
    out = np.full((n, 4), -1, dtype="int32")
    if n == 0:
        return out
    iy = np.asarray(iy, "int64") - int(iy.min()) + 1
    ix = np.asarray(ix, "int64") - int(ix.min()) + 1
    ny, nx = int(iy.max()) + 2, int(ix.max()) + 2
    nz = int(zone.max()) + 1
    ng = int(group.max()) + 1
    if float(ng) * nz * ny * nx >= 2.0**62:
        raise ValueError(f"lattice too large for 64-bit keys: {ng} groups, {nz} zones, {ny} x {nx}")
    base = (np.asarray(group, "int64") * nz + zone) * ny
    key = (base + iy) * nx + ix
    order = np.argsort(key, kind="stable")
    skey = key[order]
    for s in range(4):
        want = (base + iy + _DROW[s]) * nx + ix + _DCOL[s]
        pos = np.searchsorted(skey, want)
        pos = np.minimum(pos, n - 1)
        hit = skey[pos] == want
        out[hit, s] = local[order[pos[hit]]]
    return out


def first_claims(zone: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """True for the first occurrence (in the given order) of each lattice pixel ``(zone, iy, ix)``.

    With pixels in increasing glacier number, this gives every pixel to the lowest-numbered glacier
    that claims it (the mosaic's overlap rule).
    """
    n = np.asarray(zone).size
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    iy = np.asarray(iy, "int64") - int(np.min(iy))
    ix = np.asarray(ix, "int64") - int(np.min(ix))
    ny, nx = int(iy.max()) + 1, int(ix.max()) + 1
    if float(int(np.max(zone)) + 1) * ny * nx >= 2.0**62:
        raise ValueError(f"lattice too large for 64-bit keys: {ny} x {nx}")
    key = (np.asarray(zone, "int64") * ny + iy) * nx + ix
    _, first = np.unique(key, return_index=True)
    keep[first] = True
    return keep
