"""One model of a kind: build it unfitted or load its artifact (no ensembles).

:func:`make_single_model` and :func:`load_single_model` know every single-model family (linear,
scikit-learn, ANN). :mod:`glacgrid.models.ensemble` builds its members through them, and
:mod:`glacgrid.models.factory` adds ensembles on top, so that the imports run one way:
``kinds`` <- ``ensemble`` <- ``factory``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..exceptions import ModelError
from .ann import ANNModel
from .linear import LINEAR_KINDS, LinearModel
from .presets import preset_options
from .schema import FeatureSchema, SMBModel, read_model_json
from .sklearn_models import MONOTONE_SKLEARN_KINDS, SKLEARN_KINDS, SklearnModel

__all__ = ["MODEL_KINDS", "MONOTONE_KINDS", "check_kind", "check_monotone", "load_single_model",
           "make_single_model"]

#: Model kinds understood by :func:`glacgrid.models.make_model` and :func:`glacgrid.models.load_model`.
MODEL_KINDS = (*LINEAR_KINDS, *SKLEARN_KINDS, "ann")
#: The kinds that accept ``monotone=True`` (monotone in the physical features by construction).
MONOTONE_KINDS = (*LINEAR_KINDS, *MONOTONE_SKLEARN_KINDS, "ann")


def check_kind(kind: str, preset: str | None = None) -> None:
    """Raise :class:`~glacgrid.exceptions.ModelError` for an unknown ``kind`` or a preset of a non-ANN kind."""
    if kind not in MODEL_KINDS:
        raise ModelError(f"Unknown model kind {kind!r}; valid kinds: {', '.join(MODEL_KINDS)}.")
    if preset is not None and kind != "ann":
        raise ModelError(f"preset={preset!r} applies to the ANN only; got model kind {kind!r}.")


def check_monotone(kind: str, monotone: bool) -> None:
    """Raise :class:`~glacgrid.exceptions.ModelError` when ``monotone`` is asked of a kind that cannot be monotone."""
    if monotone and kind not in MONOTONE_KINDS:
        raise ModelError(f"monotone=True is not available for model kind {kind!r}; models that can be constrained "
                         f"to be monotone: {', '.join(MONOTONE_KINDS)}. Drop monotone or choose one of those.")


def make_single_model(kind: str, *, seed: int = 0, preset: str | None = None, **options) -> SMBModel:
    """Build one unfitted model of ``kind``.

    Parameters
    ----------
    kind : {"lasso", "ols", "ridge", "svr", "rf", "gbm", "ann"}
        The model family (see :func:`glacgrid.models.make_model`).
    seed : int
        Seeds every random choice of the fit.
    preset : {"alpgm", "point"}, optional
        ANN only: a named configuration (:mod:`glacgrid.models.presets`); ``options`` override it.
    **options
        Keyword arguments of :class:`~glacgrid.models.ANNModel` or of
        :class:`~glacgrid.models.SklearnModel`; linear kinds take none.

    Returns
    -------
    SMBModel
    """
    check_kind(kind, preset)
    check_monotone(kind, bool(options.get("monotone", False)))
    if kind not in MONOTONE_KINDS:
        options.pop("monotone", None)  # monotone=False: nothing to constrain
    if kind in SKLEARN_KINDS:
        return SklearnModel(kind, seed=seed, **options)
    cls = ANNModel if kind == "ann" else LinearModel
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kind", "seed", "preset")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ModelError(
            f"Unknown option(s) {unknown} for model kind {kind!r}; valid options: {valid or 'none'}."
        )
    if kind == "ann":
        base = preset_options(preset) if preset is not None else {}
        return ANNModel(seed=seed, preset=preset, **{**base, **options})
    return LinearModel(kind, seed=seed, **options)


def load_single_model(directory: str | Path, *, schema: FeatureSchema | None = None) -> SMBModel:
    """Load the artifact of one model (not an ensemble) written by ``model.to_artifact(directory)``.

    Parameters
    ----------
    directory : str or Path
        The artifact directory (holding ``model.json``).
    schema : FeatureSchema, optional
        When given, a mismatch with the model's schema raises
        :class:`~glacgrid.exceptions.SchemaMismatchError` naming the difference.

    Returns
    -------
    SMBModel
    """
    kind = read_model_json(directory, kinds=MODEL_KINDS)["kind"]
    if kind == "ann":
        model = ANNModel.from_artifact(directory)
    elif kind in SKLEARN_KINDS:
        model = SklearnModel.from_artifact(directory)
    else:
        model = LinearModel.from_artifact(directory)
    if schema is not None:
        model.schema.check(schema)
    return model
