"""The run loop of ``glacgrid run``: a template results store, then one region write per finished year.

Reconstruction (``mode = "reconstruct"``): SMB of every glacier and year on a static geometry (the DEM)
or on surfaces interpolated in time between dated DEMs (``[geometry] surfaces``/``surface_years``);
with an ensemble model also the spread across members. Evolution (``mode = "evolve"``): the annual
loop of :func:`glacgrid.simulate.annual_step` for every ensemble member (initial-thickness factor x
delta-h-curve factor), all members of a year committed together. With a ``[forcing]`` of several members
(``Prepared.member_down``) every member runs once per forcing member, in both modes: the ``member``
dimension is forcing member (outer) x thickness x delta-h, with the coordinate ``forcing_member``.

Every finished year is one region write followed by a done mark; the state of a resumed run is read
back from the last committed year of the store, so a run killed at any point and restarted gives the
same numbers as an uninterrupted one. Isolated glacier-years are listed in ``glacier_log.csv``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .. import cube as cube_mod
from ..atomic import clean_partials, write_csv
from ..config import RunConfig, config_digest
from ..exceptions import StoreError
from ..features import glacier_constants
from ..glaciers import GlacierGeometry, area_weighted_mean
from ..metadata import cf_dataset, stamp
from ..units import convert
from ._step import CheckedGeometry, annual_step, reconstruct_step

__all__ = ["simulate", "results_fingerprint", "results_template", "ensemble_members", "surface_for_year",
           "init_store", "LOG_COLUMNS"]

#: Columns of ``glacier_log.csv``.
LOG_COLUMNS = ["glacier", "rgi_id", "year", "member", "reason"]
_GRIDDED = ("smb", "thickness", "surface")
_PER_GLACIER = ("smb_glacier", "glacier_area", "volume", "mean_elevation", "disappeared", "failed")


def results_fingerprint(cfg: RunConfig, model) -> str:
    """A hash of everything that determines the results: config sections, model coefficients and the
    model's prediction at a fixed probe (any kind of model, ensembles included)."""
    state = repr(getattr(model, "coef_", None)) + repr(getattr(model, "intercept_", None))
    try:
        probe = np.linspace(0.5, 1.5, len(cfg.model.features))[None, :] * 100.0
        state += np.asarray(model.predict(probe), dtype="float64").tobytes().hex()
    except Exception:  # noqa: BLE001 - a model that cannot predict a probe is fingerprinted by its config
        pass
    sections = ("climate", "grid", "glaciers", "period", "downscale", "model", "geometry", "mode")
    return config_digest(cfg, sections + (("forcing",) if cfg.forcing is not None else ()), model_state=state)


def ensemble_members(cfg: RunConfig) -> list[tuple[float, float]]:
    """``(thickness_factor, deltah_factor)`` of each member: the product of the configured factors
    in evolve mode (thickness factors outer), one unperturbed member in reconstruct mode."""
    if cfg.mode != "evolve":
        return [(1.0, 1.0)]
    g = cfg.geometry
    return [(float(t), float(d)) for t, d in itertools.product(g.thickness_factors, g.deltah_factors)]


def results_template(prep, years: np.ndarray, fingerprint: str, *, members: list | None = None,
                     spread: bool = False, forcing_members: np.ndarray | None = None) -> xr.Dataset:
    """The (lazy, all-zero) template of the results store.

    ``members``: ``(thickness_factor, deltah_factor)`` pairs; a ``member`` dim only for more than one.
    ``spread``: add ``smb_spread`` and ``smb_glacier_spread`` (ensemble model in reconstruct mode).
    ``forcing_members``: the forcing member of each member (coordinate ``forcing_member`` on ``member``).
    """
    grid = prep.grid
    ny, nx = grid.shape
    ng = len(prep.index)
    multi = members is not None and len(members) > 1
    lead = (len(years), len(members)) if multi else (len(years),)
    lead_chunks = (1, 1) if multi else (1,)
    lead_dims = ("year", "member") if multi else ("year",)
    coords = {"year": years, "glacier": prep.index, **grid.coords()}
    if multi:
        coords["member"] = np.arange(len(members))
        coords["thickness_factor"] = ("member", np.array([m[0] for m in members], dtype="float64"))
        coords["deltah_factor"] = ("member", np.array([m[1] for m in members], dtype="float64"))
        if forcing_members is not None:
            coords["forcing_member"] = ("member", np.asarray(forcing_members, dtype="int64"))

    def gridded(dtype, dims=lead_dims, shape=lead, chunks=lead_chunks):
        return xr.DataArray(dsa.zeros((*shape, ny, nx), chunks=(*chunks, *grid.chunks), dtype=dtype),
                            dims=(*dims, "y", "x"))

    def glacier(dtype, dims=lead_dims, shape=lead):
        return xr.DataArray(dsa.zeros((*shape, ng), chunks=(1,) * len(shape) + (ng,), dtype=dtype),
                            dims=(*dims, "glacier"))

    # thickness and surface are the state the next year (and a resumed run) starts from: float64, so
    # that mass is conserved across years to floating-point tolerance
    data = {"smb": gridded("float32"), "thickness": gridded("float64"), "surface": gridded("float64")}
    for name in _PER_GLACIER:
        data[name] = glacier("int8" if name in ("disappeared", "failed") else "float64")
    if spread:
        data["smb_spread"] = gridded("float32", ("year",), (len(years),), (1,))
        data["smb_glacier_spread"] = glacier("float64", ("year",), (len(years),))
    ds = xr.Dataset({k: stamp(v, k) for k, v in data.items()}, coords=coords)
    if multi:
        for c in ("thickness_factor", "deltah_factor"):
            ds[c].attrs.update(stamp(ds[c], c).attrs)
        if "forcing_member" in ds.coords:
            ds["forcing_member"].attrs.update({"long_name": "Member of the climate forcing of this member",
                                               "units": "1"})
    ds.attrs.update({"glacgrid_fingerprint": fingerprint, "crs": grid.crs, "transform": list(grid.transform)})
    return cf_dataset(ds, title="glacgrid results: annual surface mass balance and glacier geometry", glaciers=prep.table)


