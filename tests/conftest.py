"""Shared fixtures: paths to the real data beside the repository, laziness guard, small synthetic region."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dask
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
HEF = DATA / "hef"


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
    """Like xarray's test helper: fail if the block triggers more than ``max_computes`` computations."""
    counter = ComputeCounter(max_computes)
    with dask.config.set(scheduler=counter):
        yield counter


@pytest.fixture(scope="session")
def small_region(tmp_path_factory):
    from glacgrid.testing import build_region

    return build_region(tmp_path_factory.mktemp("region"), seed=3, shape=(120, 160), n_massifs=2,
                        glaciers_per_massif=7, start=2001, end=2006)


def requires_data(*parts: str):
    path = DATA.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"real data {path} is not present")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks train much faster on one thread than on oversubscribed cores; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
