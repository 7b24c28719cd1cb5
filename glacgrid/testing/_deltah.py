"""Seeded synthetic elevation-change rasters with known delta-h curves, for calibration tests.

Each glacier is a block of rows whose surface falls linearly from ``zmax`` to ``zmin`` (so ``h_r``
covers 0..1 evenly); its elevation change is ``-loss * curve(h_r)`` plus optional noise, and a known
number of blunders (``+500 m``, rule 2) and of bin outliers (``+60 m``, rule 3) are planted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..geometry._kernels import deltah_curve

__all__ = ["DhGlacier", "synthetic_dh"]


@dataclass(frozen=True)
class DhGlacier:
    """One synthetic glacier: curve coefficients, reference loss (m) and planted faults."""

    gamma: float
    a: float
    b: float
    c: float
    loss: float = 20.0          # m, Δh = 1 corresponds to this loss
    rows: int = 40
    cols: int = 25
    zmax: float = 3400.0
    zmin: float = 2400.0
    blunders: int = 0           # pixels with dh = +500 m
    outliers: int = 0           # pixels with dh raised by 60 m
    nodata: int = 0             # pixels with dh = NaN


def synthetic_dh(glaciers: list[DhGlacier], *, noise: float = 0.0, seed: int = 0) -> xr.Dataset:
    """A ``(y, x)`` raster of ``glacier_id`` (1..N, blocks stacked along y), ``dem`` and ``dh`` (m).

    The planted faults are at distinct random pixels of each glacier; ``dh_true`` is the change
    without noise and faults. Attribute ``planted`` lists per glacier (blunders, outliers, nodata).
    """
    rng = np.random.default_rng(seed)
    cols = max(g.cols for g in glaciers)
    parts = {k: [] for k in ("glacier_id", "dem", "dh", "dh_true")}
    for i, g in enumerate(glaciers, start=1):
        frac = (np.arange(g.rows) + 0.5) / g.rows                       # h_r of each row
        z = np.repeat((g.zmax - frac * (g.zmax - g.zmin))[:, None], cols, axis=1)
        z[:, :] += rng.uniform(-0.5, 0.5, z.shape) * (g.zmax - g.zmin) / g.rows / 2
        z[0, 0], z[-1, -1] = g.zmax, g.zmin                              # exact extremes
        h_r = (g.zmax - z) / (g.zmax - g.zmin)
        true = -g.loss * deltah_curve(h_r, g.gamma, g.a, g.b, g.c)
        dh = true + rng.normal(0.0, noise, z.shape) if noise else true.copy()
        gid = np.full(z.shape, i, dtype="int32")
        gid[:, g.cols:] = 0
        inner = np.flatnonzero((gid > 0).ravel() & ~np.isin(np.arange(z.size), [0, z.size - 1]))
        pick = rng.choice(inner, g.blunders + g.outliers + g.nodata, replace=False)
        flat = dh.ravel()
        flat[pick[:g.blunders]] = 500.0
        flat[pick[g.blunders:g.blunders + g.outliers]] += 60.0
        flat[pick[g.blunders + g.outliers:]] = np.nan
        for k, v in (("glacier_id", gid), ("dem", z), ("dh", dh), ("dh_true", true)):
            parts[k].append(v)
    ds = xr.Dataset({k: (("y", "x"), np.concatenate(v)) for k, v in parts.items()})
    ds["dem"].attrs["units"] = ds["dh"].attrs["units"] = ds["dh_true"].attrs["units"] = "m"
    ds.attrs["planted"] = [[g.blunders, g.outliers, g.nodata] for g in glaciers]
    return ds