def surface_for_year(dem: xr.DataArray, surfaces: xr.DataArray | None, year: int) -> xr.DataArray:
    """The surface of ``year``: linear in time between the dated ``surfaces`` (dim ``surface_year``),
    held at the first/last one outside their range; the DEM where the dated surfaces have no value."""
    if surfaces is None:
        return dem
    ys = surfaces["surface_year"].values
    if year <= ys[0]:
        z = surfaces.isel(surface_year=0)
    elif year >= ys[-1]:
        z = surfaces.isel(surface_year=-1)
    else:
        j = int(np.searchsorted(ys, year, side="right")) - 1
        w = (year - ys[j]) / (ys[j + 1] - ys[j])
        z = (1.0 - w) * surfaces.isel(surface_year=j) + w * surfaces.isel(surface_year=j + 1)
    return z.drop_vars("surface_year", errors="ignore").fillna(dem).astype("float64")


class _Log:
    """``glacier_log.csv``: rows of committed years only (rows of unfinished years are dropped on start)."""

    def __init__(self, path: Path, table: pd.DataFrame, done_years: set[int]) -> None:
        self.path = path
        self.rgi = table["rgi_id"] if "rgi_id" in table else pd.Series("", index=table.index)
        rows = pd.DataFrame(columns=LOG_COLUMNS)
        if path.exists():
            try:
                rows = pd.read_csv(path, dtype={"rgi_id": str, "reason": str}, keep_default_na=False)
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                rows = pd.DataFrame(columns=LOG_COLUMNS)
            rows = rows[rows["year"].astype(int).isin(done_years)] if len(rows) else rows
        self.rows = rows[LOG_COLUMNS]
        self._write()

    def _write(self) -> None:
        write_csv(self.rows, self.path, index=False)

    def add(self, year: int, index: np.ndarray, reasons: list[np.ndarray]) -> None:
        """The isolated glaciers of ``year``, one reason vector per member; written once per year."""
        new = []
        for member, reason in enumerate(reasons):
            bad = np.flatnonzero(np.asarray(reason, dtype=str) != "")
            if bad.size:
                g = index[bad]
                new.append(pd.DataFrame({"glacier": g, "rgi_id": self.rgi.reindex(g).fillna("").to_numpy(),
                                         "year": year, "member": member,
                                         "reason": np.asarray(reason, dtype=str)[bad]}))
        if not new:
            return
        kept = self.rows[self.rows["year"].astype(int) != year] if len(self.rows) else self.rows
        self.rows = pd.concat([kept, *new], ignore_index=True) if len(kept) else pd.concat(new, ignore_index=True)
        self._write()


def _open_or_create(template: xr.Dataset, store: Path, fp: str) -> None:
    if store.exists():
        try:
            old = cube_mod.open_store(store, chunks=None).attrs.get("glacgrid_fingerprint")
        except StoreError:
            old = None
        init_store(template, store, overwrite=old != fp)
    else:
        init_store(template, store)


def _year_keys(n_years: int) -> list[str]:
    """The sidecar keys of the years of a results store: one region per year (``'year[i:i+1]'``)."""
    return [cube_mod.region_key("year", slice(i, i + 1)) for i in range(n_years)]


