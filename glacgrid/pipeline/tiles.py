"""A run split into region tiles, for a Slurm job array: prepare once, one task per tile, finish once.

1. :func:`prepare_tiles` (``glacgrid tiles prepare CONFIG --tiles N``) runs the shared stages once
   (ingest, grid and masks, downscale, training, model), creates the template of the one results store
   ``<output>/results.zarr`` and writes the tile layout ``<output>/tiles/tiles.json``.
2. :func:`run_tile` (``glacgrid run CONFIG --tile K``, one array task per tile) simulates the glaciers
   of tile ``K`` on the tile's window of the grid, resumably year by year in a scratch store
   ``<output>/tiles/tile-K.zarr``, then writes the tile into the results store: the grid chunks it owns
   by region writes, and its glaciers' columns of the per-glacier variables under a file lock. The
   tile is then recorded as done in the store's sidecar.
3. :func:`finish_tiles` (``glacgrid tiles finish CONFIG``) writes the tables and the figure from the
   merged store with the model and cross-validation of step 1 (nothing is recomputed).

Tiles are unions of the grid's chunks (the Zarr chunks of the results store), so no two tasks write the
same chunk of a gridded variable, and a glacier is never split across tiles: chunks that share a glacier
always go to the same tile. Within that constraint tiles are contiguous runs of chunks in row-major order
with balanced glacier pixel counts. Re-submitting the array after a failure skips the finished tiles
(``glacgrid tiles missing`` lists the others) and a killed tile resumes from its scratch store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from .. import cube as cube_mod
from .. import simulate
from ..atomic import atomic_path, locked, write_csv
from ..config import RunConfig, config_digest
from ..exceptions import InputDataError, StoreError
from ..grid import TargetGrid
from ..masks import TileLayout, plan_tiles, tile_grid
from ..models import CVResult, SMBModel, load_model
from ..outputs import write_outputs
from .model import fit_model
from .outdir import begin_run, purpose_of, run_lock
from .prepare import Prepared, prepare
from .run import RunResult
from .training import read_observed, training_table, write_training_table

__all__ = ["prepare_tiles", "run_tile", "missing_tiles", "finish_tiles", "read_layout", "tile_key"]

log = logging.getLogger(__name__)

TILES_DIR = "tiles"
LAYOUT_FILE = "tiles.json"
LOG_FILE = "glacier_log.csv"


def tile_key(k: int) -> str:
    """The sidecar key of tile ``k`` in the results store."""
    return f"tile[{k}]"


# --------------------------------------------------------------------------- prepare (once)

def _config_hash(cfg: RunConfig) -> str:
    return config_digest(cfg, ("climate", "grid", "glaciers", "period", "downscale", "model", "observations",
                               "geometry", "mode"))


def _train(cfg: RunConfig, prep: Prepared, out: Path) -> SMBModel:
    """The model stage of :func:`glacgrid.pipeline.run` (same training table, same artifact)."""
    train, _ = training_table(cfg, prep, read_observed(cfg, prep.table))
    write_training_table(train, out)
    return fit_model(cfg, train, out)[0]


def prepare_tiles(cfg: RunConfig, n_tiles: int) -> TileLayout:
    """Run the shared stages once, create the results template and write the tile layout.

    Idempotent: when ``<output>/tiles/tiles.json`` was written for the same configuration and number of
    tiles, and the results store exists, nothing is recomputed (a re-submitted array starts at once).
    Holds the run lock of the output directory alone (no tile task or other run meanwhile).
    """
    with run_lock(cfg, purpose=purpose_of(cfg, "tiles prepare")):
        begin_run(cfg)
        return _prepare_tiles(cfg, n_tiles)


def _prepare_tiles(cfg: RunConfig, n_tiles: int) -> TileLayout:
    out = Path(cfg.output.directory)
    tdir = out / TILES_DIR
    layout_path = tdir / LAYOUT_FILE
    chash = _config_hash(cfg)
    if layout_path.exists() and (out / "results.zarr").exists() and (tdir / "glaciers.parquet").exists():
        meta = json.loads(layout_path.read_text(encoding="utf-8"))
        if meta.get("config") == chash and meta.get("requested") == n_tiles:
            log.info("tiles already prepared for this configuration: %s", layout_path)
            return TileLayout.from_dict(meta["layout"])
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    tdir.mkdir(parents=True, exist_ok=True)
    prep = prepare(cfg, work)
    model = _train(cfg, prep, out)
    years = np.arange(cfg.period.start, cfg.period.end + 1)
    fp = simulate.results_fingerprint(cfg, model)
    spread = cfg.mode == "reconstruct" and bool(getattr(model, "members", None))
    template = simulate.results_template(prep, years, fp, members=simulate.ensemble_members(cfg), spread=spread)
    store = out / "results.zarr"
    layout = plan_tiles(prep.static["glacier_id"].values, prep.grid.chunks, n_tiles, index=prep.index)
    old_fp, old_layout = None, None
    if store.exists():
        with contextlib.suppress(StoreError):
            old_fp = cube_mod.open_store(store, chunks=None).attrs.get("glacgrid_fingerprint")
    if layout_path.exists():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            old_layout = TileLayout.from_dict(json.loads(layout_path.read_text(encoding="utf-8"))["layout"])
    # finished tiles are kept only for the same results (fingerprint) and the same tiles
    keep = old_fp == fp and old_layout == layout
    simulate.init_store(template, store, overwrite=store.exists() and not keep)
    if not keep:
        for scratch in tdir.glob("tile-*.zarr"):
            shutil.rmtree(scratch)
        for scratch in tdir.glob("tile-*.log.csv"):
            scratch.unlink()
        (out / LOG_FILE).unlink(missing_ok=True)
    with atomic_path(tdir / "glaciers.parquet") as tmp:  # for the finish step (names, ids, areas)
        prep.table.to_parquet(tmp)
    meta = {"config": chash, "requested": n_tiles, "fingerprint": fp, "grid": dataclasses.asdict(prep.grid),
            "has_thickness": [bool(v) for v in prep.has_thickness], "layout": layout.to_dict()}

    with atomic_path(layout_path) as tmp:
        tmp.write_text(json.dumps(meta), encoding="utf-8")
    return layout


def read_layout(cfg: RunConfig) -> tuple[TileLayout, dict]:
    """The tile layout of ``cfg``'s output folder and its metadata (grid, fingerprint, thickness flags)."""
    path = Path(cfg.output.directory) / TILES_DIR / LAYOUT_FILE
    if not path.exists():
        raise StoreError(f"No tile layout at {path}. Run `glacgrid tiles prepare CONFIG --tiles N` first "
                         "(jobs/submit_tiles.sh does).")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("config") != _config_hash(cfg):
        raise StoreError(f"The tile layout {path} was prepared for another configuration. Run "
                         "`glacgrid tiles prepare CONFIG --tiles N` again.")
    return TileLayout.from_dict(meta["layout"]), meta


