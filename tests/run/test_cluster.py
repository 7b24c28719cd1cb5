"""Cluster selection (`--cluster`), the [cluster] section, SLURMCluster job scripts and the tile plan.

No Slurm needed here; the tests against a real Slurm are in test_slurm.py.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from glacgrid.cluster import _wait_for_workers, client_for, describe_client, resolve_cluster, slurm_cluster_kwargs
from glacgrid.config import ClusterConfig, config_from_dict
from glacgrid.exceptions import ClusterError, ConfigError, OptionalDependencyError
from glacgrid.masks import TileLayout, plan_tiles


def test_resolve_cluster_accepts_kinds_and_addresses():
    assert resolve_cluster(ClusterConfig(), "slurm").kind == "slurm"
    assert resolve_cluster(ClusterConfig(kind="slurm"), None).kind == "slurm"
    assert resolve_cluster(ClusterConfig(), " tcp://10.0.0.5:8786 ").kind == "tcp://10.0.0.5:8786"
    assert resolve_cluster(ClusterConfig(), "gateway://hub:443/abc").kind == "gateway://hub:443/abc"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"kind": "slurmm"}, "kind = 'slurmm' is neither one of local, threads, slurm, mpi, gateway"),
    ({"kind": "slurm", "processes": 4, "cores": 2}, "processes = 4 exceeds cores = 2"),
    ({"memory": "lots"}, "memory = 'lots' is not a memory size"),
    ({"walltime": "2 hours"}, "walltime = '2 hours' is not a Slurm time"),
    ({"n_workers": 0}, "n_workers = 0 must be at least 1"),
])
def test_resolve_cluster_rejects_bad_settings(kwargs, fragment):
    with pytest.raises(ConfigError) as err:
        resolve_cluster(ClusterConfig(**kwargs))
    assert fragment in str(err.value) and "--cluster local|threads|slurm|mpi|gateway" in str(err.value)


def _raw(tmp_path, cluster: dict) -> dict:
    """A minimal valid raw configuration with files that exist, plus a [cluster] table."""
    for name in ("a.nc", "inv.nc", "dem.tif", "out.shp", "obs.csv"):
        (tmp_path / name).write_text("x")
    return {"climate": {"files": ["a.nc"], "invariant": "inv.nc"}, "grid": {"dem": "dem.tif"},
            "glaciers": {"outlines": "out.shp"}, "period": {"start": 2000, "end": 2001},
            "observations": {"files": ["obs.csv"]}, "cluster": cluster}


def test_cluster_section_of_the_config(tmp_path):
    cfg = config_from_dict(_raw(tmp_path, {"kind": "slurm", "cores": 8, "processes": 2, "memory": "32GB",
                                           "walltime": "1-00:00:00", "queue": "compute", "account": "glac",
                                           "interface": "ib0", "job_extra_directives": ["--qos=normal"],
                                           "job_script_prologue": ["module load python"], "wait_timeout": 30}),
                           base=tmp_path)
    c = cfg.cluster
    assert (c.kind, c.cores, c.processes, c.memory, c.walltime) == ("slurm", 8, 2, "32GB", "1-00:00:00")
    assert c.job_extra_directives == ("--qos=normal",) and c.job_script_prologue == ("module load python",)
    assert c.wait_timeout == 30.0 and isinstance(c.wait_timeout, float)
    with pytest.raises(ConfigError, match="unknown key 'acount'. Did you mean 'account'?"):
        config_from_dict(_raw(tmp_path, {"kind": "slurm", "acount": "x"}), base=tmp_path)
    with pytest.raises(ConfigError, match=r"\[cluster\] kind = 'pbs' is neither one of local, threads, slurm"):
        config_from_dict(_raw(tmp_path, {"kind": "pbs"}), base=tmp_path)


def test_slurm_job_script_from_the_cluster_section(tmp_path):
    """The SLURMCluster built from [cluster] writes every setting into its job script."""
    from dask_jobqueue import SLURMCluster

    c = ClusterConfig(kind="slurm", cores=4, processes=2, memory="8GiB", walltime="00:30:00", queue="short",
                      account="glac", interface="lo", job_extra_directives=("--qos=debug",),
                      job_script_prologue=("module load python",), log_directory=str(tmp_path / "logs"),
                      python="/opt/venv/bin/python")
    kwargs = slurm_cluster_kwargs(c)
    with SLURMCluster(**kwargs) as cluster:  # no job is submitted before scale()
        script = cluster.job_script()
    for line in ("#SBATCH -p short", "#SBATCH -A glac", "#SBATCH -n 1", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=8G", "#SBATCH -t 00:30:00", "#SBATCH --qos=debug", "module load python",
                 "/opt/venv/bin/python -m distributed.cli.dask_worker", "--nworkers 2", "--nthreads 2",
                 "--interface lo", "#SBATCH -J glacgrid-worker"):
        assert line in script, (line, script)
    assert f"#SBATCH -e {tmp_path / 'logs'}" in script


def test_worker_job_name_carries_the_driver_job_id(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert slurm_cluster_kwargs(ClusterConfig(kind="slurm"))["job_name"] == "glacgrid-worker-4242"
    monkeypatch.delenv("SLURM_JOB_ID")
    assert slurm_cluster_kwargs(ClusterConfig(kind="slurm"))["job_name"] == "glacgrid-worker"


def test_client_for_an_address_and_no_worker_error():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        with client_for(cluster=ClusterConfig(kind=lc.scheduler_address)) as client:
            assert client.scheduler.address == lc.scheduler_address
            line = describe_client(client)
            assert line.startswith(f"scheduler {lc.scheduler_address}, 1 workers, 1 threads")
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as lc, Client(lc) as client:
        with pytest.raises(ClusterError, match=r"No dask worker of the test cluster connected within 1 s \(asked for 2\)"):
            _wait_for_workers(client, 2, 1.0, "test cluster")
    with pytest.raises(ClusterError, match="Could not connect to the dask scheduler at 'tcp://127.0.0.1:9'"):
        with client_for(cluster=ClusterConfig(kind="tcp://127.0.0.1:9", wait_timeout=2.0)):
            pass


@pytest.mark.parametrize("kind, extra, module", [("mpi", "mpi", "dask_mpi"), ("gateway", "pangeo", "dask_gateway")])
def test_optional_cluster_kinds_name_their_extra(kind, extra, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed (the test extra installs dask-mpi)
    with pytest.raises(OptionalDependencyError, match=rf"pip install 'glacgrid\[{extra}\]'"):
        with client_for(cluster=ClusterConfig(kind=kind)):
            pass


# ----------------------------------------------------------------------------- tile plan

def _tiles_of(layout: TileLayout) -> np.ndarray:
    """The tile of every chunk as a (block rows, block cols) array (-1: none)."""
    nby = -(-layout.shape[0] // layout.chunks[0])
    nbx = -(-layout.shape[1] // layout.chunks[1])
    out = np.full((nby, nbx), -1)
    for t, blocks in enumerate(layout.blocks):
        for by, bx in blocks:
            assert out[by, bx] == -1, "a chunk in two tiles"
            out[by, bx] = t
    return out


def test_plan_tiles_known_answer():
    g = np.zeros((10, 12), dtype=np.int32)  # 3 x 3 chunks of 4 x 4 (the last row and column partial)
    g[0:3, 0:3] = 1                      # chunk (0, 0)
    g[2:5, 3:7] = 2                      # chunks (0, 0), (0, 1), (1, 0), (1, 1): joins glacier 1's chunk
    g[8:10, 8:12] = 3                    # chunk (2, 2)
    layout = plan_tiles(g, (4, 4), 2, index=np.array([1, 2, 3, 4]))  # glacier 4 has no pixel
    assert layout.n_tiles == 2
    np.testing.assert_array_equal(_tiles_of(layout), [[0, 0, 0], [0, 0, 0], [0, 0, 1]])
    assert layout.glaciers == ((1, 2, 4), (3,))
    assert layout.window(1) == (slice(6, 10), slice(6, 12))  # chunk (2, 2) plus a halo of 2, clipped
    # more tiles than glaciated components: as many tiles as components, none without glaciers
    many = plan_tiles(g, (4, 4), 10, index=np.array([1, 2, 3, 4]))
    assert many.n_tiles == 2 and all(many.glaciers)
    one = plan_tiles(g, (4, 4), 1, index=np.array([1, 2, 3, 4]))
    assert one.n_tiles == 1 and one.glaciers == ((1, 2, 3, 4),) and len(one.blocks[0]) == 9
    assert TileLayout.from_dict(layout.to_dict()) == layout
    with pytest.raises(Exception, match="at least 1"):
        plan_tiles(g, (4, 4), 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plan_tiles_never_splits_a_glacier(seed):
    """Random blobs: every chunk in exactly one tile, every glacier's pixels in its own tile's chunks."""
    rng = np.random.default_rng(seed)
    g = np.zeros((53, 67), dtype=np.int32)
    for gid in range(1, 25):
        y, x = rng.integers(0, 50), rng.integers(0, 60)
        g[y:y + rng.integers(1, 9), x:x + rng.integers(1, 12)] = gid
    ids = np.unique(g[g > 0])
    layout = plan_tiles(g, (8, 8), 5, index=ids)
    tiles = _tiles_of(layout)
    assert (tiles >= 0).all() and layout.n_tiles == 5
    assert sorted(sum(layout.glaciers, ())) == ids.tolist()
    tile_of_pixel = np.repeat(np.repeat(tiles, 8, axis=0), 8, axis=1)[:53, :67]
    for t, glaciers in enumerate(layout.glaciers):
        assert glaciers, "a tile without glaciers"
        assert (tile_of_pixel[np.isin(g, glaciers)] == t).all()


def test_threads_kind_uses_the_threaded_scheduler_with_the_asked_threads():
    import dask
    import dask.array as da

    with client_for(cluster=ClusterConfig(kind="threads", n_workers=1, threads_per_worker=3)) as client:
        assert client is None
        assert describe_client(client) == "threaded scheduler in this process, 3 threads (no dashboard)"
        assert dask.config.get("scheduler") == "threads"
        assert int(da.ones((10, 10), chunks=5).sum().compute()) == 100
    assert dask.config.get("num_workers", None) != 3  # scoped to the block


@pytest.mark.slow
def test_tiled_run_in_process_equals_a_single_run(tmp_path):
    """prepare -> every tile -> finish (what the Slurm array does) gives the single run's results."""
    import pandas as pd
    from typer.testing import CliRunner

    from glacgrid.cli import app
    from glacgrid.config import load_config
    from glacgrid.cube import completed_regions, open_store
    from glacgrid.pipeline import finish_tiles, missing_tiles, prepare_tiles, run, run_tile
    from glacgrid.testing import build_region, write_config

    region = build_region(tmp_path / "inputs", seed=3, shape=(64, 80), n_massifs=2, glaciers_per_massif=4,
                          start=2001, end=2003)
    single = load_config(write_config(region, tmp_path / "a.toml", output=tmp_path / "a", chunks=16))
    path = write_config(region, tmp_path / "b.toml", output=tmp_path / "b", chunks=16)
    tiled = load_config(path)
    reference = run(single, progress=False)
    layout = prepare_tiles(tiled, 5)
    assert layout.n_tiles == 2  # two massifs, each glacier group joined through the summit chunks
    assert sorted(sum(layout.glaciers, ())) == list(range(1, 10))
    assert prepare_tiles(tiled, 5) == layout  # prepared already: nothing recomputed
    runner = CliRunner()
    assert runner.invoke(app, ["tiles", "missing", str(path)]).output.strip() == "0,1"
    res = runner.invoke(app, ["tiles", "finish", str(path)])
    assert res.exit_code == 2 and "Tiles [0, 1] are not in the results store yet" in res.output
    report = run_tile(tiled, 1)
    assert report["glaciers"] == len(layout.glaciers[1]) and not report["skipped"]
    assert missing_tiles(tiled) == [0]
    assert run_tile(tiled, 1)["skipped"]
    res = runner.invoke(app, ["run", str(path), "--tile", "0", "--cluster", "threads", "--no-progress"])
    assert res.exit_code == 0 and f"tile 0: {len(layout.glaciers[0])} glaciers" in res.output, res.output
    assert {"tile[0]", "tile[1]", "year[0:1]", "year[2:3]"} <= completed_regions(tmp_path / "b" / "results.zarr")
    result = finish_tiles(tiled)
    a = open_store(reference.files.results_zarr).compute()
    b = open_store(result.files.results_zarr).compute()
    for name in a.data_vars:
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-12, atol=1e-12, equal_nan=True,
                                   err_msg=name)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "glacier_years.csv"),
                                  pd.read_csv(tmp_path / "b" / "glacier_years.csv"))
    assert (tmp_path / "b" / "summary.png").stat().st_size > 20_000


@pytest.mark.slow
def test_run_on_dask_mpi_under_mpiexec(tmp_path):
    """`glacgrid run --cluster mpi` under mpiexec -n 3: rank 0 scheduler, rank 1 the run, rank 2 a worker."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    from glacgrid.testing import build_region, write_config

    from glacgrid.testing import REPO

    mpiexec = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if mpiexec is None or importlib.util.find_spec("dask_mpi") is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip("needs mpiexec, mpi4py and dask-mpi (pip install 'glacgrid[mpi]' mpich)")
    region = build_region(tmp_path / "inputs", seed=3, shape=(64, 80), n_massifs=2, glaciers_per_massif=4,
                          start=2001, end=2002)
    cfg = write_config(region, tmp_path / "mpi.toml", output=tmp_path / "out", mode="reconstruct", chunks=32)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "glacgrid.cli", "run", str(cfg), "--cluster", "mpi",
                          "--no-progress"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "dask: scheduler tcp://" in res.stdout and ", 1 workers, " in res.stdout, res.stdout
    gy = pd.read_csv(tmp_path / "out" / "glacier_years.csv")
    assert len(gy) == 9 * 2 and gy["smb_mwe"].notna().all()
