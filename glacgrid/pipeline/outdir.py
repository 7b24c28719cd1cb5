"""The output directory of a run: one run at a time, and no outputs of an older configuration beside new ones.

* :func:`run_lock` holds the run lock ``<output>/.glacgrid.lock`` (:func:`glacgrid.atomic.exclusive`): a
  second ``glacgrid run`` on the same output is refused at once with a
  :class:`~glacgrid.exceptions.LockHeldError` naming the holder. The Slurm array tasks of one run (tiles,
  domain groups) share it; preparing and finishing such a run take it alone.
* :func:`begin_run` (under the exclusive lock, before any stage) checks that the climate files cover the
  period, moves the outputs of an older configuration aside (:func:`retire_stale_outputs`) and removes the
  partial files a killed run left behind.

An object-storage output directory (``[output] directory = "s3://bucket/out"`` with ``storage_options``) is
run through :func:`staged_output`: the run holds the bucket's run lock object (:func:`glacgrid.storage.remote_lock`),
works in a local staging copy pulled from the bucket, and pushes it back every few seconds and at the end
(:class:`glacgrid.storage.Mirror`: progress records after the data they list), so a run killed at any moment
resumes from the bucket, on this machine or another one. Every guarantee below holds in the staging copy.

The configuration digest is recorded in ``<output>/.glacgrid_run.json``. When a run's digest differs from
the recorded one, the tables, figures, model, results store and array-job files of the recorded
configuration are moved into ``<output>/previous-<old digest>/`` (nothing is deleted; one copy per
configuration, the latest, is kept). Work stores move with them only when their own inputs changed: the
climate cube when ``[climate]`` changed, the domain store when ``[grid]``, ``[glaciers]`` or ``[domain]``
changed. The other work stores (``static.zarr``, ``downscaled.zarr``, ``surfaces.zarr``) record what they
were computed from and are rebuilt in place when that differs. Lock files (``*.lock``) are never moved:
another process may hold one open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..atomic import atomic_path, clean_partials, exclusive
from ..config import RunConfig, config_digest
from ..exceptions import StoreError
from ..ingest import check_period
from ..storage import Mirror, is_url, location, remote_lock

__all__ = ["LOCK_FILE", "RECORD_FILE", "RESULT_SECTIONS", "RUN_OUTPUTS", "run_lock", "purpose_of",
           "retire_stale_outputs", "begin_run", "staged_output", "PUSH_INTERVAL_S"]

#: The run lock of an output directory.
LOCK_FILE = ".glacgrid.lock"
#: The record of the configuration whose outputs the directory holds.
RECORD_FILE = ".glacgrid_run.json"
#: The configuration sections that determine a run's outputs (not ``[output]`` or ``[cluster]``).
RESULT_SECTIONS = ("climate", "grid", "glaciers", "period", "downscale", "model", "observations", "geometry",
                   "mode", "domain")
#: What a run writes into its output directory (tables, figures, model, results, array-job files).
RUN_OUTPUTS = ("glacier_years.csv", "glacier_years.csv-metadata.json", "glacier_years.parquet", "validation.csv",
               "glacier_log.csv", "training_features.csv", "cv.json", "model", "results.zarr", "summary.png",
               "cumulative_smb.png", "area_volume.png", "mean_smb_map.png", "tiles", "domain_jobs.json")
#: Work stores moved aside only when the sections they are computed from changed.
_WORK_STORES = {"work/cube.zarr": ("climate",), "work/domain.zarr": ("grid", "glaciers", "domain")}


def purpose_of(cfg: RunConfig, verb: str) -> str:
    """``glacgrid <verb> <config file>``: what a lock holder is doing, for the message of a refused run."""
    return f"glacgrid {verb} {cfg.source if cfg.source is not None else cfg.name}"


@contextlib.contextmanager
def run_lock(cfg: RunConfig | str | os.PathLike, *, purpose: str | None = None,
             shared: bool = False) -> Iterator[dict]:
    """Hold the run lock of an output directory for the block (the directory is created if missing).

    Re-entrant within a process: the pipeline functions take it themselves, and the command line takes it
    first (before it starts a dask cluster), so a refused run stops at once.

    Parameters
    ----------
    cfg : RunConfig or path
        The run (its ``[output] directory``), or the output directory itself.
    purpose : str, optional
        What holds it, as a refused run will read it (default ``glacgrid run <config>``).
    shared : bool
        Share the lock with the other tasks of the same Slurm array (tiles, domain groups); a whole run
        (exclusive) is refused while any of them holds it, and they are refused while a whole run does.

    Yields
    ------
    dict
        The holder record (host, pid, started, purpose, argv).

    Raises
    ------
    LockHeldError
        At once, when another process holds the lock (the message names host, pid and start time).
    """
    where = cfg.output.directory if isinstance(cfg, RunConfig) else cfg
    if is_url(where):  # never a local folder named "s3:"
        raise StoreError(f"The output directory {where} is on object storage; run it through "
                         "glacgrid.pipeline.outdir.staged_output(cfg), which works in a local staging copy and "
                         "pushes it to the bucket (`glacgrid run` does).")
    if isinstance(cfg, RunConfig):
        out, purpose = Path(cfg.output.directory), purpose or purpose_of(cfg, "run")
    else:
        out, purpose = Path(cfg), purpose or f"glacgrid run into {cfg}"
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / LOCK_FILE, purpose=purpose, shared=shared) as holder:
        yield holder


def _read_record(out: Path) -> dict | None:
    try:
        record = json.loads((out / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("digest"), str) else None


def _move(src: Path, dest: Path) -> None:
    """Rename ``src`` onto ``dest`` (same filesystem), replacing an older copy at ``dest``."""
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)


def retire_stale_outputs(cfg: RunConfig) -> Path | None:
    """Move the outputs of another configuration out of the way; record ``cfg``'s digest.

    Call it holding the exclusive :func:`run_lock`, before any stage writes. When the directory records
    another configuration, its outputs (:data:`RUN_OUTPUTS`, and the work stores whose sections changed)
    are moved into ``<output>/previous-<old digest>/``. An output directory without a record (a new one,
    or one written before glacgrid recorded digests) is taken as it is.

    Returns
    -------
    pathlib.Path or None
        The folder the old outputs were moved to, or None when nothing was moved.
    """
    out = Path(cfg.output.directory)
    sections = {s: config_digest(cfg, (s,)) for s in RESULT_SECTIONS}
    record = {"digest": config_digest(cfg, RESULT_SECTIONS), "sections": sections,
              "config": str(cfg.source) if cfg.source is not None else None,
              "recorded": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    old = _read_record(out)
    aside = None
    if old is not None and old["digest"] != record["digest"]:
        aside = out / f"previous-{old['digest']}"
        old_sections = old.get("sections") or {}
        names = list(RUN_OUTPUTS) + [name for name, deps in _WORK_STORES.items()
                                     if any(old_sections.get(s) != sections[s] for s in deps)]
        moved = [name for name in names if (out / name).exists() or (out / name).is_symlink()]
        for name in moved:
            _move(out / name, aside / name)
        if moved:
            with atomic_path(aside / RECORD_FILE) as tmp:
                tmp.write_text(json.dumps(old, indent=1), encoding="utf-8")
        else:
            aside = None
    if old is None or old["digest"] != record["digest"]:
        with atomic_path(out / RECORD_FILE) as tmp:
            tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return aside


def begin_run(cfg: RunConfig) -> tuple[str, ...]:
    """What every whole run (or the preparation of an array run) does first, under the exclusive lock.

    1. The climate files must cover the run's hydrological years
       (:func:`glacgrid.ingest.check_period`; only their time axes are read), before any stage runs.
    2. The outputs of another configuration are moved aside (:func:`retire_stale_outputs`).
    3. Partial files of a killed earlier run (temporary files of atomic writes, partial Zarr chunks) are
       removed (:func:`glacgrid.atomic.clean_partials`).

    Returns
    -------
    tuple of str
        Notes for the run's result (where old outputs went).

    Raises
    ------
    TimeAxisError
        When the climate does not cover the period.
    """
    if cfg.forcing is None:  # with a [forcing], prepare checks the forcing spliced with the reference
        check_period(list(cfg.climate.files), cfg.period.start, cfg.period.end, hemisphere=cfg.period.hemisphere,
                     variables=list(cfg.climate.variables) or None)
    aside = retire_stale_outputs(cfg)
    clean_partials(Path(cfg.output.directory))
    if aside is None:
        return ()
    return (f"the outputs of an earlier configuration of this output directory were moved to {aside}",)


#: Seconds between two pushes of a staging copy to its bucket (:func:`staged_output`).
PUSH_INTERVAL_S = 30.0


@contextlib.contextmanager
def staged_output(cfg: RunConfig, *, interval_s: float = PUSH_INTERVAL_S, staging: str | os.PathLike | None = None,
                  purpose: str | None = None, lock_ttl_s: float = 120.0) -> Iterator[RunConfig]:
    """Run ``cfg`` into an object-storage output directory through a local staging copy.

    For a local output directory this yields ``cfg`` as it is. For ``s3://``, ``gs://``, ... it

    1. takes the bucket's run lock ``<directory>/.glacgrid.lock`` (:func:`glacgrid.storage.remote_lock`;
       a live holder refuses the run at once with a :class:`~glacgrid.exceptions.LockHeldError`, a killed
       one's lock is taken over);
    2. pulls the directory from the bucket into a new staging folder (what a killed run left: its work
       stores, their progress records, the results store's finished years);
    3. yields ``cfg`` with ``[output] directory`` set to the staging folder: every stage writes locally,
       with its template-then-region writes, progress records and locks;
    4. pushes the staging folder to the bucket every ``interval_s`` seconds and once at the end (also when
       the run fails), progress records after the data they list, and removes the staging folder.

    Parameters
    ----------
    cfg : RunConfig
        The run; ``[output] storage_options`` are the fsspec options of the bucket.
    interval_s : float
        Seconds between two background pushes (what a kill can lose, at most).
    staging : path, optional
        Folder in which the staging folder is made (default: the system's temporary folder; it needs
        the space of the run's outputs and work stores).
    purpose : str, optional
        What holds the lock (default ``glacgrid run <config>``).
    lock_ttl_s : float
        A bucket lock not renewed for this long is taken over.

    Yields
    ------
    RunConfig
        The configuration to run (local output directory).

    Raises
    ------
    LockHeldError
        When another live run holds the bucket's lock.
    StoreError
        When the bucket cannot be read or written (the message names the URL and what to check).
    """
    loc = location(cfg.output.directory, cfg.output.storage_options)
    if loc.local:
        yield cfg
        return
    with remote_lock(loc.join(LOCK_FILE), purpose=purpose or purpose_of(cfg, "run"), ttl_s=lock_ttl_s):
        folder = Path(tempfile.mkdtemp(prefix="glacgrid-staging-", dir=staging))
        try:
            mirror = Mirror(loc, folder)
            mirror.pull()
            local = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, directory=folder))
            with mirror.syncing(interval_s):
                yield local
        finally:
            shutil.rmtree(folder, ignore_errors=True)
