"""The model stage of a run: the model of ``[model]``, cross-validated and fitted on the training table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..metadata import registry
from ..models import CVResult, FeatureSchema, SMBModel, cross_validate, make_model
from ..models.physics import warn_unconstrained_projection

__all__ = ["SEED_FREE_KINDS", "ensemble_method", "build_model", "model_options", "fit_model"]

#: Model kinds whose fit does not depend on the seed: their ensembles need bootstrap resamples.
SEED_FREE_KINDS = ("lasso", "ols", "ridge", "svr")


def ensemble_method(model_cfg) -> str:
    """The ensemble method of ``[model]``: ``auto`` resolves to bootstrap for seed-free kinds, else seeds."""
    if model_cfg.ensemble_method != "auto":
        return model_cfg.ensemble_method
    return "bootstrap" if model_cfg.kind in SEED_FREE_KINDS else "seeds"


def build_model(cfg: RunConfig) -> tuple[SMBModel, FeatureSchema]:
    """The unfitted model of ``[model]`` (an ensemble when ``ensemble`` >= 2) and its feature schema."""
    names = tuple(cfg.model.features)
    reg = registry()
    schema = FeatureSchema(names, tuple(reg[n]["units"] for n in names))
    model = make_model(cfg.model.kind, seed=cfg.model.seed, ensemble=cfg.model.ensemble or None,
                       ensemble_method=ensemble_method(cfg.model), **model_options(cfg.model))
    return model, schema


def model_options(model_cfg) -> dict:
    """The ``make_model`` options of ``[model]``: ``monotone`` when asked, the ANN's torch ``threads``."""
    opts = {"monotone": True} if model_cfg.monotone else {}
    if model_cfg.kind == "ann":
        opts["threads"] = model_cfg.threads
    return opts


def fit_model(cfg: RunConfig, train: pd.DataFrame, out: Path) -> tuple[SMBModel, CVResult]:
    """The model stage: cross-validate on ``train`` (``out/cv.json``), fit, write ``out/model``.

    Returns the fitted model and its :class:`glacgrid.models.CVResult`.
    """
    names = tuple(cfg.model.features)
    model, schema = build_model(cfg)
    cv = cross_validate(train, target="smb", features=names, glacier_col="obs_id", year_col="year",
                        kind=cfg.model.kind, scheme=cfg.model.cv, seed=cfg.model.seed, units=schema.units,
                        **model_options(cfg.model))
    cv.to_json(out / "cv.json")
    model.fit(train[list(names)].to_numpy("float64"), train["smb"].to_numpy("float64"), schema)
    model.to_artifact(out / "model")
    if cfg.mode == "evolve":  # projections: warn when a non-monotone model leaves its training climate
        warn_unconstrained_projection(model, last_training_year=int(train["year"].max()), last_year=cfg.period.end)
    return model, cv
