"""Numpy kernels calibrating glacier-specific delta-h curves from observed elevation change. No xarray.

Input: flat pixel arrays of glacier position (``pos``: 0..G-1, -1 = not used), surface elevation
``z`` (m) and elevation change ``dh`` (m) over a period. Output: per glacier, the binned normalised
thickness change and the coefficients ``gamma, a, b, c`` of the Huss et al. (2010) form
``Δh = (h_r + a)**gamma + b (h_r + a) + c`` (clipped to [0, 1]) fitted to it.

Rules (all parameters of :class:`CalibrationRules`; counts of each are reported per glacier):

1. *invalid*: pixels with non-finite ``dh`` or ``z`` are not used (nodata).
2. *implausible*: ``dh`` outside ``[-max_loss, max_gain]`` (m) is a DEM blunder, not ice change.
3. *outlier*: within each bin of normalised elevation of a glacier, ``|dh - median| > nmad_factor *
   max(NMAD, min_nmad)`` with ``NMAD = 1.4826 * median(|dh - median|)`` (robust 3-sigma rule).
4. A bin has a value only with at least ``min_bin_pixels`` pixels and ``min_bin_fraction`` of the
   glacier's kept pixels (the few pixels of steep headwalls carry the largest DEM errors).
   A glacier is calibrated only if it keeps ``min_pixels`` pixels and at least ``min_bins`` bins with
   a value, rules 2 and 3 removed at most ``max_rejected_fraction`` of its
   valid pixels, its reference loss (below) is at least ``min_loss`` (m) and the fitted curve's RMSE
   over the bins is at most ``max_rmse``. Otherwise its ``status`` (:data:`STATUS`) says why, its
   coefficients are NaN and the update falls back to the generic curve of its size class.

Normalisation: ``h_r = (z_max - z) / (z_max - z_min)`` with ``z_max, z_min`` of the glacier's valid
pixels (after rules 1-2); the binned change is the median ``dh`` per bin divided by the reference
loss, the most negative value of the 3-bin running median of the bin medians (so that one spurious
bin cannot set the scale; typically the terminus bins). Δh = 1 is the largest (smoothed) thinning;
thickening bins are negative, bins above the reference exceed 1.

Fit: least squares over the bins with data, each bin weighted equally, with ``b >= 0`` (a curve
that never decreases towards the terminus). ``b`` and ``c`` are linear given ``(gamma, a)`` and
solved in closed form for all glaciers at once on a grid of ``(gamma, a)``, then on a finer grid
around each glacier's best pair; the pair with the smallest error of the *clipped* curve wins.
Every step is vectorised over glaciers.
"""

from __future__ import annotations

from dataclasses import dataclass

import warnings

import numpy as np

__all__ = ["CalibrationRules", "STATUS", "bin_index", "group_median", "running_median3", "calibrate_arrays",
           "fit_curves"]


@dataclass(frozen=True)
class CalibrationRules:
    """Filters and fit settings of the delta-h calibration (see the module docstring)."""

    n_bins: int = 20                     # bins of h_r (width 1 / n_bins)
    max_loss: float = 250.0              # m, rule 2: larger losses are blunders
    max_gain: float = 100.0              # m, rule 2: larger gains are blunders
    nmad_factor: float = 3.0             # rule 3
    min_nmad: float = 1.0                # m, rule 3: floor of the NMAD (integer-rounded dh)
    min_pixels: int = 50                 # rule 4
    min_bins: int = 10                   # rule 4
    min_bin_pixels: int = 3              # rule 4: a bin with fewer pixels has no value ...
    min_bin_fraction: float = 0.01       # ... nor one with less than this fraction of the glacier's
    max_rejected_fraction: float = 0.3   # rule 4
    min_loss: float = 2.0                # m, rule 4: the reference loss must be at least this
    max_rmse: float = 0.3                # rule 4: poorer fits are not used
    gamma_range: tuple[float, float] = (0.5, 12.0)
    a_range: tuple[float, float] = (-0.6, 0.4)


#: Status codes of a glacier's calibration.
STATUS = {0: "calibrated", 1: "too few pixels", 2: "too few elevation bins", 3: "too many outliers",
          4: "no thinning to normalise by", 5: "poor fit"}


