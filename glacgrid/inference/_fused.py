"""The per-block feature matrix of batched inference as one compiled (numba) pass over the active pixels.

:func:`fill_rows` writes every row (one active pixel in one hydrological year) of the feature matrix at
once: the year-independent columns copied from a small per-pixel table, and the climate columns (CPDD,
winter and summer snowfall) computed from the pixel's 12 months, read straight from the block's
``(year, month, pixel)`` arrays -- no gathered copies of the monthly climate, no float64 temporaries of
the block. Arithmetic is that of :func:`glacgrid.features.annual_climate` to the bit: the
temperature moved to the surface in float32, positive degree-days ``max(t, 0) * days`` in float64, the
solid fraction and the snowfall in float32, and the 12 monthly terms summed in numpy's pairwise order
(``((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))``, then ``a8`` to ``a11`` one by one), which is
how ``np.sum`` adds a contiguous run of 12 values. NaN propagates as in numpy. The climate products of
the profile features (``snow_winter_dz``, ``cpdd_low``: :data:`glacgrid.glaciers.CLIMATE_PRODUCTS`) are a
sum times a per-pixel float64 factor, rounded to float32, as numpy multiplies a float32 feature by a float64
(or float32) array in :func:`glacgrid.features.profile_pixel_features`.

Rows can be written at any positions (the layout torch models need, see
:func:`glacgrid.inference._kernels.aligned_layout`). Pure numpy + numba: never imports xarray.
Compiled on first use and cached on disk (``cache=True``): a fresh process loads it from the cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["fill_rows", "fill_rows_cube", "aligned_positions", "zero_unused", "rows_at", "CHUNK"]

#: Pixels per inner chunk: their monthly terms (12 x 16 bytes each) stay in the L1/L2 cache.
CHUNK = 512


@njit(cache=True, nogil=True)
def fill_rows(temp, prcp, days, corr, flat, winter, summer, rain_thr, band, static, scols, ccols, pcols, psrc,
              pfac, ddf, pos, mean, std, zero_bad, X, ok):  # pragma: no cover - compiled
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
    ccols : (5,) int64, columns of CPDD, winter and summer snowfall, snow-free months and degree-days on a
        snow-free surface (the snow bucket of :func:`glacgrid.features.snow_bucket`) in ``X`` (-1: not
        wanted; the bucket needs every month in ``winter`` or ``summer``)
    pcols, psrc : (p,) int64, the columns of the climate products (``snow_winter_dz``, ``cpdd_low``) and
        the sum each multiplies (0: CPDD, 1: winter, 2: summer snowfall)
    pfac : (n, p) float64, each pixel's factor: the product is ``float32(float64(sum) * factor)``
    ddf : float64, degree-day factor of snow of the bucket (kg m-2 K-1 d-1)
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
    pdd, sw, ss, sums = _scratch()
    zstat, sgood = _standard_static(static, scols, mean, std)
    bucket = ccols[3] >= 0 or ccols[4] >= 0
    for y in range(ny):
        for a in range(0, n, CHUNK):
            b = min(a + CHUNK, n)
            for m in range(12):  # month by month over a chunk of pixels: each month's plane in pixel order
                _month_terms(temp[y, m], prcp[y, m], flat[a:b], corr[a:b], days[y, m], winter[m], summer[m],
                             rain_thr, band, pdd[m], sw[m], ss[m])
            _sum_months(pdd, sw, ss, b - a, sums)
            if bucket:
                _bucket(pdd, sw, ss, winter, ddf, b - a, sums)
            _finish(y, a, b, n, pos, zstat, sgood, scols, ccols, pcols, psrc, pfac, sums, mean, std, zero_bad, X,
                    ok, no_coef, 0.0, no_pred)


@njit(cache=True, nogil=True)
def _scratch():  # pragma: no cover - compiled
    """The monthly terms of a chunk of pixels, month-major so that the month loop and the sums run along
    the pixels (vectorised): degree-days (float64), winter and summer snowfall (float32); and the chunk's
    three 12-month sums (CPDD, winter and summer snowfall, float32) and two snow-bucket values (float32)."""
    return (np.zeros((12, CHUNK), np.float64), np.zeros((12, CHUNK), np.float32), np.zeros((12, CHUNK), np.float32),
            np.zeros((5, CHUNK), np.float32))


@njit(cache=True, nogil=True, inline="always")
def _month(t, pr, d, rain_thr, band):  # pragma: no cover - compiled
    """One month of one pixel: positive degree-days ``max(t, 0) * days`` (float64, NaN kept as
    ``np.maximum`` keeps it) and the snowfall ``pr * solid fraction`` (float32). Written as selects (no
    branch) so that loops over pixels vectorise; NaN passes through every select as in numpy."""
    zero = np.float32(0.0)
    one = np.float32(1.0)
    tpos = zero if t <= zero else t
    f = (rain_thr - t) / band
    f = zero if f < zero else f
    f = one if f > one else f
    return np.float64(tpos) * d, pr * f


@njit(cache=True, nogil=True, inline="always")
def _month_terms(temp, prcp, flat, corr, d, win, summ, rain_thr, band, pdd, sw, ss):  # pragma: no cover
    """One month of a chunk of pixels from the materialised climate (``temp``/``prcp``: the month's plane)."""
    zero = np.float32(0.0)
    for k in range(flat.size):
        p = flat[k]
        t = temp[p] + corr[k]  # float32, as the numpy path
        pdd[k], s = _month(t, prcp[p], d, rain_thr, band)
        sw[k] = s if win else zero
        ss[k] = s if summ else zero


@njit(cache=True, nogil=True, inline="always")
def _cell_month_terms(wx, wy, dz, corr, scale, t00, dt0, t10, dt1, p00, dp0, p10, dp1, t0, g, d, win, summ, rain_thr,
                      band, pdd, sw, ss):  # pragma: no cover - compiled
    """One month of a run of pixels that share their coarse cell: its four corner values (and their
    differences) are loop-invariant, so only the weights vary along the run and the loop vectorises. The
    operations are those of :func:`glacgrid.downscale.bilinear_at` (``top + wx * (right - top)``, ...) in
    the same order: the same value to the bit."""
    zero = np.float32(0.0)
    for k in range(wx.size):
        w_x = wx[k]
        top = t00 + w_x * dt0
        bot = t10 + w_x * dt1
        t = (((top + wy[k] * (bot - top)) - t0) + g * dz[k]) + corr[k]
        ptop = p00 + w_x * dp0
        pbot = p10 + w_x * dp1
        pc = (ptop + wy[k] * (pbot - ptop)) * scale[k]
        pr = zero if pc < zero else pc
        pdd[k], s = _month(t, pr, d, rain_thr, band)
        sw[k] = s if win else zero
        ss[k] = s if summ else zero


@njit(cache=True, nogil=True, inline="always")
def _sum_months(pdd, sw, ss, size, sums):  # pragma: no cover - compiled
    """The 12-month sums of the first ``size`` pixels of a chunk in numpy's pairwise order (how ``np.sum``
    adds 12 contiguous values: ``((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))``, then ``a8`` to
    ``a11`` one by one); CPDD summed in float64 and stored as float32, the snowfall in float32."""
    for k in range(size):
        s = ((pdd[0, k] + pdd[1, k]) + (pdd[2, k] + pdd[3, k])) + ((pdd[4, k] + pdd[5, k]) + (pdd[6, k] + pdd[7, k]))
        s = (((s + pdd[8, k]) + pdd[9, k]) + pdd[10, k]) + pdd[11, k]
        sums[0, k] = np.float32(s)
        w = ((sw[0, k] + sw[1, k]) + (sw[2, k] + sw[3, k])) + ((sw[4, k] + sw[5, k]) + (sw[6, k] + sw[7, k]))
        sums[1, k] = (((w + sw[8, k]) + sw[9, k]) + sw[10, k]) + sw[11, k]
        u = ((ss[0, k] + ss[1, k]) + (ss[2, k] + ss[3, k])) + ((ss[4, k] + ss[5, k]) + (ss[6, k] + ss[7, k]))
        sums[2, k] = (((u + ss[8, k]) + ss[9, k]) + ss[10, k]) + ss[11, k]


@njit(cache=True, nogil=True, inline="always")
def _bucket(pdd, sw, ss, winter, ddf, size, sums):  # pragma: no cover - compiled
    """The monthly snow bucket of the first ``size`` pixels of a chunk (:func:`glacgrid.features.snow_bucket`,
    the same float64 operations in the same order): ``sums[3]`` the snow-free months, ``sums[4]`` the
    degree-days on a snow-free surface; NaN when a month's degree-days or snowfall is NaN. A month's
    snowfall is its winter term in winter months, else its summer term."""
    for k in range(size):
        store = 0.0
        months = 0.0
        ice = 0.0
        bad = False
        for m in range(12):
            s = sw[m, k] if winter[m] else ss[m, k]
            p = pdd[m, k]
            if np.isnan(s) or np.isnan(p):
                bad = True
            store = store + np.float64(s)
            melt = ddf * p
            bare = (melt - store) / melt if melt > store else 0.0
            months += bare
            ice += bare * p
            store = store - melt
            store = store if store > 0.0 else 0.0
        sums[3, k] = np.float32(np.nan) if bad else np.float32(months)
        sums[4, k] = np.float32(np.nan) if bad else np.float32(ice)


@njit(cache=True, nogil=True)
def fill_rows_cube(t2m, tp, j, wy, i, wx, dz, scale, gamma, t0, days, corr, winter, summer, rain_thr, band, static,
                   scols, ccols, pcols, psrc, pfac, ddf, pos, mean, std, zero_bad, X, ok, coef, intercept,
                   pred):  # pragma: no cover - compiled
    """:func:`fill_rows` with each pixel's monthly climate interpolated in place from the coarse window.

    ``t2m``, ``tp``: ``(year, 12, lat, lon)`` float32 windows of the cube; ``j, wy, i, wx``: the pixels'
    bilinear indices and float32 weights; ``dz``, ``scale``: the float32 elevation difference to the
    climate orography and precipitation scale of each pixel; ``gamma``: ``(year, 12)`` float32 lapse
    rates; ``t0``: float32 0 degC in K. The temperature at the reference elevation is
    ``(bilinear(t2m) - t0) + gamma * dz`` and the precipitation ``max(bilinear(tp) * scale, 0)``, as
    :func:`glacgrid.downscale.downscale_pixels` computes them (to the bit), so the rows are those
    :func:`fill_rows` writes from the materialised climate; the monthly fields of the pixels never exist.
    Packed glacier pixels come in long runs that share a coarse cell (a glacier's neighbouring pixels):
    each run's corner values are read once per month and the pixels of the run computed as vectors.

    With ``coef`` (float64, one per feature; empty: off) a linear model is applied in the same pass: each
    row's prediction ``((intercept + x0 c0) + x1 c1) + ...`` (float64, the order of
    :func:`glacgrid.models._kernels.linear_predict`: the same value to the bit) is written to ``pred[row]``
    and ``X`` is only a ``(CHUNK, n_features)`` scratch buffer: the feature matrix never exists either.
    """
    ny = t2m.shape[0]
    n = j.size
    pdd, sw, ss, sums = _scratch()
    zstat, sgood = _standard_static(static, scols, mean, std)
    bucket = ccols[3] >= 0 or ccols[4] >= 0
    for y in range(ny):
        for a in range(0, n, CHUNK):
            b = min(a + CHUNK, n)
            r0 = a
            while r0 < b:  # runs of pixels in the same coarse cell
                jj, ii = j[r0], i[r0]
                r1 = r0 + 1
                while r1 < b and j[r1] == jj and i[r1] == ii:
                    r1 += 1
                ka, kb = r0 - a, r1 - a
                for m in range(12):
                    f, q = t2m[y, m], tp[y, m]
                    t00, t10, p00, p10 = f[jj, ii], f[jj + 1, ii], q[jj, ii], q[jj + 1, ii]
                    _cell_month_terms(wx[r0:r1], wy[r0:r1], dz[r0:r1], corr[r0:r1], scale[r0:r1],
                                      t00, f[jj, ii + 1] - t00, t10, f[jj + 1, ii + 1] - t10,
                                      p00, q[jj, ii + 1] - p00, p10, q[jj + 1, ii + 1] - p10,
                                      t0, gamma[y, m], days[y, m], winter[m], summer[m], rain_thr, band,
                                      pdd[m, ka:kb], sw[m, ka:kb], ss[m, ka:kb])
                r0 = r1
            _sum_months(pdd, sw, ss, b - a, sums)
            if bucket:
                _bucket(pdd, sw, ss, winter, ddf, b - a, sums)
            _finish(y, a, b, n, pos, zstat, sgood, scols, ccols, pcols, psrc, pfac, sums, mean, std, zero_bad, X,
                    ok, coef, intercept, pred)


@njit(cache=True, nogil=True)
def _standard_static(static, scols, mean, std):  # pragma: no cover - compiled
    """The year-independent columns standardised once (not once per year) and whether each pixel's are
    all finite."""
    n, k = static.shape
    z = np.empty((n, k), np.float32)
    good = np.ones(n, np.bool_)
    for i in range(n):
        for jj in range(k):
            v = static[i, jj]
            if not np.isfinite(v):
                good[i] = False
            c = scols[jj]
            z[i, jj] = _standard(v, mean[c], std[c])
    return z, good


@njit(cache=True, nogil=True, inline="always")
def _standard(v, mean, std):  # pragma: no cover - compiled
    """``float32((float64(v) - mean) / std)``; 0 and 1 give ``v`` itself (the same value, no division)."""
    if mean != 0.0 or std != 1.0:
        return np.float32((np.float64(v) - mean) / std)
    return v


@njit(cache=True, nogil=True, inline="always")
def _finish(y, a, b, n, pos, zstat, sgood, scols, ccols, pcols, psrc, pfac, sums, mean, std, zero_bad, X, ok, coef,
            intercept, pred):  # pragma: no cover - compiled
    """Write the rows of pixels ``a:b`` of year ``y`` from the standardised static columns, the chunk's
    sums and their products with the pixels' factors (shared by both kernels); with ``coef`` the row goes
    to the scratch line ``i - a`` and its linear prediction to ``pred[row]``."""
    k = scols.size
    nf = X.shape[1]
    zero = np.float32(0.0)
    linear = coef.size > 0
    for i in range(a, b):
        row = pos[y * n + i]
        r = i - a if linear else row
        for jj in range(k):
            X[r, scols[jj]] = zstat[i, jj]
        good = sgood[i]
        for q in range(ccols.size):
            c = ccols[q]
            if c >= 0:
                v = sums[q, i - a]
                if not np.isfinite(v):
                    good = False
                X[r, c] = _standard(v, mean[c], std[c])
        for q in range(pcols.size):  # float32(float64(sum) * factor): numpy's float32 x float64 product
            c = pcols[q]
            v = np.float32(np.float64(sums[psrc[q], i - a]) * pfac[i, q])
            if not np.isfinite(v):
                good = False
            X[r, c] = _standard(v, mean[c], std[c])
        ok[row] = good
        if linear:
            acc = intercept
            for jj in range(nf):
                acc += np.float64(X[r, jj]) * coef[jj]
            pred[row] = acc
        elif zero_bad and not good:
            for jj in range(nf):
                X[r, jj] = zero


@njit(cache=True, nogil=True)
def aligned_positions(key, period):  # pragma: no cover - compiled
    """Row ``k`` of a key goes to ``rank * period + key % period`` (rank: among the earlier keys of the same
    residue); also returns the number of rows, ``period`` times the largest rank + 1. A power-of-two
    ``period`` (the default) takes masks and shifts instead of integer divisions."""
    counts = np.zeros(period, np.int64)
    pos = np.empty(key.size, np.int64)
    if period & (period - 1) == 0:
        mask = period - 1
        shift = 0
        while (1 << shift) < period:
            shift += 1
        for i in range(key.size):
            res = key[i] & mask  # (key % period for keys >= 0 and for negative keys alike)
            pos[i] = (counts[res] << shift) + res
            counts[res] += 1
    else:
        for i in range(key.size):
            res = key[i] % period
            pos[i] = counts[res] * period + res
            counts[res] += 1
    return pos, counts.max() * period


@njit(cache=True, nogil=True)
def zero_unused(X, pos):  # pragma: no cover - compiled
    """Zero the rows of ``X`` that no position of ``pos`` writes (the padding of an aligned layout in a
    reused buffer)."""
    used = np.zeros(X.shape[0], np.bool_)
    for i in range(pos.size):
        used[pos[i]] = True
    for r in range(X.shape[0]):
        if not used[r]:
            for j in range(X.shape[1]):
                X[r, j] = 0.0


@njit(cache=True, nogil=True)
def rows_at(full, pos, ok, out):  # pragma: no cover - compiled
    """``out[i] = float32(full[pos[i]])``, NaN where the row ``pos[i]`` held a non-finite feature
    (``ok`` false): the predictions of the pixels, in pixel order, in one pass."""
    for i in range(pos.size):
        r = pos[i]
        out[i] = np.float32(full[r]) if ok[r] else np.float32(np.nan)
