"""SMB models: fit on a feature table, validate, save as a safe artifact, apply to pixel arrays.

Typical use::

    schema = FeatureSchema(("cpdd", "snow_winter"), ("K day", "m w.e."))
    model = make_model("lasso", seed=0).fit(X, y, schema)      # or "ols", "svr", "rf", "gbm", "ann"
    model = make_model("ann", preset="alpgm", seed=0)           # literature presets: "alpgm", "point"
    model = make_model("ann", ensemble=5)                        # seeds (or bootstraps): mean and spread
    model.to_artifact("run/model")
    ...
    model = load_model("run/model", schema=schema)   # refuses other features, names the difference
    smb = model.predict(pixels)                        # (n_pixels, n_features) -> (n_pixels,)

:func:`cross_validate` scores a model kind with LOGO, LOYO, LSYGO, grouped k-fold or random
70/15/15 folds, optionally with sample weights (:func:`sample_weights`) and a nested search;
:func:`fine_tune` transfers a pretrained ANN to a small data set. Artifacts are JSON plus, for
SVR/forests, a numeric ``.npz`` and, for the ANN, a tensor-only ``state_dict``; nothing is unpickled.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..exceptions import ModelError
from .ann import ANNModel
from .ensemble import ENSEMBLE_METHODS, EnsembleModel
from .linear import LINEAR_KINDS, LinearModel
from .presets import ANN_PRESETS, preset_options
from .schema import FeatureSchema, SMBModel, predict_frame, read_model_json
from .sklearn_models import SKLEARN_KINDS, SklearnModel

#: Model kinds understood by :func:`make_model` and :func:`load_model`.
MODEL_KINDS = (*LINEAR_KINDS, *SKLEARN_KINDS, "ann")


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

    Returns
    -------
    SMBModel
    """
    if kind not in MODEL_KINDS:
        raise ModelError(f"Unknown model kind {kind!r}; valid kinds: {', '.join(MODEL_KINDS)}.")
    if preset is not None and kind != "ann":
        raise ModelError(f"preset={preset!r} applies to the ANN only; got model kind {kind!r}.")
    if ensemble is not None:
        opts = dict(options, preset=preset) if preset is not None else dict(options)
        return EnsembleModel(kind, n_members=ensemble, method=ensemble_method, seed=seed, **opts)
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
    return LinearModel(kind, seed=seed)


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
    if kind == "ann":
        model = ANNModel.from_artifact(directory)
    elif kind in SKLEARN_KINDS:
        model = SklearnModel.from_artifact(directory)
    elif kind == "ensemble":
        model = EnsembleModel.from_artifact(directory)
    else:
        model = LinearModel.from_artifact(directory)
    if schema is not None:
        model.schema.check(schema)
    return model


from .cv import SCHEMES, CVResult, cross_validate  # noqa: E402  (cv builds models through make_model)
from .transfer import fine_tune  # noqa: E402
from .weights import WEIGHTINGS, sample_weights  # noqa: E402

__all__ = [
    "ANN_PRESETS",
    "ENSEMBLE_METHODS",
    "MODEL_KINDS",
    "SCHEMES",
    "WEIGHTINGS",
    "ANNModel",
    "EnsembleModel",
    "SklearnModel",
    "fine_tune",
    "sample_weights",
    "CVResult",
    "FeatureSchema",
    "LinearModel",
    "SMBModel",
    "cross_validate",
    "load_model",
    "make_model",
    "predict_frame",
]