def init_store(template: xr.Dataset, store: Path, *, overwrite: bool = False) -> None:
    """Create the results store from ``template`` (kept when it exists with the same schema, see
    :func:`glacgrid.cube.create_template`) and write the member coordinates once.

    Every year of the template (and the member coordinates) is planned with the template, so
    ``open_store(require_complete=True)`` refuses the store until every year is written and marked done:
    a partial run never reads as a finished one with NaN years.
    """
    planned = _year_keys(template.sizes["year"]) + ([cube_mod.STATIC_KEY] if "member" in template.dims else [])
    cube_mod.create_template(template, store, overwrite=overwrite, planned=planned)
    if "member" in template.dims and cube_mod.STATIC_KEY not in cube_mod.completed_regions(store):
        names = [c for c in ("thickness_factor", "deltah_factor", "forcing_member") if c in template.coords]
        cube_mod.write_static(template[names].reset_coords(), store, region_dim="year")
        cube_mod.mark_done(store, cube_mod.STATIC_KEY)


@dataclass(frozen=True, eq=False)
class _Run:
    """What every year of a run shares: the years and their store keys, the members, the glaciers at the
    start, the per-glacier log, and the model inputs of each step."""

    store: Path
    years: np.ndarray
    keys: list
    done: set
    members: list
    glaciers: GlacierGeometry
    has_thickness: np.ndarray
    chunks: dict
    logbook: _Log
    step: dict
    downs: tuple = ()

    @property
    def multi(self) -> bool:
        return len(self.members) > 1

    @property
    def index(self) -> np.ndarray:
        return self.glaciers.index

    def commit(self, i: int, year_ds: xr.Dataset, reasons: list[np.ndarray]) -> None:
        """Write year ``i`` (one region write), mark it done and log its isolated glaciers."""
        self.logbook.add(int(self.years[i]), self.index, reasons)
        out = year_ds.drop_vars([v for v in ("failure_reason", "thickness_factor", "deltah_factor", "forcing_member")
                                 if v in year_ds.variables])
        out = out.expand_dims(year=[int(self.years[i])]).transpose("year", *(["member"] if self.multi else []), ...)
        out = out.chunk({"year": 1, **({"member": 1} if self.multi else {}), **self.chunks})
        cube_mod.write_region(out, self.store, region_dim="year", index=slice(i, i + 1))
        cube_mod.mark_done(self.store, self.keys[i])


def simulate(cfg: RunConfig, prep, model, store: Path, *, advance: Callable[[], None] = lambda: None,
             curves: xr.Dataset | None = None, log: Path | None = None) -> Path:
    """Run the simulation of ``cfg.mode`` into ``store`` (resuming a killed run) and return its path.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration (``mode``, period, model features, downscaling, geometry).
    prep : Prepared
        The prepared run (:func:`glacgrid.pipeline.prepare`): ``grid``, ``down``, ``static``, ``table``,
        ``has_thickness``, ``surfaces``, ``index``.
    model : object
        Fitted SMB model (or ensemble, or artifact path).
    store : Path
        The results store (created, or resumed when it holds years of the same run).
    advance : callable
        Called once per year (progress).
    curves : xr.Dataset, optional
        Glacier-specific delta-h curves (evolve mode).
    log : Path, optional
        The per-glacier log (default ``glacier_log.csv`` beside the store).

    Returns
    -------
    Path
        ``store``.

    Raises
    ------
    LockHeldError
        If another process writes ``store`` (its run lock ``<store>.lock`` is held).

    Notes
    -----
    Every year is planned in the store with its template; until all are written,
    ``open_store(require_complete=True)`` refuses it.
    """
    store = Path(store)
    with cube_mod.store_lock(store, purpose=f"glacgrid run ({cfg.mode})"):
        if store.exists():
            clean_partials(store)  # what a killed run left (the lock is ours)
        run = _open_run(cfg, prep, model, store, log)
        if cfg.mode == "evolve":
            _evolve(run, prep, model, geometry=cfg.geometry, curves=curves, advance=advance)
        else:
            _reconstruct(run, prep, model, advance=advance)
    return run.store


