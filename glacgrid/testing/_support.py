"""Test support shared by the test suite and the benchmarks: where the real data lies, and dask
laziness guards (like xarray's ``raise_if_dask_computes`` and xclim's ``assert_lazy``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import dask

__all__ = ["REPO", "DATA", "HEF", "requires_data", "ComputeCounter", "raise_if_dask_computes", "store_files", "full_disk_after"]

#: The source tree this package was imported from (an editable install or a checkout on ``sys.path``).
REPO = Path(__file__).resolve().parents[2]
#: The real data beside the repository (``../shared/data``), or ``$GLACGRID_SHARED_DATA``.
DATA = Path(os.environ.get("GLACGRID_SHARED_DATA", REPO.parent / "shared" / "data"))
#: The Ötztal / Hintereisferner data set.
HEF = DATA / "hef"


def requires_data(*parts: str):
    """A pytest mark that skips a test when ``DATA / parts`` is absent (CI always has it)."""
    import pytest

    path = DATA.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"real data {path} is not present")


class ComputeCounter:
    """A dask scheduler that counts computations and refuses them past ``max_computes``."""

    def __init__(self, max_computes: int = 0) -> None:
        self.total = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total += 1
        if self.total > self.max_computes:
            raise RuntimeError(f"Too many dask computations: {self.total} > {self.max_computes}")
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0):
    """Fail if the block triggers more than ``max_computes`` dask computations."""
    counter = ComputeCounter(max_computes)
    with dask.config.set(scheduler=counter):
        yield counter


def store_files(store: str | os.PathLike) -> dict[str, bytes]:
    """Every file of a Zarr store and its bytes, the ``history`` attributes (time stamps, paths) aside: two
    stores written by the same calls compare equal byte for byte (the kill-and-resume tests)."""
    import json

    store = Path(store)
    out = {}
    for p in sorted(store.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "zarr.json":
                meta = json.loads(data)
                meta.get("attributes", {}).pop("history", None)
                for sub in meta.get("consolidated_metadata", {}).get("metadata", {}).values():
                    sub.get("attributes", {}).pop("history", None)
                data = json.dumps(meta, sort_keys=True).encode()
            out[str(p.relative_to(store))] = data
    return out


def full_disk_after(after: int):
    """A replacement of ``zarr.storage.LocalStore.set`` that writes ``after`` objects and then fails every
    write with ``ENOSPC`` (a full disk, simulated when no small tmpfs can be mounted); install it with
    ``monkeypatch.setattr(zarr.storage.LocalStore, "set", full_disk_after(n))``."""
    import errno

    import zarr.storage

    real, calls = zarr.storage.LocalStore.set, [0]

    async def full(self, key, value):
        calls[0] += 1
        if calls[0] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real(self, key, value)

    return full
