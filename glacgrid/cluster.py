"""Dask clusters for a run: a LocalCluster (default), a dask-jobqueue SLURMCluster, dask-mpi, a
dask-gateway cluster, or an existing scheduler by address (how a Pangeo hub's cluster is used).

:func:`client_for` is a context manager that starts what it needs, yields a ``distributed.Client``
and shuts down what it started (Slurm worker jobs included) on the way out, also after an error.
Scripts that call it must run under ``if __name__ == "__main__":`` (worker processes re-import).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
from typing import Iterator

from .config import CLUSTER_KINDS, ClusterConfig, cluster_problems
from .exceptions import ClusterError, ConfigError, import_optional
from .units import convert

__all__ = ["client_for", "resolve_cluster", "describe_client", "slurm_cluster_kwargs", "CLUSTER_KINDS"]

log = logging.getLogger(__name__)


def resolve_cluster(cluster: ClusterConfig = ClusterConfig(), kind: str | None = None) -> ClusterConfig:
    """``cluster`` with ``kind`` replaced (``--cluster`` on the command line), checked.

    Raises :class:`~glacgrid.exceptions.ConfigError` for an unknown kind or impossible sizes.
    """
    if kind:
        cluster = dataclasses.replace(cluster, kind=kind.strip())
    problems = cluster_problems(cluster)
    if problems:
        raise ConfigError("Invalid cluster settings:\n  - " + "\n  - ".join(problems)
                          + "\nUse --cluster local|threads|slurm|mpi|gateway|tcp://HOST:PORT, or fix the [cluster] section.")
    return cluster


def describe_client(client) -> str:
    """One line: the scheduler address and the workers (count, threads, memory) the client sees."""
    if client is None:
        import dask

        return f"threaded scheduler in this process, {dask.config.get('num_workers', None) or os.cpu_count()} threads"
    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    mem = convert(sum(w.get("memory_limit", 0) or 0 for w in workers.values()), "B", "GiB")
    return f"scheduler {info.get('address', '?')}, {len(workers)} workers, {threads} threads, {mem:.1f} GiB"


def _wait_for_workers(client, n: int, timeout: float, what: str, pending=lambda: "") -> None:
    """Wait up to ``timeout`` s for ``n`` workers; go on with fewer (warning) but never with none."""
    deadline = time.monotonic() + timeout
    have = 0
    while time.monotonic() < deadline:
        have = len(client.scheduler_info().get("workers", {}))
        if have >= n:
            return
        time.sleep(0.5)
    if have == 0:
        raise ClusterError(f"No dask worker of the {what} connected within {timeout:.0f} s (asked for {n}). "
                           f"{pending()}Check that the jobs can start (queue, account, walltime, memory) and "
                           "reach the scheduler (the [cluster] interface), or raise [cluster] wait_timeout.")
    log.warning("only %d of %d workers of the %s connected within %.0f s; going on with them",
                have, n, what, timeout)


def _slurm_pending(cluster) -> str:
    """The Slurm state of the worker jobs, for an error message."""
    import subprocess

    ids = [j.job_id for j in getattr(cluster, "workers", {}).values() if getattr(j, "job_id", None)]
    if not ids:
        return "No worker job was submitted. "
    try:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %r"], capture_output=True,
                             text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"Worker jobs {', '.join(ids)}: {out or 'not in the queue any more'}. "


def _worker_job_name() -> str:
    """``glacgrid-worker``, or ``glacgrid-worker-<job id>`` inside a Slurm job (the driver job of
    ``jobs/run_slurm_cluster.sbatch``), so that the driver can cancel exactly its own workers."""
    driver = os.environ.get("SLURM_JOB_ID")
    return f"glacgrid-worker-{driver}" if driver else "glacgrid-worker"


def slurm_cluster_kwargs(c: ClusterConfig) -> dict:
    """The keyword arguments of ``dask_jobqueue.SLURMCluster`` for the ``[cluster]`` settings ``c``."""
    kwargs = dict(cores=c.cores, processes=c.processes, memory=c.memory, walltime=c.walltime,
                  job_extra_directives=list(c.job_extra_directives), job_script_prologue=list(c.job_script_prologue),
                  python=c.python or sys.executable, job_name=_worker_job_name())
    for key in ("queue", "account", "interface", "log_directory"):
        if getattr(c, key):
            kwargs[key] = getattr(c, key)
    return kwargs


@contextlib.contextmanager
def _slurm(c: ClusterConfig) -> Iterator[object]:
    jobqueue = import_optional("dask_jobqueue", "hpc")
    from distributed import Client

    kwargs = slurm_cluster_kwargs(c)
    try:
        cluster = jobqueue.SLURMCluster(**kwargs)
    except Exception as err:  # dask-jobqueue raises plain errors (bad interface, no sbatch ...)
        raise ClusterError(f"Could not start a SLURMCluster with {kwargs}: {err}. Check [cluster] interface "
                           "(a name from `ip addr`, e.g. ib0 or lo) and that sbatch is on PATH.") from err
    with cluster:
        log.info("SLURMCluster job script:\n%s", cluster.job_script())
        cluster.scale(n=c.n_workers)
        with Client(cluster) as client:
            _wait_for_workers(client, c.n_workers, c.wait_timeout, "SLURMCluster", lambda: _slurm_pending(cluster))
            yield client
            cluster.scale(0)


@contextlib.contextmanager
def _mpi(c: ClusterConfig) -> Iterator[object]:
    dask_mpi = import_optional("dask_mpi", "mpi")
    from distributed import Client

    # rank 0 runs the scheduler and rank >= 2 the workers, neither returns; rank 1 goes on as the client
    dask_mpi.initialize(nthreads=c.threads_per_worker, memory_limit=c.memory_limit,
                        interface=c.interface or None, dashboard=False)
    with Client() as client:
        from mpi4py import MPI  # (dask-mpi's own dependency) the worker ranks may register after this rank goes on

        _wait_for_workers(client, max(MPI.COMM_WORLD.Get_size() - 2, 1), c.wait_timeout, "dask-mpi job")
        yield client


@contextlib.contextmanager
def _gateway(c: ClusterConfig) -> Iterator[object]:
    dask_gateway = import_optional("dask_gateway", "pangeo")
    gateway = dask_gateway.Gateway()
    with gateway.new_cluster() as cluster:
        cluster.scale(c.n_workers)
        with cluster.get_client() as client:
            _wait_for_workers(client, 1, c.wait_timeout, "dask-gateway cluster")
            yield client


@contextlib.contextmanager
def client_for(scheduler: str | None = None, cluster: ClusterConfig = ClusterConfig()) -> Iterator[object]:
    """A ``distributed.Client`` for ``cluster.kind`` (or for the address ``scheduler``, which wins).

    ``local``: a new LocalCluster of ``n_workers`` processes. ``threads``: no client (``None``); dask's
    threaded scheduler with ``n_workers * threads_per_worker`` threads inside the block. ``slurm``: a dask-jobqueue SLURMCluster
    from the ``[cluster]`` settings, scaled to ``n_workers`` workers (waits for them up to
    ``wait_timeout`` s; its worker jobs are cancelled on exit). ``mpi``: dask-mpi in an ``mpirun``/``srun``
    job. ``gateway``: a new dask-gateway cluster. An address (``tcp://host:8786``): connect to it.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        cluster = dataclasses.replace(cluster, kind=scheduler)
    cluster = resolve_cluster(cluster)
    kind = cluster.kind
    if kind == "threads":  # no distributed client: dask's threaded scheduler, sized, for this block only
        import dask

        with dask.config.set(scheduler="threads", num_workers=cluster.n_workers * cluster.threads_per_worker):
            yield None
        return
    if kind == "slurm":
        with _slurm(cluster) as client:
            yield client
        return
    if kind == "mpi":
        with _mpi(cluster) as client:
            yield client
        return
    if kind == "gateway":
        with _gateway(cluster) as client:
            yield client
        return
    if kind not in CLUSTER_KINDS:  # a scheduler address
        try:
            client = Client(kind, timeout=min(cluster.wait_timeout, 60.0))
        except OSError as err:
            raise ClusterError(f"Could not connect to the dask scheduler at {kind!r}: {err}. Check the address "
                               "(e.g. from `client.scheduler.address` in the hub session) and that it is running.") from err
        try:
            yield client
        finally:
            client.close()
        return
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with LocalCluster(n_workers=cluster.n_workers, threads_per_worker=cluster.threads_per_worker,
                      memory_limit=cluster.memory_limit, processes=True, dashboard_address=None) as lc, \
            Client(lc) as client:
        yield client
