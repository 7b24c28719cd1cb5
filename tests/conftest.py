"""Shared fixtures: a small synthetic region and one torch thread. Paths to the real data and the dask
laziness guards live in :mod:`glacgrid.testing` (``DATA``, ``HEF``, ``REPO``, ``requires_data``,
``raise_if_dask_computes``, ``ComputeCounter``).

Under pytest-xdist (``make test`` runs ``pytest -n 2 --dist loadgroup``) the tests that share a module-,
class-, package- or session-scoped fixture of this suite run on one worker, so that fixture is built
once, as in a serial run; see :func:`pytest_collection_modifyitems`. The other tests are spread test by
test.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True)  # before xdist's own hook, which reads the xdist_group marks, and after it
def pytest_collection_modifyitems(config, items):
    """Under ``--dist loadgroup``, put every set of tests joined by a shared fixture on one worker.

    Two tests are joined when they use the same instance of a fixture defined in ``tests/`` whose scope
    is wider than a function (a module fixture of their module, a session fixture of ``conftest.py``) or
    carry the same explicit ``xdist_group`` mark. Each connected set gets one ``xdist_group`` mark,
    named after its explicit mark if it has one. Without this, ``loadgroup`` sends each test wherever
    a worker is free, and an expensive shared fixture (``hef_dense_run``, a Slurm fixture, a module's
    synthetic case) would be built on every worker, or torn down and rebuilt when a worker's tests of one
    module are not consecutive.
    """
    if not getattr(config.option, "loadgroup", False):  # set on xdist workers under --dist loadgroup
        return (yield)
    problem = _group_by_shared_fixtures(items)
    result = yield  # the other hooks may deselect tests (-k, -m) from items
    # xdist sends a test's group to the scheduler as a "@group" suffix of its node id; pytest 9.2 node
    # ids ignore that suffix (pytest-dev/pytest-xdist#1386), and then every group is silently split
    if not problem and any("@" not in item.nodeid for item in items if item.get_closest_marker("xdist_group")):
        import xdist

        problem = (f"pytest-xdist {xdist.__version__} under pytest {pytest.__version__} did not tag the grouped "
                   "tests, so --dist loadgroup spreads each group over the workers (pytest-dev/pytest-xdist#1386). "
                   "Install the versions constraints.txt pins (`make install`), or run the tests without -n.")
    if problem:  # an error raised on a worker reaches the terminal without its message: the tests fail instead
        config.stash[_GROUPING_PROBLEM] = problem
    return result


_GROUPING_PROBLEM = pytest.StashKey[str]()


def pytest_runtest_setup(item):
    """Fail each grouped test when the groups would not hold (see :func:`pytest_collection_modifyitems`)."""
    problem = item.config.stash.get(_GROUPING_PROBLEM, None)
    if problem and item.get_closest_marker("xdist_group"):
        pytest.fail(problem, pytrace=False)


def _group_by_shared_fixtures(items) -> str | None:
    """Add the ``xdist_group`` marks of :func:`pytest_collection_modifyitems`; what is wrong with the
    marks the tests carry themselves, or None."""
    parent: dict[tuple, tuple] = {}

    def find(key: tuple) -> tuple:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    keys_of = []
    for item in items:
        keys = [("group", m.args[0] if m.args else m.kwargs.get("name", "default"))
                for m in item.iter_markers("xdist_group")]
        info = getattr(item, "_fixtureinfo", None)
        for name in info.names_closure if info else ():
            fixturedef = (info.name2fixturedefs.get(name) or [None])[-1]
            if fixturedef is None or not fixturedef.baseid or fixturedef.scope == "function":
                continue  # a plugin's fixture (tmp_path_factory, ...) or a per-test one
            # one instance per module (module and class scope: a class lies in one module) or per run
            where = item.nodeid.split("::")[0] if fixturedef.scope in ("module", "class") else fixturedef.baseid
            where = where.removeprefix("tests").removeprefix("/")
            keys.append(("fixture", f"{where}:{name}" if where else name))
        for key in keys[1:]:
            parent[find(key)] = find(keys[0])
        keys_of.append(keys)

    components: dict[tuple, list[int]] = {}
    for i, keys in enumerate(keys_of):
        if keys:
            components.setdefault(find(keys[0]), []).append(i)
    problem = None
    for members in components.values():
        explicit = sorted({k[1] for i in members for k in keys_of[i] if k[0] == "group"})
        if len(explicit) > 1:
            problem = (f"tests that share a fixture carry different xdist_group marks {explicit} "
                       f"({', '.join(items[i].nodeid for i in members[:3])}, ...): give them one group name")
        name = explicit[0] if explicit else next(k[1] for k in keys_of[members[0]] if k[0] == "fixture")
        for i in members:  # a test that carries the mark already keeps one group (xdist takes a set)
            items[i].add_marker(pytest.mark.xdist_group(name))
    return problem


@pytest.fixture(scope="session")
def small_region(tmp_path_factory):
    from glacgrid.testing import build_region

    return build_region(tmp_path_factory.mktemp("region"), seed=3, shape=(120, 160), n_massifs=2,
                        glaciers_per_massif=7, start=2001, end=2006)


@pytest.fixture(scope="session")
def region_pixels(small_region, tmp_path_factory):
    """The small region prepared for joint training (ols on cpdd, snowfall and elevation_norm): its config,
    training table, the observed pixels with their winter and summer features, the observation table, the
    prepared run and the linked observations."""
    import pandas as pd

    from glacgrid.config import load_config
    from glacgrid.pipeline import prepare, read_observed, training_table
    from glacgrid.pipeline.training import observed_pixels
    from glacgrid.testing import write_config

    out = tmp_path_factory.mktemp("footprint")
    feats = ("cpdd", "snow_winter", "snow_summer", "elevation_norm")
    cfg = load_config(write_config(small_region, out / "run.toml", output=out, mode="reconstruct", chunks=48,
                                   features=feats, kind="ols"))
    prep = prepare(cfg, out / "work")
    observed = read_observed(cfg, prep.table)
    train, _ = training_table(cfg, prep, observed)
    px = observed_pixels(cfg, prep, observed, sorted(train["year"].unique()), seasons=("winter", "summer"))
    return cfg, train, px, pd.read_csv(small_region.observations), prep, observed


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