def _open_run(cfg: RunConfig, prep, model, store: Path, log: Path | None) -> _Run:
    """The results store created (or opened to resume) and what the years of the run share."""
    years = np.arange(cfg.period.start, cfg.period.end + 1)
    members = ensemble_members(cfg)
    forced = getattr(prep, "member_down", None)
    if forced is not None:  # forcing members (outer) x thickness x delta-h members
        labels = forced["forcing_member"].values
        forcing_of = np.repeat(labels, len(members))
        downs = tuple(forced.sel(forcing_member=f, drop=True) for f in forcing_of)
        members = members * len(labels)
    else:
        forcing_of, downs = None, (prep.down,) * len(members)
    spread = cfg.mode != "evolve" and bool(getattr(model, "members", None)) and len(members) == 1
    fp = results_fingerprint(cfg, model)
    template = results_template(prep, years, fp, members=members, spread=spread, forcing_members=forcing_of)
    _open_or_create(template, store, fp)
    done = cube_mod.completed_regions(store)
    keys = _year_keys(years.size)
    logbook = _Log(Path(log) if log else store.parent / "glacier_log.csv", prep.table,
                   {int(y) for y, k in zip(years, keys) if k in done})
    s = prep.static
    glaciers = GlacierGeometry(s["glacier_id"], s["surface"].astype("float64"), s["pixel_area"],
                               np.asarray(prep.index), prep.grid, s["thickness"].fillna(0.0).astype("float64"))
    step = dict(features=list(cfg.model.features), downscale=cfg.downscale, hemisphere=cfg.period.hemisphere)
    return _Run(store, years, keys, done, members, glaciers,
                np.asarray(prep.has_thickness, dtype=bool)[1:],  # aligned with index (position 0 unused)
                dict(zip(("y", "x"), prep.grid.chunks)), logbook, step, downs)


def _evolve(run: _Run, prep, model, *, geometry, curves, advance) -> None:
    """The annual loop of every member; each year starts from the states committed to the store."""
    base = run.glaciers
    states = [(base.with_thickness(base.thickness * tf), None) for tf, _ in run.members]
    for i, year in enumerate(run.years):
        if run.keys[i] in run.done:
            if i + 1 == run.years.size or run.keys[i + 1] not in run.done:
                states = _stored_states(run, i)
            advance()
            continue
        parts, reasons = [], []
        for (glaciers, disappeared), (_, df), down in zip(states, run.members, run.downs):
            new, yr = annual_step(glaciers, down, model, year=int(year), geometry=geometry, curves=curves,
                                  has_thickness=run.has_thickness, deltah_factor=df, disappeared=disappeared,
                                  **run.step)
            parts.append(yr.assign(thickness=new.thickness, surface=new.surface).drop_vars("year"))
            reasons.append(yr["failure_reason"].values)
        year_ds = xr.concat(parts, dim="member", coords="minimal") if run.multi else parts[0]
        run.commit(i, year_ds, reasons)
        states = _stored_states(run, i)
        advance()


def _stored_states(run: _Run, i: int) -> list[tuple[GlacierGeometry, np.ndarray]]:
    """The states at the end of year ``i``, read back from the store (what a resumed run starts from):
    per member the glaciers and their ``disappeared`` flags."""
    res = cube_mod.open_store(run.store, chunks=run.chunks).isel(year=i, drop=True)
    out = []
    for m in range(len(run.members)):
        r = res.isel(member=m, drop=True) if run.multi else res
        glaciers = run.glaciers.with_thickness(r["thickness"]).with_surface(r["surface"])
        out.append((glaciers, r["disappeared"].compute().sel(glacier=run.index).values))
    return out


def _reconstruct(run: _Run, prep, model, *, advance) -> None:
    """SMB of every year on the static geometry (checked once) or on the interpolated surfaces."""
    base = run.glaciers
    static = prep.surfaces is None
    active = base.active
    th = area_weighted_mean(base.thickness, base.glacier_id, active, base.pixel_area, run.index)
    # mean thickness over the glacier's pixels x area: the volume of the configured thickness (km3)
    cover = xr.DataArray(run.has_thickness, dims="glacier", coords={"glacier": run.index})
    volume = None
    checked: CheckedGeometry | None = None
    for i, year in enumerate(run.years):
        if run.keys[i] in run.done:
            advance()
            continue
        geom = base if static else base.with_surface(surface_for_year(base.surface, prep.surfaces, int(year)))
        if volume is None:
            const = glacier_constants(base.glacier_id, base.surface, active, base.pixel_area, run.index)
            volume = convert(th * const["area"], "km2 m", "km3").where(cover).compute().values
        if static and checked is None:  # a static geometry is checked once, its constants computed once
            checked = CheckedGeometry.of(geom, constants=True)
        parts = [reconstruct_step(checked if static else geom, down, model, year=int(year), static_volume=volume,
                                  **run.step).assign(thickness=geom.thickness, surface=geom.surface).drop_vars("year")
                 for down in run.downs]  # one per forcing member (a handful)
        if run.multi:
            parts = [p.drop_vars([v for v in ("smb_spread", "smb_glacier_spread") if v in p]) for p in parts]
        year_ds = xr.concat(parts, dim="member", coords="minimal") if run.multi else parts[0]
        run.commit(i, year_ds, [p["failure_reason"].values for p in parts])
        advance()
