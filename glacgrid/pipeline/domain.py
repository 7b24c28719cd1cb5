"""A run on a glacier domain (``[domain]`` in the configuration): every glacier of a region as packed pixels.

ingest -> the domain (built from per-glacier tiles, or from the DEM + outlines + thickness of ``[grid]``
and ``[glaciers]``; kept when its store exists) -> the training table of the observed glaciers (features
at their pixels) -> the model (with ``[model] training = "joint"``: one pixel model fitted against the
glacier-wide balances and the elevation bands on those pixel features) ->
:func:`glacgrid.simulate.simulate_domain` (one task per group of whole glaciers, resumable) -> the
glacier-year table, validation and the glacier log. The gridded results stay packed in ``results.zarr``;
``glacgrid export`` rasterises them per glacier, per zone or onto a grid.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
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
from ..simulate import (DomainPixels, DomainRun, domain_glacier_features, domain_log, domain_pixel_features,
                        ensemble_members, results_fingerprint, simulate_domain)
from .model import fit_model
from .outdir import begin_run, run_lock
from .prepare import _static, _target_grid
from .result import RunResult
from .training import (TABLE_ORDER, balance_columns, fit_joint, footprints_from_pixels, observed_years, place_stakes,
                       read_band_profiles, read_run_stakes, save_joint_model, seasons_of, stake_summary,
                       write_training_table)
from .steps import Steps

__all__ = ["run_domain", "build_domain", "domain_run_spec", "shared_stages", "domain_outputs", "observed_on",
           "DomainStages"]


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


def observed_on(cfg: RunConfig, domain: Domain) -> ObservedUnits:
    """The observations of ``[observations]`` linked to the domain's glacier slots."""
    o = cfg.observations
    return observed_units(o.files, _slot_table(domain)["rgi_id"].tolist(), fmt=o.format, id_column=o.id_column,
                          links=o.links)


def _training_table(cfg: RunConfig, domain: Domain, cube, observed: ObservedUnits, run: DomainRun,
                    stakes: pd.DataFrame | None = None):
    """The training table and its notes, and (joint training) the pixel features it was averaged from
    (:func:`glacgrid.simulate.domain.domain_pixel_features`, glacier constants per outline as the run's
    inference sees them; one feature pass for both) with those of the seasons whose balances (glacier-wide
    or of the ``stakes``) are fitted."""
    notes, units, obs, years = observed_years(cfg, observed)
    slots = np.asarray(observed.unit_of_outline)[1:]
    pixels = None
    if cfg.model.training == "joint":
        pixels = [domain_pixel_features(domain, cube, slots, run, years, period=p)
                  for p in ("annual", *seasons_of(cfg, obs[obs["year"].isin(years)], stakes))]
    gf = domain_glacier_features(domain, cube, slots, run, years, pixels=pixels[0] if pixels else None)
    df = gf.to_dataframe(dim_order=TABLE_ORDER).reset_index()
    df["obs_id"] = np.asarray(units)[df["glacier"].to_numpy() - 1]
    return df.merge(obs, on=["obs_id", "year"], how="inner"), notes, pixels


def _fit_joint(cfg: RunConfig, pixels: list[DomainPixels], observed: ObservedUnits, train: pd.DataFrame,
               out: Path, stakes: pd.DataFrame | None = None):
    """The model stage of joint training on a glacier domain: one pixel model fitted against the glacier-wide
    balances of ``train`` (annual, and the seasonal ones of the seasons in ``pixels``), the band profiles and
    the ``stakes`` on the pixel features of the observed glaciers; writes ``out/model`` and
    ``out/footprints.json`` (:func:`glacgrid.pipeline.training.save_joint_model`).

    Parameters
    ----------
    cfg : RunConfig
        The run.
    pixels : list of DomainPixels
        The pixel features of the observed glaciers (:func:`glacgrid.simulate.domain.domain_pixel_features`):
        the annual ones, then those of each season whose balances are fitted.
    observed : ObservedUnits
        The observations linked to the domain's glacier slots.
    train : pandas.DataFrame
        The training table: its (``obs_id``, ``year``, ``smb``, ``winter``, ``summer``) rows are the
        glacier-wide footprints.
    out : Path
        Output directory.
    stakes : pandas.DataFrame, optional
        The stake balances of ``[observations] stakes`` (:func:`glacgrid.pipeline.training.read_run_stakes`).

    Returns
    -------
    SMBModel
        The fitted model.
    """
    px = pixels[0]
    periods = {s.period: (k * px.X.shape[0], s.fraction) for k, s in enumerate(pixels) if k}  # (block offsets)
    if stakes is not None:
        stakes = place_stakes(stakes, observed.units, px.unit_of_pixel, px.lon, px.lat, px.pixel_area)
    fp = footprints_from_pixels(px.years, px.unit_of_pixel, px.z, px.pixel_area, observed.units,
                                train[balance_columns(train)], read_band_profiles(cfg), periods=periods, stakes=stakes)
    X = px.X if len(pixels) == 1 else np.concatenate([s.X for s in pixels])
    return save_joint_model(cfg, fit_joint(cfg, X, fp), out, stake_summary(stakes))