def bin_index(h_r: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of normalised elevation (0 .. n_bins-1, h_r = 1 in the last bin)."""
    return np.clip(np.floor(np.asarray(h_r) * n_bins), 0, n_bins - 1).astype("int64")


def group_median(key: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Median and count of ``values`` per integer ``key`` (0 .. n-1); NaN median for empty keys."""
    order = np.lexsort((values, key))
    k, v = key[order], values[order]
    counts = np.bincount(k, minlength=n)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    med = np.full(n, np.nan)
    has = counts > 0
    lo = start[has] + (counts[has] - 1) // 2
    hi = start[has] + counts[has] // 2
    med[has] = 0.5 * (v[lo] + v[hi])
    return med, counts


def _group_extreme(pos, values, n, sign):
    out = np.full(n, -np.inf)
    np.maximum.at(out, pos, sign * values)
    return np.where(np.isinf(out), np.nan, sign * out)


def calibrate_arrays(pos: np.ndarray, z: np.ndarray, dh: np.ndarray, n_glaciers: int,
                     rules: CalibrationRules = CalibrationRules()) -> dict[str, np.ndarray]:
    """Filter, bin, normalise and fit; every output is a vector per glacier or a (glacier, bin) table.

    Parameters
    ----------
    pos : ndarray of int
        Glacier position of each pixel (0 .. n_glaciers-1); -1 for pixels of no glacier.
    z : ndarray
        Surface elevation (m) of each pixel (the reference DEM of the period).
    dh : ndarray
        Surface elevation change over the period (m) of each pixel.
    """
    pos, z, dh = (np.ravel(np.asarray(a)) for a in (pos, z, dh))
    pos = pos.astype("int64")
    g, nb = int(n_glaciers), int(rules.n_bins)
    in_gl = (pos >= 0) & (pos < g)
    valid = in_gl & np.isfinite(z) & np.isfinite(dh)                          # rule 1
    plausible = valid & (dh >= -rules.max_loss) & (dh <= rules.max_gain)     # rule 2
    n_valid = np.bincount(pos[valid], minlength=g)
    n_implausible = n_valid - np.bincount(pos[plausible], minlength=g)

    p, zz, dd = pos[plausible], z[plausible], dh[plausible]
    zmax, zmin = _group_extreme(p, zz, g, 1.0), _group_extreme(p, zz, g, -1.0)
    span = (zmax - zmin)[p]
    with np.errstate(invalid="ignore", divide="ignore"):
        h_r = np.where(span > 0, (zmax[p] - zz) / span, 0.0)
    key = p * nb + bin_index(h_r, nb)
    med, _ = group_median(key, dd, g * nb)                                   # rule 3
    nmad = 1.4826 * group_median(key, np.abs(dd - med[key]), g * nb)[0]
    keep = np.abs(dd - med[key]) <= rules.nmad_factor * np.maximum(nmad, rules.min_nmad)[key]
    n_outliers = np.bincount(p[~keep], minlength=g)

    med, counts = group_median(key[keep], dd[keep], g * nb)
    med, counts = med.reshape(g, nb), counts.reshape(g, nb)
    n_kept = np.bincount(p[keep], minlength=g)
    used = (counts >= rules.min_bin_pixels) & (counts >= rules.min_bin_fraction * n_kept[:, None])
    med = np.where(used, med, np.nan)
    smooth = running_median3(med)
    with np.errstate(invalid="ignore"):
        reference = np.where(used.any(axis=1), np.nanmin(np.where(np.isfinite(smooth), smooth, np.inf),
                                                          axis=1), np.nan)
    rejected = (n_implausible + n_outliers) / np.maximum(n_valid, 1)

    status = np.zeros(g, dtype="int8")                                       # rule 4, last wins order
    status[~(reference <= -rules.min_loss)] = 4
    status[rejected > rules.max_rejected_fraction] = 3
    status[used.sum(axis=1) < rules.min_bins] = 2
    status[n_kept < rules.min_pixels] = 1
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(used & (status == 0)[:, None], med / reference[:, None], np.nan)
    centres = (np.arange(nb) + 0.5) / nb
    fit = fit_curves(centres, norm, rules)
    status[(status == 0) & ~(fit["rmse"] <= rules.max_rmse)] = 5
    ok = status == 0
    for k in ("gamma", "a", "b", "c"):  # (rmse is kept: it says how poor a rejected fit was)
        fit[k] = np.where(ok, fit[k], np.nan)
    return {
        **fit, "status": status, "calibrated": ok, "zmax": zmax, "zmin": zmin,
        "dh_reference": reference, "n_valid": n_valid, "n_implausible": n_implausible,
        "n_outliers": n_outliers, "n_pixels": n_kept, "bin_centre": centres,
        "bin_dh": med, "bin_count": counts, "bin_dh_norm": norm,
    }


def running_median3(values: np.ndarray) -> np.ndarray:
    """Median of each entry and its two neighbours along the last axis, ignoring NaN (edges: 2)."""
    v = np.asarray(values, dtype="float64")
    pad = np.full(v.shape[:-1] + (1,), np.nan)
    stack = np.stack([np.concatenate([pad, v[..., :-1]], -1), v, np.concatenate([v[..., 1:], pad], -1)])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN
        out = np.nanmedian(stack, axis=0)
    return np.where(np.isfinite(v), out, np.nan)


def _curve(x, gamma, b, c):
    return np.clip(np.power(np.clip(x, 0.0, None), gamma) + b * x + c, 0.0, 1.0)


def _linear_part(x, r, m):
    """Least-squares ``b >= 0`` and ``c`` of ``r = b x + c`` over the bins ``m`` (last axis)."""
    n = np.maximum(m.sum(-1), 1)
    wx, wr = np.where(m, x, 0.0), np.where(m, r, 0.0)
    mx, mr = wx.sum(-1) / n, wr.sum(-1) / n
    sxx = np.where(m, (x - mx[..., None]) ** 2, 0.0).sum(-1)
    sxr = np.where(m, (x - mx[..., None]) * (r - mr[..., None]), 0.0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.where(sxx > 0, np.maximum(sxr / sxx, 0.0), 0.0)  # b >= 0: the constrained optimum
    return b, mr - b * mx


def _best_on_grid(h, y, m, gammas, avals):
    """For each glacier the candidate (gamma, a) of smallest clipped error; b, c in closed form.

    ``h`` (B,), ``y`` and ``m`` (G, B); ``gammas``/``avals`` (K, G) or (K, 1) candidate pairs.
    ``b, c`` are first fitted to all bins, then twice more without the bins where both the curve
    and the data lie beyond the clip (0 or 1): there the clipped curve fits whatever ``b, c`` are.
    """
    shape = (max(gammas.shape[0], avals.shape[0]), y.shape[0], h.size)    # (K, G, B)
    x = np.broadcast_to(h[None, None, :] + avals[:, :, None], shape)
    f = np.power(np.clip(x, 0.0, None), gammas[:, :, None])
    yy = np.where(m, y, 0.0)[None]
    r = yy - f                                               # y - power term
    mm = np.broadcast_to(m[None], shape)
    b, c = _linear_part(x, r, mm)
    for _ in range(2):
        raw = f + b[..., None] * x + c[..., None]
        active = mm & ~((raw >= 1.0) & (yy >= 1.0)) & ~((raw <= 0.0) & (yy <= 0.0))
        b, c = _linear_part(x, r, active)
    err = np.where(mm, (_curve(x, gammas[:, :, None], b[..., None], c[..., None]) - yy) ** 2, 0.0).sum(-1)
    best = np.argmin(np.where(np.isfinite(err), err, np.inf), axis=0)     # (G,)
    cols = np.arange(y.shape[0])
    pick = lambda arr: np.broadcast_to(arr, err.shape)[best, cols]  # noqa: E731
    return pick(gammas), pick(avals), b[best, cols], c[best, cols], err[best, cols]


def fit_curves(centres: np.ndarray, norm: np.ndarray, rules: CalibrationRules = CalibrationRules()):
    """Fit ``(gamma, a, b, c)`` per glacier to binned normalised change ``norm`` (G, B; NaN = no bin).

    Returns a dict of vectors ``gamma, a, b, c`` and ``rmse`` (1, of the clipped curve over the bins).
    """
    y = np.asarray(norm, dtype="float64")
    m = np.isfinite(y)
    y = np.where(m, y, 0.0)
    g = y.shape[0]
    if g == 0:
        return {k: np.zeros(0) for k in ("gamma", "a", "b", "c", "rmse")}
    g0, g1 = rules.gamma_range
    a0, a1 = rules.a_range
    gg, aa = np.meshgrid(np.linspace(g0, g1, 47), np.linspace(a0, a1, 51), indexing="ij")
    gamma, a, b, c, err = _best_on_grid(centres, y, m, gg.reshape(-1, 1), aa.reshape(-1, 1))
    # refine around each glacier's best pair (step / 10 of the coarse grid, same span as one cell)
    dg, da = (g1 - g0) / 46, (a1 - a0) / 50
    og, oa = np.meshgrid(np.linspace(-dg, dg, 21), np.linspace(-da, da, 21), indexing="ij")
    cand_g = np.clip(gamma[None, :] + og.reshape(-1, 1), g0, g1)
    cand_a = np.clip(a[None, :] + oa.reshape(-1, 1), a0, a1)
    gamma, a, b, c, err = _best_on_grid(centres, y, m, cand_g, cand_a)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt(err / m.sum(axis=1))
    return {"gamma": gamma, "a": a, "b": b, "c": c, "rmse": rmse}
