"""The contract between a trained model and the data it is applied to.

:class:`~glacgrid.features.FeatureSchema` (defined with the features, imported here) records the
features a model was trained on (names, units, order); a model artifact stores it and its ``check``
refuses data that differ, naming the difference. This module also holds the :class:`SMBModel` protocol, the input checks shared by every model and
the helpers that read and write ``model.json``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..exceptions import GlacgridError, InputDataError, ModelError, SchemaMismatchError
from ..features import FeatureSchema

__all__ = ["ARTIFACT_FORMAT", "MODEL_JSON", "ArtifactMeta", "SMBModel", "check_predict_input", "check_training_data",
           "malformed_artifact", "predict_frame", "read_model_json", "write_json_atomic"]

#: Version of the ``model.json`` layout; bumped when a reader could misread an older file.
ARTIFACT_FORMAT = 1
MODEL_JSON = "model.json"


@runtime_checkable
class SMBModel(Protocol):
    """What every glacgrid SMB model provides (see :class:`LinearModel`, :class:`ANNModel`).

    ``predict`` takes ``X`` of shape (n_samples, n_features) in schema order and returns float64
    predictions in target units; rows holding NaN give NaN. It must be thread-safe and must not
    modify the model, because the pixel pipeline calls it from many dask threads.
    """

    schema: FeatureSchema

    def fit(self, X: np.ndarray, y: np.ndarray, schema: FeatureSchema, sample_weight=None) -> SMBModel: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def to_artifact(self, directory: str | Path) -> Path: ...


def check_training_data(
    X: np.ndarray, y: np.ndarray, schema: FeatureSchema, sample_weight=None, *, min_samples: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate training arrays against ``schema``; return them as float64.

    Raises :class:`InputDataError` for NaN/inf or bad shapes (naming the feature) and
    :class:`ModelError` for too few samples or a schema of the wrong length. Nothing is dropped.
    """
    if not isinstance(schema, FeatureSchema):
        raise ModelError(f"schema must be a FeatureSchema, got {type(schema).__name__}.")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2:
        raise InputDataError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise InputDataError(f"y must be 1-D with one value per row of X ({X.shape[0]}); got shape {y.shape}.")
    if X.shape[1] != len(schema):
        raise ModelError(
            f"X has {X.shape[1]} columns but the schema names {len(schema)} features ({schema.describe()})."
        )
    if X.shape[0] < min_samples:
        raise ModelError(f"Need at least {min_samples} training samples; got {X.shape[0]}.")
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        cols = [f"{schema.names[j]} ({int((~np.isfinite(X[:, j])).sum())} rows)" for j in np.flatnonzero(bad)]
        raise InputDataError(
            f"Training features hold NaN or inf: {', '.join(cols)}. Drop or fill those rows before fitting."
        )
    if not np.isfinite(y).all():
        raise InputDataError(
            f"Training target holds NaN or inf in {int((~np.isfinite(y)).sum())} rows. "
            "Drop those rows before fitting."
        )
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != y.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise InputDataError(
                f"sample_weight must be finite, non-negative, not all zero and of shape {y.shape}; "
                f"got shape {w.shape}."
            )
    return X, y, w


def check_predict_input(X: np.ndarray, schema: FeatureSchema | None) -> np.ndarray:
    """Validate a prediction array (2-D, one column per schema feature) without copying it."""
    if schema is None:
        raise ModelError("This model is not fitted: call fit(X, y, schema) or load it with load_model().")
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != len(schema):
        raise SchemaMismatchError(
            f"predict expects a 2-D array with {len(schema)} columns ({schema.describe()}); got shape "
            f"{X.shape}. Stack the features in this order along the last axis and reshape to 2-D."
        )
    if X.dtype.kind not in "biuf":
        raise InputDataError(f"predict expects a numeric array; got dtype {X.dtype}.")
    return X


def predict_frame(model: SMBModel, df: pd.DataFrame) -> np.ndarray:
    """Predict from a DataFrame, selecting the model's feature columns by name.

    Parameters
    ----------
    model : SMBModel
        A fitted model.
    df : DataFrame
        Holds at least the columns named in ``model.schema`` (extra columns are ignored),
        in the schema's units.

    Returns
    -------
    ndarray, shape (len(df),), float64
        Predictions in target units, in the row order of ``df``.
    """
    missing = [n for n in model.schema.names if n not in df.columns]
    if missing:
        raise SchemaMismatchError(
            f"DataFrame lacks the model features {missing} (model expects {model.schema.describe()}; "
            f"frame has columns {list(df.columns)}). Add them or use a model trained on these columns."
        )
    return model.predict(df[list(model.schema.names)].to_numpy(dtype=np.float64))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write ``payload`` as sorted, indented JSON to ``path`` through a temporary file and rename."""
    text = json.dumps(_jsonable(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


class ArtifactMeta(dict):
    """The JSON of a model artifact: a missing key is a :class:`ModelError` naming the file and the key.

    Nested objects are :class:`ArtifactMeta` too, so ``meta["weights"]["sha256"]`` on a damaged or
    hand-edited ``model.json`` says which key is missing, not ``KeyError: 'sha256'``.
    """

    path: Path = Path(MODEL_JSON)

    def __missing__(self, key):
        raise ModelError(
            f"{self.path} lacks the key {key!r} (it has {sorted(self)}): it is not a glacgrid model artifact or was "
            "damaged or edited. Re-export the model with this glacgrid version (model.to_artifact)."
        )


@contextmanager
def malformed_artifact(path: Path):
    """Turn a value of the wrong type or shape read from the artifact at ``path`` into a :class:`ModelError`."""
    try:
        yield
    except GlacgridError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise ModelError(
            f"{path} is malformed ({type(err).__name__}: {err}): it is not a glacgrid model artifact or was damaged "
            "or edited. Re-export the model with this glacgrid version (model.to_artifact)."
        ) from err


def read_model_json(directory: str | Path, kinds: tuple[str, ...] | None = None) -> ArtifactMeta:
    """Read and check ``directory/model.json``; ``kinds`` restricts the accepted model kinds.

    Returns
    -------
    ArtifactMeta
        The JSON object; a missing key raises :class:`ModelError` naming the file.
    """
    path = Path(directory) / MODEL_JSON

    def meta_object(pairs):
        obj = ArtifactMeta(pairs)
        obj.path = path
        return obj

    if not path.is_file():
        raise ModelError(f"No model artifact at {path}: expected a directory written by model.to_artifact().")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=meta_object)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path} is not valid JSON ({err}); it is damaged or not a model.json. Re-export the "
                         "model.") from err
    fmt = meta.get("format_version") if isinstance(meta, dict) else None
    if fmt != ARTIFACT_FORMAT:
        raise ModelError(
            f"{path} has format_version {fmt!r}; this glacgrid reads version {ARTIFACT_FORMAT}. "
            "Re-export the model with this glacgrid version."
        )
    if kinds is not None and meta.get("kind") not in kinds:
        raise ModelError(f"{path} holds a model of kind {meta.get('kind')!r}; expected one of {list(kinds)}.")
    return meta
