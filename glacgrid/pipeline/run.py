"""The whole pipeline of one run: ingest -> grid and masks -> downscale -> features -> model ->
inference -> geometry -> outputs. ``glacgrid run`` and ``glacgrid demo`` call :func:`run`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import cube as cube_mod
from . import features as feat
from .config import RunConfig
from .downscale import downscale
from .exceptions import ModelError
from .grid import TargetGrid
from .ingest import ingest
from .masks import glacier_table, rasterize_glaciers, read_outlines
from .metadata import provenance, registry, stamp_dataset
from .observations import link_units, read_observations
from .observations import unit_raster as observed_units

__all__ = ["Prepared", "RunResult", "build_model", "fit_model", "prepare", "training_table", "run"]

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything on the target grid that the simulation needs (arrays lazy or small)."""

    grid: TargetGrid
    down: xr.Dataset          # temp, prcp (time, y, x); reference_elevation (y, x)
    static: xr.Dataset        # glacier_id, surface, thickness, pixel_area, glacier_fraction (y, x)
    table: pd.DataFrame       # glacier index 1..N -> rgi_id, name, areas
    has_thickness: np.ndarray  # bool per glacier index (position 0 unused)
    notes: list[str] = field(default_factory=list)
    surfaces: xr.DataArray | None = None  # dated surfaces (surface_year, y, x) of [geometry] surfaces

    @property
    def index(self) -> np.ndarray:
        return self.table.index.to_numpy()


@dataclass
class RunResult:
    config: RunConfig
    output: Path
    glacier_years: pd.DataFrame
    validation: pd.DataFrame
    cv: object
    timings: dict[str, float]
    notes: list[str]
    files: dict[str, Path]


