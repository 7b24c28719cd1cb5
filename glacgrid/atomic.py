"""File safety shared by every stage that writes.

* :func:`atomic_path` / :func:`atomic_dir`: write beside the target, then rename onto it, so a crash
  leaves the old file (directory) or the new one, never half of one; files get the permissions of the
  umask (``0644`` under ``umask 022``), as any file the user writes.
* :func:`exclusive`: the run lock of a writer (non-blocking): a second writer of the same output is
  refused at once with :class:`~glacgrid.exceptions.LockHeldError` naming the holder (host, pid, start
  time, purpose).
* :func:`locked`: the blocking lock of a short critical section (e.g. a progress sidecar update).
* :func:`clean_partials`: remove what killed writes leave behind (temporary files and directories of
  this module, Zarr's ``*.partial`` chunk files).

Both locks are POSIX record locks (``fcntl.lockf``), which local disks, NFS (through its lock manager),
GPFS, and Lustre mounted with ``flock`` honour. The system releases a lock when its process ends, however
it ends, so a lock left by a killed process is taken over by the next writer (on NFS once the lock
manager notices, within its lease time). POSIX locks belong to a process: every lock file is opened
once per process (a per-process registry), because closing any other descriptor of the file would
drop the lock silently; taking a lock the process already holds is re-entrant.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import glob
import hashlib
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .exceptions import LockHeldError, ModelError

__all__ = ["atomic_dir", "atomic_path", "clean_partials", "exclusive", "locked", "remove_leftovers", "verified_bytes",
           "write_csv"]

#: Suffix of the temporary files and directories of :func:`atomic_path` and :func:`atomic_dir`.
TMP_SUFFIX = ".tmp"
#: Suffix of the temporary chunk files of Zarr's local store (``<chunk>.<uuid>.partial``).
PARTIAL_SUFFIX = ".partial"


def _tmp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (ignored where the filesystem cannot sync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, sync it and rename it onto ``path``.

    A crash leaves either the old file or the new one, never a truncated one; on error the temporary
    file (``.<name>.<random>.tmp``) is removed, and :func:`clean_partials` removes the one a killed
    process leaves. The file is created with mode ``0666`` less the umask (``0644`` under
    ``umask 022``), as ``open`` would create it, so colleagues sharing the directory can read it.
    ``durable=False`` skips the two ``fsync`` calls (file and directory): the rename is still atomic for
    a killed process, but a crash of the machine may lose the new file. For a store's progress file,
    which vouches for chunk files that Zarr writes without ``fsync`` either (each ``fsync`` costs
    10-50 ms on a busy disk, and a run records hundreds of regions).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _tmp_name(path)
        try:  # O_EXCL with mode 0666: the kernel applies the umask (and a default ACL) as for any new file
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def write_csv(table, path: str | os.PathLike, **kwargs) -> Path:
    """Write a pandas table as CSV through :func:`atomic_path` (``kwargs`` go to ``DataFrame.to_csv``): a
    kill leaves the old file or the new one, never a truncated table that parses."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, **kwargs)
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield a new temporary directory beside ``path``; when the block succeeds, rename it to ``path``.

    A directory rename never merges: if ``path`` exists when the block ends, :class:`FileExistsError`
    is raised (and the new directory removed) unless ``replace``, which moves the old one aside,
    renames the new one in and then removes the old one. On error the temporary directory is removed
    and an old directory moved aside is put back; what a killed process leaves (``.<name>.<random>.tmp``)
    is removed by :func:`clean_partials` of the parent directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.mkdir(mode=0o777)
    old = None
    try:
        yield tmp
        if replace and path.exists():
            old = _tmp_name(path)
            os.rename(path, old)
        try:
            os.rename(tmp, path)
        except OSError as err:
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise FileExistsError(errno.EEXIST, f"{path} appeared while it was being written", str(path)) from err
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.rename(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(path.parent)


def remove_leftovers(path: str | os.PathLike) -> None:
    """Remove the temporary files and directories of :func:`atomic_path` / :func:`atomic_dir` for ``path``
    (``.<name>.<random>.tmp`` beside it) that a killed process left; those of its neighbours stay."""
    path = Path(path)
    if path.parent.is_dir():
        for entry in path.parent.glob(f".{glob.escape(path.name)}.*{TMP_SUFFIX}"):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def clean_partials(directory: str | os.PathLike, *, min_age_s: float = 0.0) -> list[Path]:
    """Remove what killed writes left in ``directory`` (recursively); return the removed paths.

    Removed: temporary files and directories of :func:`atomic_path` / :func:`atomic_dir`
    (``.<name>.<random>.tmp``) and Zarr's temporary chunk files (``<chunk>.<uuid>.partial``). A missing
    ``directory`` gives ``[]``.

    Call it while holding the lock of whatever writes there (e.g. the :func:`exclusive` run lock of a
    store), or with ``min_age_s`` (seconds since the last change) larger than any write takes, so that
    the temporary files of a live writer are never removed.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    now = time.time()
    removed: list[Path] = []

    def old(p: Path) -> bool:
        try:
            return min_age_s <= 0 or now - p.lstat().st_mtime >= min_age_s
        except FileNotFoundError:
            return False

    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in list(dirnames):
            if name.startswith(".") and name.endswith(TMP_SUFFIX):
                dirnames.remove(name)  # not walked into
                if old(here / name):
                    shutil.rmtree(here / name, ignore_errors=True)
                    removed.append(here / name)
        for name in filenames:
            if name.endswith(PARTIAL_SUFFIX) or (name.startswith(".") and name.endswith(TMP_SUFFIX)):
                if old(here / name):
                    (here / name).unlink(missing_ok=True)
                    removed.append(here / name)
    return removed


# --------------------------------------------------------------------------- locks
@dataclass
class _Held:
    """A lock file this process holds: one descriptor, a stack of the modes taken (``True``: shared)."""

    fd: int
    pid: int
    modes: list = field(default_factory=list)
    holder: dict = field(default_factory=dict)

    @property
    def shared(self) -> bool:
        return all(self.modes)


_HELD: dict[str, _Held] = {}
_PATH_LOCKS: dict[str, threading.RLock] = {}
_GUARD = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child holds none of its parent's POSIX locks, and no thread of it holds a thread lock."""
    global _GUARD
    _GUARD = threading.Lock()
    _HELD.clear()
    _PATH_LOCKS.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _key(path: Path) -> str:
    return str(path.parent.resolve() / path.name)


def _path_lock(key: str) -> threading.RLock:
    with _GUARD:
        return _PATH_LOCKS.setdefault(key, threading.RLock())


def _held(key: str) -> _Held | None:
    entry = _HELD.get(key)
    if entry is not None and entry.pid != os.getpid():  # inherited through fork: the child holds no lock
        del _HELD[key]
        return None
    return entry


def _read_holder(fd: int) -> dict:
    try:
        raw = os.pread(fd, 1 << 16, 0)
        holder = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_holder(fd: int, holder: dict) -> None:
    data = json.dumps(holder, indent=1).encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _try_lock(fd: int, shared: bool, blocking: bool) -> bool:
    flag = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
    try:
        fcntl.lockf(fd, flag)
        return True
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _acquire(path: Path, key: str, *, shared: bool, blocking: bool, holder: dict | None) -> _Held:
    """Take (or re-enter) the lock of ``path``; raise LockHeldError when not ``blocking`` and it is held."""
    with _GUARD:
        entry = _held(key)
    if entry is not None:
        if entry.shared and not shared:  # upgrade a shared lock this process holds
            if not _try_lock(entry.fd, False, blocking):
                raise LockHeldError(path, _read_holder(entry.fd))
            if holder is not None:
                _write_holder(entry.fd, holder)
                entry.holder = holder
        entry.modes.append(shared)
        return entry
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _try_lock(fd, shared, blocking):
            raise LockHeldError(path, _read_holder(fd))
        entry = _Held(fd, os.getpid(), [shared], {})
        if holder is not None:  # (sharers: the last one to start is recorded)
            _write_holder(fd, holder)
            entry.holder = holder
    except BaseException:
        os.close(fd)  # this process held no lock on the file: closing drops nothing
        raise
    with _GUARD:
        _HELD[key] = entry
    return entry


def _release(key: str) -> None:
    with _GUARD:
        entry = _held(key)
    if entry is None:  # pragma: no cover - released by a forked parent's registry copy
        return
    was_shared = entry.shared
    entry.modes.pop()
    if entry.modes:
        if entry.shared and not was_shared:
            fcntl.lockf(entry.fd, fcntl.LOCK_SH)  # back to the shared lock the outer block took
        return
    with _GUARD:
        _HELD.pop(key, None)
    try:
        if not was_shared and os.fstat(entry.fd).st_size:
            os.ftruncate(entry.fd, 0)  # no stale holder record once released
        fcntl.lockf(entry.fd, fcntl.LOCK_UN)
    finally:
        os.close(entry.fd)


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, *, purpose: str, shared: bool = False) -> Iterator[dict]:
    """Hold the run lock ``path`` (a lock file, created if missing) for the block, or refuse at once.

    Parameters
    ----------
    path : path
        The lock file, e.g. ``<store>.lock`` beside a Zarr store or ``<outdir>/.glacgrid.lock``; never a
        file inside a directory that may be replaced while the lock is held.
    purpose : str
        What holds it, e.g. ``"glacgrid ingest"``; recorded with the host, pid, start time (ISO 8601)
        and command line in the lock file, and shown to a writer that is refused.
    shared : bool
        Take a shared lock: holders of shared locks (e.g. the Slurm array tasks of one run, writing
        disjoint parts) do not exclude each other, but exclude every exclusive holder.

    Yields
    ------
    dict
        The holder record (``host``, ``pid``, ``started``, ``purpose``, ``argv``, ``mode``).

    Raises
    ------
    LockHeldError
        At once, when another process holds the lock (exclusively, or shared when ``shared`` is
        False). A lock whose process died is free again: the system releases it.

    Notes
    -----
    Re-entrant within a process: a block nested in one that holds the lock (same path) passes; a
    nested exclusive block inside a shared one upgrades the lock for its duration. Threads of one
    process share its locks (POSIX locks belong to processes). The lock file is kept after release
    (deleting a lock file races with a process that opened it); it is emptied when released.
    """
    path = Path(path)
    key = _key(path)
    holder = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "purpose": str(purpose), "argv": list(sys.argv), "mode": "shared" if shared else "exclusive"}
    with _path_lock(key):
        entry = _acquire(path, key, shared=shared, blocking=False, holder=holder)
    try:
        yield dict(entry.holder)
    finally:
        with _path_lock(key):
            _release(key)


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block, waiting for it.

    Across processes and nodes: ``fcntl.lockf`` (POSIX record locks), which NFS and GPFS honour, and so
    does Lustre mounted with ``flock``. Threads of one process take turns (a per-path thread lock).
    Blocks until the lock is free; released on exit. Re-entrant, also inside :func:`exclusive` on the
    same path. For short critical sections; a run lock that refuses a second writer is :func:`exclusive`.
    """
    path = Path(path)
    key = _key(path)
    with _path_lock(key):
        _acquire(path, key, shared=False, blocking=True, holder=None)
        try:
            yield
        finally:
            _release(key)


def verified_bytes(path: str | os.PathLike, sha256: str, recorded_in: str | os.PathLike, what: str = "arrays") -> bytes:
    """The bytes of an artifact's binary file, checked against the sha256 its ``model.json`` records.

    Parameters
    ----------
    path : path
        The binary file (npz arrays, torch weights).
    sha256 : str
        The hex digest recorded for it.
    recorded_in : path
        The ``model.json`` that records it (for messages).
    what : str
        What the file holds, for messages ("arrays", "weights").

    Returns
    -------
    bytes

    Raises
    ------
    ModelError
        The file is missing or its content does not match ``sha256``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Model {what} {path} are missing; copy the whole artifact directory.")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelError(f"{path} does not match the sha256 recorded in {recorded_in}; the artifact was modified or "
                         "mixed with another one. Re-export the model.")
    return data
