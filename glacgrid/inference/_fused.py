"""The per-block feature matrix of batched inference as one compiled (numba) pass over the active pixels.

:func:`fill_rows` writes every row (one active pixel in one hydrological year) of the feature matrix at
once: the year-independent columns copied from a small per-pixel table, and the climate columns (CPDD,
winter and summer snowfall) computed from the pixel's 12 months, read straight from the block's
``(year, month, pixel)`` arrays -- no gathered copies of the monthly climate, no float64 temporaries of
the block. Arithmetic is that of :func:`glacgrid.features.annual_climate` to the bit: the
temperature moved to the surface in float32, positive degree-days ``max(t, 0) * days`` in float64, the
solid fraction and the snowfall in float32, and the 12 monthly terms summed in numpy's pairwise order
(``((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))``, then ``a8`` to ``a11`` one by one), which is
how ``np.sum`` adds a contiguous run of 12 values. NaN propagates as in numpy.

Rows can be written at any positions (the layout torch models need, see
:func:`glacgrid.inference._kernels.aligned_layout`). Pure numpy + numba: never imports xarray.
Compiled on first use and cached on disk (``cache=True``): a fresh process loads it from the cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["fill_rows", "aligned_positions", "CHUNK"]

#: Pixels per inner chunk: their monthly terms (12 x 16 bytes each) stay in the L1/L2 cache.
CHUNK = 512


@njit(cache=True, inline="always")
def _sum12(a):
    """``np.sum`` of 12 contiguous values, in numpy's pairwise order (same dtype as ``a``)."""
    s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
    for k in range(8, 12):
        s += a[k]
    return s


@njit(cache=True, nogil=True)
def fill_rows(temp, prcp, days, corr, flat, winter, summer, rain_thr, band, static, scols, ccols, pos,
              mean, std, zero_bad, X, ok):  # pragma: no cover - compiled
    """Fill ``X[pos[y * n + i]]`` for every year ``y`` and active pixel ``i`` of a block.

    Parameters
    ----------
    temp, prcp : (year, 12, npix) float32, the block's monthly temperature (degC, at the reference
        elevation) and precipitation (kg m-2), pixels flattened row-major
    days : (year, 12) float64, days of each month
    corr : (n,) float32, lapse-rate correction of each active pixel (degC)
    flat : (n,) int64, flat index of each active pixel in the block
    winter, summer : (12,) bool, the seasons of the snowfall sums
    rain_thr, band : float32, rain threshold and width of the rain/snow band (float32(rain - snow))
    static : (n, k) float32, the year-independent columns of each pixel
    scols : (k,) int64, their columns in ``X``
    ccols : (3,) int64, columns of CPDD, winter and summer snowfall in ``X`` (-1: not wanted)
    pos : (year * n,) int64, the row of each pixel-year in ``X``
    mean, std : (n_features,) float64; each value is written as ``float32((float64(v) - mean) / std)``
        (the standardisation of ``ANNModel.predict``, to the bit); 0 and 1 write ``v`` itself
    zero_bad : bool, write a row holding a non-finite value as zeros
    X : (rows, n_features) float32, written in place
    ok : (rows,) bool, set for each written row: whether its values are all finite
    """
    ny = temp.shape[0]
    n = flat.size
    k = scols.size
    nf = X.shape[1]
    pdd = np.zeros((CHUNK, 12), np.float64)
    sw = np.zeros((CHUNK, 12), np.float32)
    ss = np.zeros((CHUNK, 12), np.float32)
    want_c = ccols[0] >= 0
    want_snow = ccols[1] >= 0 or ccols[2] >= 0
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for y in range(ny):
        for a in range(0, n, CHUNK):
            b = min(a + CHUNK, n)
            # month by month over a chunk of pixels: each month's plane is read in pixel order
            for m in range(12):
                d = days[y, m]
                win = winter[m]
                summ = summer[m]
                for i in range(a, b):
                    p = flat[i]
                    t = temp[y, m, p] + corr[i]  # float32, as the numpy path
                    if want_c:
                        tp = t if (t > zero or t != t) else zero  # np.maximum(t, 0.0), NaN kept
                        pdd[i - a, m] = np.float64(tp) * d
                    if want_snow:
                        f = (rain_thr - t) / band
                        if f < zero:
                            f = zero
                        elif f > one:
                            f = one
                        s = prcp[y, m, p] * f
                        sw[i - a, m] = s if win else zero
                        ss[i - a, m] = s if summ else zero
            for i in range(a, b):
                row = pos[y * n + i]
                for j in range(k):
                    X[row, scols[j]] = static[i, j]
                if want_c:
                    X[row, ccols[0]] = np.float32(_sum12(pdd[i - a]))
                if ccols[1] >= 0:
                    X[row, ccols[1]] = _sum12(sw[i - a])
                if ccols[2] >= 0:
                    X[row, ccols[2]] = _sum12(ss[i - a])
                good = True
                for j in range(nf):
                    v = X[row, j]
                    if not np.isfinite(v):
                        good = False
                    X[row, j] = np.float32((np.float64(v) - mean[j]) / std[j])
                ok[row] = good
                if zero_bad and not good:
                    for j in range(nf):
                        X[row, j] = zero


@njit(cache=True)
def aligned_positions(key, period):  # pragma: no cover - compiled
    """Row ``k`` of a key goes to ``rank * period + key % period`` (rank: among the earlier keys of the same
    residue); also returns the number of rows, ``period`` times the largest rank + 1."""
    counts = np.zeros(period, np.int64)
    pos = np.empty(key.size, np.int64)
    for i in range(key.size):
        res = key[i] % period
        pos[i] = counts[res] * period + res
        counts[res] += 1
    return pos, counts.max() * period
