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

from ..downscale import bilinear_at

__all__ = ["fill_rows", "fill_rows_cube", "aligned_positions", "CHUNK"]

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
    no_coef = np.zeros(0, np.float64)  # (no model in this pass)
    no_pred = np.zeros(0, np.float64)
    pdd, sw, ss = _scratch()
    want_c = ccols[0] >= 0
    zero = np.float32(0.0)
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
                    pdd[i - a, m], s = _month(t, prcp[y, m, p], d, rain_thr, band)
                    sw[i - a, m] = s if win else zero
                    ss[i - a, m] = s if summ else zero
            _finish(y, a, b, n, pos, static, scols, ccols, want_c, pdd, sw, ss, mean, std, zero_bad, X, ok,
                    no_coef, 0.0, no_pred)


@njit(cache=True, nogil=True)
def _scratch():  # pragma: no cover - compiled
    """The monthly terms of a chunk of pixels: degree-days (float64), winter and summer snowfall (float32)."""
    return np.zeros((CHUNK, 12), np.float64), np.zeros((CHUNK, 12), np.float32), np.zeros((CHUNK, 12), np.float32)


@njit(cache=True, nogil=True)
def _month(t, pr, d, rain_thr, band):  # pragma: no cover - compiled
    """One month of one pixel: positive degree-days ``max(t, 0) * days`` (float64, NaN kept as
    ``np.maximum`` keeps it) and the snowfall ``pr * solid fraction`` (float32)."""
    zero = np.float32(0.0)
    one = np.float32(1.0)
    tpos = t if (t > zero or t != t) else zero
    f = (rain_thr - t) / band
    if f < zero:
        f = zero
    elif f > one:
        f = one
    return np.float64(tpos) * d, pr * f


@njit(cache=True, nogil=True)
def fill_rows_cube(t2m, tp, j, wy, i, wx, dz, scale, gamma, t0, days, corr, winter, summer, rain_thr, band, static,
                   scols, ccols, pos, mean, std, zero_bad, X, ok, coef, intercept, pred):  # pragma: no cover
    """:func:`fill_rows` with each pixel's monthly climate interpolated in place from the coarse window.

    ``t2m``, ``tp``: ``(year, 12, lat, lon)`` float32 windows of the cube; ``j, wy, i, wx``: the pixels'
    bilinear indices and float32 weights; ``dz``, ``scale``: the float32 elevation difference to the
    climate orography and precipitation scale of each pixel; ``gamma``: ``(year, 12)`` float32 lapse
    rates; ``t0``: float32 0 degC in K. The temperature at the reference elevation is
    ``(bilinear(t2m) - t0) + gamma * dz`` and the precipitation ``max(bilinear(tp) * scale, 0)``, as
    :func:`glacgrid.downscale.downscale_pixels` computes them (to the bit), so the rows are those
    :func:`fill_rows` writes from the materialised climate; the monthly fields of the pixels never exist.

    With ``coef`` (float64, one per feature; empty: off) a linear model is applied in the same pass: each
    row's prediction ``((intercept + x0 c0) + x1 c1) + ...`` (float64, the order of
    :func:`glacgrid.models._kernels.linear_predict`: the same value to the bit) is written to ``pred[row]``
    and ``X`` is only a ``(CHUNK, n_features)`` scratch buffer: the feature matrix never exists either.
    """
    ny = t2m.shape[0]
    n = j.size
    pdd, sw, ss = _scratch()
    want_c = ccols[0] >= 0
    zero = np.float32(0.0)
    for y in range(ny):
        for a in range(0, n, CHUNK):
            b = min(a + CHUNK, n)
            for r in range(a, b):  # pixel by pixel: its 12 months from the (cached) window, terms in registers
                jj, ii, wxr, wyr = j[r], i[r], wx[r], wy[r]
                dzr, scr, cr = dz[r], scale[r], corr[r]
                for m in range(12):
                    tc = bilinear_at(t2m[y, m], jj, ii, wyr, wxr)
                    t = ((tc - t0) + gamma[y, m] * dzr) + cr
                    pc = bilinear_at(tp[y, m], jj, ii, wyr, wxr) * scr
                    pr = zero if pc < zero else pc
                    d, win, summ = days[y, m], winter[m], summer[m]
                    pdd[r - a, m], s = _month(t, pr, d, rain_thr, band)
                    sw[r - a, m] = s if win else zero
                    ss[r - a, m] = s if summ else zero
            _finish(y, a, b, n, pos, static, scols, ccols, want_c, pdd, sw, ss, mean, std, zero_bad, X, ok, coef,
                    intercept, pred)


@njit(cache=True, nogil=True, inline="always")
def _finish(y, a, b, n, pos, static, scols, ccols, want_c, pdd, sw, ss, mean, std, zero_bad, X, ok, coef, intercept,
            pred):  # pragma: no cover - compiled
    """Write the rows of pixels ``a:b`` of year ``y`` from their monthly terms (shared by both kernels);
    with ``coef`` the row goes to the scratch line ``i - a`` and its linear prediction to ``pred[row]``."""
    k = scols.size
    nf = X.shape[1]
    zero = np.float32(0.0)
    linear = coef.size > 0
    for i in range(a, b):
        row = pos[y * n + i]
        r = i - a if linear else row
        for j in range(k):
            X[r, scols[j]] = static[i, j]
        if want_c:
            X[r, ccols[0]] = np.float32(_sum12(pdd[i - a]))
        if ccols[1] >= 0:
            X[r, ccols[1]] = _sum12(sw[i - a])
        if ccols[2] >= 0:
            X[r, ccols[2]] = _sum12(ss[i - a])
        good = True
        for j in range(nf):
            v = X[r, j]
            if not np.isfinite(v):
                good = False
            if mean[j] != 0.0 or std[j] != 1.0:  # (0 and 1: float32((float64(v) - 0) / 1) is v itself)
                X[r, j] = np.float32((np.float64(v) - mean[j]) / std[j])
        ok[row] = good
        if linear:
            acc = intercept
            for j in range(nf):
                acc += np.float64(X[r, j]) * coef[j]
            pred[row] = acc
        elif zero_bad and not good:
            for j in range(nf):
                X[r, j] = zero



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
