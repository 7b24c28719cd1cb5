"""SMB models: fit on a glacier-wide table, save as a safe artifact, apply to pixel arrays.

Typical use::

    schema = FeatureSchema(("cpdd", "snow_winter"), ("K day", "m w.e."))
    model = make_model("lasso", seed=0).fit(X, y, schema)
    model.to_artifact("run/model")
    ...
    model = load_model("run/model", schema=schema)   # refuses other features, names the difference
    smb = model.predict(pixels)                        # (n_pixels, n_features) -> (n_pixels,)

``cross_validate`` scores a model kind with leave-one-glacier-out or leave-one-year-out folds.
Artifacts are JSON plus, for the ANN, a tensor-only ``state_dict``; nothing is unpickled.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..exceptions import ModelError
from .ann import ANNModel
from .linear import LINEAR_KINDS, LinearModel
from .schema import FeatureSchema, SMBModel, predict_frame, read_model_json

#: Model kinds understood by :func:`make_model` and :func:`load_model`.
MODEL_KINDS = (*LINEAR_KINDS, "ann")


def make_model(kind: str, *, seed: int = 0, **options) -> SMBModel:
    """Build an unfitted model of ``kind``.

    Parameters
    ----------
    kind : {"lasso", "ols", "ridge", "ann"}
        The model family.
    seed : int
        Seeds every random choice of the fit.
    **options
        Keyword arguments of :class:`ANNModel` (``hidden``, ``epochs``, ``lr``, ``device``,
        ``patience``, ``batch_size``); linear kinds take none.

    Returns
    -------
    SMBModel
    """
    if kind not in MODEL_KINDS:
        raise ModelError(f"Unknown model kind {kind!r}; valid kinds: {', '.join(MODEL_KINDS)}.")
    cls = ANNModel if kind == "ann" else LinearModel
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kind", "seed")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ModelError(
            f"Unknown option(s) {unknown} for model kind {kind!r}; valid options: {valid or 'none'}."
        )
    if kind == "ann":
        return ANNModel(seed=seed, **options)
    return LinearModel(kind, seed=seed)


def load_model(directory: str | Path, *, schema: FeatureSchema | None = None) -> SMBModel:
    """Load a model artifact written by ``model.to_artifact(directory)``.

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
    kind = read_model_json(directory, kinds=MODEL_KINDS)["kind"]
    model = ANNModel.from_artifact(directory) if kind == "ann" else LinearModel.from_artifact(directory)
    if schema is not None:
        model.schema.check(schema)
    return model


from .cv import CVResult, cross_validate  # noqa: E402  (cv builds models through make_model)

__all__ = [
    "MODEL_KINDS",
    "ANNModel",
    "CVResult",
    "FeatureSchema",
    "LinearModel",
    "SMBModel",
    "cross_validate",
    "load_model",
    "make_model",
    "predict_frame",
]
