"""Where outputs live: local folders, or object storage (``s3://``, ``gs://``, ...) through fsspec.

A path is either a local path or an fsspec URL ``scheme://...``. :func:`location` parses it into a
:class:`Location`: ``file://`` URLs are local paths; a scheme fsspec knows (``s3``, ``gs``, ``az``,
``memory``, ...) is object storage reached with the given ``storage_options`` (credentials, an
``endpoint_url``); any other scheme is a :class:`~glacgrid.exceptions.StoreError`, so ``s3:/bucket`` is
never written as a local folder.

Object storage has no rename, no POSIX locks and no ``O_EXCL``; what glacgrid needs from it:

* :func:`remote_lock`: the run lock of a prefix, an object created only if absent (S3 ``If-None-Match:
  *``, fsspec ``mode="create"``) holding its holder record, renewed by a heartbeat thread. A lock whose
  holder died (same host, pid gone) or stopped renewing for ``ttl_s`` seconds is taken over.
* :class:`Mirror`: a local working copy (staging folder) of a prefix. :meth:`Mirror.pull` downloads it,
  :meth:`Mirror.push` uploads what changed and deletes what was removed, in an order that keeps the
  bucket consistent at every moment: the progress records (``.glacgrid_*.json``) are read *before* the
  data files are uploaded and written *after* them, and Zarr metadata (``zarr.json``) goes after the
  chunks it describes, deepest first. So a region recorded as done on the bucket always has its chunks
  there, and a run killed at any moment resumes from the bucket (``glacgrid.pipeline.outdir.staged_output``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import LockHeldError, StoreError

__all__ = ["LOCAL_SCHEMES", "Location", "Mirror", "is_url", "location", "remote_lock"]

#: URL schemes that name the local filesystem.
LOCAL_SCHEMES = ("file", "local")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$")
# what a killed local write leaves (glacgrid.atomic: .<name>.<random>.tmp, Zarr's <chunk>.<uuid>.partial) and
# local lock files: never uploaded
_SKIP = re.compile(r"(^\..*\.tmp$)|(\.partial$)|(\.lock$)")
# progress records, uploaded last (their content read before the data is uploaded)
_RECORD = re.compile(r"^\.glacgrid_.*\.json$")


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is written as a URL ``scheme://...`` (any scheme, known or not)."""
    return isinstance(path, str) and _URL.match(path) is not None


def _known_schemes() -> set[str]:
    from fsspec.registry import known_implementations, registry

    return set(known_implementations) | set(registry)


@dataclass(frozen=True)
class Location:
    """A folder (or store) on the local filesystem or on object storage.

    Attributes
    ----------
    url : str
        The location as given (a local path as a string for local locations).
    protocol : str
        ``"file"`` for local locations, else the fsspec protocol (``s3``, ``gs``, ...).
    path : str
        The path without the scheme (``bucket/prefix`` on object storage).
    storage_options : Mapping
        Passed to fsspec (credentials, ``endpoint_url``, ``client_kwargs``, ...).
    """

    url: str
    protocol: str
    path: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def local(self) -> bool:
        """Whether this is a local path."""
        return self.protocol == "file"

    @property
    def fs(self):
        """The fsspec filesystem (fsspec caches one instance per protocol and options)."""
        import fsspec

        return fsspec.filesystem(self.protocol, **dict(self.storage_options))

    def join(self, *parts: str) -> "Location":
        """The location ``parts`` below this one."""
        tail = "/".join(p.strip("/") for p in parts if p)
        if self.local:
            joined = str(Path(self.path, *[p for p in parts if p]))
            return Location(joined, "file", joined, self.storage_options)
        return Location(f"{self.url.rstrip('/')}/{tail}", self.protocol, f"{self.path.rstrip('/')}/{tail}",
                        self.storage_options)

    def exists(self) -> bool:
        """Whether something (a file, or an object under the prefix) is there."""
        return Path(self.path).exists() if self.local else bool(self.fs.exists(self.path))

    def read_text(self) -> str:
        """The content of the file or object, as UTF-8 text."""
        if self.local:
            return Path(self.path).read_text(encoding="utf-8")
        return self.fs.cat_file(self.path).decode("utf-8")