def _layout_grid(meta: dict) -> TargetGrid:
    """The full grid recorded in the tile layout file."""
    g = meta["grid"]
    return TargetGrid(g["crs"], tuple(g["transform"]), tuple(g["shape"]), tuple(g["chunks"]))


def missing_tiles(cfg: RunConfig) -> list[int]:
    """The tiles not yet recorded as done in the results store."""
    layout, _ = read_layout(cfg)
    done = cube_mod.completed_regions(Path(cfg.output.directory) / "results.zarr")
    return [k for k in range(layout.n_tiles) if tile_key(k) not in done]


# --------------------------------------------------------------------------- one tile (array task)

def _tile_prepared(cfg: RunConfig, layout: TileLayout, meta: dict, k: int) -> Prepared:
    """The :class:`~glacgrid.pipeline.Prepared` of tile ``k``: its window, only its glaciers."""
    out = Path(cfg.output.directory)
    grid = _layout_grid(meta)
    ys, xs = layout.window(k)
    sub = tile_grid(grid, (ys, xs))
    chunks = dict(zip(("y", "x"), grid.chunks))
    static = cube_mod.open_store(out / "work" / "static.zarr", chunks=chunks, require_complete=True).isel(y=ys, x=xs)
    down = cube_mod.open_store(out / "work" / "downscaled.zarr", chunks={"time": 12, **chunks},
                               require_complete=True).isel(y=ys, x=xs)
    mine = np.asarray(layout.glaciers[k], dtype=np.int64)
    gid = static["glacier_id"]
    static = static.assign(glacier_id=gid.where(gid.isin(mine), 0).astype(gid.dtype))
    static = static.chunk(chunks)
    down = down.chunk({"time": 12, **chunks})
    surfaces = None
    if cfg.geometry.surfaces:
        surfaces = cube_mod.open_store(out / "work" / "surfaces.zarr", chunks={"surface_year": 1, **chunks},
                                       require_complete=True)["surface"].isel(y=ys, x=xs)
    # the simulation needs the index (and the ids for its glacier log)
    table = pd.read_parquet(out / TILES_DIR / "glaciers.parquet").loc[mine]
    has_th = np.asarray(meta["has_thickness"], dtype=bool)
    return Prepared(sub, down, static, table, np.r_[False, has_th[mine]], (), surfaces)


