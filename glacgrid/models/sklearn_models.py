"""Nonlinear scikit-learn SMB models stored without pickle: SVR (RBF), random forest, gradient boosting.

scikit-learn fits the estimator; the fitted state is then copied into plain numeric arrays and
every prediction -- right after ``fit`` as well as after loading -- is computed by the numpy
kernels of :mod:`glacgrid.models._kernels`, never by the estimator. An artifact is therefore
exactly what is predicted with, and loading needs neither scikit-learn nor pickle:

``model.json``
    kind, hyperparameters, schema, normalisation, training summary, versions, sha256 of the arrays.
``arrays.npz``
    numeric arrays only, read with ``numpy.load(allow_pickle=False)``: for ``svr`` the standardised
    support vectors and dual coefficients; for ``rf``/``gbm`` every tree flattened into
    ``roots``, ``left``, ``right``, ``feature`` (int64), ``threshold`` and ``value`` (float64).

The kernels reproduce scikit-learn's own ``predict`` to rounding (trees compare float32 features
with float64 thresholds exactly as scikit-learn does; tested to 1e-9).

``monotone=True`` (``rf`` and ``gbm``) constrains every tree with scikit-learn's ``monotonic_cst``, the
signs of :func:`glacgrid.models.physics.monotone_signs` (SMB non-increasing in temperature / degree-day
features, non-decreasing in snowfall / precipitation features). A forest averages, and boosting adds
with a positive learning rate, monotone trees: the model is monotone by construction.
:class:`~sklearn.ensemble.GradientBoostingRegressor` has no ``monotonic_cst``, so a monotone ``gbm`` is
boosted here, with the same hyperparameters and the same squared-error stages: the initial constant is
the (weighted) mean target, then each of ``n_estimators`` stages fits a squared-error
:class:`~sklearn.tree.DecisionTreeRegressor` (with ``monotonic_cst``) to the residuals of a seeded
``subsample`` of the rows drawn without replacement, and adds ``learning_rate`` times its prediction.
SVR cannot be constrained.
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, verified_bytes
from ..exceptions import ModelError
from . import _kernels
from ..metadata import software_versions
from .physics import required_signs
from .schema import (
    ARTIFACT_FORMAT,
    MODEL_JSON,
    FeatureSchema,
    check_predict_input,
    check_training_data,
    malformed_artifact,
    read_model_json,
    write_json_atomic,
)

SKLEARN_KINDS = ("svr", "rf", "gbm")
#: The scikit-learn kinds that accept ``monotone=True``.
MONOTONE_SKLEARN_KINDS = ("rf", "gbm")
ARRAYS_FILE = "arrays.npz"
TREE_ARRAYS = ("roots", "left", "right", "feature", "threshold", "value")
#: Default hyperparameters per kind (keyword arguments of the scikit-learn estimator).
DEFAULTS = {
    "svr": {"C": 1.0, "epsilon": 0.1, "gamma": "scale"},
    "rf": {"n_estimators": 200, "min_samples_leaf": 2, "max_depth": None, "max_features": 1.0},
    "gbm": {"n_estimators": 300, "learning_rate": 0.05, "max_depth": 3, "subsample": 0.8,
            "min_samples_leaf": 2},
}


def _flatten_trees(trees) -> dict[str, np.ndarray]:
    """Concatenate scikit-learn ``tree_`` objects into global node arrays (children offset, leaf = -1)."""
    parts = {k: [] for k in TREE_ARRAYS if k != "roots"}
    roots, offset = [], 0
    for t in trees:
        roots.append(offset)
        left, right = t.children_left.astype(np.int64), t.children_right.astype(np.int64)
        parts["left"].append(np.where(left >= 0, left + offset, -1))
        parts["right"].append(np.where(right >= 0, right + offset, -1))
        parts["feature"].append(np.maximum(t.feature.astype(np.int64), 0))
        parts["threshold"].append(t.threshold.astype(np.float64))
        parts["value"].append(t.value.reshape(t.node_count, -1)[:, 0].astype(np.float64))
        offset += t.node_count
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["roots"] = np.asarray(roots, dtype=np.int64)
    return out


class SklearnModel:
    """An SVR, random-forest or gradient-boosting SMB model with a pickle-free artifact.

    Parameters
    ----------
    kind : {"svr", "rf", "gbm"}
        ``"svr"``: :class:`sklearn.svm.SVR` with an RBF kernel on standardised features and target;
        ``"rf"``: :class:`sklearn.ensemble.RandomForestRegressor`; ``"gbm"``:
        :class:`sklearn.ensemble.GradientBoostingRegressor` (squared error).
    seed : int
        ``random_state`` of the estimator (SVR is deterministic).
    monotone : bool
        ``rf`` and ``gbm`` only: trees constrained by ``monotonic_cst`` (module docstring).
    **params
        Estimator hyperparameters overriding :data:`DEFAULTS` (e.g. ``C``, ``epsilon``, ``gamma``;
        ``n_estimators``, ``max_depth``, ``min_samples_leaf``, ``learning_rate``, ``subsample``).
    """

    def __init__(self, kind: str = "rf", seed: int = 0, monotone: bool = False, **params):
        if kind not in SKLEARN_KINDS:
            raise ModelError(f"Unknown scikit-learn model kind {kind!r}; valid kinds: {', '.join(SKLEARN_KINDS)}.")
        if monotone and kind not in MONOTONE_SKLEARN_KINDS:
            raise ModelError(f"monotone=True is not available for model kind {kind!r}: an RBF SVR cannot be "
                             f"constrained. Models that can be monotone: {', '.join(MONOTONE_SKLEARN_KINDS)}, ann.")
        unknown = sorted(set(params) - set(DEFAULTS[kind]))
        if unknown:
            raise ModelError(f"Unknown option(s) {unknown} for model kind {kind!r}; valid options: "
                             f"{sorted(DEFAULTS[kind])}.")
        self.kind, self.seed, self.monotone = kind, int(seed), bool(monotone)
        self.params = {**DEFAULTS[kind], **params}
        self.schema: FeatureSchema | None = None
        self.arrays_: dict[str, np.ndarray] = {}
        self.norm_: dict = {}
        self.training_: dict = {}

    def __repr__(self) -> str:
        state = self.schema.describe() if self.schema is not None else "unfitted"
        return f"SklearnModel(kind={self.kind!r}, seed={self.seed}; {state})"

    def _estimator(self, signs=None):
        if self.kind == "svr":
            from sklearn.svm import SVR

            return SVR(kernel="rbf", **self.params)
        if self.kind == "rf":
            from sklearn.ensemble import RandomForestRegressor

            cst = {"monotonic_cst": list(signs)} if signs is not None else {}
            return RandomForestRegressor(random_state=self.seed, n_jobs=1, **cst, **self.params)
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(random_state=self.seed, loss="squared_error", **self.params)

    def fit(self, X: np.ndarray, y: np.ndarray, schema: FeatureSchema, sample_weight=None) -> SklearnModel:
        """Fit on ``X`` (n_samples, n_features; physical units, schema order) and ``y`` (target units).

        ``sample_weight`` (n_samples,), optional, weights the samples. Returns ``self``.
        """
        X, y, w = check_training_data(X, y, schema, sample_weight, min_samples=5)
        signs = None
        if self.monotone:
            signs = required_signs(schema.names)
        est = self._estimator(signs)
        mean, std = _kernels.column_stats(X)
        y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
        if self.kind == "svr":
            Z = _kernels.standardise(X, mean, std)
            est.fit(Z, (y - y_mean) / y_std, sample_weight=w)
            self.arrays_ = {"support": np.ascontiguousarray(est.support_vectors_, dtype=np.float64),
                            "dual_coef": est.dual_coef_.ravel().astype(np.float64)}
            self.norm_ = {"x_mean": mean.tolist(), "x_std": std.tolist(), "y_mean": y_mean, "y_std": y_std,
                          "gamma": float(est._gamma), "intercept": float(est.intercept_[0])}
        elif self.kind == "gbm" and signs is not None:
            trees, init = self._boost_monotone(X, y, w, signs)
            self.arrays_ = _flatten_trees(trees)
            self.norm_ = {"scale": float(self.params["learning_rate"]), "offset": init}
        else:
            est.fit(X, y, sample_weight=w)
            trees = [e.tree_ for e in est.estimators_] if self.kind == "rf" else [
                e[0].tree_ for e in est.estimators_]
            self.arrays_ = _flatten_trees(trees)
            if self.kind == "rf":
                self.norm_ = {"scale": 1.0 / len(trees), "offset": 0.0}
            else:
                self.norm_ = {"scale": float(est.learning_rate), "offset": float(np.ravel(est.init_.constant_)[0])}
        self.schema = schema
        self.training_ = {"n_samples": int(X.shape[0]), "target_mean": y_mean, "target_std": float(y.std()),
                          "feature_means": mean.tolist(), "feature_stds": X.std(axis=0).tolist(),
                          "weighted": w is not None,
                          **({"monotone_signs": list(signs)} if signs is not None else {})}
        return self

    def _boost_monotone(self, X, y, w, signs) -> tuple[list, float]:
        """Squared-error gradient boosting of ``monotonic_cst`` trees: ``(tree_ objects, initial constant)``."""
        from sklearn.tree import DecisionTreeRegressor

        p = self.params
        rng = np.random.RandomState(self.seed)
        n = len(y)
        init = float(np.average(y, weights=w))
        current = np.full(n, init)
        n_sub = max(1, int(p["subsample"] * n))
        trees = []
        for _ in range(int(p["n_estimators"])):  # boosting stages are sequential
            rows = np.sort(rng.choice(n, n_sub, replace=False)) if n_sub < n else np.arange(n)
            tree = DecisionTreeRegressor(criterion="squared_error", max_depth=p["max_depth"],
                                         min_samples_leaf=p["min_samples_leaf"], monotonic_cst=list(signs),
                                         random_state=rng)
            tree.fit(X[rows], (y - current)[rows], sample_weight=None if w is None else w[rows])
            current += p["learning_rate"] * tree.predict(X)
            trees.append(tree.tree_)
        return trees, init

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict the target (target units, float64) for ``X`` (n_samples, n_features) in schema order.

        Rows holding NaN or inf give NaN; a row's prediction does not depend on the other rows.
        Thread-safe: reads the fitted arrays only.
        """
        X = check_predict_input(X, self.schema)
        out = np.full(X.shape[0], np.nan)
        ok = _kernels.finite_rows(X)
        if not ok.any():
            return out
        a, nm = self.arrays_, self.norm_
        if self.kind == "svr":
            Z = _kernels.standardise(X[ok], np.asarray(nm["x_mean"]), np.asarray(nm["x_std"]))
            z = _kernels.rbf_predict(Z, a["support"], a["dual_coef"], nm["intercept"], nm["gamma"])
            out[ok] = z * nm["y_std"] + nm["y_mean"]
        else:
            out[ok] = _kernels.forest_predict(X[ok], a, scale=nm["scale"], offset=nm["offset"])
        return out

    def to_artifact(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``arrays.npz`` (numeric arrays only) to ``directory``."""
        if self.schema is None:
            raise ModelError("Cannot export an unfitted model: call fit() first.")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **self.arrays_)
        data = buf.getvalue()
        with atomic_path(directory / ARRAYS_FILE) as tmp:
            tmp.write_bytes(data)
        write_json_atomic(directory / MODEL_JSON, {
            "format_version": ARTIFACT_FORMAT, "kind": self.kind, "seed": self.seed, "monotone": self.monotone,
            "hyperparameters": self.params, "schema": self.schema.to_dict(), "normalisation": self.norm_,
            "training": self.training_,
            "arrays": {"file": ARRAYS_FILE, "sha256": hashlib.sha256(data).hexdigest(),
                       "format": "numpy npz, numeric arrays only (allow_pickle=False)",
                       "names": sorted(self.arrays_)},
            "versions": software_versions("sklearn"),
        })
        return directory

    @classmethod
    def from_artifact(cls, directory: str | Path) -> SklearnModel:
        """Load a model written by :meth:`to_artifact` (no scikit-learn, no pickle)."""
        directory = Path(directory)
        meta = read_model_json(directory, kinds=SKLEARN_KINDS)
        with malformed_artifact(directory / MODEL_JSON):
            try:
                model = cls(meta["kind"], seed=int(meta.get("seed", 0)), monotone=bool(meta.get("monotone", False)),
                            **meta["hyperparameters"])
            except TypeError as err:
                raise ModelError(f"{directory / MODEL_JSON}: bad hyperparameters ({err}); re-export the model.") from err
            model.schema = FeatureSchema.from_dict(meta["schema"])
            model.norm_ = dict(meta["normalisation"])
            model.training_ = dict(meta.get("training", {}))
            path = directory / str(meta["arrays"]["file"])
            digest = meta["arrays"]["sha256"]
        data = verified_bytes(path, digest, directory / MODEL_JSON)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                model.arrays_ = {k: npz[k] for k in npz.files}
        except ValueError as err:  # object arrays would need pickle: refuse them
            raise ModelError(f"Refusing to load {path}: it holds non-numeric arrays ({err}). This file is not a glacgrid "
                             "artifact or was written by an untrusted tool (glacgrid writes numeric arrays only, "
                             "read without pickle); re-export the model with glacgrid.") from err
        except (OSError, EOFError, zipfile.BadZipFile) as err:  # not an npz archive at all
            raise ModelError(f"{path} is not a numpy npz archive ({err}); re-export the model with glacgrid.") from err
        need = ("support", "dual_coef") if model.kind == "svr" else TREE_ARRAYS
        missing = [k for k in need if k not in model.arrays_]
        if missing:
            raise ModelError(f"{path} lacks the arrays {missing} of a {model.kind!r} model; re-export the model.")
        if model.kind == "svr" and model.arrays_["support"].shape[1:] != (len(model.schema),):
            raise ModelError(f"{path}: support vectors have shape {model.arrays_['support'].shape}; expected "
                             f"{len(model.schema)} columns (one per feature).")
        if not all(math.isfinite(v) for v in model.norm_.values() if isinstance(v, float)):
            raise ModelError(f"{directory / MODEL_JSON}: normalisation holds non-finite numbers.")
        return model