def location(path: str | os.PathLike, storage_options: Mapping[str, Any] | None = None) -> Location:
    """Parse a local path or an fsspec URL into a :class:`Location`.

    Parameters
    ----------
    path : str or path
        A local path, a ``file://`` URL, or an object-storage URL (``s3://bucket/prefix``, ``gs://...``).
    storage_options : Mapping, optional
        fsspec options of the object store (e.g. ``{"endpoint_url": "http://127.0.0.1:9000", "key": ...,
        "secret": ...}``); ignored for local paths.

    Returns
    -------
    Location

    Raises
    ------
    StoreError
        For a scheme fsspec does not know (a typo such as ``s4://``, or ``s3:/bucket`` with one slash is
        fine as a local path but ``foo://`` is not), or a known one whose fsspec package is not installed.
    """
    opts = dict(storage_options or {})
    if not isinstance(path, str):
        return Location(str(path), "file", str(path), opts)
    match = _URL.match(path)
    if match is None:
        if re.match(r"^(s3|gs|gcs|az|abfs|abfss|https?):/[^/]", path):
            raise StoreError(f"The path {path!r} looks like an object-storage URL with one slash after the "
                             f"scheme; glacgrid will not create a local folder named {path.split('/')[0]!r}. "
                             f"Write it as {path.replace(':/', '://', 1)!r}.")
        return Location(path, "file", path, opts)
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme in LOCAL_SCHEMES:
        return Location(rest, "file", rest, opts)
    known = _known_schemes()
    if scheme not in known:
        raise StoreError(
            f"The path {path!r} has the URL scheme {scheme!r}, which is neither a local path nor an fsspec "
            f"filesystem (known object stores include s3, gs, az, abfs, memory). Use a local path, "
            f"file://PATH, or a supported URL such as s3://bucket/prefix."
        )
    try:
        from fsspec.registry import get_filesystem_class

        get_filesystem_class(scheme)
    except (ImportError, ValueError) as err:
        raise StoreError(f"The path {path!r} needs the fsspec backend of {scheme!r}, which is not installed "
                         f"({err}). Install it (s3: `pip install s3fs`, gs: `pip install gcsfs`, az: "
                         f"`pip install adlfs`).") from err
    return Location(path.rstrip("/"), scheme, rest.rstrip("/"), opts)


# ---------------------------------------------------------------------------------------------- remote lock


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(holder: dict, ttl_s: float) -> bool:
    """A holder that died on this host, or stopped renewing its lock for ``ttl_s`` seconds."""
    if not holder:
        return True
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _pid_alive(holder["pid"]):
            return True
    renewed = holder.get("renewed")
    return not isinstance(renewed, (int, float)) or time.time() - renewed > ttl_s


def _read_holder(loc: Location) -> dict:
    try:
        holder = json.loads(loc.fs.cat_file(loc.path).decode("utf-8"))
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def remote_lock(lock: Location, *, purpose: str, ttl_s: float = 120.0) -> Iterator[dict]:
    """Hold the run lock object ``lock`` on object storage for the block, or refuse at once.

    The object is created only if absent (fsspec ``pipe_file(mode="create")``: S3 ``If-None-Match: *``),
    with the holder record (``host``, ``pid``, ``started``, ``purpose``, ``argv``, ``renewed``); a
    heartbeat thread rewrites ``renewed`` every ``ttl_s / 4`` seconds; the object is deleted on exit.

    Parameters
    ----------
    lock : Location
        The lock object, e.g. ``s3://bucket/out/.glacgrid.lock``.
    purpose : str
        What holds it, shown to a writer that is refused.
    ttl_s : float
        A lock not renewed for this long is stale and taken over (as is one whose process died on
        this host).

    Yields
    ------
    dict
        The holder record.

    Raises
    ------
    LockHeldError
        At once, when a live holder has it.
    StoreError
        When the object store refuses the write (permissions, no bucket).
    """
    if lock.local:
        raise StoreError(f"remote_lock is for object storage; {lock.url} is local (use glacgrid.atomic.exclusive).")
    fs = lock.fs
    token = secrets.token_hex(8)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": _now(), "purpose": str(purpose),
              "argv": list(sys.argv), "mode": "exclusive", "renewed": time.time(), "token": token}
    for attempt in range(2):
        try:
            fs.pipe_file(lock.path, json.dumps(holder).encode("utf-8"), mode="create")
            break
        except FileExistsError:
            other = _read_holder(lock)
            if attempt == 0 and _stale(other, ttl_s):
                with contextlib.suppress(FileNotFoundError):
                    fs.rm_file(lock.path)  # (two takers of one stale lock: one create wins, the other is refused)
                continue
            raise LockHeldError(lock.url, other) from None
        except OSError as err:
            raise StoreError(f"Could not create the run lock {lock.url}: {type(err).__name__}: {err}. Check that "
                             "the bucket exists and [output] storage_options (endpoint_url, credentials) "
                             "allow writing.") from err
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl_s / 4):
            if _read_holder(lock).get("token") != token:
                return  # taken over (we were stale): nothing more to renew
            with contextlib.suppress(OSError):
                fs.pipe_file(lock.path, json.dumps(dict(holder, renewed=time.time())).encode("utf-8"))

    beat = threading.Thread(target=heartbeat, name="glacgrid-lock-heartbeat", daemon=True)
    beat.start()
    try:
        yield {k: v for k, v in holder.items() if k != "token"}
    finally:
        stop.set()
        beat.join()
        if _read_holder(lock).get("token") == token:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(lock.path)


# --------------------------------------------------------------------------------------------------- mirror


def _rank(rel: str) -> tuple[int, int]:
    """Upload order: data first, then Zarr metadata deepest first, then progress records."""
    name = rel.rsplit("/", 1)[-1]
    if _RECORD.match(name):
        return (2, 0)
    if name in ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata"):
        return (1, -rel.count("/"))
    return (0, 0)


