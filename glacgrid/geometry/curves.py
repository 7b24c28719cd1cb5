"""The delta-h curve of every updated glacier: glacier-specific curves aligned with the glaciers of an
update (:func:`aligned_curves`), and curves of a changed shape for delta-h ensembles
(:func:`perturbed_curves`)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..exceptions import GeometryError, InputDataError, MissingVariableError
from ..glaciers import lookup
from ..units import m2_to_km2
from . import _kernels

__all__ = ["CURVE_VARS", "aligned_curves", "perturbed_curves"]

#: The coefficients of a delta-h curve ``(h_r + a)**gamma + b (h_r + a) + c``.
CURVE_VARS = ("gamma", "a", "b", "c")


def aligned_curves(curves: xr.Dataset | None, glaciers: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Calibrated flag and coefficients aligned with ``glaciers`` (all False without curves).

    Parameters
    ----------
    curves : xr.Dataset or None
        Glacier-specific curves: dim ``glacier`` with ``gamma``, ``a``, ``b``, ``c`` and optionally
        ``calibrated`` (glaciers with 0/False are skipped).
    glaciers : numpy.ndarray
        Sorted glacier indices of the update.

    Returns
    -------
    calibrated : numpy.ndarray of bool
        Glaciers of ``glaciers`` with their own curve.
    coefficients : dict of numpy.ndarray
        ``gamma``, ``a``, ``b``, ``c`` aligned with ``glaciers`` (0 where not calibrated).
    """
    calibrated = np.zeros(glaciers.size, dtype=bool)
    coefficients = {k: np.zeros(glaciers.size) for k in CURVE_VARS}
    if curves is None:
        return calibrated, coefficients
    if not isinstance(curves, xr.Dataset) or "glacier" not in curves.coords or curves["glacier"].ndim != 1:
        raise InputDataError(
            f"curves must be an xarray.Dataset with a 1-D 'glacier' coordinate of glacier indices and "
            f"variables {CURVE_VARS}; got {type(curves).__name__}. Build it with "
            "glacgrid.geometry.calibrate.calibrate_deltah or read_curves(path).")
    missing = [v for v in CURVE_VARS if v not in curves.data_vars]
    if missing:
        raise MissingVariableError(f"curves lack variable(s) {missing}; they have "
                                   f"{sorted(map(str, curves.data_vars))}. Expected {list(CURVE_VARS)}.")
    ids = curves["glacier"].values
    if not np.issubdtype(ids.dtype, np.integer):
        raise GeometryError(f"curves' 'glacier' coordinate has dtype {ids.dtype}; expected integer glacier "
                            "indices matching state['glacier_id'].")
    use = np.ones(ids.size, dtype=bool)
    if "calibrated" in curves.data_vars:
        use = np.asarray(curves["calibrated"].values).astype(bool)
    values = {k: np.asarray(curves[k].values, dtype="float64") for k in CURVE_VARS}
    bad = use & ~np.all([np.isfinite(v) for v in values.values()], axis=0)
    bad |= use & ~(values["gamma"] > 0)
    if bad.any():
        raise InputDataError(f"curves of glacier indices {ids[bad][:10].tolist()} have non-finite "
                             "coefficients or gamma <= 0; set their 'calibrated' flag to 0 or drop them.")
    ids, idx = ids[use], np.flatnonzero(use)
    if np.unique(ids).size != ids.size:
        raise InputDataError("curves list a glacier index more than once; give one curve per glacier.")
    pos = lookup(ids, glaciers)
    found = pos >= 0
    calibrated[pos[found]] = True
    for k in CURVE_VARS:
        coefficients[k][pos[found]] = values[k][idx[found]]
    return calibrated, coefficients


def perturbed_curves(ice_area_m2: np.ndarray, index: np.ndarray, factor: float,
                     curves: xr.Dataset | None = None) -> xr.Dataset | None:
    """Delta-h curves whose exponent ``gamma`` is multiplied by ``factor``.

    Scaling the whole curve by a constant would change nothing (the update rescales the curve to the
    glacier's volume change), so the perturbation changes its shape: ``gamma * factor`` makes the
    thinning more (factor > 1) or less (< 1) concentrated at the terminus.

    Parameters
    ----------
    ice_area_m2 : numpy.ndarray
        Ice area of each glacier of ``index`` (m2): the Huss et al. (2010) size class of the glaciers
        without their own curve.
    index : numpy.ndarray
        Sorted glacier indices.
    factor : float
        Factor on ``gamma``; 1 returns ``curves`` unchanged.
    curves : xr.Dataset, optional
        Glacier-specific curves (dim ``glacier``, ``gamma, a, b, c``, optional ``calibrated``): their
        gamma is scaled.

    Returns
    -------
    xr.Dataset or None
        Curves (dim ``glacier``) of every glacier that is not of the uniform class (those stay uniform).
    """
    if factor == 1.0:
        return curves
    size = _kernels.size_class(m2_to_km2(np.asarray(ice_area_m2)))
    calibrated, coeff = aligned_curves(curves, index)  # the checks and alignment deltah_update applies
    vec = _kernels.curve_vectors(size, calibrated, coeff)
    keep = ~vec["uniform"]
    return xr.Dataset({k: ("glacier", vec[k][keep] * (factor if k == "gamma" else 1.0))
                       for k in CURVE_VARS}, coords={"glacier": index[keep]})