def _write_tile(scratch: Path, store: Path, layout: TileLayout, k: int) -> None:
    """Copy tile ``k`` from its scratch store into the results store, then record it as done."""
    ys, xs = layout.window(k)
    res = cube_mod.open_store(scratch, chunks=None, require_complete=True)
    nyear = res.sizes["year"]
    gridded = [v for v in res.data_vars if {"y", "x"} <= set(res[v].dims)]
    per_glacier = [v for v in res.data_vars if "glacier" in res[v].dims]
    lead = {d: slice(0, res.sizes[d]) for d in ("year", "member") if d in res.dims}
    for block in layout.blocks[k]:
        by, bx = layout.block_slices(block)
        local = dict(y=slice(by.start - ys.start, by.stop - ys.start), x=slice(bx.start - xs.start, bx.stop - xs.start))
        part = xr.Dataset({v: (res[v].dims, res[v].isel(local).values) for v in gridded})
        cube_mod.write_region(part, store, region_dim="y", index=by, region={**lead, "x": bx})
    glaciers = np.asarray(layout.glaciers[k])
    with locked(store.parent / TILES_DIR / ".results.lock"):
        if len(glaciers):
            all_glaciers = cube_mod.open_store(store, chunks=None)["glacier"].values
            pos = np.searchsorted(all_glaciers, glaciers)
            group = zarr.open_group(store, mode="r+")
            for v in per_glacier:
                da = res[v].sel(glacier=glaciers).transpose(..., "glacier")
                group[v].oindex[(slice(None),) * (da.ndim - 1) + (pos,)] = da.values.astype(group[v].dtype)
        _merge_log(scratch.with_suffix(".log.csv"), store.parent / LOG_FILE, glaciers)
        cube_mod.mark_done(store, tile_key(k))
        done = cube_mod.completed_regions(store)
        if all(tile_key(t) in done for t in range(layout.n_tiles)):
            # every tile is in: the years are complete, so `glacgrid run` only writes the outputs
            for i in range(nyear):
                cube_mod.mark_done(store, cube_mod.region_key("year", slice(i, i + 1)))


def _merge_log(tile_log: Path, run_log: Path, glaciers: np.ndarray) -> None:
    """The tile's isolated glacier-years into the run's ``glacier_log.csv`` (its rows replaced: idempotent)."""
    def read(path):
        if not path.exists():
            return pd.DataFrame(columns=simulate.LOG_COLUMNS)
        return pd.read_csv(path, dtype={"rgi_id": str, "reason": str}, keep_default_na=False)

    rows = read(run_log)
    rows = rows[~rows["glacier"].astype("int64").isin(glaciers)] if len(rows) else rows
    merged = pd.concat([df for df in (rows, read(tile_log)) if len(df)] or [rows], ignore_index=True)
    merged = merged.sort_values(["year", "member", "glacier"]) if len(merged) else merged
    write_csv(merged[simulate.LOG_COLUMNS], run_log, index=False)


def run_tile(cfg: RunConfig, k: int, *, advance=lambda: None) -> dict:
    """Simulate tile ``k`` and write it into the results store; skip it if it is done already.

    Returns a small report: tile, glaciers, chunks, whether it was skipped, years resumed from the
    scratch store of a killed earlier task, seconds. The tasks of one array share the run lock of the
    output directory (a whole run or a preparation on it meanwhile is refused).
    """
    with run_lock(cfg, purpose=f"{purpose_of(cfg, 'run')} --tile {k}", shared=True):
        return _run_tile(cfg, k, advance)


