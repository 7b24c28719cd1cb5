"""Linear SMB models (Lasso, OLS, Ridge) whose prediction is a pure numpy kernel.

scikit-learn fits the model on standardised features; the coefficients are then transformed back
into physical units (target units per feature unit), so prediction is ``X @ coef_ + intercept_``
(:func:`glacgrid.models._kernels.linear_predict`) and needs neither scikit-learn nor any copy of
the training data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..exceptions import ModelError
from . import _kernels
from ..metadata import software_versions
from .schema import (
    MODEL_JSON,
    ARTIFACT_FORMAT,
    FeatureSchema,
    check_predict_input,
    check_training_data,
    malformed_artifact,
    read_model_json,
    write_json_atomic,
)

LINEAR_KINDS = ("lasso", "ols", "ridge")
#: Ridge penalties tried by RidgeCV (efficient leave-one-out), on standardised features.
RIDGE_ALPHAS = tuple(np.logspace(-4, 4, 17))


class LinearModel:
    """A linear SMB model fitted on standardised features, stored in physical units.

    Parameters
    ----------
    kind : {"lasso", "ols", "ridge"}
        ``"lasso"``: :class:`sklearn.linear_model.LassoCV`, penalty chosen by a seeded, shuffled
        5-fold CV; ``"ridge"``: :class:`sklearn.linear_model.RidgeCV` (leave-one-out over
        :data:`RIDGE_ALPHAS`); ``"ols"``: ordinary least squares.
    seed : int
        Seeds the Lasso's internal CV split.
    monotone : bool
        Fit non-negative coefficients in :func:`glacgrid.models.physics.monotone_basis`: SMB
        non-increasing in the degree-day and temperature features and non-decreasing in the snowfall
        features, at every pixel (a base with its profile product keeps its sign over the factor's training
        range). Ridge takes the penalty of the unconstrained fit.

    Attributes
    ----------
    coef_ : ndarray, shape (n_features,)
        Coefficients in target units per feature unit (e.g. m w.e. per K day).
    intercept_ : float
        Intercept in target units (e.g. m w.e.).
    schema : FeatureSchema
        The features the model was trained on.
    training_ : dict
        Summary of the training data: ``n_samples``, ``target_mean``, ``target_std`` (target
        units), ``feature_means``, ``feature_stds`` (feature units) and ``alpha`` (penalty on
        standardised features; None for OLS).
    """

    def __init__(self, kind: str = "lasso", seed: int = 0, monotone: bool = False):
        if kind not in LINEAR_KINDS:
            raise ModelError(f"Unknown linear model kind {kind!r}; valid kinds: {', '.join(LINEAR_KINDS)}.")
        self.kind = kind
        self.seed = int(seed)
        self.monotone = bool(monotone)
        self.schema: FeatureSchema | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float | None = None
        self.training_: dict = {}

    def __repr__(self) -> str:
        state = self.schema.describe() if self.schema is not None else "unfitted"
        mono = ", monotone" if self.monotone else ""
        return f"LinearModel(kind={self.kind!r}, seed={self.seed}{mono}; {state})"

    def _estimator(self, n_samples: int, positive: bool = False):
        from sklearn.linear_model import LassoCV, LinearRegression, RidgeCV
        from sklearn.model_selection import KFold

        if self.kind == "ols":
            return LinearRegression(positive=positive)
        if self.kind == "ridge":
            return RidgeCV(alphas=RIDGE_ALPHAS)
        cv = KFold(n_splits=min(5, n_samples), shuffle=True, random_state=self.seed)
        return LassoCV(cv=cv, random_state=self.seed, max_iter=50_000, tol=1e-6, positive=positive)

    def _fit_positive(self, Z: np.ndarray, y: np.ndarray, w):
        """The estimator fitted with non-negative coefficients on standardised columns ``Z``."""
        from sklearn.linear_model import Ridge

        if self.kind != "ridge":
            return self._estimator(Z.shape[0], positive=True).fit(Z, y, sample_weight=w)
        alpha = float(self._estimator(Z.shape[0]).fit(Z, y, sample_weight=w).alpha_)  # the free fit's penalty
        est = Ridge(alpha=alpha, positive=True).fit(Z, y, sample_weight=w)
        est.alpha_ = alpha
        return est

    def fit(self, X: np.ndarray, y: np.ndarray, schema: FeatureSchema, sample_weight=None,
            factor_ranges: dict | None = None) -> LinearModel:
        """Fit on ``X`` (n_samples, n_features; physical units, schema order) and ``y`` (target units).

        Parameters
        ----------
        X : ndarray, shape (n_samples, n_features)
            Finite features, columns in ``schema`` order.
        y : ndarray, shape (n_samples,)
            Finite target (e.g. annual SMB in m w.e.).
        schema : FeatureSchema
            Names and units of the columns of ``X``.
        sample_weight : ndarray, shape (n_samples,), optional
            Non-negative weights.
        factor_ranges : dict, optional
            ``monotone``: the range of each profile product's factor over the pixels the model is meant
            for (:func:`glacgrid.models.physics.product_factor_ranges`); default: over the rows of ``X``.

        Returns
        -------
        LinearModel
            ``self``, fitted.
        """
        X, y, w = check_training_data(X, y, schema, sample_weight, min_samples=3)
        mean, std = _kernels.column_stats(X)
        basis = None
        if self.monotone:
            from .physics import monotone_basis, product_factor_ranges, required_signs

            required_signs(schema.names)
            ranges = product_factor_ranges(X, schema.names) if factor_ranges is None else factor_ranges
            basis = monotone_basis(schema.names, ranges)
            Xb = X @ basis
            mb, sb = _kernels.column_stats(Xb)
            est = self._fit_positive(_kernels.standardise(Xb, mb, sb), y, w)
            coef_b, self.intercept_ = _kernels.unstandardise_coefficients(est.coef_, est.intercept_, mb, sb)
            self.coef_ = basis @ coef_b
        else:
            est = self._estimator(X.shape[0])
            est.fit(_kernels.standardise(X, mean, std), y, sample_weight=w)
            self.coef_, self.intercept_ = _kernels.unstandardise_coefficients(est.coef_, est.intercept_, mean, std)
        self.schema = schema
        self.training_ = {
            "n_samples": int(X.shape[0]),
            "target_mean": float(y.mean()),
            "target_std": float(y.std()),
            "feature_means": mean.tolist(),
            "feature_stds": X.std(axis=0).tolist(),
            "alpha": float(est.alpha_) if hasattr(est, "alpha_") else None,
            **({"monotone_factor_ranges": {k: list(v) for k, v in ranges.items()}} if basis is not None else {}),
        }
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict the target (target units) for ``X`` (n_samples, n_features) in schema order.

        Rows holding NaN give NaN. Thread-safe: reads ``coef_`` and ``intercept_`` only.
        """
        X = check_predict_input(X, self.schema)
        return _kernels.linear_predict(X, self.coef_, self.intercept_)

    def to_artifact(self, directory: str | Path) -> Path:
        """Write ``model.json`` (coefficients, schema, training summary, versions) to ``directory``.

        Returns
        -------
        Path
            The artifact directory.
        """
        if self.schema is None:
            raise ModelError("Cannot export an unfitted model: call fit() first.")
        directory = Path(directory)
        write_json_atomic(
            directory / MODEL_JSON,
            {
                "format_version": ARTIFACT_FORMAT,
                "kind": self.kind,
                "seed": self.seed,
                "monotone": self.monotone,
                "coef": self.coef_.tolist(),
                "intercept": self.intercept_,
                "schema": self.schema.to_dict(),
                "training": self.training_,
                "versions": software_versions("sklearn"),
            },
        )
        return directory

    @classmethod
    def from_artifact(cls, directory: str | Path) -> LinearModel:
        """Load a model written by :meth:`to_artifact` (no scikit-learn needed)."""
        meta = read_model_json(directory, kinds=LINEAR_KINDS)
        path = Path(directory) / MODEL_JSON
        with malformed_artifact(path):
            model = cls(meta["kind"], seed=int(meta.get("seed", 0)), monotone=bool(meta.get("monotone", False)))
            model.schema = FeatureSchema.from_dict(meta["schema"])
            coef = np.asarray(meta["coef"], dtype=np.float64)
            intercept = meta["intercept"]
            if (coef.shape != (len(model.schema),) or not np.isfinite(coef).all()
                    or not isinstance(intercept, (int, float)) or not np.isfinite(intercept)):
                raise ModelError(
                    f"{path}: coef must be {len(model.schema)} finite numbers (one per feature) with a finite "
                    f"intercept; got {meta['coef']!r}, {intercept!r}. Re-export the model."
                )
            model.coef_ = coef
            model.intercept_ = float(intercept)
            model.training_ = dict(meta.get("training", {}))
        return model
