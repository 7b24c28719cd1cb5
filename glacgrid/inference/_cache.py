"""A per-process cache of model artifacts: every dask worker loads an artifact once, not once per block.

A block of the inference graph carries a :class:`ModelRef` (the artifact's resolved path and a digest of
its ``model.json`` files), not the model. :func:`resolve` returns the model from this process's cache and
loads it only on a miss; the key includes the digest, so an artifact rewritten in place is reloaded
instead of served stale, and one that changed after the graph was built is refused. No xarray here.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import ModelError

__all__ = ["ModelRef", "model_ref", "artifact_digest", "resolve", "load_count", "clear"]

#: Artifacts kept per process (least recently used dropped first).
MAX_MODELS = 4

_lock = threading.Lock()
_models: OrderedDict[tuple[str, str], object] = OrderedDict()
_loads = {"n": 0}


@dataclass(frozen=True)
class ModelRef:
    """Where a worker finds a model: the resolved artifact directory and the digest it must have."""

    path: str
    digest: str


def artifact_digest(directory: str | Path) -> str:
    """sha256 over every ``model.json`` of an artifact (an ensemble has one per member), with their paths.

    Each ``model.json`` records the sha256 of its binary weights, so this digest fingerprints the content.
    """
    root = Path(directory)
    files = sorted(root.rglob("model.json"))
    if not files:
        raise ModelError(f"{root} holds no model.json; pass a fitted model or a directory written by "
                         "model.to_artifact().")
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def model_ref(directory: str | Path) -> ModelRef:
    """A :class:`ModelRef` for an artifact directory (checked to exist)."""
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        raise ModelError(f"Model artifact {directory} is not a directory; pass a fitted model or the directory "
                         "written by model.to_artifact() / `glacgrid train`.")
    return ModelRef(str(path), artifact_digest(path))


def resolve(model):
    """``model`` itself, or for a :class:`ModelRef` the cached model of this process (loaded on a miss)."""
    if not isinstance(model, ModelRef):
        return model
    key = (model.path, model.digest)
    with _lock:  # one load per process even when several threads ask at once
        hit = _models.get(key)
        if hit is not None:
            _models.move_to_end(key)
            return hit
        from ..models import load_model

        found = artifact_digest(model.path)
        if found != model.digest:
            raise ModelError(f"The model artifact {model.path} changed after the inference graph was built "
                             f"(digest {found[:12]} != {model.digest[:12]}); rebuild the graph with infer().")
        loaded = load_model(model.path)
        _loads["n"] += 1
        _models[key] = loaded
        while len(_models) > MAX_MODELS:
            _models.popitem(last=False)
        return loaded


def load_count() -> int:
    """How many artifacts this process has loaded from disk (for tests, via ``client.run``)."""
    return _loads["n"]


def clear() -> None:
    """Forget the cached models and reset the load counter of this process."""
    with _lock:
        _models.clear()
        _loads["n"] = 0
