"""Numpy kernels of the SMB models: the linear predictor, standardisation and skill scores.

Pure numpy on plain arrays; this module never imports xarray, dask, scikit-learn or torch, so it
is cheap to import inside dask workers and is tested directly with tiny hand-computed arrays.
"""

from __future__ import annotations

import numpy as np


def linear_predict(X: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    """The linear predictor ``X @ coef + intercept``.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
        Features in physical units, columns in the model's schema order.
    coef : ndarray, shape (n_features,)
        Coefficients in target units per feature unit (e.g. m w.e. per K day).
    intercept : float
        Intercept in target units (e.g. m w.e.).

    Returns
    -------
    ndarray, shape (n_samples,), float64
        Predictions in target units. A row holding NaN gives NaN (NaN propagates through the
        product even where a coefficient is zero).

    Notes
    -----
    The sum is accumulated column by column in a fixed order, ``((b + x0 c0) + x1 c1) + ...``,
    instead of through BLAS, whose summation order depends on memory layout and on how many rows
    share a call. A row's prediction is therefore bitwise the same whatever the chunking.
    """
    X = np.asarray(X)
    coef = np.asarray(coef, dtype=np.float64)
    out = np.full(X.shape[0], float(intercept), dtype=np.float64)
    for j in range(coef.shape[0]):
        out += X[:, j] * coef[j]
    return out


def column_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation (ddof=0) used to standardise features.

    A constant column gets a standard deviation of 1, so that it standardises to 0 instead of
    dividing by zero.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
        Finite features in physical units.

    Returns
    -------
    mean, std : ndarray, shape (n_features,)
        In the units of each column.
    """
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return mean, std


def standardise(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(X - mean) / std`` column by column, as float64 (dimensionless)."""
    return (np.asarray(X, dtype=np.float64) - mean) / std


def unstandardise_coefficients(
    coef_std: np.ndarray, intercept_std: float, mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, float]:
    """Back-transform a linear model fitted on standardised features into physical units.

    If ``y = b + sum_j c_j (x_j - m_j) / s_j`` then ``y = intercept + sum_j coef_j x_j`` with
    ``coef_j = c_j / s_j`` and ``intercept = b - sum_j c_j m_j / s_j``.

    Parameters
    ----------
    coef_std : ndarray, shape (n_features,)
        Coefficients on standardised features (target units).
    intercept_std : float
        Intercept on standardised features (target units).
    mean, std : ndarray, shape (n_features,)
        The standardisation statistics, in feature units.

    Returns
    -------
    coef : ndarray, shape (n_features,)
        Target units per feature unit.
    intercept : float
        Target units.
    """
    coef_std = np.asarray(coef_std, dtype=np.float64)
    coef = coef_std / std
    intercept = float(intercept_std - np.sum(coef * mean))
    return coef, intercept


def finite_rows(X: np.ndarray) -> np.ndarray:
    """Boolean mask, shape (n_samples,), of the rows whose features are all finite."""
    return np.isfinite(X).all(axis=1)


def regression_metrics(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Skill scores of predictions against observations.

    Parameters
    ----------
    observed, predicted : ndarray, shape (n,)
        In the target's units (e.g. m w.e.).

    Returns
    -------
    dict
        ``r`` Pearson correlation (NaN with fewer than 2 samples or a constant series);
        ``r2`` coefficient of determination ``1 - SS_res / SS_tot`` (NaN when ``SS_tot`` is 0);
        ``rmse``, ``mae`` in target units; ``bias`` = mean(predicted - observed) in target units.
        All NaN when ``n`` is 0.
    """
    obs = np.asarray(observed, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)
    n = obs.size
    nan = float("nan")
    if n == 0:
        return {"r": nan, "r2": nan, "rmse": nan, "mae": nan, "bias": nan}
    err = pred - obs
    do = obs - obs.mean()
    dp = pred - pred.mean()
    ss_obs = float(np.sum(do * do))
    ss_pred = float(np.sum(dp * dp))
    r = float(np.sum(do * dp) / np.sqrt(ss_obs * ss_pred)) if n >= 2 and ss_obs > 0 and ss_pred > 0 else nan
    r2 = float(1.0 - np.sum(err * err) / ss_obs) if ss_obs > 0 else nan
    return {
        "r": r,
        "r2": r2,
        "rmse": float(np.sqrt(np.mean(err * err))),
        "mae": float(np.mean(np.abs(err))),
        "bias": float(np.mean(err)),
    }
