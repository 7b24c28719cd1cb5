"""Numpy kernels of the downscaling stage. No xarray here."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..units import T0

__all__ = ["bilinear_weights", "bilinear_apply", "lapse_rate_correction", "solid_fraction", "bilinear_at",
           "orography_terms", "pixel_fields"]


def bilinear_weights(src: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour index and weight of the right neighbour for 1-D linear interpolation.

    ``src`` is strictly ascending (n >= 2); targets outside ``[src[0], src[-1]]`` take the edge value
    (weight clipped to 0 or 1).
    """
    i = np.clip(np.searchsorted(src, target, side="right") - 1, 0, src.size - 2)
    w = (target - src[i]) / (src[i + 1] - src[i])
    return i, np.clip(w, 0.0, 1.0)


def bilinear_apply(field: np.ndarray, j: np.ndarray, wy: np.ndarray, i: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``field[..., lat, lon]`` at points given by indices and weights.

    ``j, wy`` (latitude) and ``i, wx`` (longitude) have the target shape (e.g. ``(ny, nx)``); the
    result has shape ``field.shape[:-2] + target shape`` and the dtype of ``field`` and the weights
    combined (pass float32 weights to keep float32: half the memory per block). Written as two
    nested linear interpolations to keep temporaries few.
    """
    top = field[..., j, i]
    top = top + wx * (field[..., j, i + 1] - top)
    bot = field[..., j + 1, i]
    bot = bot + wx * (field[..., j + 1, i + 1] - bot)
    return top + wy * (bot - top)


def lapse_rate_correction(t_coarse: np.ndarray, z_coarse: np.ndarray, z_fine: np.ndarray, lapse_rate: float) -> np.ndarray:
    """Temperature moved from elevation ``z_coarse`` to ``z_fine`` with ``lapse_rate`` (K m-1)."""
    return t_coarse + lapse_rate * (z_fine - z_coarse)


def solid_fraction(temp_c: np.ndarray, snow_threshold: float, rain_threshold: float) -> np.ndarray:
    """Share of precipitation falling as snow: 1 below ``snow_threshold``, 0 above ``rain_threshold``
    (degC), linear in between."""
    return np.clip((rain_threshold - temp_c) / (rain_threshold - snow_threshold), 0.0, 1.0)


def lapse_rate_correction_c(t_kelvin: np.ndarray, z_coarse: np.ndarray, z_fine: np.ndarray,
                            lapse_rate: np.ndarray) -> np.ndarray:
    """Temperature (degC) at ``z_fine`` from ``t_kelvin`` at ``z_coarse``; ``lapse_rate`` (K m-1) broadcasts
    against the time axis (shape ``(time, 1, 1)`` after xarray broadcasting, or a scalar)."""
    dz = (np.asarray(z_fine, dtype="float64") - z_coarse).astype("float32")  # (y, x)
    gamma = np.asarray(lapse_rate, dtype="float32")
    return (t_kelvin.astype("float32", copy=False) - np.float32(T0)) + gamma * dz


def precip_correction(p: np.ndarray, z_coarse: np.ndarray, z_fine: np.ndarray, factor: float,
                      gradient: float) -> np.ndarray:
    """``p * factor * max(1 + gradient * (z_fine - z_coarse), 0)``, never negative (kg m-2)."""
    scale = np.maximum(1.0 + gradient * (np.asarray(z_fine, dtype="float64") - z_coarse), 0.0) * factor
    return np.maximum(p.astype("float32", copy=False) * scale.astype("float32"), np.float32(0.0))


def regress_slope(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope of ``y[..., n]`` against ``x[n]`` and the coefficient of determination r2."""
    x = np.asarray(x, dtype="float64")
    xa = x - x.mean()
    ya = y - y.mean(axis=-1, keepdims=True)
    sxx = (xa * xa).sum()
    slope = (ya * xa).sum(axis=-1) / sxx
    syy = (ya * ya).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(syy > 0, slope**2 * sxx / syy, np.nan)
    return slope, r2


# ---------------------------------------------------------------------------- quantile mapping
def qm_fit(x: np.ndarray, month: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Empirical quantiles of ``x[..., time]`` per calendar month: shape ``x.shape[:-1] + (12, nq)``.

    A month without any finite value gives NaN quantiles (applying them then raises upstream).
    """
    out = np.full(x.shape[:-1] + (12, quantiles.size), np.nan, dtype="float64")
    for m in range(1, 13):
        sel = month == m
        if sel.any():
            with np.errstate(all="ignore"):
                q = np.nanquantile(x[..., sel].astype("float64"), quantiles, axis=-1)  # (nq, ...)
            out[..., m - 1, :] = np.moveaxis(q, 0, -1)
    return out


def qm_apply(x: np.ndarray, month: np.ndarray, sim_q: np.ndarray, ref_q: np.ndarray, kind: str) -> np.ndarray:
    """Empirical quantile mapping of ``x[..., time]``: ``x -> x + (ref_q(p) - sim_q(p))`` (additive) or
    ``x * ref_q(p) / sim_q(p)`` (multiplicative), with ``p`` the non-exceedance probability of ``x``
    among ``sim_q`` of its calendar month (linear between quantiles). Beyond the fitted range the
    correction of the extreme quantile is kept constant. Multiplicative results are never negative.
    """
    out = np.empty(x.shape, dtype="float64")
    nq = sim_q.shape[-1]
    for m in range(1, 13):
        sel = month == m
        if not sel.any():
            continue
        xs = x[..., sel].astype("float64")                     # (..., t)
        sq = sim_q[..., m - 1, :]                              # (..., nq)
        rq = ref_q[..., m - 1, :]
        if kind == "additive":
            d = rq - sq
        else:
            with np.errstate(all="ignore"):
                d = np.where(sq > 0, rq / np.where(sq > 0, sq, 1.0), 1.0)
        k = (xs[..., :, None] >= sq[..., None, :]).sum(axis=-1)  # (..., t): quantiles below or at x
        k = np.clip(k, 1, nq - 1)
        x0 = np.take_along_axis(sq, k - 1, axis=-1)
        x1 = np.take_along_axis(sq, k, axis=-1)
        with np.errstate(all="ignore"):
            w = np.where(x1 > x0, (xs - x0) / (x1 - x0), 0.0)
        w = np.clip(w, 0.0, 1.0)
        delta = (1 - w) * np.take_along_axis(d, k - 1, axis=-1) + w * np.take_along_axis(d, k, axis=-1)
        out[..., sel] = xs + delta if kind == "additive" else np.maximum(xs * delta, 0.0)
    return out.astype("float32")


def conservative_weights(src: np.ndarray, target: np.ndarray, half_width: np.ndarray | float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Lower cell index and weight of the upper cell for first-order conservative remapping in 1-D.

    Source cells are centred on ``src`` (strictly ascending) with edges half-way between centres; a
    target pixel spans ``target +- half_width``. For pixels smaller than cells (fine targets), the
    pixel straddles at most the cell edge nearest to its centre, and the returned weight is the share
    of the pixel beyond that edge, so ``bilinear_apply`` with these weights gives the overlap-weighted
    mean. Beyond the outermost edges the outermost cell is used.
    """
    edges = (src[:-1] + src[1:]) / 2
    j = np.searchsorted(edges, target)
    lo = np.clip(j - 1, 0, edges.size - 1)
    hi = np.clip(j, 0, edges.size - 1)
    k = np.where(np.abs(target - edges[lo]) <= np.abs(edges[hi] - target), lo, hi)
    h = np.maximum(np.asarray(half_width, dtype="float64"), 1e-12)
    w = np.clip((target + h - edges[k]) / (2 * h), 0.0, 1.0)
    return k, w


@njit(cache=True, nogil=True, inline="always")
def bilinear_at(f, jj, ii, wy, wx):  # pragma: no cover - compiled
    """:func:`bilinear_apply` of the 2-D field ``f`` at one point (float32 field and weights: the same
    operations in the same order, the same value to the bit). For compiled callers."""
    top = f[jj, ii]
    top = top + wx * (f[jj, ii + 1] - top)
    bot = f[jj + 1, ii]
    bot = bot + wx * (f[jj + 1, ii + 1] - bot)
    return top + wy * (bot - top)


@njit(cache=True, nogil=True)
def _orography_terms(orog, j, wy, i, wx, z, gradient, factor, dz, scale):  # pragma: no cover - compiled
    for p in range(j.size):
        zc = bilinear_at(orog, j[p], i[p], wy[p], wx[p])
        dz[p] = np.float32(np.float64(z[p]) - np.float64(zc))
        s = 1.0 + gradient * (np.float64(z[p]) - np.float64(zc))
        if s < 0.0:  # (NaN stays NaN, as np.maximum keeps it)
            s = 0.0
        scale[p] = np.float32(s * factor)


@njit(cache=True, nogil=True)
def _pixels(t2m, tp, j, wy, i, wx, dz, scale, gamma, t0, temp, prcp):  # pragma: no cover - compiled
    nt = t2m.shape[0]
    n = j.size
    zero = np.float32(0.0)
    for a in range(0, n, 512):
        b = min(a + 512, n)
        for m in range(nt):  # month by month: each month's window stays in cache, writes are contiguous
            f = t2m[m]
            g = tp[m]
            gm = gamma[m]
            for p in range(a, b):
                temp[m, p] = (bilinear_at(f, j[p], i[p], wy[p], wx[p]) - t0) + gm * dz[p]
                pc = bilinear_at(g, j[p], i[p], wy[p], wx[p]) * scale[p]
                prcp[m, p] = zero if pc < zero else pc


def pixel_fields(t2m, tp, j, wy, i, wx, dz, scale, gamma, temp, prcp) -> None:
    """Fill ``temp`` and ``prcp`` ``(time, n)`` at the points from ``(time, lat, lon)`` windows and the points'
    :func:`orography_terms`: :func:`bilinear_apply`, :func:`lapse_rate_correction_c` and
    :func:`precip_correction` in one compiled pass (the same float32/float64 operations in the same order:
    the same values to the bit)."""
    _pixels(np.ascontiguousarray(t2m, dtype="float32"), np.ascontiguousarray(tp, dtype="float32"),
            np.ascontiguousarray(j, dtype="int64"), np.ascontiguousarray(wy, dtype="float32"),
            np.ascontiguousarray(i, dtype="int64"), np.ascontiguousarray(wx, dtype="float32"),
            np.ascontiguousarray(dz, dtype="float32"), np.ascontiguousarray(scale, dtype="float32"),
            np.ascontiguousarray(gamma, dtype="float32"), np.float32(T0), temp, prcp)


def orography_terms(orog: np.ndarray, j, wy, i, wx, z: np.ndarray, factor: float, gradient: float):
    """Per point the float32 elevation difference to the interpolated climate orography (the lapse-rate
    term of :func:`lapse_rate_correction_c`) and the precipitation scale of :func:`precip_correction`."""
    n = np.size(j)
    dz, scale = np.empty(n, dtype="float32"), np.empty(n, dtype="float32")
    _orography_terms(np.ascontiguousarray(orog, dtype="float32"), np.ascontiguousarray(j, dtype="int64"),
                     np.ascontiguousarray(wy, dtype="float32"), np.ascontiguousarray(i, dtype="int64"),
                     np.ascontiguousarray(wx, dtype="float32"), np.ascontiguousarray(z, dtype="float32"),
                     float(gradient), float(factor), dz, scale)
    return dz, scale


# ----------------------------------------------------------------------------- learned downscaling
#: Predictors of the learned downscaling, in column order (see :func:`learned_features`).
LEARNED_FEATURES = ("coarse", "elevation", "dz", "lat", "lon", "month_sin", "month_cos")
#: Precipitation offset (kg m-2 per month) of the log-ratio target of the learned downscaling.
LEARNED_PR_OFFSET = 1.0


def learned_features(coarse: np.ndarray, z_coarse: np.ndarray, z: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                     month: np.ndarray) -> np.ndarray:
    """The ``(n, 7)`` float64 predictor table of the learned downscaling, one row per (time, point).

    ``coarse`` is the coarse field interpolated to the points, ``(time, *space)``; ``z_coarse`` (the
    interpolated coarse orography), ``z`` (the points' elevation), ``lat``, ``lon`` have the ``space``
    shape; ``month`` (1..12) has ``(time,)``. Rows are time-major (C order of ``coarse``). Columns:
    :data:`LEARNED_FEATURES`; the month enters as a point on the unit circle (December next to January).
    """
    coarse = np.asarray(coarse, dtype="float64")
    shape = coarse.shape
    nt = shape[0]
    npt = int(np.prod(shape[1:], dtype="int64"))
    z = np.asarray(z, dtype="float64").reshape(-1)
    zc = np.asarray(z_coarse, dtype="float64").reshape(-1)
    ang = 2.0 * np.pi * (np.asarray(month, dtype="float64").reshape(-1) - 1.0) / 12.0
    out = np.empty((nt, npt, 7), dtype="float64")
    out[..., 0] = coarse.reshape(nt, npt)
    out[..., 1] = z[None, :]
    out[..., 2] = (z - zc)[None, :]
    out[..., 3] = np.asarray(lat, dtype="float64").reshape(-1)[None, :]
    out[..., 4] = np.asarray(lon, dtype="float64").reshape(-1)[None, :]
    out[..., 5] = np.sin(ang)[:, None]
    out[..., 6] = np.cos(ang)[:, None]
    return out.reshape(nt * npt, 7)


@njit(cache=True, nogil=True)
def _tree_sum(X, roots, left, right, feature, threshold, value, out):  # pragma: no cover - compiled
    for r in range(X.shape[0]):
        s = 0.0
        for t in range(roots.size):
            node = roots[t]
            while left[node] >= 0:
                if np.float64(np.float32(X[r, feature[node]])) <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            s += value[node]
        out[r] = s


def tree_sum(X: np.ndarray, roots: np.ndarray, left: np.ndarray, right: np.ndarray, feature: np.ndarray,
             threshold: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Sum over flattened regression trees of each row's leaf value (float64, one value per row of ``X``).

    Trees are concatenated: ``roots`` holds each tree's root index; ``left``/``right`` are global node
    indices (-1 at leaves). A row goes left where ``float32(x) <= threshold``, as scikit-learn decides.
    Rows holding NaN go right at every split (the caller masks them).
    """
    X = np.ascontiguousarray(X, dtype="float64")
    out = np.empty(X.shape[0], dtype="float64")
    _tree_sum(X, np.ascontiguousarray(roots, dtype="int64"), np.ascontiguousarray(left, dtype="int64"),
              np.ascontiguousarray(right, dtype="int64"), np.ascontiguousarray(feature, dtype="int64"),
              np.ascontiguousarray(threshold, dtype="float64"), np.ascontiguousarray(value, dtype="float64"), out)
    return out


def learned_target(fine: np.ndarray, coarse: np.ndarray, kind: str) -> np.ndarray:
    """Training target of the learned downscaling: ``fine - coarse`` (``kind="+"``, temperature) or
    ``log((fine + c) / (coarse + c))`` with ``c`` = :data:`LEARNED_PR_OFFSET` (``"*"``, precipitation)."""
    fine, coarse = np.asarray(fine, dtype="float64"), np.asarray(coarse, dtype="float64")
    if kind == "+":
        return fine - coarse
    c = LEARNED_PR_OFFSET
    return np.log((np.maximum(fine, 0.0) + c) / (np.maximum(coarse, 0.0) + c))


def learned_inverse(pred: np.ndarray, coarse: np.ndarray, kind: str) -> np.ndarray:
    """The fine field from the predicted target (:func:`learned_target` inverted; precipitation >= 0)."""
    pred, coarse = np.asarray(pred, dtype="float64"), np.asarray(coarse, dtype="float64")
    if kind == "+":
        return coarse + pred
    c = LEARNED_PR_OFFSET
    return np.maximum((np.maximum(coarse, 0.0) + c) * np.exp(pred) - c, 0.0)
