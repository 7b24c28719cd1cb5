"""Build an unfitted model of a kind (one model or an ensemble) and load any model artifact."""

from __future__ import annotations

from pathlib import Path

from .ensemble import EnsembleModel
from .kinds import MODEL_KINDS, check_kind, load_single_model, make_single_model
from .schema import FeatureSchema, SMBModel, read_model_json

__all__ = ["load_model", "make_model"]


def make_model(kind: str, *, seed: int = 0, preset: str | None = None, ensemble: int | None = None,
               ensemble_method: str = "seeds", **options) -> SMBModel:
    """Build an unfitted model of ``kind``.

    Parameters
    ----------
    kind : {"lasso", "ols", "ridge", "svr", "rf", "gbm", "ann"}
        The model family: Lasso with cross-validated penalty, ordinary least squares, ridge,
        RBF support-vector regression, random forest, gradient boosting, feed-forward ANN.
    seed : int
        Seeds every random choice of the fit.
    preset : {"alpgm", "point"}, optional
        ANN only: a named configuration (:mod:`glacgrid.models.presets`); ``options`` override it.
    ensemble : int, optional
        Build an :class:`EnsembleModel` of this many members instead of one model.
    ensemble_method : {"seeds", "bootstrap"}
        How ensemble members differ.
    **options
        Keyword arguments of :class:`ANNModel` (``hidden``, ``epochs``, ``lr``, ``batchnorm``, ...)
        or of :class:`SklearnModel` (``C``, ``n_estimators``, ...); linear kinds take none.
        ``monotone=True`` (kinds in :data:`~glacgrid.models.MONOTONE_KINDS`: all but svr) constrains the
        model to be monotone in the temperature / snowfall features (:mod:`glacgrid.models.physics`);
        ``threads`` sets the ANN's torch threads (default 1).

    Returns
    -------
    SMBModel
    """
    check_kind(kind, preset)
    if ensemble is not None:
        opts = dict(options, preset=preset) if preset is not None else dict(options)
        return EnsembleModel(kind, n_members=ensemble, method=ensemble_method, seed=seed, **opts)
    return make_single_model(kind, seed=seed, preset=preset, **options)


def load_model(directory: str | Path, *, schema: FeatureSchema | None = None) -> SMBModel:
    """Load a model artifact written by ``model.to_artifact(directory)``.

    Nothing is unpickled: linear models are JSON, SVR/forests JSON plus a numeric ``.npz`` read
    with ``allow_pickle=False``, the ANN JSON plus a tensor-only state dict read with
    ``torch.load(weights_only=True)``; every binary file's sha256 is checked against the JSON.

    Parameters
    ----------
    directory : str or Path
        The artifact directory (holding ``model.json``).
    schema : FeatureSchema, optional
        The features of the data the model will be applied to; when given, a mismatch raises
        :class:`~glacgrid.exceptions.SchemaMismatchError` naming the difference.

    Returns
    -------
    SMBModel
    """
    kind = read_model_json(directory, kinds=(*MODEL_KINDS, "ensemble"))["kind"]
    if kind != "ensemble":
        return load_single_model(directory, schema=schema)
    model = EnsembleModel.from_artifact(directory)
    if schema is not None:
        model.schema.check(schema)
    return model
