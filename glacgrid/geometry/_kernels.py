"""Numpy kernels of the Huss et al. (2010) delta-h geometry update. No xarray here.

The update of one glacier ``g`` with ice-covered pixels ``i`` (thickness ``h_i > 0``), pixel areas
``A_i`` (m2) and Huss weights ``w_i`` (the normalised thickness change Δh, 0..1) is written as

    h_i' = max(h_i + scale_g * w_i - lower_g, 0)        (h_i' = 0 everywhere if gone_g)

``scale_g`` (m per unit weight) is the Huss scaling factor f_s: positive for a gain, negative for a
loss. For a loss, pixels that would fall below zero are clipped and the unmet remainder is
redistributed over the pixels that still hold ice with the same weights; this raises ``|scale_g|``
step by step. Once every remaining ice pixel has weight 0 the remainder is spread uniformly over
them, which is ``lower_g`` (m). A glacier whose loss is at least its volume is ``gone``.

Each redistribution step of :func:`solve_scaling` is one Newton step on the concave, piecewise linear
function ``scale -> achieved loss``: it starts from below and cannot overshoot, so the iteration is
monotone and ends after at most as many steps as the glacier has pixels (in practice a handful).
The solver only sees per-glacier vectors; the per-pixel sums come from a ``reduce_step`` callback,
numpy (:func:`group_sum`) here and flox in :mod:`glacgrid.geometry.grouped`.

Glaciers are addressed by *position* in a sorted vector ``glaciers`` of glacier indices;
:func:`glacgrid.glaciers.lookup` maps a glacier-index raster to positions (-1: not a glacier being updated).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from ..glaciers import lookup
from ..units import M2_PER_KM2

__all__ = [
    "HussParams", "HUSS_LARGE", "HUSS_MEDIUM", "HUSS_SMALL",
    "UNIFORM_MAX_AREA_KM2", "MEDIUM_MIN_AREA_KM2", "LARGE_MIN_AREA_KM2",
    "UNIFORM", "SMALL", "MEDIUM", "LARGE",
    "huss_deltah", "deltah_curve", "curve_vectors", "size_class", "normalised_elevation",
    "pixel_weights", "fallback_weights", "new_thickness",
    "step_terms", "group_sum", "group_max", "group_min", "StepSums", "Solution", "solve_scaling",
    "deltah_update_arrays", "glacier_stats", "uniform_fallback",
]


@dataclass(frozen=True)
class HussParams:
    """Coefficients of ``Δh = (h_r + a)**gamma + b (h_r + a) + c`` (Huss et al., 2010, Table 1)."""

    gamma: float
    a: float
    b: float
    c: float


#: Glaciers larger than 20 km2.
HUSS_LARGE = HussParams(gamma=6.0, a=-0.02, b=0.12, c=0.0)
#: Glaciers of 5 to 20 km2.
HUSS_MEDIUM = HussParams(gamma=4.0, a=-0.05, b=0.19, c=0.01)
#: Glaciers of 0.5 to 5 km2.
HUSS_SMALL = HussParams(gamma=2.0, a=-0.30, b=0.60, c=0.09)

#: Below this area (km2, exclusive) the thickness change is uniform (Δh = 1 everywhere).
UNIFORM_MAX_AREA_KM2 = 0.5
#: From this area (km2, inclusive) up to LARGE_MIN_AREA_KM2 (inclusive) a glacier is medium.
MEDIUM_MIN_AREA_KM2 = 5.0
#: Above this area (km2, exclusive) a glacier is large.
LARGE_MIN_AREA_KM2 = 20.0

#: Size-class codes returned by :func:`size_class`.
UNIFORM, SMALL, MEDIUM, LARGE = 0, 1, 2, 3
_CLASS_PARAMS = {SMALL: HUSS_SMALL, MEDIUM: HUSS_MEDIUM, LARGE: HUSS_LARGE}


def huss_deltah(h_r: np.ndarray, params: HussParams) -> np.ndarray:
    """Normalised thickness change Δh (1) at normalised elevation ``h_r`` (1, 0 top .. 1 terminus).

    The base ``h_r + a`` of the power is clipped at 0 before it is raised to ``gamma``, so that a real
    (non-integer) ``gamma`` never meets a negative base; the linear term uses the unclipped base. The
    result is clipped to [0, 1]. For the integer exponents of Huss et al. (2010) the clip only acts
    where ``h_r < -a`` (e.g. on small glaciers above ``h_r = 0.3`` it gives
    ``max(0, 0.6 h_r - 0.09)`` instead of the unclipped ``h_r**2``).
    """
    return deltah_curve(h_r, params.gamma, params.a, params.b, params.c)


def deltah_curve(h_r, gamma, a, b, c) -> np.ndarray:
    """:func:`huss_deltah` with coefficients given as arrays broadcasting against ``h_r``.

    Used for per-pixel coefficients (each pixel carries its glacier's curve, generic or calibrated).
    """
    x = np.asarray(h_r, dtype="float64") + a
    dh = np.power(np.clip(x, 0.0, None), gamma) + b * x + c
    return np.clip(dh, 0.0, 1.0)


def curve_vectors(size_cls: np.ndarray, calibrated: np.ndarray | None = None,
                  coefficients: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-glacier curve coefficients ``gamma, a, b, c`` and the ``uniform`` flag.

    Generic Huss et al. (2010) curves by size class; glaciers flagged in ``calibrated`` (bool, aligned
    with ``size_cls``) take their own ``coefficients`` (dict of arrays ``gamma, a, b, c`` aligned the
    same way) instead, whatever their size: an observed curve beats the generic uniform one.
    """
    cls = np.asarray(size_cls)
    out = {k: np.zeros(cls.shape) for k in ("gamma", "a", "b", "c")}
    for code, params in _CLASS_PARAMS.items():  # three size classes, not a loop over glaciers
        for k in out:
            out[k][cls == code] = getattr(params, k)
    out["gamma"][cls == UNIFORM] = 1.0  # unused (uniform), but keeps the power well defined
    uniform = cls == UNIFORM
    if calibrated is not None:
        cal = np.asarray(calibrated, dtype=bool)
        for k in ("gamma", "a", "b", "c"):
            out[k] = np.where(cal, coefficients[k], out[k])
        uniform = uniform & ~cal
    out["uniform"] = uniform
    return out


def size_class(area_km2: np.ndarray) -> np.ndarray:
    """Huss size class (int8 codes UNIFORM, SMALL, MEDIUM, LARGE) of glacier areas in km2.

    ``area < 0.5`` uniform; ``0.5 <= area < 5`` small; ``5 <= area <= 20`` medium; ``area > 20`` large.
    """
    area = np.asarray(area_km2, dtype="float64")
    out = np.full(area.shape, SMALL, dtype="int8")
    out[area < UNIFORM_MAX_AREA_KM2] = UNIFORM
    out[(area >= MEDIUM_MIN_AREA_KM2) & (area <= LARGE_MIN_AREA_KM2)] = MEDIUM
    out[area > LARGE_MIN_AREA_KM2] = LARGE
    return out


def normalised_elevation(z: np.ndarray, zmax: np.ndarray, zmin: np.ndarray) -> np.ndarray:
    """``h_r = (zmax - z) / (zmax - zmin)`` (1); 0 where ``zmax == zmin`` or undefined (m inputs)."""
    span = zmax - zmin
    with np.errstate(invalid="ignore", divide="ignore"):
        h_r = (zmax - z) / span
    return np.where(span > 0, h_r, 0.0)


def pixel_weights(pos, thickness, surface, *, zmax, zmin, gamma, a, b, c, uniform) -> np.ndarray:
    """Delta-h weight Δh (1) of each ice pixel; 0 on ice-free pixels and on glaciers not updated.

    Parameters
    ----------
    pos, thickness, surface : ndarray
        Position of the pixel's glacier in the updated glaciers (:func:`~glacgrid.glaciers.lookup`;
        -1 = none), ice thickness (m) and surface elevation (m) per pixel.
    zmax, zmin : ndarray
        Highest and lowest ice-covered surface of each glacier (m), aligned with ``glaciers``.
    gamma, a, b, c : ndarray
        Curve coefficients of each glacier (:func:`curve_vectors`).
    uniform : ndarray of bool
        Glaciers whose weights are replaced by 1 (uniform class, or all curve weights zero).
    """
    p = np.maximum(pos, 0)
    h_r = normalised_elevation(surface, zmax[p], zmin[p])
    w = deltah_curve(h_r, gamma[p], a[p], b[p], c[p])
    w[uniform[p]] = 1.0
    return np.where((pos >= 0) & (thickness > 0), w, 0.0)


def fallback_weights(pos, weight, *, uniform) -> np.ndarray:
    """``weight`` with 1 on the ice pixels of the ``uniform`` glaciers (see :func:`uniform_fallback`)."""
    p = np.maximum(pos, 0)
    return np.where((pos >= 0) & uniform[p] & (weight == 0), 1.0, weight) if uniform.any() else weight


def new_thickness(pos, thickness, weight, *, scale, lower, gone) -> np.ndarray:
    """Thickness (m) after the update ``max(h + scale w - lower, 0)`` on ice pixels with ``pos >= 0``."""
    p = np.maximum(pos, 0)
    h = np.asarray(thickness, dtype="float64")
    upd = h + scale[p] * weight
    if lower.any():
        upd -= lower[p]
    np.maximum(upd, 0.0, out=upd)
    if gone.any():
        upd[gone[p]] = 0.0
    return np.where((pos >= 0) & (h > 0), upd, h)


def step_terms(pos, thickness, area, weight, *, scale, lower, gone):
    """Per-pixel terms summed by a solver step: ``A dh`` (m3), ``A w`` and ``A`` (m2) where ice remains.

    All three are 0 (never NaN) off the ice pixels of the updated glaciers.
    """
    h = np.asarray(thickness, dtype="float64")
    h_new = new_thickness(pos, h, weight, scale=scale, lower=lower, gone=gone)
    remains = h_new > 0
    changed = (pos >= 0) & (h > 0)
    return (np.where(changed, area * (h_new - h), 0.0), np.where(remains & changed, area * weight, 0.0),
            np.where(remains & changed, area, 0.0))


def group_sum(pos: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sum of ``values`` per glacier position (``pos`` -1 ignored), length ``n``."""
    ok = pos >= 0
    return np.bincount(pos[ok], weights=values[ok], minlength=n).astype("float64")


def group_max(pos: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Maximum of ``values`` per glacier position; NaN for positions without pixels."""
    out = np.full(n, -np.inf)
    ok = pos >= 0
    np.maximum.at(out, pos[ok], values[ok])
    return np.where(np.isneginf(out), np.nan, out)


def group_min(pos: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Minimum of ``values`` per glacier position; NaN for positions without pixels."""
    return -group_max(pos, -np.asarray(values, dtype="float64"), n)


_ROUNDING = 16 * np.finfo("float64").eps


class StepSums(NamedTuple):
    """Per-glacier sums of :func:`step_terms`: volume change (m3), remaining ``Σ A w`` and area (m2)."""

    change: np.ndarray
    weight: np.ndarray
    area: np.ndarray


class Solution(NamedTuple):
    """Per-glacier result of :func:`solve_scaling` (vectors aligned with the glaciers)."""

    scale: np.ndarray      # m per unit weight (f_s; negative for a loss)
    lower: np.ndarray      # m, uniform lowering once the weighted pixels are exhausted
    gone: np.ndarray       # bool, loss >= volume: all ice removed
    change: np.ndarray     # m3, volume change achieved
    area: np.ndarray       # m2, ice-covered area after the update
    iterations: int        # reduction passes used (including the first)
    converged: np.ndarray  # bool


def solve_scaling(target: np.ndarray, volume: np.ndarray, weight_sum: np.ndarray,
                  reduce_step: Callable[[np.ndarray, np.ndarray, np.ndarray], StepSums], *,
                  max_iter: int = 100, rtol: float = 1e-9, stacklevel: int = 3) -> Solution:
    """Find ``scale``, ``lower`` and ``gone`` per glacier so that the volume change meets ``target``.

    Parameters
    ----------
    target : ndarray
        Volume change to reach per glacier (m3 of ice); NaN means no change.
    volume : ndarray
        Ice volume before the update (m3).
    weight_sum : ndarray
        ``Σ A w`` over each glacier's ice pixels (m2), with the weights actually used (> 0 for any
        glacier with ice: see the uniform fallback in :func:`deltah_update_arrays`).
    reduce_step : callable
        ``reduce_step(scale, lower, gone) -> StepSums``: one pass over the pixels.
    max_iter : int
        Maximum number of passes; glaciers still off target after it are reported by a warning.
    rtol : float
        Tolerance on ``|achieved - target|`` relative to ``|target|``; remainders below the rounding
        of the volume sum (``16 eps volume``) count as met too.
    stacklevel : int
        Of the not-converged warning (:func:`warn_not_converged`); 3 points at the caller of the
        function that calls :func:`solve_scaling`.
    """
    goal = np.where(np.isfinite(target), target, 0.0)
    gone = (goal < 0) & (-goal >= volume) & (volume > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where((weight_sum > 0) & ~gone, goal / weight_sum, 0.0)
    lower = np.zeros_like(scale)
    # Below the rounding of the glacier's volume sum a remainder cannot be resolved (tiny targets).
    tol = rtol * np.abs(goal) + _ROUNDING * volume
    for it in range(1, max_iter + 1):
        sums = reduce_step(scale, lower, gone)
        remainder = goal - sums.change
        todo = (goal < 0) & ~gone & (sums.area > 0) & (np.abs(remainder) > tol)
        if not todo.any() or it == max_iter:
            break
        # Redistribute the unmet remainder over the pixels that still hold ice, same weights ...
        by_weight = todo & (sums.weight > 0)
        scale[by_weight] += remainder[by_weight] / sums.weight[by_weight]
        # ... or uniformly, once all of them have weight 0.
        flat = todo & ~(sums.weight > 0) & (sums.area > 0)
        lower[flat] -= remainder[flat] / sums.area[flat]
    converged = ~todo
    warn_not_converged(converged, rtol=rtol, max_iter=max_iter, stacklevel=stacklevel)
    return Solution(scale, lower, gone, sums.change, sums.area, it, converged)


def warn_not_converged(converged: np.ndarray, *, rtol: float, max_iter: int, stacklevel: int) -> None:
    """RuntimeWarning naming how many glaciers missed their volume change after ``max_iter`` passes."""
    if not converged.all():
        warnings.warn(
            f"delta-h: {int((~converged).sum())} glacier(s) did not reach their volume change within "
            f"rtol={rtol} after max_iter={max_iter} passes; their achieved change is reported in "
            "'volume_change'. Raise max_iter to continue.", RuntimeWarning, stacklevel=stacklevel + 1,
        )


def deltah_update_arrays(gid, thickness, surface, area, glaciers, smb, *, rho_ice=900.0,
                         rho_water=1000.0, max_iter=100, rtol=1e-9, calibrated=None, coefficients=None):
    """The whole delta-h update on numpy arrays (per-glacier sums by ``np.bincount``).

    Parameters
    ----------
    gid, thickness, surface, area : ndarray
        Glacier index (0 = none), ice thickness (m), surface elevation (m), pixel area (m2).
    glaciers : ndarray of int, sorted, unique
        Glacier indices to update.
    smb : ndarray
        Glacier-wide SMB (m w.e.) aligned with ``glaciers``; NaN means no change.
    rho_ice, rho_water : float
        Densities (kg m-3) converting m w.e. to m of ice.
    calibrated, coefficients : ndarray of bool, dict of ndarray, optional
        Glacier-specific curves (see :func:`curve_vectors`), aligned with ``glaciers``.

    Returns
    -------
    new_thickness, new_surface : ndarray
        Updated thickness and surface (m); the bed ``surface - thickness`` is fixed.
    target : ndarray
        Volume change asked for per glacier (m3), NaN where ``smb`` is NaN.
    solution : Solution
    """
    n = glaciers.size
    h = np.asarray(thickness, dtype="float64")
    at = lookup(gid, glaciers)
    pos = np.where(h > 0, at, -1)
    stats = glacier_stats(group_sum(pos, area, n), group_max(pos, surface, n), group_min(pos, surface, n))
    target = smb * stats["area"] * rho_water / rho_ice
    curves = curve_vectors(stats["size_cls"], calibrated, coefficients)
    geo = dict(zmax=stats["zmax"], zmin=stats["zmin"],
               **{k: curves[k] for k in ("gamma", "a", "b", "c")})
    huss = pixel_weights(at, h, surface, **geo, uniform=curves["uniform"])
    uniform, wsum = uniform_fallback(curves["uniform"], stats["area"], group_sum(pos, area * huss, n))
    w = fallback_weights(np.where(h > 0, at, -1), huss, uniform=uniform & ~curves["uniform"])

    def reduce_step(scale, lower, gone):
        terms = step_terms(at, h, area, w, scale=scale, lower=lower, gone=gone)
        return StepSums(*(group_sum(pos, t, n) for t in terms))

    volume = group_sum(pos, area * h, n)
    sol = solve_scaling(target, volume, wsum, reduce_step, max_iter=max_iter, rtol=rtol)
    h_new = new_thickness(at, h, w, scale=sol.scale, lower=sol.lower, gone=sol.gone)
    return h_new, surface + np.nan_to_num(h_new - h, nan=0.0), target, sol


def glacier_stats(ice_area, zmax, zmin) -> dict[str, np.ndarray]:
    """Per-glacier geometry of the step: ice area (m2), zmax, zmin (m) and the Huss size class."""
    return {"area": ice_area, "zmax": zmax, "zmin": zmin, "size_cls": size_class(ice_area / M2_PER_KM2)}


def uniform_fallback(uniform: np.ndarray, ice_area: np.ndarray, curve_weight_sum: np.ndarray):
    """Glaciers changing uniformly (uniform class, or all curve weights 0) and their ``Σ A w`` (m2).

    A glacier whose curve weights are all 0 (e.g. a flat glacier, ``h_r = 0`` everywhere) would get no
    change at all; it changes uniformly instead (weight 1 on every ice pixel, ``Σ A w`` = ice area).
    """
    uniform = np.asarray(uniform, dtype=bool) | (curve_weight_sum <= 0)
    return uniform, np.where(uniform, ice_area, curve_weight_sum)
