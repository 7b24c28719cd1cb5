"""Dask clusters for a run: a LocalCluster by default, or an existing scheduler by address."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from .config import ClusterConfig

__all__ = ["client_for"]


@contextlib.contextmanager
def client_for(scheduler: str | None = None, cluster: ClusterConfig = ClusterConfig()) -> Iterator[object]:
    """A ``distributed.Client``: connected to ``scheduler`` (an address such as ``tcp://host:8786``,
    e.g. a Pangeo hub's dask-gateway scheduler) or to a new LocalCluster sized by ``cluster``.

    Scripts that call this must run under ``if __name__ == "__main__":`` (worker processes re-import).
    """
    from distributed import Client, LocalCluster

    address = scheduler or (cluster.kind if cluster.kind not in ("local", "") else None)
    if address:
        client = Client(address)
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
