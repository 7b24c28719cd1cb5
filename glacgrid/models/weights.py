"""Sample weights that make rare (extreme) target values count more in a fit.

Mass-balance samples cluster around the mean; a model trained with equal weights under-predicts
the extremes. Two weightings are offered, both off by default and both normalised to a mean of 1:

``"kde"``
    inverse probability density: ``w_i = 1 / p(y_i)`` with ``p`` a Gaussian kernel density
    estimate of the target (Scott's bandwidth), clipped at ``max_ratio`` times the smallest weight
    so that a single outlier cannot dominate the fit.
``"frequency"``
    inverse frequency of the target rounded to ``decimals`` (e.g. 0.1 m w.e. bins): ``w_i = 1 /
    count(round(y_i))``, clipped the same way.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InputDataError, ModelError
from . import _kernels

#: Weighting names accepted by :func:`sample_weights` (``None`` means equal weights).
WEIGHTINGS = ("kde", "frequency")


def sample_weights(y: np.ndarray, method: str | None, *, decimals: int = 1, bandwidth: float | None = None,
                   max_ratio: float = 20.0) -> np.ndarray | None:
    """Weights for the samples of target ``y`` (dimensionless, mean 1), or ``None`` when ``method`` is None.

    Parameters
    ----------
    y : ndarray, shape (n_samples,)
        Finite target values (e.g. m w.e.).
    method : {None, "kde", "frequency"}
        The weighting, see the module docstring.
    decimals : int
        Rounding of ``y`` for ``"frequency"`` (1 -> 0.1 target units).
    bandwidth : float, optional
        KDE bandwidth in target units for ``"kde"``; Scott's rule when omitted.
    max_ratio : float
        Largest allowed ratio between the largest and the smallest weight (>= 1).

    Returns
    -------
    ndarray, shape (n_samples,), or None
    """
    if method is None:
        return None
    if method not in WEIGHTINGS:
        raise ModelError(f"Unknown sample weighting {method!r}; valid: {', '.join(WEIGHTINGS)} or None (off).")
    if not max_ratio >= 1:
        raise ModelError(f"max_ratio must be >= 1; got {max_ratio}.")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.size == 0 or not np.isfinite(y).all():
        raise InputDataError(f"sample weights need a non-empty, finite 1-D target; got shape {y.shape} "
                             f"with {int((~np.isfinite(y)).sum())} non-finite value(s).")
    if bandwidth is not None and not bandwidth > 0:
        raise ModelError(f"bandwidth must be positive (target units); got {bandwidth}.")
    if method == "kde":
        w = 1.0 / _kernels.kde_density(y, bandwidth)
    else:
        w = _kernels.inverse_frequency(y, int(decimals))
    w = np.minimum(w, w.min() * max_ratio)
    return _kernels.normalise_weights(w)
