"""Logging of the command line: how much the terminal shows (``-v``/``-q``), the run log file
(``glacgrid.log`` in the output directory) and third-party warnings routed to the log, not the terminal.

What the terminal shows (``verbose`` is the number of ``-v``; ``quiet`` is ``-q``):

- the command's own lines (logger ``glacgrid.cli``, on stdout): INFO; DEBUG with ``-vv``;
- glacgrid's library loggers and glacgrid's own Python warnings (stderr): WARNING; INFO with ``-v``;
  DEBUG with ``-vv``;
- third-party loggers (distributed, tornado, bokeh, zarr, numcodecs, ...) and third-party Python warnings
  (stderr): ERROR; WARNING with ``-v``; INFO with ``-vv``;
- with ``-q``: errors only, whatever their source.

The run log file takes every record at INFO and above (DEBUG with ``-vv``), whatever ``-q`` says:
distributed's port warnings, "worker process still alive" messages and zarr/numcodecs warnings end up
there. Everything is undone when the :func:`session` block ends (handlers, logger levels, the warning
hook), so a process that runs many commands (tests, notebooks) is left as it was.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Iterator

__all__ = ["LOG_NAME", "THIRD_PARTY", "CLI_LOGGER", "thresholds", "LogSession", "session", "current_session",
           "worker_logging"]

#: The name of the run log file written into an output directory.
LOG_NAME = "glacgrid.log"
#: The logger of the command's own lines (what it prints on stdout).
CLI_LOGGER = "glacgrid.cli"
#: Loggers of third-party libraries whose records go to the run log rather than the terminal; those among
#: them that install their own terminal handler (distributed) are re-routed for the session.
THIRD_PARTY = ("distributed", "tornado", "bokeh", "asyncio", "zarr", "numcodecs", "fsspec", "dask_jobqueue",
               "dask_gateway", "py.warnings")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_PACKAGE = Path(__file__).resolve().parent


def thresholds(verbose: int = 0, quiet: bool = False) -> dict[str, int]:
    """The lowest levels shown on the terminal and written to the run log.

    Parameters
    ----------
    verbose : int
        The number of ``-v`` flags (0, 1, 2 or more).
    quiet : bool
        ``-q``: the terminal shows errors only (the run log file is unchanged).

    Returns
    -------
    dict of str to int
        Logging levels of the command's own lines (``"cli"``), glacgrid's library records
        (``"glacgrid"``), third-party records (``"third_party"``) and the run log file (``"file"``).
    """
    file = logging.DEBUG if verbose >= 2 else logging.INFO
    if quiet:
        return {"cli": logging.ERROR, "glacgrid": logging.ERROR, "third_party": logging.ERROR, "file": file}
    if verbose <= 0:
        return {"cli": logging.INFO, "glacgrid": logging.WARNING, "third_party": logging.ERROR, "file": file}
    if verbose == 1:
        return {"cli": logging.INFO, "glacgrid": logging.INFO, "third_party": logging.WARNING, "file": file}
    return {"cli": logging.DEBUG, "glacgrid": logging.DEBUG, "third_party": logging.INFO, "file": file}


def _group(name: str) -> str:
    if name == CLI_LOGGER or name.startswith(CLI_LOGGER + "."):
        return "cli"
    if name == "glacgrid" or name.startswith("glacgrid."):
        return "glacgrid"
    return "third_party"


class _Terminal(logging.Handler):
    """The command's own lines on stdout, everything else on stderr as ``warning: ...``; written through
    typer at emit time, so that a test runner that swaps the streams sees them."""

    def __init__(self, levels: dict[str, int], owner: "LogSession") -> None:
        super().__init__(logging.DEBUG)
        self.levels = levels
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "terminal", True):  # logged with extra={"terminal": False}: the run log only
            return False
        return record.levelno >= self.levels[_group(record.name)]

    def emit(self, record: logging.LogRecord) -> None:
        import typer

        try:
            text = record.getMessage()
            group = _group(record.name)
            if group == "cli" and record.levelno < logging.WARNING:
                typer.echo(text)
                return
            where = f" ({record.name})" if group == "third_party" else ""
            typer.secho(f"{record.levelname.lower()}{where}: {text}", err=True,
                        fg="red" if record.levelno >= logging.ERROR else "yellow")
        except Exception:  # pragma: no cover - logging never breaks the command
            self.handleError(record)


def _ours(category: type, filename: str) -> bool:
    """A warning of glacgrid's (its class or the code that raised it is in the package)."""
    if getattr(category, "__module__", "").startswith("glacgrid"):
        return True
    try:
        return Path(filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` of a session: a warning of glacgrid's goes to the ``glacgrid.warnings``
    logger (terminal and log), any other to ``py.warnings`` (the log)."""
    if _ours(category, filename):
        logging.getLogger("glacgrid.warnings").warning("%s: %s", category.__name__, message)
    else:
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
        logging.getLogger("py.warnings").warning("%s", text)


class LogSession:
    """The logging of one command (from :func:`session`): levels, terminal handler, run log files.

    Parameters
    ----------
    verbose : int
        The number of ``-v`` flags.
    quiet : bool
        ``-q``: errors only on the terminal.
    """

    def __init__(self, verbose: int = 0, quiet: bool = False) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self.levels = thresholds(verbose, quiet)
        self.log_files: list[Path] = []
        self._terminal = _Terminal(self.levels, self)
        self._files: list[logging.FileHandler] = []
        self._saved: dict[str, tuple[list[logging.Handler], bool, int]] = {}
        self._root_level = logging.getLogger().level

    def reroute(self) -> None:
        """Route the third-party loggers that print on their own (distributed installs a stderr handler
        when it is imported) through the root logger. Call again after importing such a library."""
        lowest = min(self.levels.values())
        for name in ("glacgrid", *THIRD_PARTY):
            logger = logging.getLogger(name)
            if name not in self._saved:
                self._saved[name] = (list(logger.handlers), logger.propagate, logger.level)
                if name == "glacgrid" or name == "py.warnings":
                    logger.setLevel(lowest)
                elif logger.level == logging.NOTSET or logger.level > self.levels["file"]:
                    logger.setLevel(min(self.levels["file"], self.levels["third_party"]))
            for h in list(logger.handlers):
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                    logger.removeHandler(h)
            logger.propagate = True

    def add_run_log(self, directory: str | Path) -> Path | None:
        """Write the records of this session to ``directory/glacgrid.log`` (appended; the directory is
        created) until the session ends.

        Parameters
        ----------
        directory : str or Path
            The output directory of the run. A URL (``s3://...``) is skipped: no log there.

        Returns
        -------
        Path or None
            The log file, or None for a URL or a file that cannot be opened (never an error).
        """
        if "://" in str(directory):
            return None
        path = Path(directory) / LOG_NAME
        if path.resolve() in (p.resolve() for p in self.log_files):
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as err:  # a log that cannot be written never stops a run
            logging.getLogger(CLI_LOGGER).debug("no run log in %s: %s", directory, err)
            return None
        handler.setLevel(self.levels["file"])
        handler.setFormatter(logging.Formatter(_FORMAT))
        logging.getLogger().addHandler(handler)
        self._files.append(handler)
        self.log_files.append(path)
        from . import __version__

        logging.getLogger(CLI_LOGGER).debug("glacgrid %s: %s", __version__, " ".join(sys.argv))
        return path

    def _open(self) -> None:
        root = logging.getLogger()
        root.addHandler(self._terminal)
        root.setLevel(min(self.levels.values()))
        self.reroute()

    def _close(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self._terminal)
        for h in self._files:
            root.removeHandler(h)
            h.close()
        root.setLevel(self._root_level)
        for name, (handlers, propagate, level) in self._saved.items():
            logger = logging.getLogger(name)
            for h in list(logger.handlers):
                logger.removeHandler(h)
            for h in handlers:
                logger.addHandler(h)
            logger.propagate = propagate
            logger.setLevel(level)


@contextlib.contextmanager
def session(verbose: int = 0, quiet: bool = False) -> Iterator[LogSession]:
    """Logging for one command, undone on exit: a terminal handler at the levels of :func:`thresholds`,
    Python warnings routed through logging, third-party loggers routed through the root logger.

    Parameters
    ----------
    verbose : int
        The number of ``-v`` flags.
    quiet : bool
        ``-q``: errors only on the terminal.

    Yields
    ------
    LogSession
        Add a run log file with :meth:`LogSession.add_run_log`.
    """
    log = LogSession(verbose, quiet)
    try:
        log._open()
        with warnings.catch_warnings():
            warnings.showwarning = _showwarning
            yield log
    finally:
        log._close()


def current_session() -> LogSession | None:
    """The innermost :func:`session` open now (its terminal handler is on the root logger), or None."""
    for h in reversed(logging.getLogger().handlers):
        if isinstance(h, _Terminal):
            return h.owner
    return None


def worker_logging(log_file: str | None = None, verbose: int = 0, quiet: bool = False) -> str:
    """Route the logging and the Python warnings of a dask worker *process* like those of the command:
    third-party messages off its stderr (into ``log_file`` when given), glacgrid's warnings on it.

    Run on every worker with ``client.run(worker_logging, path, verbose, quiet)``; calling it again
    replaces what an earlier call installed. It stays for the life of the worker process.

    Parameters
    ----------
    log_file : str, optional
        The run log to append to (a path the worker can reach: a LocalCluster's workers share the
        machine); None: no file.
    verbose : int
        The number of ``-v`` flags.
    quiet : bool
        ``-q``: errors only on the worker's stderr.

    Returns
    -------
    str
        ``"ok"`` (what ``client.run`` collects).
    """
    levels = thresholds(verbose, quiet)
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_glacgrid_worker", False)]:
        root.removeHandler(h)
        h.close()
    handlers: list[logging.Handler] = [_Terminal(levels, LogSession(verbose, quiet))]
    if log_file:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
            handlers[-1].setLevel(levels["file"])
            handlers[-1].setFormatter(logging.Formatter(_FORMAT.replace("%(name)s", "%(name)s [worker %(process)d]")))
        except OSError:  # no log rather than a failed worker
            pass
    for h in handlers:
        h._glacgrid_worker = True
        root.addHandler(h)
    root.setLevel(min(levels.values()))
    for name in ("glacgrid", *THIRD_PARTY):
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        logger.propagate = True
        if name in ("glacgrid", "py.warnings"):
            logger.setLevel(min(levels.values()))
    warnings.showwarning = _showwarning
    return "ok"
