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

__all__ = ["client_for", "resolve_cluster", "describe_client", "dashboard_link", "slurm_cluster_kwargs",
           "gateway_options", "CLUSTER_KINDS"]

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


def dashboard_link(client) -> str | None:
    """The link to the dask dashboard of ``client``'s scheduler (None: no client, or a scheduler without a
    dashboard, e.g. when ``bokeh`` is missing)."""
    if client is None:
        return None
    try:
        services = client.scheduler_info().get("services", {})
        if "dashboard" not in services and not getattr(client.cluster, "dashboard_link", None):
            return None
        return client.dashboard_link
    except Exception:  # a scheduler that cannot tell (closing): no link rather than a failed run
        return None


def describe_client(client) -> str:
    """One line: the scheduler address, the workers (count, threads, memory) the client sees, and the
    dashboard link."""
    if client is None:
        import dask

        return (f"threaded scheduler in this process, {dask.config.get('num_workers', None) or os.cpu_count()} "
                "threads (no dashboard)")
    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    mem = convert(sum(w.get("memory_limit", 0) or 0 for w in workers.values()), "B", "GiB")
    link = dashboard_link(client)
    return (f"scheduler {info.get('address', '?')}, {len(workers)} workers, {threads} threads, {mem:.1f} GiB; "
            f"dashboard {link or 'none (install bokeh)'}")


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
                        interface=c.interface or None, dashboard=True, dashboard_address=":0")
    with Client() as client:
        from mpi4py import MPI  # (dask-mpi's own dependency) the worker ranks may register after this rank goes on

        _wait_for_workers(client, max(MPI.COMM_WORLD.Get_size() - 2, 1), c.wait_timeout, "dask-mpi job")
        yield client


def gateway_options(options, c: ClusterConfig) -> dict[str, object]:
    """Set the ``[cluster]`` settings on a gateway's cluster options where the gateway offers them:
    ``cores`` -> ``worker_cores``, ``memory`` -> ``worker_memory`` (GiB for a numeric option, the memory
    string otherwise) and ``image`` (when set) -> ``image``; returns what was set.

    Raises :class:`~glacgrid.exceptions.ClusterError` when the gateway refuses a value (out of its range).
    """
    from dask.utils import parse_bytes

    wanted: dict[str, object] = {"worker_cores": c.cores, "worker_memory": c.memory}
    if c.image:
        wanted["image"] = c.image
    offered = set(options)
    done: dict[str, object] = {}
    for name, value in wanted.items():
        if name not in offered:
            if name == "image":
                log.warning("the dask-gateway offers no 'image' option (it offers %s); [cluster] image = %r is "
                            "not used", sorted(offered), c.image)
            continue
        current = options[name]
        if name == "worker_memory" and isinstance(current, (int, float)) and not isinstance(current, bool):
            value = parse_bytes(str(value)) / 2 ** 30  # hubs count worker memory in GiB
        if isinstance(current, int) and not isinstance(current, bool):
            value = int(value)
        elif isinstance(current, float):
            value = float(value)
        try:
            options[name] = value
        except (ValueError, TypeError) as err:
            key = {"worker_cores": "cores", "worker_memory": "memory"}.get(name, name)
            raise ClusterError(f"The dask-gateway refuses {name} = {value!r} (from [cluster] {key}): {err}. "
                               "Use a value within the gateway's limits.") from err
        done[name] = value
    return done


def _close_gateway(gateway) -> None:
    """Close a ``dask_gateway.Gateway`` once: its ``__del__`` closes it again and, its event loop gone by
    then, prints an ignored exception at exit (dask-gateway 2026.3); without the loop runner it skips that.
    Also for the gateway client a ``GatewayCluster`` makes for itself (already closed with the cluster)."""
    with contextlib.suppress(AttributeError, RuntimeError):
        gateway.close()
    with contextlib.suppress(AttributeError):
        del gateway._loop_runner


@contextlib.contextmanager
def _gateway(c: ClusterConfig) -> Iterator[object]:
    dask_gateway = import_optional("dask_gateway", "pangeo")
    try:
        gateway = dask_gateway.Gateway()
    except ValueError as err:  # no address in the dask config
        raise ClusterError(f"No dask-gateway to connect to ({err}). On a Pangeo hub the address is configured for "
                           "you; elsewhere set DASK_GATEWAY__ADDRESS (and DASK_GATEWAY__PROXY_ADDRESS, "
                           "DASK_GATEWAY__AUTH__TYPE) or the `gateway` section of the dask config.") from err
    with contextlib.ExitStack() as stack:
        stack.callback(_close_gateway, gateway)
        try:
            options = gateway.cluster_options()
        except Exception as err:  # connection refused, authentication: dask-gateway raises plain errors
            raise ClusterError(f"Could not reach the dask-gateway at {gateway.address}: {err}. Check the address "
                               "and that you are logged in to the hub.") from err
        chosen = gateway_options(options, c)
        log.info("dask-gateway cluster options: %s", chosen)
        with gateway.new_cluster(options) as cluster:
            if getattr(cluster, "gateway", gateway) is not gateway:
                stack.callback(_close_gateway, cluster.gateway)
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
                      memory_limit=cluster.memory_limit, processes=True, dashboard_address="127.0.0.1:0") as lc, \
            Client(lc) as client:
        yield client