@dataclass(frozen=True, eq=False)
class DomainStages:
    """What the shared stages of a domain run hand the simulation and the outputs.

    Attributes
    ----------
    cube : Path
        The ingested climate cube store.
    domain : Domain
    observed : ObservedUnits
        The observations linked to the domain's glaciers.
    model : object
        The fitted model (its artifact is ``<output>/model``).
    cv : CVResult
    spec : DomainRun
    notes : tuple of str
    """

    cube: Path
    domain: Domain
    observed: ObservedUnits
    model: object
    cv: object
    spec: DomainRun
    notes: tuple[str, ...] = ()

    def model_for_workers(self, out: Path):
        """The artifact the model stage wrote (each worker process loads it once; a fitted model object would
        travel in every task's graph), or the model itself when there is none."""
        return out / "model" if (out / "model" / "model.json").exists() else self.model


def shared_stages(cfg: RunConfig, steps: Steps) -> DomainStages:
    """ingest -> domain -> training features -> model: what a whole run and a prepared array run share."""
    if cfg.geometry.surfaces:
        raise ConfigError("[geometry] surfaces (dated DEMs interpolated in time) are not run on a glacier domain "
                          f"yet; got {len(cfg.geometry.surfaces)} surface file(s) and a [domain] section. Remove "
                          "[domain] to run them on the grid, or remove [geometry] surfaces for a static geometry.")
    out = Path(cfg.output.directory)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    with steps.stage("ingest"):
        cube_path = Path(ingest(list(cfg.climate.files), work / "cube.zarr", invariant=cfg.climate.invariant,
                                variables=list(cfg.climate.variables)))
    with steps.stage("domain"):
        domain = build_domain(cfg, work, notes)
        table = domain.table
        empty = table.index[table["n_pixels"] == 0].tolist()
        if empty:
            notes.append(f"glaciers with no pixel on the grid (kept, reported with NaN): "
                         f"{table.loc[empty, 'rgi_id'].tolist()}")
    spec = domain_run_spec(cfg)
    with steps.stage("features"):
        observed = observed_on(cfg, domain)
        cube = cube_mod.open_store(cube_path, require_complete=True)
        stakes = read_run_stakes(cfg) if cfg.model.training == "joint" else None  # (read once)
        train, train_notes, pixels = _training_table(cfg, domain, cube, observed, spec, stakes)
        write_training_table(train, out)
    with steps.stage("model"):
        model, cv = fit_model(cfg, train, out)  # (cv.json: the glacier-wide cross-validation)
        if pixels is not None:  # one pixel model against glacier-wide (annual, seasonal) and band footprints
            model = _fit_joint(cfg, pixels, observed, train, out, stakes)
    return DomainStages(cube_path, domain, observed, model, cv, spec, tuple(notes) + tuple(train_notes))


def domain_outputs(cfg: RunConfig, domain: Domain, store: Path, cv, observed: ObservedUnits):
    """The glacier log, tables and validation of a finished domain run (no PNG figures: their maps are
    rasters); returns the :class:`~glacgrid.outputs.WrittenOutputs` and the note on isolated glaciers."""
    out = Path(cfg.output.directory)
    log = domain_log(store, domain, out / "glacier_log.csv")
    notes = ()
    if len(log):
        notes = (f"{len(log)} glacier-year(s) of {log['glacier'].nunique()} glacier(s) isolated (values NaN, "
                 f"failed = 1): see {out / 'glacier_log.csv'}",)
    table = domain.table
    results = cube_mod.open_store(store, require_complete=True).sel(glacier=table.index.to_numpy())
    no_figures = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, plot=False))
    return write_outputs(no_figures, _Named(table), results, cv, observed, out), notes


class _Named:
    """What :func:`glacgrid.outputs.write_outputs` reads of a prepared run: the glacier table."""

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table


def run_domain(cfg: RunConfig, *, progress: bool = True) -> RunResult:
    """Run ``cfg`` (which has a ``[domain]`` section) on its glacier domain; the result of :func:`run`
    (holding the run lock of the output directory, as :func:`run` does)."""
    t_start = time.perf_counter()
    out = Path(cfg.output.directory)
    with run_lock(cfg):
        begun = begin_run(cfg)
        with Steps(progress, total=6) as steps:
            st = shared_stages(cfg, steps)
            with steps.stage(f"simulate ({cfg.mode}, {st.domain.n_groups} groups)"):
                store = simulate_domain(st.domain, st.cube, st.model_for_workers(out), out / "results.zarr",
                                        st.spec, fingerprint=results_fingerprint(cfg, st.model))
            with steps.stage("outputs"):
                written, isolated = domain_outputs(cfg, st.domain, store, st.cv, st.observed)
    timings = dict(steps.timings, total=time.perf_counter() - t_start)
    return RunResult(cfg, out, written.glacier_years, written.validation, st.cv, timings,
                     begun + st.notes + isolated, written.files)
