"""A glacier-domain run split into Slurm array tasks: prepare once, one task per range of groups, finish once.

1. :func:`prepare_domain` (``glacgrid domain-groups CONFIG``) runs the shared stages once (ingest, the
   domain, the training table, the model and its cross-validation), creates the template of the results
   store ``<output>/results.zarr`` and writes ``<output>/domain_jobs.json``; returns the number of groups.
2. :func:`run_domain_groups` (``glacgrid run CONFIG --groups a:b``, one array task each) runs groups
   ``a .. b-1`` with :func:`glacgrid.simulate.simulate_domain` and the model artifact of step 1. Groups
   write disjoint Zarr chunks, so tasks run at the same time; each (group, year batch) is marked done,
   so a killed task resubmitted resumes at its first unfinished year.
3. :func:`finish_domain` (``glacgrid domain-finish CONFIG``) writes the glacier log, the tables and the
   validation from the complete store with the model and cross-validation of step 1 (nothing refitted);
   groups not done yet are an error that names them.

``jobs/submit_domain.sh`` chains the three on Slurm.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import cube as cube_mod
from ..atomic import atomic_path
from ..config import RunConfig, config_digest
from ..domain import Domain, export, open_domain
from ..exceptions import ConfigError, InputDataError, StoreError
from ..simulate import results_fingerprint, simulate_domain, years_done
from .domain import domain_outputs, domain_run_spec, observed_on, shared_stages
from .outdir import begin_run, purpose_of, run_lock
from .result import RunResult
from .steps import Steps
from .tiles import _load_cv

__all__ = ["DomainJobs", "prepare_domain", "read_jobs", "run_domain_groups", "missing_groups", "finish_domain",
           "parse_groups", "export_results"]

JOBS_FILE = "domain_jobs.json"


@dataclass(frozen=True)
class DomainJobs:
    """What :func:`prepare_domain` hands the array tasks and the finishing job.

    Attributes
    ----------
    n_groups : int
        Groups of the domain (array tasks own ranges of them).
    domain, cube, store, model : Path
        The domain store, the climate cube, the results store and the model artifact.
    fingerprint : str
        The results fingerprint (model + config) the store was created with.
    config : str
        The digest of the config sections the preparation depends on.
    n_glaciers, n_pixels : int
        Glaciers (with pixels) and glacier pixels of the domain.
    notes : tuple of str
        Notes of the shared stages (unmatched observations, glaciers without pixels).
    timings : tuple of (str, float)
        Seconds of each shared stage (empty when the preparation was found done).
    """

    n_groups: int
    domain: Path
    cube: Path
    store: Path
    model: Path
    fingerprint: str
    config: str
    n_glaciers: int = 0
    n_pixels: int = 0
    notes: tuple[str, ...] = ()
    timings: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict:
        return {"n_groups": self.n_groups, "domain": str(self.domain), "cube": str(self.cube),
                "store": str(self.store), "model": str(self.model), "fingerprint": self.fingerprint,
                "config": self.config, "n_glaciers": self.n_glaciers, "n_pixels": self.n_pixels,
                "notes": list(self.notes), "timings": [list(t) for t in self.timings]}

    @classmethod
    def from_dict(cls, d: dict) -> "DomainJobs":
        return cls(int(d["n_groups"]), Path(d["domain"]), Path(d["cube"]), Path(d["store"]), Path(d["model"]),
                   str(d["fingerprint"]), str(d["config"]), int(d.get("n_glaciers", 0)), int(d.get("n_pixels", 0)),
                   tuple(d.get("notes", ())), tuple((str(k), float(v)) for k, v in d.get("timings", ())))


def _config_hash(cfg: RunConfig) -> str:
    return config_digest(cfg, ("climate", "grid", "glaciers", "period", "downscale", "model", "observations",
                               "geometry", "mode", "domain"))


def _need_domain(cfg: RunConfig) -> None:
    if cfg.domain is None:
        where = f" {cfg.source}" if cfg.source else ""
        raise ConfigError(f"The configuration{where} has no [domain] section; groups and array tasks are those of a "
                          "glacier-domain run. Add [domain] (e.g. thickness_tiles and dem_tiles), or split a "
                          "gridded run into tiles with `glacgrid tiles prepare`.")


def prepare_domain(cfg: RunConfig) -> DomainJobs:
    """Run the shared stages of a domain run once; create the results template; write ``domain_jobs.json``.

    Idempotent: when ``<output>/domain_jobs.json`` was written for the same configuration and its stores
    exist, nothing is recomputed (a resubmitted array starts at once) and finished groups are kept.

    Parameters
    ----------
    cfg : RunConfig
        A run with a ``[domain]`` section.

    Returns
    -------
    DomainJobs
        The number of groups, the paths the tasks use and the timings of the shared stages.

    Notes
    -----
    Holds the run lock of the output directory alone (no group task or other run meanwhile).
    """
    _need_domain(cfg)
    with run_lock(cfg, purpose=purpose_of(cfg, "domain-groups")):
        begin_run(cfg)
        return _prepare_domain(cfg)


def _prepare_domain(cfg: RunConfig) -> DomainJobs:
    out = Path(cfg.output.directory)
    path = out / JOBS_FILE
    chash = _config_hash(cfg)
    if path.exists():
        try:
            jobs = DomainJobs.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError):
            jobs = None
        if jobs is not None and jobs.config == chash and all(p.exists() for p in (jobs.domain, jobs.cube, jobs.store,
                                                                                   jobs.model, out / "cv.json")):
            return dataclasses.replace(jobs, timings=())
    steps = Steps(False)
    st = shared_stages(cfg, steps)
    fingerprint = results_fingerprint(cfg, st.model)
    store = out / "results.zarr"
    simulate_domain(st.domain, st.cube, st.model, store, st.spec, fingerprint=fingerprint, groups=[])  # the template
    table = st.domain.table
    jobs = DomainJobs(st.domain.n_groups, Path(st.domain.path), st.cube, store, out / "model", fingerprint, chash,
                      int((table["n_pixels"] > 0).sum()), int(table["n_pixels"].sum()), st.notes,
                      tuple(steps.timings.items()))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jobs.to_dict(), indent=1), encoding="utf-8")
    return jobs


def read_jobs(cfg: RunConfig) -> DomainJobs:
    """The :class:`DomainJobs` that :func:`prepare_domain` wrote for ``cfg`` (an error when absent or stale)."""
    _need_domain(cfg)
    path = Path(cfg.output.directory) / JOBS_FILE
    if not path.exists():
        raise StoreError(f"No prepared domain run at {path}. Run `glacgrid domain-groups CONFIG` first "
                         "(jobs/submit_domain.sh does).")
    jobs = DomainJobs.from_dict(json.loads(path.read_text(encoding="utf-8")))
    if jobs.config != _config_hash(cfg):
        raise StoreError(f"{path} was prepared for another configuration (the config changed since). Run "
                         "`glacgrid domain-groups CONFIG` again.")
    return jobs


def parse_groups(text: str, n_groups: int) -> range:
    """The groups of ``"a:b"`` (a to b-1; b is clipped to ``n_groups``; ``"a"`` alone is one group).

    Raises
    ------
    InputDataError
        When ``text`` is not ``a:b`` with ``0 <= a < b`` and ``a < n_groups``.
    """
    m = re.fullmatch(r"\s*(\d+)\s*(?::\s*(\d+)\s*)?", text)
    if m is None:
        raise InputDataError(f"--groups {text!r}: expected a:b (groups a..b-1, e.g. 0:4) or one group number.")
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a + 1
    if b <= a:
        raise InputDataError(f"--groups {text!r}: the end {b} must exceed the start {a} (a:b runs groups a..b-1).")
    if a >= n_groups:
        raise InputDataError(f"--groups {text!r}: the domain has groups 0..{n_groups - 1} only; `glacgrid "
                             "domain-groups CONFIG` prints their number.")
    return range(a, min(b, n_groups))


def _done_years(store: Path, n_groups: int, n_years: int) -> np.ndarray:
    """Per group, the number of its years marked done in ``store`` (at most ``n_years``)."""
    return np.minimum(years_done(store, n_groups), n_years)


def _empty_groups(domain: Domain) -> np.ndarray:
    """Groups without a pixel (nothing to run, never marked)."""
    npx = domain.glaciers["n_pixels"].values
    return np.array([npx[domain.glacier_slice(k)].sum() == 0 for k in range(domain.n_groups)], dtype=bool)


def missing_groups(cfg: RunConfig) -> list[int]:
    """The groups with pixels whose years are not all done in the results store."""
    jobs = read_jobs(cfg)
    years = cfg.period.end - cfg.period.start + 1
    done = _done_years(jobs.store, jobs.n_groups, years)
    empty = _empty_groups(open_domain(jobs.domain))
    return [int(k) for k in np.flatnonzero((done < years) & ~empty)]


def run_domain_groups(cfg: RunConfig, groups: str | range) -> dict:
    """Run groups a to b-1 (``"a:b"`` or a range) of a prepared domain run into its results store.

    Groups already done are skipped and a group killed mid-run resumes at its first unfinished year.

    Parameters
    ----------
    cfg : RunConfig
        The run (prepared by :func:`prepare_domain`).
    groups : str or range
        ``"a:b"`` (``b`` clipped to the number of groups: the last array task may ask for more) or a range.

    Returns
    -------
    dict
        ``groups`` (list), ``resumed_years`` (years found done before the task, summed over its groups),
        ``years`` (years computed now), ``pixels``, ``seconds``.

    Notes
    -----
    The tasks of one array share the run lock of the output directory (a whole run or a preparation on
    it meanwhile is refused).
    """
    text = groups if isinstance(groups, str) else f"{groups.start}:{groups.stop}"
    with run_lock(cfg, purpose=f"{purpose_of(cfg, 'run')} --groups {text}", shared=True):
        return _run_domain_groups(cfg, groups)


def _run_domain_groups(cfg: RunConfig, groups: str | range) -> dict:
    t0 = time.perf_counter()
    jobs = read_jobs(cfg)
    todo = parse_groups(groups, jobs.n_groups) if isinstance(groups, str) else groups
    stored = cube_mod.open_store(jobs.store, chunks=None).attrs.get("glacgrid_fingerprint")
    if stored != jobs.fingerprint:
        raise StoreError(f"The results store {jobs.store} belongs to another run (fingerprint {stored}, expected "
                         f"{jobs.fingerprint}). Run `glacgrid domain-groups CONFIG` again.")
    n_years = cfg.period.end - cfg.period.start + 1
    before = _done_years(jobs.store, jobs.n_groups, n_years)[list(todo)].sum()
    summaries: list[dict] = []
    simulate_domain(jobs.domain, jobs.cube, jobs.model, jobs.store, domain_run_spec(cfg),
                    fingerprint=jobs.fingerprint, groups=list(todo), progress=summaries.append)
    return {"groups": list(todo), "resumed_years": int(before), "years": int(sum(s["years"] for s in summaries)),
            "pixels": int(sum(s["pixels"] for s in summaries)), "seconds": time.perf_counter() - t0}


def _ranges(groups: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0:3, 5:6"`` (the ``--groups`` arguments that run them)."""
    out, start = [], None
    for i, k in enumerate(groups):
        if start is None:
            start = k
        if i + 1 == len(groups) or groups[i + 1] != k + 1:
            out.append(f"{start}:{k + 1}")
            start = None
    return ", ".join(out)


