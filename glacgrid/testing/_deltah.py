"""Seeded synthetic elevation-change rasters with known delta-h curves, for calibration tests.

Each glacier is a block of rows whose surface falls linearly from ``zmax`` to ``zmin`` (so ``h_r``
covers 0..1 evenly); its elevation change is ``-loss * curve(h_r)`` plus optional noise, and a known
number of blunders (``+500 m``, rule 2) and of bin outliers (``+60 m``, rule 3) are planted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..geometry import deltah_curve
from ..units import m2_to_km2

__all__ = ["DhGlacier", "reference_deltah_loop", "synthetic_dh"]


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


#: Huss et al. (2010) coefficients (gamma, a, b, c) as in glacgrid.geometry (HUSS_SMALL, ...), restated here
#: so that the reference does not share code with what it checks.
GENERIC = {"small": (2, -0.30, 0.60, 0.09), "medium": (4, -0.05, 0.19, 0.01), "large": (6, -0.02, 0.12, 0.0)}


def reference_deltah_loop(gid, h, z, a, smb: dict, rho_ice=900.0, rho_water=1000.0, curves=None,
                          tol=1e-12, max_rounds=10_000):
    """The delta-h update written as an explicit loop over glaciers and redistribution rounds.

    The pattern glacgrid replaces, kept as the reference of the property tests and baseline (a) of
    ``benchmarks/deltah.py``. ``smb``: glacier id -> m w.e.; ``curves``: glacier id -> (gamma, a, b, c).
    """
    curves = curves or {}
    h_new = h.astype("float64").copy()
    for g, b in smb.items():
        ice = (gid == g) & (h > 0)
        if np.isnan(b) or not ice.any():
            continue
        ai, hi, zi = a[ice], h[ice].astype("float64"), z[ice]
        hr = (zi.max() - zi) / (zi.max() - zi.min()) if zi.max() > zi.min() else np.zeros_like(zi)
        km2 = m2_to_km2(ai.sum())
        if g not in curves and km2 < 0.5:
            w = np.ones_like(hr)
        else:
            gam, aa, bb, cc = curves.get(g) or GENERIC["small" if km2 < 5 else ("medium" if km2 <= 20 else "large")]
            x = hr + aa
            w = np.clip(np.maximum(x, 0) ** gam + bb * x + cc, 0, 1)
        if (ai * w).sum() == 0:
            w = np.ones_like(hr)
        dv = b * ai.sum() * rho_water / rho_ice
        if dv <= -(ai * hi).sum():
            h_new[ice] = 0.0
            continue
        cur, remaining = hi.copy(), dv
        for _ in range(max_rounds):
            if not (cur > 0).any():
                break
            ww = np.where(cur > 0, w, 0.0)
            if (ai * ww).sum() == 0:
                ww = (cur > 0).astype("float64")
            nxt = np.maximum(cur + remaining / (ai * ww).sum() * ww, 0.0)
            remaining -= (ai * (nxt - cur)).sum()
            cur = nxt
            if abs(remaining) <= tol * abs(dv):
                break
        h_new[ice] = cur
    return h_new
