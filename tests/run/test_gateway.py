"""A real dask-gateway (``dask-gateway-server``, local process backend, loopback only) behind
``--cluster gateway``: the ``[cluster]`` cores, memory and image reach the gateway as cluster options, the
dashboard link is printed, and a run on the gateway's cluster writes the same table as one on the threaded
scheduler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask
import pytest

pytest.importorskip("dask_gateway")
pytest.importorskip("dask_gateway_server")

from glacgrid.cluster import client_for, describe_client  # noqa: E402
from glacgrid.config import ClusterConfig  # noqa: E402
from glacgrid.exceptions import ClusterError  # noqa: E402
from glacgrid.testing import REPO, build_region, write_config  # noqa: E402
from glacgrid.testing._gateway import GATEWAY_IMAGE_ENV, local_gateway  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gateway")]
GLACGRID = str(Path(sys.executable).with_name("glacgrid"))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with local_gateway(tmp_path_factory.mktemp("gateway")) as env:
        yield env


@pytest.fixture
def gateway_env(gateway, monkeypatch):
    for k, v in gateway.items():
        monkeypatch.setenv(k, v)
    dask.config.refresh()
    yield gateway
    monkeypatch.undo()
    dask.config.refresh()


def test_cluster_options_reach_the_gateway_workers(gateway_env):
    c = ClusterConfig(kind="gateway", n_workers=1, cores=2, memory="1.5GiB", image="glacgrid:test", wait_timeout=120)
    with client_for(cluster=c) as client:
        client.wait_for_workers(1, timeout=120)
        (worker,) = client.scheduler_info()["workers"].values()
        assert worker["nthreads"] == 2  # worker_cores = [cluster] cores
        assert worker["memory_limit"] == int(1.5 * 2 ** 30)  # worker_memory = [cluster] memory, in GiB
        assert set(client.run(lambda: os.environ.get(GATEWAY_IMAGE_ENV)).values()) == {"glacgrid:test"}
        line = describe_client(client)
        assert "1 workers, 2 threads, 1.5 GiB; dashboard http://127.0.0.1:" in line, line


def test_a_value_the_gateway_refuses_is_a_cluster_error(gateway_env):
    with pytest.raises(ClusterError, match=r"refuses worker_cores = 64 \(from \[cluster\] cores\)"):
        with client_for(cluster=ClusterConfig(kind="gateway", cores=64, processes=1)):
            pass


def test_no_gateway_configured_is_a_cluster_error(monkeypatch):
    monkeypatch.delenv("DASK_GATEWAY__ADDRESS", raising=False)
    with dask.config.set({"gateway.address": None}):
        with pytest.raises(ClusterError, match="DASK_GATEWAY__ADDRESS"):
            with client_for(cluster=ClusterConfig(kind="gateway")):
                pass


def test_run_on_the_gateway_equals_the_threaded_run(gateway, tmp_path):
    region = build_region(tmp_path / "inputs", seed=3, shape=(64, 80), n_massifs=2, glaciers_per_massif=4,
                          start=2001, end=2002)
    tables = {}
    for kind in ("gateway", "threads"):
        cfg = write_config(region, tmp_path / f"{kind}.toml", output=tmp_path / kind, mode="evolve", chunks=16)
        with open(cfg, "a", encoding="utf-8") as fh:
            fh.write('\n[cluster]\nn_workers = 1\ncores = 2\nmemory = "2GiB"\nthreads_per_worker = 2\n'
                     "wait_timeout = 120.0\n")
        env = dict(os.environ, **gateway, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([GLACGRID, "run", str(cfg), "--cluster", kind, "--no-progress"],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        if kind == "gateway":
            assert "dashboard http://127.0.0.1:" in proc.stdout, proc.stdout
        tables[kind] = (tmp_path / kind / "glacier_years.csv").read_bytes()
    assert tables["gateway"] == tables["threads"]
    assert tables["gateway"].count(b"\n") == 1 + region.n_glaciers * 2