class _Steps:
    """Progress display (rich) and stage timings."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.timings: dict[str, float] = {}
        self._progress = None

    def __enter__(self):
        if self.show:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                      TimeElapsedColumn(), transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task("glacgrid", total=7)  # the stages of run()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def stage(self, name: str):
        steps = self

        class _Ctx:
            def __enter__(self_inner):
                self_inner.t0 = time.perf_counter()
                if steps._progress is not None:
                    steps._progress.update(steps._task, description=f"[bold]{name}")

            def __exit__(self_inner, *exc):
                steps.timings[name] = time.perf_counter() - self_inner.t0
                if steps._progress is not None and exc[0] is None:
                    steps._progress.advance(steps._task)

        return _Ctx()

    def years(self, total: int):
        if self._progress is None:
            return lambda: None
        task = self._progress.add_task("  years", total=total)
        return lambda: self._progress.advance(task)


def _read_thickness(paths, grid: TargetGrid) -> xr.DataArray:
    """Ice thickness from one or more rasters onto the grid (average resampling), NaN where none covers.

    Where rasters overlap, a pixel takes the largest value (``np.fmax``, NaN ignored): per-glacier
    products (Farinotti et al. 2019) hold 0 around their own glacier, which must not hide the ice of a
    neighbouring glacier's raster listed earlier or later.
    """
    th = None
    for p in paths:
        one = grid.read(p, resampling="average")
        th = one if th is None else np.fmax(th, one)
    return th


def prepare(cfg: RunConfig, workdir: Path, steps: _Steps | None = None) -> Prepared:
    """Ingest the climate, build grid and masks, downscale; write the intermediate stores into ``workdir``."""
    steps = steps or _Steps(False)
    notes: list[str] = []
    with steps.stage("ingest"):
        cube_path = ingest(list(cfg.climate.files), workdir / "cube.zarr", invariant=cfg.climate.invariant,
                           variables=list(cfg.climate.variables))
        cube = cube_mod.open_store(cube_path)
    with steps.stage("grid and masks"):
        outlines = read_outlines(cfg.glaciers.outlines, cfg.glaciers.id_column, cfg.glaciers.name_column)
        if outlines.attrs.get("repaired"):
            notes.append(f"repaired invalid outline geometries: {outlines.attrs['repaired']}")
        grid = TargetGrid.from_raster(cfg.grid.dem, chunks=cfg.grid.chunks)
        if cfg.grid.crop_to_glaciers:
            buffer = cfg.grid.buffer
            if grid.is_geographic:
                buffer = buffer / 111_000.0  # metres -> degrees (documented approximation for the crop margin)
            grid = grid.crop(tuple(outlines.to_crs(grid.pyproj_crs).total_bounds), buffer=buffer)
        dem = grid.read(cfg.grid.dem)
        masks = rasterize_glaciers(outlines, grid)
        pixel_area = grid.pixel_area()
        if cfg.glaciers.thickness:
            thickness = _read_thickness(cfg.glaciers.thickness, grid)
        else:
            thickness = xr.full_like(dem, np.nan)
        static = xr.Dataset({"glacier_id": masks["glacier_id"], "glacier_fraction": masks["glacier_fraction"],
                             "surface": dem, "thickness": thickness, "pixel_area": pixel_area})
        static["thickness"] = static["thickness"].where(static["glacier_id"] > 0)
        static = grid.attach(static).drop_vars("spatial_ref", errors="ignore")
        static = stamp_dataset(static, history=provenance("prepare", dem=str(cfg.grid.dem)))
        cube_mod.write_dataset(static.chunk(dict(zip(("y", "x"), grid.chunks))), workdir / "static.zarr",
                               region_dim="y", overwrite=True)
        static = cube_mod.open_store(workdir / "static.zarr", chunks=dict(zip(("y", "x"), grid.chunks)))
        table = glacier_table(outlines, static["glacier_id"], static["pixel_area"])
        empty = table.index[table["raster_area_km2"] == 0].tolist()
        if empty:
            notes.append(f"glaciers with no pixel on the grid (kept, reported with NaN): "
                         f"{table.loc[empty, 'rgi_id'].tolist()}")
        cover = feat.area_weighted_mean(static["thickness"].notnull().astype("float32"), static["glacier_id"],
                                   static["glacier_id"] > 0, static["pixel_area"], table.index.to_numpy())
        has_thickness = np.r_[False, np.nan_to_num(cover.values) > 0.5]
        surfaces = _read_surfaces(cfg, grid, workdir)
    with steps.stage("downscale"):
        m0 = feat.HYDRO_START[cfg.period.hemisphere]
        first = pd.Timestamp(cfg.period.start - (1 if m0 > 1 else 0), m0, 1)
        last = first + pd.DateOffset(months=12 * (cfg.period.end - cfg.period.start + 1) - 1)
        sub = cube.sel(time=slice(first, last))
        down = downscale(sub, grid, static["surface"], cfg.downscale)
        cube_mod.write_dataset(down, workdir / "downscaled.zarr", region_dim="time", overwrite=True)
        down = cube_mod.open_store(workdir / "downscaled.zarr", chunks={"time": 12, "y": grid.chunks[0], "x": grid.chunks[1]})
    return Prepared(grid, down, static, table, has_thickness, notes, surfaces)


def _read_surfaces(cfg: RunConfig, grid: TargetGrid, workdir: Path) -> xr.DataArray | None:
    """The dated surfaces of ``[geometry] surfaces`` on the grid (bilinear), stored in ``surfaces.zarr``."""
    if not cfg.geometry.surfaces:
        return None
    z = xr.concat([grid.read(p, resampling="bilinear") for p in cfg.geometry.surfaces], dim="surface_year")
    z = z.assign_coords(surface_year=np.asarray(cfg.geometry.surface_years, dtype="int64"))
    z = grid.attach(stamp_dataset(z.rename("surface").astype("float64").to_dataset(),
                                  history=provenance("prepare", surfaces=[str(p) for p in cfg.geometry.surfaces])))
    z = z.drop_vars("spatial_ref", errors="ignore")
    chunks = dict(zip(("y", "x"), grid.chunks))
    cube_mod.write_dataset(z.chunk({"surface_year": 1, **chunks}), workdir / "surfaces.zarr",
                           region_dim="surface_year", overwrite=True)
    return cube_mod.open_store(workdir / "surfaces.zarr", chunks={"surface_year": 1, **chunks})["surface"]


def training_table(cfg: RunConfig, prep: Prepared) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """Glacier features of the observation units joined with the observations.

    Returns ``(table, unit_ids, unit_of_outline)``: one row per observed (unit, year) with all features.
    """
    obs = read_observations(cfg.observations.files, fmt=cfg.observations.format, id_column=cfg.observations.id_column)
    unit_of_outline, units, unmatched = link_units(obs["obs_id"].unique(), prep.table["rgi_id"].tolist(),
                                                   cfg.observations.links)
    if unmatched:
        prep.notes.append(f"observations without a matching outline (not used): {unmatched}")
    if len(units) < 2:
        raise ModelError(f"Only {len(units)} observed glacier(s) match the outlines; training needs at least 2. "
                         "Check [observations] id_column and links.")
    s = prep.static
    unit_raster = observed_units(s["glacier_id"], unit_of_outline)
    uidx = np.arange(1, len(units) + 1)
    active = unit_raster > 0
    years = sorted(set(obs["year"]) & set(range(cfg.period.start, cfg.period.end + 1)))
    if not years:
        raise ModelError(f"No observation falls in [period] {cfg.period.start}-{cfg.period.end}.")
    pix = _pixel_features(cfg, prep, s["surface"], unit_raster, active, uidx, years[0], years[-1])
    gf = feat.glacier_features(pix, unit_raster, active, s["pixel_area"], uidx).compute()
    df = gf.to_dataframe().reset_index()
    df["obs_id"] = np.asarray(units)[df["glacier"].to_numpy() - 1]
    table = df.merge(obs, on=["obs_id", "year"], how="inner")
    return table, units, unit_of_outline


def _pixel_features(cfg: RunConfig, prep: Prepared, surface: xr.DataArray, glacier_id: xr.DataArray,
                    active: xr.DataArray, index: np.ndarray, start: int, end: int) -> xr.Dataset:
    """All pixel features for hydrological years ``start..end`` on the current geometry."""
    climate = feat.climate_pixel_features(prep.down, surface, cfg.downscale, start=start, end=end,
                                          hemisphere=cfg.period.hemisphere)
    topo = feat.topo_pixel_features(surface, prep.grid)
    const = feat.glacier_constants(glacier_id, surface, active, prep.static["pixel_area"], index).compute()
    return feat.pixel_features(climate, topo, const, glacier_id, active)


#: Model kinds whose fit does not depend on the seed: their ensembles need bootstrap resamples.
SEED_FREE_KINDS = ("lasso", "ols", "ridge", "svr")


def ensemble_method(model_cfg) -> str:
    """The ensemble method of ``[model]``: ``auto`` resolves to bootstrap for seed-free kinds, else seeds."""
    if model_cfg.ensemble_method != "auto":
        return model_cfg.ensemble_method
    return "bootstrap" if model_cfg.kind in SEED_FREE_KINDS else "seeds"


def fit_model(cfg: RunConfig, train: pd.DataFrame, out: Path):
    """The model stage: cross-validate on ``train`` (``out/cv.json``), fit, write ``out/model``.

    Returns the fitted model and its :class:`glacgrid.models.CVResult`.
    """
    from .models import cross_validate

    names = tuple(cfg.model.features)
    model, schema = build_model(cfg)
    cv = cross_validate(train, target="smb", features=names, glacier_col="obs_id", year_col="year",
                        kind=cfg.model.kind, scheme=cfg.model.cv, seed=cfg.model.seed, units=schema.units)
    cv.to_json(out / "cv.json")
    model.fit(train[list(names)].to_numpy("float64"), train["smb"].to_numpy("float64"), schema)
    model.to_artifact(out / "model")
    return model, cv


def build_model(cfg: RunConfig):
    """The unfitted model of ``[model]`` (an ensemble when ``ensemble`` >= 2) and its feature schema."""
    from .models import FeatureSchema, make_model

    names = tuple(cfg.model.features)
    reg = registry()
    schema = FeatureSchema(names, tuple(reg[n]["units"] for n in names))
    model = make_model(cfg.model.kind, seed=cfg.model.seed, ensemble=cfg.model.ensemble or None,
                       ensemble_method=ensemble_method(cfg.model))
    return model, schema


def run(cfg: RunConfig, *, progress: bool = True, client=None) -> RunResult:
    """Run the whole pipeline described by ``cfg`` on the current dask client (or the threaded scheduler)."""
    from . import outputs, simulate

    t_start = time.perf_counter()
    out = Path(cfg.output.directory)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    with _Steps(progress) as steps:
        prep = prepare(cfg, work, steps)
        with steps.stage("features"):
            train, units, unit_of_outline = training_table(cfg, prep)
            train.to_csv(out / "training_features.csv", index=False)
        with steps.stage("model"):
            model, cv = fit_model(cfg, train, out)
        with steps.stage(f"simulate ({cfg.mode})"):
            advance = steps.years(cfg.period.end - cfg.period.start + 1)
            store = simulate.simulate(cfg, prep, model, out / "results.zarr", advance=advance)
        log_path = store.parent / "glacier_log.csv"
        isolated = pd.read_csv(log_path) if log_path.exists() else pd.DataFrame()
        if len(isolated):
            prep.notes.append(f"{len(isolated)} glacier-year(s) of {isolated['glacier'].nunique()} glacier(s) "
                              f"isolated (values NaN, failed = 1): see {log_path}")
        with steps.stage("outputs"):
            results = cube_mod.open_store(store)
            files = outputs.write_outputs(cfg, prep, results, cv, units, unit_of_outline, out)
    timings = dict(steps.timings, total=time.perf_counter() - t_start)
    return RunResult(cfg, out, files.pop("glacier_years_df"), files.pop("validation_df"), cv, timings,
                     prep.notes, {k: v for k, v in files.items()})
