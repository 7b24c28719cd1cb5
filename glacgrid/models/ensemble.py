"""Ensembles of one model kind over seeds or bootstrap resamples: mean prediction and spread.

An ensemble member differs from the others by its seed (``method="seeds"``: weight
initialisation, dropout, tree randomness) or, in addition, by the bootstrap resample of the
training rows it sees (``method="bootstrap"``). ``predict`` is the member mean; ``predict_spread``
returns the mean and the standard deviation across members (target units), a measure of model
uncertainty. The artifact is a directory with ``model.json`` and one sub-directory per member,
each a normal model artifact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..exceptions import ModelError
from ..metadata import software_versions
from .kinds import load_single_model, make_single_model
from .schema import (
    ARTIFACT_FORMAT,
    MODEL_JSON,
    FeatureSchema,
    check_training_data,
    malformed_artifact,
    read_model_json,
    write_json_atomic,
)

ENSEMBLE_METHODS = ("seeds", "bootstrap")


class EnsembleModel:
    """``n_members`` models of ``kind`` with seeds ``seed, seed + 1, ...``.

    Parameters
    ----------
    kind : str
        Any kind of :data:`glacgrid.models.MODEL_KINDS` (not ``"ensemble"``).
    n_members : int
        Number of members (>= 2).
    method : {"seeds", "bootstrap"}
        How members differ (see the module docstring).
    seed : int
        Seed of the first member and of the bootstrap draws.
    **options
        Passed to :func:`glacgrid.models.kinds.make_single_model` for every member (e.g. ``preset="alpgm"``, ``epochs``).
    """

    def __init__(self, kind: str = "ann", n_members: int = 5, method: str = "seeds", seed: int = 0, **options):
        if int(n_members) < 2:
            raise ModelError(f"An ensemble needs n_members >= 2; got {n_members}.")
        if method not in ENSEMBLE_METHODS:
            raise ModelError(f"Unknown ensemble method {method!r}; valid: {', '.join(ENSEMBLE_METHODS)}.")
        make_single_model(kind, seed=seed, **options)  # validate kind and options now
        self.kind, self.member_kind, self.n_members = "ensemble", kind, int(n_members)
        self.method, self.seed, self.options = method, int(seed), dict(options)
        self.members: list = []
        self.schema: FeatureSchema | None = None
        self.training_: dict = {}

    def __repr__(self) -> str:
        state = self.schema.describe() if self.schema is not None else "unfitted"
        return f"EnsembleModel({self.n_members} x {self.member_kind!r}, {self.method}; {state})"

    def fit(self, X: np.ndarray, y: np.ndarray, schema: FeatureSchema, sample_weight=None) -> EnsembleModel:
        """Fit every member on ``X`` (n_samples, n_features) and ``y``; returns ``self``."""
        X, y, w = check_training_data(X, y, schema, sample_weight, min_samples=3)
        rng = np.random.default_rng(self.seed)
        members = []
        for i in range(self.n_members):
            rows = np.arange(len(y)) if self.method == "seeds" else np.sort(rng.integers(0, len(y), len(y)))
            m = make_single_model(self.member_kind, seed=self.seed + i, **self.options)
            members.append(m.fit(X[rows], y[rows], schema, sample_weight=None if w is None else w[rows]))
        self.members, self.schema = members, schema
        self.training_ = {"n_samples": int(len(y)), "target_mean": float(y.mean()), "target_std": float(y.std())}
        return self

    def predict_spread(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Member mean and standard deviation (ddof=0), both shape (n_samples,), target units."""
        if not self.members:
            raise ModelError("This ensemble is not fitted: call fit() first.")
        preds = np.stack([m.predict(X) for m in self.members])
        return preds.mean(axis=0), preds.std(axis=0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Member mean prediction, shape (n_samples,), target units."""
        return self.predict_spread(X)[0]

    def to_artifact(self, directory: str | Path) -> Path:
        """Write each member to ``directory/member_NNN`` and ``model.json`` describing the ensemble."""
        if not self.members:
            raise ModelError("Cannot export an unfitted model: call fit() first.")
        directory = Path(directory)
        names = [f"member_{i:03d}" for i in range(len(self.members))]
        for name, m in zip(names, self.members):
            m.to_artifact(directory / name)
        write_json_atomic(directory / MODEL_JSON, {
            "format_version": ARTIFACT_FORMAT, "kind": "ensemble", "member_kind": self.member_kind,
            "n_members": self.n_members, "method": self.method, "seed": self.seed, "options": self.options,
            "members": names, "schema": self.schema.to_dict(), "training": self.training_,
            "versions": software_versions(),
        })
        return directory

    @classmethod
    def from_artifact(cls, directory: str | Path) -> EnsembleModel:
        """Load an ensemble written by :meth:`to_artifact`; every member is checked like a single model."""
        directory = Path(directory)
        meta = read_model_json(directory, kinds=("ensemble",))
        with malformed_artifact(directory / MODEL_JSON):
            schema = FeatureSchema.from_dict(meta["schema"])
            model = cls.__new__(cls)
            model.kind, model.member_kind, model.n_members = "ensemble", meta["member_kind"], int(meta["n_members"])
            model.method, model.seed, model.options = meta["method"], int(meta["seed"]), dict(meta["options"])
            names = list(meta["members"])
            model.schema, model.training_ = schema, dict(meta.get("training", {}))
        model.members = [load_single_model(directory / name, schema=schema) for name in names]
        return model
