"""Seeded synthetic glacier states for the tests and benchmarks of the geometry stage: states from arrays, a
valley of four glaciers of every Huss size class, random mosaics and random glacier-specific curves.

(The hypothesis strategies built on these are in :mod:`glacgrid.testing.strategies`.)
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["DIMS", "make_state", "make_smb", "valley_state", "sums_by_id", "achieved", "random_glaciers",
           "random_curves", "curves_dataset"]

DIMS = ("y", "x")


def make_state(gid, thickness, surface, area) -> xr.Dataset:
    """A ``(y, x)`` state (``glacier_id``, ``thickness``, ``surface``, ``pixel_area``); scalars broadcast."""
    gid = np.asarray(gid)
    full = lambda v: np.broadcast_to(np.asarray(v, dtype="float64"), gid.shape).copy()  # noqa: E731
    return xr.Dataset(
        {"glacier_id": (DIMS, gid), "thickness": (DIMS, full(thickness)),
         "surface": (DIMS, full(surface)), "pixel_area": (DIMS, full(area))},
        coords={"y": np.arange(gid.shape[0]), "x": np.arange(gid.shape[1])},
    )


def make_smb(values: dict) -> xr.DataArray:
    """Glacier-wide SMB (m w.e.) on dim ``glacier`` from ``{glacier index: smb}``."""
    return xr.DataArray(np.array(list(values.values()), dtype="float64"), dims="glacier",
                        coords={"glacier": np.array(list(values), dtype="int64")}, attrs={"units": "m"})


def valley_state(seed: int = 0) -> xr.Dataset:
    """23 x 17 grid: glacier 1 medium (8.45 km2), 2 large (24.3 km2), 3 uniform (0.25 km2), 4 small."""
    rng = np.random.default_rng(seed)
    ny, nx = 23, 17
    gid = np.zeros((ny, nx), dtype="int32")
    gid[1:15, 1:6] = 1
    gid[2:22, 7:13] = 2
    gid[0:2, 14:16] = 3
    gid[10:20, 14:17] = 4
    yy = np.mgrid[0:ny, 0:nx][0]
    z = 3200.0 - 45.0 * yy + rng.normal(0, 3, (ny, nx))
    h = np.where(gid > 0, rng.uniform(5, 120, (ny, nx)), 0.0)
    h[13:15, 1:6] = rng.uniform(0.2, 1.0, (2, 5))  # thin terminus of glacier 1
    h[3, 3] = 0.0  # an ice-free pixel inside glacier 1
    area = np.full((ny, nx), 350.0**2)  # glacier 1: 69 ice px * 0.1225 km2
    area[:, 7:13] = 450.0**2  # glacier 2: 120 px * 0.2025 km2
    area[:, 14:17] = 150.0**2  # glacier 4: 30 px * 0.0225 km2 = 0.675 km2 (small)
    area[0:2, 14:16] = 250.0**2
    return make_state(gid, h, z, area)


def sums_by_id(gid, values, n):
    """Sums of ``values`` per glacier index 0..n (``np.bincount``: the plain reference)."""
    return np.bincount(gid.ravel(), weights=values.ravel(), minlength=n + 1)


def achieved(state, new, n):
    """Volume change (m3) per glacier index 0..n from ``state`` to ``new``."""
    dv = (new.thickness - state.thickness) * state.pixel_area
    return sums_by_id(state.glacier_id.values, dv.values, n)


def random_glaciers(seed: int, n: int = 40, ny: int = 60, nx: int = 50, ordered: bool = False,
                    listed: float = 0.8):
    """Seeded random mosaic: n glaciers of 1..~400 pixels, some ice-free pixels, unlisted glaciers.

    Returns ``(gid, h, z, area, ids, smb)``: the pixel arrays, the sorted listed glacier indices and
    their SMB (m w.e.; some glaciers run out of ice, some NaN).
    """
    rng = np.random.default_rng(seed)
    gid = rng.integers(0, n + 1, (ny, nx)).astype("int32")
    gid[rng.random((ny, nx)) < 0.2] = 0
    if ordered:  # packed layout: grouped by glacier, padding (0) at the end
        flat = np.sort(gid.ravel())
        gid = np.concatenate([flat[flat > 0], flat[flat == 0]]).reshape(ny, nx)
    h = np.where(gid > 0, rng.uniform(0.0, 60.0, (ny, nx)), 0.0)
    h[rng.random((ny, nx)) < 0.1] = 0.0
    h[(gid == 0) & (rng.random((ny, nx)) < 0.05)] = np.nan  # NaN thickness off the glaciers is kept
    z = 3500.0 - rng.uniform(0, 1500, (ny, nx))
    area = rng.choice([25.0**2, 100.0**2, 400.0**2], (ny, nx))
    ids = np.unique(gid[gid > 0])
    ids = ids[rng.random(ids.size) < listed]
    smb = rng.normal(-2.0, 3.0, ids.size)
    smb[rng.random(ids.size) < 0.1] = -40.0  # some glaciers run out of ice
    smb[rng.random(ids.size) < 0.05] = np.nan
    return gid, h, z, area, ids.astype("int64"), smb


def random_curves(ids, seed):
    """Seeded glacier-specific curves for ``ids``: ``(calibrated, coefficients)`` (about 40 % calibrated)."""
    rng = np.random.default_rng(seed)
    cal = rng.random(ids.size) < 0.4
    coefficients = {"gamma": rng.choice([1.0, 2.5, 4.0, 7.0], ids.size), "a": rng.uniform(-0.3, 0.2, ids.size),
                    "b": rng.uniform(0, 0.8, ids.size), "c": rng.uniform(-0.05, 0.2, ids.size)}
    return cal, coefficients


def curves_dataset(curves: dict) -> xr.Dataset:
    """Curves Dataset (dim ``glacier``) from ``{glacier index: (gamma, a, b, c)}``."""
    ids = sorted(curves)
    return xr.Dataset({k: ("glacier", [curves[g][i] for g in ids]) for i, k in enumerate(("gamma", "a", "b", "c"))},
                      coords={"glacier": np.array(ids, dtype="int64")})