class Mirror:
    """A local working copy of an object-storage prefix, pushed back consistently.

    Parameters
    ----------
    remote : Location
        The prefix on object storage (e.g. ``s3://bucket/out``).
    local : path
        The staging folder (created if missing).

    Notes
    -----
    Not thread-safe on its own: :meth:`syncing` runs the periodic pushes in one thread and
    :meth:`push` takes a lock, so a final push never overlaps a periodic one.
    """

    def __init__(self, remote: Location, local: str | os.PathLike) -> None:
        if remote.local:
            raise StoreError(f"Mirror is for object storage; {remote.url} is a local path.")
        self.remote = remote
        self.local = Path(local)
        self._sent: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) on the bucket
        self._guard = threading.Lock()

    def _remote_files(self) -> list[str]:
        fs = self.remote.fs
        if not fs.exists(self.remote.path):
            return []
        root = self.remote.path.rstrip("/") + "/"
        return [p[len(root):] for p in fs.find(self.remote.path, withdirs=False) if p.startswith(root)]

    def pull(self) -> int:
        """Download the prefix into the staging folder (lock objects and temporary files excluded); the
        folder is created only when there is something to download.

        Returns
        -------
        int
            The number of files downloaded.
        """
        fs = self.remote.fs
        files = [rel for rel in self._remote_files() if not _SKIP.search(rel.rsplit("/", 1)[-1])]
        if not files:
            return 0  # (no local folder either: a store that does not exist yet stays absent)
        self.local.mkdir(parents=True, exist_ok=True)
        try:
            fs.get([f"{self.remote.path}/{rel}" for rel in files], [str(self.local / rel) for rel in files])
        except OSError as err:
            raise StoreError(f"Could not download {self.remote.url} into {self.local}: {type(err).__name__}: "
                             f"{err}. Check [output] storage_options and the bucket.") from err
        for rel in files:
            st = (self.local / rel).stat()
            self._sent[rel] = (st.st_size, st.st_mtime_ns)
        return len(files)

    def _local_files(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        if not self.local.exists():
            return out
        for here, dirnames, filenames in os.walk(self.local):
            dirnames[:] = [d for d in dirnames if not (d.startswith(".") and d.endswith(".tmp"))]
            for name in filenames:
                if _SKIP.search(name):
                    continue
                full = Path(here, name)
                with contextlib.suppress(FileNotFoundError):  # (renamed or removed while walking)
                    st = full.stat()
                    out[full.relative_to(self.local).as_posix()] = (st.st_size, st.st_mtime_ns)
        return out

    def push(self) -> int:
        """Upload what changed since the last push or pull, then delete what was removed locally.

        The progress records (``.glacgrid_*.json``) are read before anything is uploaded and uploaded
        last, Zarr metadata after the chunks: the bucket never records a region whose chunks are not
        there.

        Returns
        -------
        int
            The number of files uploaded.
        """
        with self._guard:
            fs = self.remote.fs
            before = self._local_files()  # the records are read first: they list only data already written
            records = {}
            for rel, stamp in before.items():
                if _RECORD.match(rel.rsplit("/", 1)[-1]) and self._sent.get(rel) != stamp:
                    with contextlib.suppress(FileNotFoundError):
                        records[rel] = ((self.local / rel).read_bytes(), stamp)
            now = self._local_files()
            changed = sorted((rel for rel in now if self._sent.get(rel) != now[rel] and rel not in records), key=_rank)
            sent = 0
            try:
                for rel in changed:
                    try:
                        data = (self.local / rel).read_bytes()
                    except FileNotFoundError:
                        continue  # removed since the walk: the next push deletes it remotely
                    fs.pipe_file(f"{self.remote.path}/{rel}", data)
                    self._sent[rel] = now[rel]
                    sent += 1
                for rel, (data, stamp) in records.items():
                    fs.pipe_file(f"{self.remote.path}/{rel}", data)
                    self._sent[rel] = stamp
                    sent += 1
                gone = [rel for rel in self._sent if rel not in now and not (self.local / rel).exists()]
                for rel in sorted(gone, key=_rank, reverse=True):  # records first: never a record without its data
                    with contextlib.suppress(FileNotFoundError):
                        fs.rm_file(f"{self.remote.path}/{rel}")
                    del self._sent[rel]
            except OSError as err:
                raise StoreError(f"Could not upload {self.local} to {self.remote.url}: {type(err).__name__}: "
                                 f"{err}. The bucket keeps what was uploaded before; re-run to resume.") from err
            return sent

    @contextlib.contextmanager
    def syncing(self, interval_s: float) -> Iterator["Mirror"]:
        """Push every ``interval_s`` seconds in a background thread during the block, and once at its end
        (also when the block raises, so that the progress of a failed run is kept)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.push()
                except Exception:  # noqa: BLE001 - the final push below raises a failure that lasts
                    pass

        thread = threading.Thread(target=loop, name="glacgrid-mirror-push", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.push()
