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
    if X.ndim == 2 and X.dtype in (np.float32, np.float64) and X.shape[0] >= 4096:
        out = np.empty(X.shape[0], dtype=np.float64)
        _rows_kernel()(np.ascontiguousarray(X), coef, float(intercept), out)  # one pass, row by row
        return out
    out = np.full(X.shape[0], float(intercept), dtype=np.float64)
    for j in range(coef.shape[0]):
        out += X[:, j] * coef[j]
    return out


_ROWS: list = []


def _rows_kernel():
    """:func:`linear_predict` compiled row by row (numba, imported on first use): the same products and the
    same order of additions, so the same values to the bit; one pass over ``X`` instead of one per column."""
    if not _ROWS:
        from numba import njit

        @njit(cache=True, nogil=True)
        def rows(X, coef, intercept, out):  # pragma: no cover - compiled
            for r in range(X.shape[0]):
                acc = intercept
                for j in range(coef.shape[0]):
                    acc += np.float64(X[r, j]) * coef[j]
                out[r] = acc

        _ROWS.append(rows)
    return _ROWS[0]


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


# --------------------------------------------------------------------------- kernel and tree models
def rbf_predict(Z: np.ndarray, support: np.ndarray, dual_coef: np.ndarray, intercept: float, gamma: float,
                batch: int = 4096) -> np.ndarray:
    """Prediction of an RBF support-vector regression on standardised features.

    ``f(z) = intercept + sum_i dual_coef_i exp(-gamma |z - sv_i|^2)``.

    Parameters
    ----------
    Z : ndarray, shape (n_samples, n_features)
        Standardised (dimensionless) features; rows must be finite.
    support : ndarray, shape (n_support, n_features)
        Support vectors, standardised.
    dual_coef : ndarray, shape (n_support,)
        Dual coefficients (standardised target units).
    intercept, gamma : float
        Intercept (standardised target units) and kernel width (1 / standardised feature units²).
    batch : int
        Rows per block; bounds memory to ``batch * n_support`` floats.

    Returns
    -------
    ndarray, shape (n_samples,), float64
        Each row is computed from that row only (elementwise squares summed feature by feature, a
        per-row reduction over support vectors), so results do not depend on the other rows.
    """
    Z = np.asarray(Z, dtype=np.float64)
    out = np.empty(Z.shape[0], dtype=np.float64)
    for start in range(0, Z.shape[0], batch):
        z = Z[start:start + batch]
        d2 = np.zeros((z.shape[0], support.shape[0]))
        for j in range(support.shape[1]):
            diff = z[:, j:j + 1] - support[None, :, j]
            d2 += diff * diff
        out[start:start + batch] = np.sum(np.exp(-gamma * d2) * dual_coef, axis=1) + intercept
    return out


def tree_leaves(X32: np.ndarray, roots: np.ndarray, left: np.ndarray, right: np.ndarray,
                feature: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Global leaf index reached by every sample in every tree of a flattened forest.

    Parameters
    ----------
    X32 : ndarray, shape (n_samples, n_features), float32
        Features in physical units, cast to float32 exactly as scikit-learn's trees do.
    roots : ndarray of int, shape (n_trees,)
        Index of each tree's root in the node arrays.
    left, right : ndarray of int, shape (n_nodes,)
        Global child indices; ``-1`` marks a leaf.
    feature : ndarray of int, shape (n_nodes,)
        Feature tested at each node. threshold : float64 (n_nodes,): go left when ``x <= threshold``.

    Returns
    -------
    ndarray of int, shape (n_samples, n_trees)
    """
    n = X32.shape[0]
    node = np.broadcast_to(roots, (n, roots.size)).copy()
    rows = np.broadcast_to(np.arange(n)[:, None], node.shape)
    active = left[node] >= 0
    while active.any():
        idx = node[active]
        go_left = X32[rows[active], feature[idx]] <= threshold[idx]
        node[active] = np.where(go_left, left[idx], right[idx])
        active = left[node] >= 0
    return node


def forest_predict(X: np.ndarray, forest: dict, *, scale: float, offset: float, batch: int = 16384) -> np.ndarray:
    """``offset + scale * sum_t value_t(x)`` for a flattened forest (see :func:`tree_leaves`).

    A random forest uses ``scale = 1 / n_trees``, ``offset = 0``; gradient boosting uses the
    learning rate and the initial constant. Rows are independent of each other.
    """
    X32 = np.asarray(X, dtype=np.float32)
    out = np.empty(X32.shape[0], dtype=np.float64)
    for start in range(0, X32.shape[0], batch):
        leaves = tree_leaves(X32[start:start + batch], forest["roots"], forest["left"], forest["right"],
                             forest["feature"], forest["threshold"])
        out[start:start + batch] = offset + scale * np.sum(forest["value"][leaves], axis=1)
    return out


# --------------------------------------------------------------------------- sample weights
def kde_density(y: np.ndarray, bandwidth: float | None = None) -> np.ndarray:
    """Gaussian kernel density estimate of ``y`` at each sample (1 / target units).

    Bandwidth: Scott's rule ``1.06 * std * n^(-1/5)`` unless given.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    if bandwidth is None:
        s = y.std()
        bandwidth = 1.06 * (s if s > 0 else 1.0) * n ** (-0.2)
    dens = np.empty(n)
    for start in range(0, n, 2048):
        u = (y[start:start + 2048, None] - y[None, :]) / bandwidth
        dens[start:start + 2048] = np.exp(-0.5 * u * u).sum(axis=1) / (n * bandwidth * np.sqrt(2 * np.pi))
    return dens


def normalise_weights(w: np.ndarray) -> np.ndarray:
    """Scale weights to a mean of 1 (dimensionless)."""
    w = np.asarray(w, dtype=np.float64)
    return w / w.mean()


def inverse_frequency(y: np.ndarray, decimals: int) -> np.ndarray:
    """``1 / count`` of each sample's value rounded to ``decimals`` among all samples."""
    r = np.round(np.asarray(y, dtype=np.float64), decimals)
    _, inv, counts = np.unique(r, return_inverse=True, return_counts=True)
    return 1.0 / counts[inv]