def _run_tile(cfg: RunConfig, k: int, advance) -> dict:
    t0 = time.perf_counter()
    layout, meta = read_layout(cfg)
    if not 0 <= k < layout.n_tiles:
        raise InputDataError(f"Tile {k} does not exist: the layout has tiles 0..{layout.n_tiles - 1}.")
    out = Path(cfg.output.directory)
    store = out / "results.zarr"
    report = {"tile": k, "glaciers": len(layout.glaciers[k]), "chunks": len(layout.blocks[k]), "skipped": False,
              "resumed_years": 0}
    if tile_key(k) in cube_mod.completed_regions(store):
        report.update(skipped=True, seconds=time.perf_counter() - t0)
        return report
    stored = cube_mod.open_store(store, chunks=None).attrs.get("glacgrid_fingerprint")
    if stored != meta["fingerprint"]:
        raise StoreError(f"The results store {store} belongs to another run (fingerprint {stored}, expected "
                         f"{meta['fingerprint']}). Run `glacgrid tiles prepare` again.")
    prep = _tile_prepared(cfg, layout, meta, k)
    model = load_model(out / "model")
    scratch = out / TILES_DIR / f"tile-{k}.zarr"
    if scratch.exists():  # a resumed task: the years its killed predecessor finished are kept
        with contextlib.suppress(StoreError):
            report["resumed_years"] = sum(key.startswith("year[") for key in cube_mod.completed_regions(scratch))
    simulate.simulate(cfg, prep, model, scratch, advance=advance, log=scratch.with_suffix(".log.csv"))
    _write_tile(scratch, store, layout, k)
    report["seconds"] = time.perf_counter() - t0
    return report


# --------------------------------------------------------------------------- finish (once)

def _load_cv(path: Path) -> CVResult:
    """The cross-validation result written by the prepare step (cv.json)."""
    d = json.loads(path.read_text(encoding="utf-8"))
    kwargs = {"scheme": d["scheme"], "metrics": d["metrics"], "per_fold": pd.DataFrame(d["per_fold"]),
              "predictions": pd.DataFrame(d["predictions"])}
    accepted = inspect.signature(CVResult).parameters
    kwargs.update({k: (tuple(v) if k == "features" else v) for k, v in d.items()
                   if k in accepted and k not in kwargs})
    return CVResult(**kwargs)


def finish_tiles(cfg: RunConfig) -> RunResult:
    """Write the tables and the figure of a tiled run from its merged results store.

    Uses the model, cross-validation and stores of the prepare step: nothing is recomputed (a retrained
    model would differ in the last digits and would not match the store). Returns a
    :class:`~glacgrid.pipeline.RunResult`. Holds the run lock of the output directory alone.
    """
    with run_lock(cfg, purpose=purpose_of(cfg, "tiles finish")):
        return _finish_tiles(cfg)


def _finish_tiles(cfg: RunConfig) -> RunResult:
    t0 = time.perf_counter()
    out = Path(cfg.output.directory)
    missing = missing_tiles(cfg)
    if missing:
        raise StoreError(f"Tiles {missing} are not in the results store yet. Run them first "
                         f"(sbatch --array={','.join(map(str, missing))} jobs/run_tiles.sbatch CONFIG).")
    layout, meta = read_layout(cfg)
    table = pd.read_parquet(out / TILES_DIR / "glaciers.parquet")
    prep = Prepared(_layout_grid(meta), xr.Dataset(), xr.Dataset(), table,
                    np.asarray(meta["has_thickness"], dtype=bool))
    cv = _load_cv(out / "cv.json")
    results = cube_mod.open_store(out / "results.zarr", require_complete=True)
    written = write_outputs(cfg, prep, results, cv, read_observed(cfg, table), out)
    timings = {"outputs": time.perf_counter() - t0}
    notes = (f"tiled run: {layout.n_tiles} tiles merged into {out / 'results.zarr'}",)
    return RunResult(cfg, out, written.glacier_years, written.validation, cv, timings, notes, written.files)
