"""A real dask-gateway server on this machine (local process backend, loopback only), for tests and trials.

:func:`local_gateway` starts ``dask-gateway-server`` with the ``UnsafeLocalBackend`` (clusters are local
processes of the current user: for testing only, no user separation) listening on 127.0.0.1, with cluster
options like a Pangeo hub's -- ``worker_cores``, ``worker_memory`` (GiB) and ``image`` -- and yields the
environment that points dask-gateway clients at it (``DASK_GATEWAY__ADDRESS`` and friends: what a hub sets
for its users). The option handler puts each worker's ``image`` into its environment as
``GLACGRID_GATEWAY_IMAGE``, so that a test can see the option arrive; the local backend runs no container.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

__all__ = ["local_gateway", "GATEWAY_IMAGE_ENV"]

#: Environment variable of the gateway's workers holding the ``image`` cluster option.
GATEWAY_IMAGE_ENV = "GLACGRID_GATEWAY_IMAGE"

_CONFIG = '''
from dask_gateway_server.options import Float, Integer, Options, String

c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{proxy}"
c.Proxy.tcp_address = "127.0.0.1:{tcp}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.LocalBackend.clusters_directory = {clusters!r}
c.DaskGateway.log_level = "WARN"
# distributed >= 2023 has no dask-scheduler / dask-worker scripts: the `dask` command's subcommands
c.ClusterConfig.scheduler_cmd = [{dask!r}, "scheduler"]
c.ClusterConfig.worker_cmd = [{dask!r}, "worker"]
c.ClusterConfig.environment = {{"PYTHONPATH": {pythonpath!r}}}
c.ClusterConfig.idle_timeout = 600


def _handler(options):
    return {{"worker_cores": options.worker_cores, "worker_memory": int(options.worker_memory * 2 ** 30),
            "environment": {{"PYTHONPATH": {pythonpath!r}, "{image_env}": options.image}}}}


c.Backend.cluster_options = Options(
    Integer("worker_cores", 1, min=1, max=8, label="Worker cores"),
    Float("worker_memory", 1.0, min=0.25, max=16.0, label="Worker memory (GiB)"),
    String("image", "pangeo/pangeo-notebook:latest", label="Image"),
    handler=_handler,
)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask_command() -> str:
    """The ``dask`` console script of the running interpreter's environment."""
    exe = Path(sys.executable).with_name("dask")
    return str(exe) if exe.exists() else "dask"


@contextlib.contextmanager
def local_gateway(directory: str | Path | None = None, *, timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """A running ``dask-gateway-server`` on 127.0.0.1; yields the client environment variables.

    Parameters
    ----------
    directory : str or Path, optional
        Where the server's config, database, cluster directories and log go (a temporary one by default).
    timeout : float
        Seconds to wait for the server to answer its health check.

    Yields
    ------
    dict
        ``DASK_GATEWAY__ADDRESS``, ``DASK_GATEWAY__PROXY_ADDRESS``, ``DASK_GATEWAY__AUTH__TYPE`` (``basic``:
        any user name is accepted) -- add them to ``os.environ`` (or a child's environment) and
        ``dask_gateway.Gateway()`` and ``glacgrid run --cluster gateway`` use this server.

    Raises
    ------
    RuntimeError
        When ``dask-gateway-server`` (the ``dask-gateway-server[local]`` package) is missing or does not
        start; the server's log is in the message.
    """
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="glacgrid-gateway-"))
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        api, proxy, tcp = _free_port(), _free_port(), _free_port()
        repo = str(Path(__file__).resolve().parents[2])
        pythonpath = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
        config = directory / "dask_gateway_config.py"
        config.write_text(_CONFIG.format(api=api, proxy=proxy, tcp=tcp, clusters=str(directory / "clusters"),
                                         dask=_dask_command(),
                                         pythonpath=pythonpath, image_env=GATEWAY_IMAGE_ENV), encoding="utf-8")
        server = Path(sys.executable).with_name("dask-gateway-server")
        log = open(directory / "server.log", "w", encoding="utf-8")
        stack.callback(log.close)
        try:
            proc = subprocess.Popen([str(server) if server.exists() else "dask-gateway-server", "-f", str(config)],
                                    cwd=directory, stdout=log, stderr=subprocess.STDOUT)
        except OSError as err:
            raise RuntimeError(f"could not start dask-gateway-server ({err}); install dask-gateway-server[local]") from err

        def stop():
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

        stack.callback(stop)
        address = f"http://127.0.0.1:{api}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask-gateway-server did not come up on {address}:\n"
                                   + (directory / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.3)
        yield {"DASK_GATEWAY__ADDRESS": address, "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://127.0.0.1:{tcp}",
               "DASK_GATEWAY__AUTH__TYPE": "basic"}
