"""The whole pipeline of one run: ingest -> grid and masks -> downscale -> features -> model ->
inference -> geometry -> outputs. ``glacgrid run`` and ``glacgrid demo`` call :func:`run`."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .. import cube as cube_mod
from .. import simulate
from ..config import RunConfig
from ..exceptions import ConfigError
from ..inference import buildable
from ..outputs import write_outputs
from .model import fit_model
from .domain import run_domain
from .forcing import training_config
from .outdir import begin_run, run_lock
from .prepare import prepare
from .result import RunResult
from .steps import Steps
from .training import fit_joint_model, read_observed, training_table, write_training_table

__all__ = ["RunResult", "run", "check_run_features"]


def _isolated_note(log_path: Path) -> tuple[str, ...]:
    """A note on the isolated glacier-years of the simulation's glacier log (none when it is empty)."""
    isolated = pd.read_csv(log_path) if log_path.exists() else pd.DataFrame()
    if not len(isolated):
        return ()
    return (f"{len(isolated)} glacier-year(s) of {isolated['glacier'].nunique()} glacier(s) "
            f"isolated (values NaN, failed = 1): see {log_path}",)


def check_run_features(cfg: RunConfig) -> None:
    """Refuse, before any stage, a run whose model needs features the inference pass cannot build
    (:func:`glacgrid.inference.buildable`), and a forcing on a glacier domain (not wired yet)."""
    can = set(buildable(("area", "max_elevation", "min_elevation", "slope_lower20")))
    missing = [f for f in cfg.model.features if f not in can]
    if missing:
        raise ConfigError(f"[model] features {missing} are not built by the inference of a run (it builds "
                          f"{sorted(can)}). Remove them from [model] features, or compute them for `glacgrid validate`.")
    if cfg.forcing is not None and cfg.domain is not None:
        raise ConfigError("[forcing] is not available with a [domain] run yet (the domain reads the [climate] "
                          "cube only); run the forcing on the dense path (no [domain]) or drop [forcing].")


def run(cfg: RunConfig, *, progress: bool = True, client=None) -> RunResult:
    """Run the whole pipeline described by ``cfg`` on the current dask client (or the threaded scheduler).

    The run holds the run lock of its output directory throughout (a second run on it is refused at once
    with a :class:`~glacgrid.exceptions.LockHeldError`), checks the climate's period before any stage, moves
    the outputs of an older configuration aside and resumes the work stores and the results store of a
    killed run (:func:`glacgrid.pipeline.outdir.begin_run`). The observations are read and linked once
    (:func:`~glacgrid.pipeline.read_observed`) and handed to the training table and the outputs; the notes
    of every stage are collected into the result.
    """
    check_run_features(cfg)
    if cfg.domain is not None:  # every glacier as packed pixels (glacgrid.pipeline.domain)
        return run_domain(cfg, progress=progress)
    t_start = time.perf_counter()
    out = Path(cfg.output.directory)
    work = out / "work"
    with run_lock(cfg):
        begun = begin_run(cfg)
        work.mkdir(parents=True, exist_ok=True)
        with Steps(progress) as steps:
            prep = prepare(cfg, work, steps)
            with steps.stage("features"):
                observed = read_observed(cfg, prep.table)
                train_cfg = training_config(cfg, prep)  # with a [forcing]: the reference's years only
                train, train_notes = training_table(train_cfg, prep, observed)
                write_training_table(train, out)
            with steps.stage("model"):
                model, cv = fit_model(cfg, train, out)  # (cv.json: the glacier-wide cross-validation)
                if cfg.model.training == "joint":  # one pixel model against glacier-wide and band footprints
                    model = fit_joint_model(train_cfg, prep, observed, train, out)
            with steps.stage(f"simulate ({cfg.mode})"):
                advance = steps.years(cfg.period.end - cfg.period.start + 1)
                store = simulate.simulate(cfg, prep, model, out / "results.zarr", advance=advance)
            isolated = _isolated_note(store.parent / "glacier_log.csv")
            with steps.stage("outputs"):
                written = write_outputs(cfg, prep, cube_mod.open_store(store, require_complete=True), cv, observed,
                                        out)
    timings = dict(steps.timings, total=time.perf_counter() - t_start)
    return RunResult(cfg, out, written.glacier_years, written.validation, cv, timings,
                     begun + prep.notes + train_notes + isolated, written.files)
