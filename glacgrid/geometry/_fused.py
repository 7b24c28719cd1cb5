"""The whole delta-h update as one compiled (numba) kernel over numpy pixel arrays.

Same science and same arithmetic as :func:`glacgrid.geometry._kernels.deltah_update_arrays` (see
there and :func:`~glacgrid.geometry._kernels.solve_scaling` for the algorithm), organised for speed:

1. one pass over the pixels finds each pixel's glacier position (dense table or binary search), the
   first and last pixel of every glacier, and whether the glaciers' pixels come in glacier order
   (true for packed states, :func:`glacgrid.geometry.pack_state`); if not, a stable counting
   sort gives each glacier's pixel list;
2. then each glacier is done at once on its own pixels, which stay in the CPU cache: geometry
   (area, volume, zmax, zmin, input checks), curve weights and their sum, every redistribution round
   of the solver, and the new thickness and surface.

Per-glacier sums run in pixel order, as ``np.bincount`` does, so the sums are the numpy kernel's to
the last bit (``np.power`` and libm ``pow`` may differ by one unit in the last place).
The solver rounds of a glacier stop when *that* glacier meets its target: the numpy kernel's
global rounds leave a converged glacier's numbers unchanged, so the result is the same, and the
reported number of passes is the largest number of rounds any glacier needed.

Pure numpy + numba: never imports xarray. Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..units import M2_PER_KM2
from . import _kernels as K

__all__ = ["deltah_update_fused", "FusedResult"]

_ROUNDING = K._ROUNDING
# size-class thresholds (km2) and generic coefficients, passed to the compiled code as arrays
_THRESHOLDS = np.array([K.UNIFORM_MAX_AREA_KM2, K.MEDIUM_MIN_AREA_KM2, K.LARGE_MIN_AREA_KM2])
_GENERIC = np.array([[1.0, 0.0, 0.0, 0.0]]
                    + [[p.gamma, p.a, p.b, p.c] for p in (K.HUSS_SMALL, K.HUSS_MEDIUM, K.HUSS_LARGE)])

# columns of the per-glacier float output table
(F_PIXELS, F_AREA, F_VOLUME, F_ZMAX, F_ZMIN, F_BAD_H, F_BAD_Z, F_BAD_A, F_TARGET, F_SCALE, F_LOWER,
 F_CHANGE, F_AREA_NEW) = range(13)
# columns of the per-glacier int output table
I_SIZE, I_GONE, I_CONVERGED, I_PASSES = range(4)


@njit(cache=True, inline="always")
def _position(g, table, glaciers, dense):
    if dense:
        if g < 0 or g >= table.size:
            return -1
        return table[g]
    lo, hi = 0, glaciers.size
    while lo < hi:
        mid = (lo + hi) // 2
        if glaciers[mid] < g:
            lo = mid + 1
        else:
            hi = mid
    if lo < glaciers.size and glaciers[lo] == g:
        return lo
    return -1


@njit(cache=True, inline="always")
def _power(x, gamma, int_gamma):
    """``x ** gamma`` (x >= 0); by repeated squaring for integer exponents 1..16 (the Huss curves):
    4-5x faster than ``pow``, and within a few units in the last place of it."""
    if int_gamma == 0:
        return x ** gamma
    r = 1.0
    b = x
    e = int_gamma
    while e > 0:
        if e & 1:
            r *= b
        b *= b
        e >>= 1
    return r


@njit(cache=True)
def _index(gid, h, z, h_out, z_out, table, glaciers, dense, n):
    """Pass 1: segment bounds and sortedness; pixels of no updated glacier are copied to the outputs.

    Negative thickness is counted only off the updated glaciers: on them it is a ``bad_thickness``
    pixel, which the caller reports first.
    """
    first = np.full(n, -1, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    negative = 0
    unassigned = 0
    ordered = True
    prev = -1
    for i in range(gid.size):
        p = _position(gid[i], table, glaciers, dense)
        if p < 0:
            unassigned += 1
            if h[i] < 0:
                negative += 1
            h_out[i] = h[i]
            z_out[i] = z[i]
            continue
        if p < prev:
            ordered = False
        prev = p
        if first[p] < 0:
            first[p] = i
        last[p] = i
        count[p] += 1
    return first, last, count, negative, unassigned, ordered


@njit(cache=True)
def _counting_sort(gid, table, glaciers, dense, count):
    """Stable order of the assigned pixels by glacier position (pixel order within a glacier)."""
    n = count.size
    start = np.zeros(n + 1, dtype=np.int64)
    for k in range(n):
        start[k + 1] = start[k] + count[k]
    fill = start[:-1].copy()
    order = np.empty(start[n], dtype=np.int64)
    for i in range(gid.size):
        p = _position(gid[i], table, glaciers, dense)
        if p >= 0:
            order[fill[p]] = i
            fill[p] += 1
    return start, order


@njit(cache=True)
def _glaciers(gid, h, z, a, h_out, z_out, table, glaciers, dense, ordered, lo_, hi_, count, order,
              smb, calibrated, coef, generic, thresholds, rho_water, rho_ice, max_iter, rtol, rounding, fv, iv):
    """Pass 2: every glacier on its own pixels (geometry, weights, solver rounds, outputs)."""
    n = glaciers.size
    longest = 0
    for k in range(n):
        longest = max(longest, hi_[k] - lo_[k])
    w = np.empty(longest, dtype=np.float64)  # weights of the glacier at hand (index j - lo)
    for k in range(n):
        lo, hi = lo_[k], hi_[k]
        # pixels of other glaciers (or of none) inside this glacier's range must be skipped
        check = ordered and hi - lo != count[k]
        # ---- geometry and checks
        pixels = 0.0
        area = 0.0
        volume = 0.0
        zmax = -np.inf
        zmin = np.inf
        bad_h = 0.0
        bad_z = 0.0
        bad_a = 0.0
        for j in range(lo, hi):
            i = j if ordered else order[j]
            if check and _position(gid[i], table, glaciers, dense) != k:
                continue
            pixels += 1.0
            hi_v = h[i]
            if gid[i] > 0 and not (hi_v >= 0):
                bad_h += 1.0
            if hi_v > 0:
                ai = a[i]
                area += ai
                volume += ai * hi_v
                zi = z[i]
                if not np.isfinite(zi):
                    bad_z += 1.0
                if not (np.isfinite(ai) and ai > 0):
                    bad_a += 1.0
                if zi > zmax:
                    zmax = zi
                if -zi > -zmin:
                    zmin = zi
        fv[k, F_PIXELS] = pixels
        fv[k, F_AREA] = area
        fv[k, F_VOLUME] = volume
        fv[k, F_ZMAX] = zmax if np.isfinite(zmax) else np.nan
        fv[k, F_ZMIN] = zmin if np.isfinite(zmin) else np.nan
        fv[k, F_BAD_H] = bad_h
        fv[k, F_BAD_Z] = bad_z
        fv[k, F_BAD_A] = bad_a
        km2 = area / M2_PER_KM2
        cls = 1
        if km2 < thresholds[0]:
            cls = 0
        if km2 >= thresholds[1] and km2 <= thresholds[2]:
            cls = 2
        if km2 > thresholds[2]:
            cls = 3
        iv[k, I_SIZE] = cls
        target = smb[k] * area * rho_water / rho_ice  # numpy's order of operations
        fv[k, F_TARGET] = target
        if bad_h > 0 or bad_z > 0 or bad_a > 0 or pixels == 0:
            iv[k, I_CONVERGED] = 0
            continue  # the caller raises; no output is returned
        if calibrated[k]:
            gam, ca, cb, cc = coef[k, 0], coef[k, 1], coef[k, 2], coef[k, 3]
            uniform = False
        else:
            gam, ca, cb, cc = generic[cls, 0], generic[cls, 1], generic[cls, 2], generic[cls, 3]
            uniform = cls == 0
        span = zmax - zmin
        int_gam = int(gam) if (gam == np.floor(gam) and 1.0 <= gam <= 16.0) else 0
        # ---- curve weights and their sum
        wsum = 0.0
        for j in range(lo, hi):
            i = j if ordered else order[j]
            wj = 0.0
            if h[i] > 0 and not (check and _position(gid[i], table, glaciers, dense) != k):
                if uniform:
                    wj = 1.0
                else:
                    hr = (zmax - z[i]) / span if span > 0 else 0.0
                    x = hr + ca
                    d = _power(x if x > 0.0 else 0.0, gam, int_gam) + cb * x + cc
                    wj = 0.0 if d < 0.0 else (1.0 if d > 1.0 else d)
                wsum += a[i] * wj
            w[j - lo] = wj
        if uniform or wsum <= 0:
            if not uniform:  # all curve weights 0: uniform change, weight 1 on the ice pixels
                for j in range(lo, hi):
                    i = j if ordered else order[j]
                    if h[i] > 0 and not (check and _position(gid[i], table, glaciers, dense) != k):
                        w[j - lo] = 1.0
            wsum = area
        # ---- solver rounds (solve_scaling, for this glacier)
        goal = target if np.isfinite(target) else 0.0
        gone = goal < 0 and -goal >= volume and volume > 0
        scale = goal / wsum if (wsum > 0 and not gone) else 0.0
        lower = 0.0
        tol = rtol * abs(goal) + rounding * volume
        change = 0.0
        area_new = 0.0
        todo = False
        it = 0
        for it in range(1, max_iter + 1):
            change = 0.0
            w_new = 0.0
            area_new = 0.0
            for j in range(lo, hi):
                i = j if ordered else order[j]
                if check and _position(gid[i], table, glaciers, dense) != k:
                    continue
                hv = h[i]
                if not hv > 0:  # ice-free pixel of the glacier: unchanged
                    h_out[i] = hv
                    z_out[i] = z[i]
                    continue
                wj = w[j - lo]
                upd = hv + scale * wj
                upd -= lower
                if upd < 0.0:
                    upd = 0.0
                if gone:
                    upd = 0.0
                ai = a[i]
                d = upd - hv
                change += ai * d
                if upd > 0:
                    w_new += ai * wj
                    area_new += ai
                # the outputs of every round: the last round's (final scale and lower) are kept
                h_out[i] = upd
                z_out[i] = z[i] + d
            remainder = goal - change
            todo = goal < 0 and not gone and area_new > 0 and abs(remainder) > tol
            if not todo or it == max_iter:
                break
            if w_new > 0:
                scale += remainder / w_new
            else:
                lower -= remainder / area_new
        fv[k, F_SCALE] = scale
        fv[k, F_LOWER] = lower
        fv[k, F_CHANGE] = change
        fv[k, F_AREA_NEW] = area_new
        iv[k, I_GONE] = 1 if gone else 0
        iv[k, I_CONVERGED] = 0 if todo else 1
        iv[k, I_PASSES] = it


class FusedResult:
    """Per-glacier vectors of one fused update (aligned with ``glaciers``)."""

    def __init__(self, fv: np.ndarray, iv: np.ndarray, negative: int):
        self.pixels, self.area, self.volume = fv[:, F_PIXELS], fv[:, F_AREA], fv[:, F_VOLUME]
        self.zmax, self.zmin = fv[:, F_ZMAX], fv[:, F_ZMIN]
        self.bad = {"bad_thickness": fv[:, F_BAD_H], "bad_surface": fv[:, F_BAD_Z], "bad_area": fv[:, F_BAD_A]}
        self.target = fv[:, F_TARGET]
        self.size_cls = iv[:, I_SIZE].astype("int8")
        self.negative = negative
        passes = int(iv[:, I_PASSES].max()) if iv.shape[0] else 0
        self.solution = K.Solution(fv[:, F_SCALE], fv[:, F_LOWER], iv[:, I_GONE] > 0, fv[:, F_CHANGE],
                                   fv[:, F_AREA_NEW], passes, iv[:, I_CONVERGED] > 0)


def _table(glaciers: np.ndarray):
    if glaciers.size and glaciers[0] >= 0 and glaciers[-1] <= 16 * glaciers.size + 65536:
        table = np.full(int(glaciers[-1]) + 1, -1, dtype=np.int64)
        table[glaciers] = np.arange(glaciers.size)
        return table, True
    return np.zeros(1, dtype=np.int64), False


def deltah_update_fused(gid, thickness, surface, area, glaciers, smb, *, rho_ice=900.0, rho_water=1000.0,
                        max_iter=100, rtol=1e-9, calibrated=None, coefficients=None):
    """The delta-h update of :func:`~glacgrid.geometry._kernels.deltah_update_arrays`, compiled and fused.

    Takes the same arguments (any shape; glacier indices integer, the rest converted to float64)
    and returns ``(new_thickness, new_surface, result)`` with ``result`` a :class:`FusedResult`
    (per-glacier geometry, input-check counts, target and the solver's ``Solution``). The caller
    checks ``result.pixels``, ``result.bad`` and ``result.negative`` before using the outputs:
    glaciers failing a check are not solved (their outputs are left undefined).
    """
    shape = np.shape(thickness)
    gid = np.ascontiguousarray(gid).ravel()
    if gid.dtype not in (np.int32, np.int64):
        gid = gid.astype(np.int64)
    h, z, a = (np.ascontiguousarray(v, dtype=np.float64).ravel() for v in (thickness, surface, area))
    glaciers = np.ascontiguousarray(glaciers, dtype=np.int64)
    n = glaciers.size
    smb = np.ascontiguousarray(smb, dtype=np.float64)
    cal = np.zeros(n, dtype=np.bool_) if calibrated is None else np.ascontiguousarray(calibrated, dtype=np.bool_)
    coef = np.zeros((n, 4))
    if coefficients is not None:
        coef = np.ascontiguousarray(np.stack([np.asarray(coefficients[k], dtype=np.float64)
                                              for k in ("gamma", "a", "b", "c")], axis=1))
    table, dense = _table(glaciers)
    h_out, z_out = np.empty_like(h), np.empty_like(z)
    first, last, count, negative, unassigned, ordered = _index(gid, h, z, h_out, z_out, table, glaciers,
                                                               dense, n)
    if ordered:
        lo, hi, order = np.maximum(first, 0), last + 1, np.zeros(1, dtype=np.int64)
    else:
        start, order = _counting_sort(gid, table, glaciers, dense, count)
        lo, hi = start[:-1], start[1:]
    fv = np.zeros((n, 13))
    iv = np.zeros((n, 4), dtype=np.int64)
    _glaciers(gid, h, z, a, h_out, z_out, table, glaciers, dense, ordered, lo, hi, count, order, smb, cal, coef,
              _GENERIC, _THRESHOLDS, float(rho_water), float(rho_ice), int(max_iter), float(rtol), _ROUNDING,
              fv, iv)
    return h_out.reshape(shape), z_out.reshape(shape), FusedResult(fv, iv, int(negative))
