"""A run on a glacier domain (``[domain]`` in the configuration): every glacier of a region as packed pixels.

ingest -> the domain (built from per-glacier tiles, or from the DEM + outlines + thickness of ``[grid]``
and ``[glaciers]``; kept when its store exists) -> the training table of the observed glaciers (features
at their pixels) -> the model -> :func:`glacgrid.simulate.simulate_domain` (one task per group of whole
glaciers, resumable) -> the glacier-year table, validation and the glacier log. The gridded results stay
packed in ``results.zarr``; ``glacgrid export`` rasterises them per glacier, per zone or onto a grid.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import cube as cube_mod
from ..config import RunConfig
from ..domain import Domain, domain_from_rasters, domain_from_tiles, open_domain
from ..exceptions import ConfigError, StoreError
from ..ingest import ingest
from ..observations import ObservedUnits, observed_units
from ..outputs import write_outputs
from ..simulate import DomainRun, domain_glacier_features, domain_log, ensemble_members, results_fingerprint, \
    simulate_domain
from .model import fit_model
from .prepare import _static, _target_grid
from .result import RunResult
from .training import observed_years
from .steps import Steps

__all__ = ["run_domain", "build_domain", "domain_run_spec"]


def build_domain(cfg: RunConfig, work: Path, notes: list[str] | None = None) -> Domain:
    """The domain of the run: opened when its store exists and is complete, else built (tiles or rasters)."""
    dc = cfg.domain
    store = Path(dc.store) if dc.store is not None else work / "domain.zarr"
    if store.exists():
        try:
            return open_domain(store)
        except StoreError:
            pass  # an interrupted build: built again below
    if dc.thickness_tiles is not None:
        return domain_from_tiles(dc.thickness_tiles, dc.dem_tiles, store, numbers=list(dc.numbers) or None,
                                 group_pixels=dc.group_pixels, overwrite=True)
    from ..masks import glacier_table, read_outlines

    outlines = read_outlines(cfg.glaciers.outlines, cfg.glaciers.id_column, cfg.glaciers.name_column)
    if notes is not None and outlines.attrs.get("repaired"):
        notes.append(f"repaired invalid outline geometries: {outlines.attrs['repaired']}")
    grid = _target_grid(cfg, outlines)
    static = _static(cfg, outlines, grid, work)
    table = glacier_table(outlines, static["glacier_id"], static["pixel_area"])
    return domain_from_rasters(static, grid, table, store, group_pixels=dc.group_pixels, overwrite=True)


def domain_run_spec(cfg: RunConfig, curves=None) -> DomainRun:
    """The :class:`~glacgrid.simulate.DomainRun` of ``cfg``."""
    return DomainRun(cfg.mode, np.arange(cfg.period.start, cfg.period.end + 1), tuple(cfg.model.features),
                     cfg.downscale, cfg.period.hemisphere, cfg.geometry, tuple(ensemble_members(cfg)),
                     cfg.domain.year_batch, curves)


def _slot_table(domain: Domain) -> pd.DataFrame:
    """Every glacier slot 1..n (padding slots with an empty rgi_id): what the observations are linked to."""
    g = domain.glaciers
    return pd.DataFrame({"rgi_id": [str(v) for v in g["rgi_id"].values], "name": [str(v) for v in g["name"].values]},
                        index=pd.Index(g["glacier"].values, name="glacier"))


def _training_table(cfg: RunConfig, domain: Domain, cube, observed: ObservedUnits, run: DomainRun):
    notes, units, obs, years = observed_years(cfg, observed)
    gf = domain_glacier_features(domain, cube, np.asarray(observed.unit_of_outline)[1:], run, years)
    df = gf.to_dataframe().reset_index()
    df["obs_id"] = np.asarray(units)[df["glacier"].to_numpy() - 1]
    return df.merge(obs, on=["obs_id", "year"], how="inner"), notes


class _Named:
    """What :func:`glacgrid.outputs.write_outputs` reads of a prepared run: the glacier table."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table


def run_domain(cfg: RunConfig, *, progress: bool = True) -> RunResult:
    """Run ``cfg`` (which has a ``[domain]`` section) on its glacier domain; the result of :func:`run`."""
    if cfg.geometry.surfaces:
        raise ConfigError("[geometry] surfaces (dated DEMs interpolated in time) are not run on a glacier domain "
                          f"yet; got {len(cfg.geometry.surfaces)} surface file(s) and a [domain] section. Remove "
                          "[domain] to run them on the grid, or remove [geometry] surfaces for a static geometry.")
    t_start = time.perf_counter()
    out = Path(cfg.output.directory)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with Steps(progress, total=6) as steps:
        with steps.stage("ingest"):
            cube_path = ingest(list(cfg.climate.files), work / "cube.zarr", invariant=cfg.climate.invariant,
                               variables=list(cfg.climate.variables))
            cube = cube_mod.open_store(cube_path)
        with steps.stage("domain"):
            domain = build_domain(cfg, work, notes)
            table = domain.table
            empty = table.index[table["n_pixels"] == 0].tolist()
            if empty:
                notes.append(f"glaciers with no pixel on the grid (kept, reported with NaN): "
                             f"{table.loc[empty, 'rgi_id'].tolist()}")
        spec = domain_run_spec(cfg)
        with steps.stage("features"):
            o = cfg.observations
            observed = observed_units(o.files, _slot_table(domain)["rgi_id"].tolist(), fmt=o.format,
                                      id_column=o.id_column, links=o.links)
            train, train_notes = _training_table(cfg, domain, cube, observed, spec)
            train.to_csv(out / "training_features.csv", index=False)
        with steps.stage("model"):
            model, cv = fit_model(cfg, train, out)
        with steps.stage(f"simulate ({cfg.mode}, {domain.n_groups} groups)"):
            # the artifact written by the model stage: each worker process loads it once (a fitted model object
            # would travel in every task's graph)
            artifact = out / "model" if (out / "model" / "model.json").exists() else model
            store = simulate_domain(domain, cube_path, artifact, out / "results.zarr", spec,
                                    fingerprint=results_fingerprint(cfg, model))
            log = domain_log(store, domain, out / "glacier_log.csv")
        isolated = ()
        if len(log):
            isolated = (f"{len(log)} glacier-year(s) of {log['glacier'].nunique()} glacier(s) isolated (values "
                        f"NaN, failed = 1): see {out / 'glacier_log.csv'}",)
        with steps.stage("outputs"):
            results = cube_mod.open_store(store).sel(glacier=table.index.to_numpy())
            plain = cfg.__class__(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__},
                                     "output": type(cfg.output)(cfg.output.directory, False)})
            written = write_outputs(plain, _Named(table), results, cv, observed, out)
    timings = dict(steps.timings, total=time.perf_counter() - t_start)
    return RunResult(cfg, out, written.glacier_years, written.validation, cv, timings,
                     tuple(notes) + train_notes + isolated, written.files)

