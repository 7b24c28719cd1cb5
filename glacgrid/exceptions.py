"""Typed exceptions of glacgrid.

Every error raised on bad input derives from :class:`GlacgridError`. A message says what was
received, what was expected and how to fix it, and names the file, variable or glacier concerned.
Input checks never use ``assert``.
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "ConfigError",
    "GeometryError",
    "GlacgridError",
    "GridMismatchError",
    "InputDataError",
    "LockHeldError",
    "MissingVariableError",
    "ModelError",
    "OptionalDependencyError",
    "SchemaMismatchError",
    "StoreError",
    "TimeAxisError",
    "UnitsError",
    "import_optional",
]


class GlacgridError(Exception):
    """Base class of every error glacgrid raises on purpose."""


class ConfigError(GlacgridError, ValueError):
    """A run configuration (TOML file or dict) is malformed, incomplete or inconsistent."""


class InputDataError(GlacgridError, ValueError):
    """An input file or array does not hold what the stage needs."""


class MissingVariableError(InputDataError, KeyError):
    """A required variable is absent from an input dataset."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class UnitsError(InputDataError):
    """A variable carries units that glacgrid cannot convert to the expected ones."""


class GridMismatchError(InputDataError):
    """Two inputs that must share a grid (or a time axis) do not."""


class TimeAxisError(InputDataError):
    """Duplicated, missing or misaligned time steps."""


class GeometryError(InputDataError):
    """Glacier outlines, ids or geometry are invalid for the requested operation."""


class ModelError(GlacgridError, ValueError):
    """A model cannot be trained, validated or applied to the given data."""


class SchemaMismatchError(ModelError):
    """A model artifact was trained on features that differ from the data it is applied to."""


class StoreError(GlacgridError, RuntimeError):
    """A Zarr store is missing, incompatible with the run, or was left incomplete."""


class LockHeldError(StoreError):
    """An output (a store, an output directory) is being written by another process.

    Attributes
    ----------
    path : pathlib.Path
        The lock file.
    holder : dict
        What the holder recorded: ``host``, ``pid``, ``started`` (ISO 8601), ``purpose``, ``argv``
        (empty when it had not recorded them yet).
    """

    def __init__(self, path, holder: dict | None = None) -> None:
        from pathlib import Path

        self.path = path if isinstance(path, str) and "://" in path else Path(path)  # (s3:// kept)
        self.holder = dict(holder or {})
        h = self.holder
        who = h.get("purpose") or "another process"
        where = (f" (pid {h.get('pid', '?')} on host {h.get('host', '?')} since {h.get('started', '?')})"
                 if h else " (it has not recorded its pid and host yet)")
        pid, host = h.get("pid", "<pid>"), h.get("host", "its host")
        super().__init__(
            f"{self.path} is in use by {who}{where}. Wait for it to finish, or write to another output "
            f"directory. If that process is gone (check with `ps -p {pid}` on {host}), the lock is already "
            "free on a local disk, and free within the lock lease (about 90 s) on a network filesystem: "
            "then re-run, and the run resumes where the dead one stopped."
        )

    def __reduce__(self):  # picklable (dask and multiprocessing send errors between processes)
        return (type(self), (self.path, self.holder))


class OptionalDependencyError(GlacgridError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def import_optional(module: str, extra: str):
    """Import ``module`` or raise :class:`OptionalDependencyError` naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise OptionalDependencyError(
            f"{module!r} is needed for this feature but is not installed. "
            f"Install it with: pip install 'glacgrid[{extra}]'"
        ) from err


class ClusterError(GlacgridError, RuntimeError):
    """A dask cluster could not be started or reached, or got no worker in time."""
