"""Shared fixtures: a small synthetic region and one torch thread. Paths to the real data and the dask
laziness guards live in :mod:`glacgrid.testing` (``DATA``, ``HEF``, ``REPO``, ``requires_data``,
``raise_if_dask_computes``, ``ComputeCounter``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_region(tmp_path_factory):
    from glacgrid.testing import build_region

    return build_region(tmp_path_factory.mktemp("region"), seed=3, shape=(120, 160), n_massifs=2,
                        glaciers_per_massif=7, start=2001, end=2006)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks train much faster on one thread than on oversubscribed cores; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def hef_dense_run(tmp_path_factory):
    """``examples/hef.toml`` run once on its grid (the dense path), shared by the tests that check it."""
    import dataclasses

    from glacgrid.config import OutputConfig, load_config
    from glacgrid.pipeline import run
    from glacgrid.testing import REPO

    cfg = load_config(REPO / "examples" / "hef.toml")
    out = tmp_path_factory.mktemp("hef-dense")
    return run(dataclasses.replace(cfg, output=OutputConfig(directory=out, plot=False)), progress=False)