def finish_domain(cfg: RunConfig) -> RunResult:
    """Write the glacier log, tables and validation of a domain run once every group is done.

    Uses the model and cross-validation of :func:`prepare_domain` (nothing is refitted or recomputed).

    Parameters
    ----------
    cfg : RunConfig
        The run.

    Returns
    -------
    RunResult

    Raises
    ------
    StoreError
        When groups are not done yet; the message names them and the ``--groups`` ranges that run them.
    """
    with run_lock(cfg, purpose=purpose_of(cfg, "domain-finish")):
        return _finish_domain(cfg)


def _finish_domain(cfg: RunConfig) -> RunResult:
    t0 = time.perf_counter()
    jobs = read_jobs(cfg)
    missing = missing_groups(cfg)
    if missing:
        raise StoreError(f"{len(missing)} of {jobs.n_groups} groups are not done in {jobs.store}: groups {missing}. "
                         f"Run them (`glacgrid run CONFIG --groups a:b` for {_ranges(missing)}), or resubmit "
                         "jobs/submit_domain.sh CONFIG: done groups and years are kept.")
    out = Path(cfg.output.directory)
    domain = open_domain(jobs.domain)
    cv = _load_cv(out / "cv.json")
    written, isolated = domain_outputs(cfg, domain, jobs.store, cv, observed_on(cfg, domain))
    notes = jobs.notes + (f"domain run: {jobs.n_groups} groups in {jobs.store}",) + isolated
    return RunResult(cfg, out, written.glacier_years, written.validation, cv, {"outputs": time.perf_counter() - t0},
                     notes, written.files)


def export_results(results: str | Path, domain: str | Path, out: str | Path, *, by: str = "glacier",
                   variables=None, years=None) -> list[Path]:
    """GeoTIFFs of a domain run's packed fields (:func:`glacgrid.domain.export`) from the store paths.

    Parameters
    ----------
    results, domain : path
        The results store (``results.zarr``) and the domain store it is packed on.
    out : path
        Output folder.
    by : {"glacier", "zone"}
        One file per glacier window, or per CRS zone.
    variables : sequence of str, optional
        Default: those of ``smb`` and ``thickness`` the store has.
    years : sequence of int, optional
        Default: every year.

    Returns
    -------
    list of pathlib.Path
    """
    res = cube_mod.open_store(results, require_complete=True)
    if variables is None:
        variables = [v for v in ("smb", "thickness") if v in res]
    return export(res, open_domain(domain), out, variables=tuple(variables), by=by, years=years)
