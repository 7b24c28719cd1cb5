"""Reconstruction and evolution runs on a glacier domain: every glacier of a region, group by group.

A glacier domain (:mod:`glacgrid.domain`) packs the glacier pixels of a region along one ``pixel``
dimension in fixed-size groups of whole glaciers. Glaciers never interact, so each group is one task
that runs every year of the run on its own pixels: the climate of the cube window its pixels touch is
read once, the bilinear weights are computed once per pixel (:func:`glacgrid.downscale.pixel_weights`),
and every year is downscaling at the pixels -> features and SMB (:func:`glacgrid.inference.pixel_smb`)
-> per-glacier means -> (evolve) the delta-h update (:func:`glacgrid.geometry.deltah_update`), then one
region write of the group's chunk of the results store and a done mark. Groups write disjoint Zarr chunks,
so tasks run in parallel on any dask scheduler (threads, a distributed cluster, or one Slurm array task
per range of groups) and a killed run resumes at the first unfinished (group, year).

The science is that of :func:`glacgrid.simulate.reconstruct_step` / :func:`~glacgrid.simulate.annual_step`
on a raster: same checks and failure reasons (a failing glacier is isolated: its values are NaN and
``failed`` is 1), same kernels, same dtypes.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .. import cube as cube_mod
from ..atomic import clean_partials, locked, write_csv
from ..config import DownscaleParams, GeometryParams
from ..domain import Domain, GroupArrays, open_domain
from ..exceptions import InputDataError
from ..features import ClimateFeatureParams, HydroYear, check_seasonal, hydrological_years, slope_aspect_at
from ..geometry import deltah_update, perturbed_curves
from ..glaciers import CONSTANTS, DERIVED, PIXEL_CHECKS, YEAR_STATIC, check_reasons, pixel_check_terms
from ..inference import assemble_climate, pixel_smb, spec_of, static_at
from ..downscale import pixel_climate, pixel_weights
from ..metadata import cf_dataset, stamp
from ..units import M2_PER_KM2, M3_PER_KM3
from ._step import NAN_REASON

__all__ = ["DomainRun", "simulate_domain", "domain_results_template", "domain_log", "REASONS",
           "domain_glacier_features", "DomainPixels", "domain_pixel_features", "CONSTANTS_OVER", "years_done"]

#: The failure reasons of the ``failure`` code (position = code; 0 = fine).
REASONS = ("", "no pixel on the grid", "no initial ice thickness", *(c.reason for c in PIXEL_CHECKS), NAN_REASON)


@dataclass(frozen=True, eq=False)
class DomainRun:
    """What every group task of a domain run shares (small, picklable).

    Attributes
    ----------
    mode : {"reconstruct", "evolve"}
    years : numpy.ndarray
        The hydrological years.
    features : tuple of str
        The model's features in column order.
    downscale : DownscaleParams
    hemisphere : {"north", "south"}
    geometry : GeometryParams
        Densities and delta-h settings (evolve).
    members : tuple of (float, float)
        ``(thickness_factor, deltah_factor)`` of each evolve member; one ``(1, 1)`` in reconstruct mode.
    year_batch : int
        Reconstruct mode: hydrological years computed (and written) together by a task.
    curves : xarray.Dataset or None
        Glacier-specific delta-h curves on the domain's ``glacier`` coordinate (evolve).
    """

    mode: str
    years: np.ndarray
    features: tuple[str, ...]
    downscale: DownscaleParams = field(default_factory=DownscaleParams)
    hemisphere: str = "north"
    geometry: GeometryParams = field(default_factory=GeometryParams)
    members: tuple = ((1.0, 1.0),)
    year_batch: int = 4
    curves: xr.Dataset | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("reconstruct", "evolve"):
            raise InputDataError(f"mode must be 'reconstruct' or 'evolve'; got {self.mode!r}.")
        object.__setattr__(self, "years", np.asarray(self.years, dtype="int64"))
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "members", tuple(tuple(float(v) for v in m) for m in self.members))

    @property
    def multi(self) -> bool:
        return len(self.members) > 1


# --------------------------------------------------------------------------- the results store
def domain_results_template(domain: Domain, run: DomainRun, fingerprint: str, *, spread: bool = False) -> xr.Dataset:
    """The (lazy, all-zero) template of a domain results store: ``(year, [member,] pixel)`` and
    ``(year, [member,] glacier)``, one Zarr chunk per group along ``pixel`` and ``glacier``."""
    ny, npx, ngl = run.years.size, domain.pixels.sizes["pixel"], domain.glaciers.sizes["glacier"]
    C, G = domain.group_pixels, domain.group_glaciers
    lead, lead_chunks, lead_dims = (ny,), (1,), ("year",)
    coords = {"year": run.years, "glacier": domain.glaciers["glacier"].values}
    if run.multi:
        lead, lead_chunks, lead_dims = (ny, len(run.members)), (1, 1), ("year", "member")
        coords["member"] = np.arange(len(run.members))
        coords["thickness_factor"] = ("member", np.array([m[0] for m in run.members]))
        coords["deltah_factor"] = ("member", np.array([m[1] for m in run.members]))

    def arr(dtype, dim, size, chunk, dims=lead_dims, shape=lead, chunks=lead_chunks):
        return xr.DataArray(dsa.zeros((*shape, size), chunks=(*chunks, chunk), dtype=dtype), dims=(*dims, dim))

    data = {"smb": arr("float32", "pixel", npx, C)}
    if run.mode == "evolve":  # the state a resumed run starts from (float64: mass conserved across years)
        data["thickness"] = arr("float64", "pixel", npx, C)
        data["surface"] = arr("float64", "pixel", npx, C)
    for name in ("smb_glacier", "glacier_area", "volume", "mean_elevation"):
        data[name] = arr("float64", "glacier", ngl, G)
    data["disappeared"] = arr("int8", "glacier", ngl, G)
    data["failed"] = arr("int8", "glacier", ngl, G)
    data["failure"] = arr("int8", "glacier", ngl, G)
    if spread:
        data["smb_spread"] = arr("float32", "pixel", npx, C, ("year",), (ny,), (1,))
        data["smb_glacier_spread"] = arr("float64", "glacier", ngl, G, ("year",), (ny,), (1,))
    ds = xr.Dataset({k: stamp(v, k) if k != "failure" else v for k, v in data.items()}, coords=coords)
    for name in ds.data_vars:  # written every year, read by the next year of an evolving run
        if "pixel" in ds[name].dims:
            ds[name].encoding["compressors"] = cube_mod.fast_compressors()
    ds["failure"].attrs.update(long_name="Why the glacier was isolated (index into failure_reasons; 0 = fine)",
                               units="1")
    ds.attrs.update(glacgrid_fingerprint=fingerprint, glacgrid_domain=str(domain.path), mode=run.mode,
                    failure_reasons=json.dumps(REASONS), group_pixels=C, group_glaciers=G)
    return cf_dataset(ds, title="glacgrid domain results (packed glacier pixels)", glaciers=domain.table,
                      year_start_month=HydroYear(run.hemisphere).first_month)


def _key(k: int, i0: int, i1: int) -> str:
    return f"group[{k}]:year[{i0}:{i1}]"


_KEY = re.compile(r"group\[(\d+)\]:year\[(\d+):(\d+)\]")


def years_done(store: str | Path, n_groups: int) -> np.ndarray:
    """Per group of a domain results store, how many of its years are written and marked done."""
    done = np.zeros(n_groups, dtype="int64")
    for key in cube_mod.completed_regions(store):
        m = _KEY.fullmatch(key)
        if m and int(m.group(1)) < n_groups:
            done[int(m.group(1))] += int(m.group(3)) - int(m.group(2))
    return done


def _group_keys(run: DomainRun, k: int) -> list[str]:
    """The sidecar keys group ``k`` writes: one per year (evolve) or per batch of ``year_batch`` years."""
    step = 1 if run.mode == "evolve" else run.year_batch
    n = run.years.size
    return [_key(k, i0, min(i0 + step, n)) for i0 in range(0, n, step)]


def _open_store(domain: Domain, run: DomainRun, store: Path, fingerprint: str, spread: bool) -> None:
    """Create the template (or keep it when it holds the same run), under a lock: array tasks start at once.
    Every group's years are planned with the template: the store is complete when all are written."""
    template = domain_results_template(domain, run, fingerprint, spread=spread)
    store.parent.mkdir(parents=True, exist_ok=True)
    with locked(store.parent / f".{store.name}.lock"):
        overwrite = False
        if store.exists():
            try:
                overwrite = cube_mod.open_store(store, chunks=None).attrs.get("glacgrid_fingerprint") != fingerprint
            except Exception:  # noqa: BLE001 - a damaged store is rewritten
                overwrite = True
        planned = [key for k in range(domain.n_groups) for key in _group_keys(run, k)]
        cube_mod.create_template(template, store, overwrite=overwrite, planned=planned)


# --------------------------------------------------------------------------- one group
@dataclass(frozen=True, eq=False)
class _Climate:
    """The cube window of a group: hydrological-year months of every year, and the orography."""

    t2m: np.ndarray   # (year, 12, lat, lon)
    tp: np.ndarray
    orog: np.ndarray  # (lat, lon)
    days: np.ndarray  # (year, 12)


def _climate(cube: xr.Dataset, weights, run: DomainRun) -> _Climate:
    """The hydrological years of the run in the window of ``weights`` (read from the cube)."""
    win = cube[["t2m", "tp", "orog"]].isel(lat=weights.lat_window, lon=weights.lon_window)
    return _hydro_years(win, run)


def _hydro_years(cube: xr.Dataset, run: DomainRun) -> _Climate:
    hy, days = hydrological_years(cube[["t2m", "tp"]], int(run.years[0]), int(run.years[-1]),
                                  hydro=HydroYear(run.hemisphere))
    hy = hy.transpose("year", "month", "lat", "lon").compute()
    return _Climate(np.asarray(hy["t2m"].values, dtype="float32"), np.asarray(hy["tp"].values, dtype="float32"),
                    np.asarray(cube["orog"].values, dtype="float32"), np.asarray(days.values, dtype="float64"))


#: Cubes up to this size (bytes of the run's months) are read once per process and shared by its group tasks.
CUBE_CACHE_BYTES = 512 * 2**20
_CUBES: dict = {}
_CUBES_LOCK = threading.Lock()


def _group_climate(cube_path: str, cube: xr.Dataset, weights, run: DomainRun) -> _Climate:
    """The window of a group: sliced from the whole cube read once per process when it is small (a region's
    cube), else read from the store for this group only (a global cube)."""
    months = 12 * run.years.size * cube.sizes["lat"] * cube.sizes["lon"] * 8
    if months > CUBE_CACHE_BYTES:
        return _climate(cube, weights, run)
    stamp_ = tuple(os.stat(p).st_mtime_ns for p in (Path(cube_path) / "zarr.json",) if p.exists())
    key = (str(Path(cube_path).resolve()), stamp_, int(run.years[0]), int(run.years[-1]), run.hemisphere)
    with _CUBES_LOCK:
        whole = _CUBES.get(key)
        if whole is None:
            whole = _CUBES[key] = _hydro_years(cube[["t2m", "tp", "orog"]], run)
            while len(_CUBES) > 2:
                _CUBES.pop(next(iter(_CUBES)))
    la, lo = weights.lat_window, weights.lon_window
    return _Climate(np.ascontiguousarray(whole.t2m[:, :, la, lo]), np.ascontiguousarray(whole.tp[:, :, la, lo]),
                    np.ascontiguousarray(whole.orog[la, lo]), whole.days)


def _segments(g: GroupArrays, n: int):
    """Local glacier position (0..G-1) of each real pixel."""
    return (g.glacier_id[:n].astype("int64") - int(g.glacier[0]))


def _sums(pos: np.ndarray, values: np.ndarray, G: int) -> np.ndarray:
    return np.bincount(pos, weights=values, minlength=G)[:G]


def _weighted_mean(pos, values, area, mask, G):
    """Area-weighted mean of ``values`` over ``mask`` per glacier (NaN values do not count; NaN when none)."""
    ok = mask & np.isfinite(values)
    w = np.where(ok, area, 0.0)
    s = _sums(pos, np.where(ok, values, 0.0).astype("float64") * w, G)
    a = _sums(pos, w, G)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(a > 0, s / a, np.nan)


def _extreme(pos, values, mask, G, fn, fill):
    out = np.full(G, fill)
    sel = mask & np.isfinite(values)
    fn.at(out, pos[sel], values[sel])
    return out


def _constants(pos: np.ndarray, G: int, area: np.ndarray, z: np.ndarray, active: np.ndarray, features,
               slope: np.ndarray | None = None) -> dict:
    """Glacier constants over the active pixels (area km2, max/min elevation, the slope of the lowest 20 %)
    of ``G`` glaciers, the pixels' positions ``pos`` among them (only the ones ``features`` need)."""
    need = set(features)
    if not need & (set(CONSTANTS) | {"elevation_norm", "cpdd_low"}):
        return {}
    const = {"area": _sums(pos, np.where(active, area, 0.0), G) / M2_PER_KM2,
             "max_elevation": _extreme(pos, z, active, G, np.fmax, np.nan),
             "min_elevation": _extreme(pos, z, active, G, np.fmin, np.nan)}
    if "slope_lower20" in need and slope is not None:
        zmin, zmax = const["min_elevation"], const["max_elevation"]
        thr = (zmin + 0.2 * (zmax - zmin))[pos]
        const["slope_lower20"] = _weighted_mean(pos, slope.astype("float64"), area, active & (z <= thr), G)
    return const


def _slope_aspect(g: GroupArrays, n: int, surface: np.ndarray, evolve: bool) -> np.ndarray:
    """(n, 3) slope/aspect: the stored values (static surface), else from the current surface and the
    stored neighbours (the same neighbours the dense halo gives)."""
    if not evolve:
        return np.stack([g.slope[:n], g.aspect_cos[:n], g.aspect_sin[:n]], axis=1).astype("float32")
    nb = g.neighbours[:n]
    zn = np.where(nb >= 0, surface[np.clip(nb, 0, None)], g.neighbour_surface[:n])
    return slope_aspect_at(zn[:, 0], zn[:, 1], zn[:, 2], zn[:, 3], g.dx[:n], g.dy[:n])


def _downscaled(run: DomainRun, clim: _Climate, weights, ysel: slice, ref: np.ndarray):
    """The climate of the years ``ysel`` at the pixels (:class:`~glacgrid.downscale.PixelClimate`: the cube
    window and the per-pixel terms; each pixel-month is interpolated where the features use it)."""
    return pixel_climate(clim.t2m[ysel], clim.tp[ysel], clim.orog, weights, ref, run.downscale)


def _static(run: DomainRun, g: GroupArrays, n: int, pos, surface: np.ndarray, active: np.ndarray, evolve: bool,
            ref: np.ndarray):
    """What the features need besides the climate on ``surface``: the spec, the static features and the
    lapse-rate correction from ``ref`` to the surface."""
    sa = _slope_aspect(g, n, surface, evolve)
    const = _constants(pos, g.glacier.size, g.pixel_area[:n], surface, active, run.features, sa[:, 0])
    spec = spec_of(run.features, const, g.glacier, run.downscale, run.hemisphere)
    static = static_at(spec, surface, g.glacier_id[:n], g.lon[:n], g.lat[:n], sa)
    return spec, static, spec.lapse_rate * (surface - ref).astype("float32")


def _smb(model, g: GroupArrays, n: int, climate, days, part, active: np.ndarray) -> np.ndarray:
    """Pixel SMB ``(member_of_model, year, n)`` (NaN off ``active``)."""
    spec, static, corr = part
    key = g.k * g.glacier_id.size + np.arange(n, dtype="int64")  # the global pixel position
    each = pixel_smb(model, climate, days, corr, static, spec, key=key)
    each[..., ~active] = np.nan
    return each


def _checks(g: GroupArrays, n: int, pos: np.ndarray, thickness, surface, need_thickness: bool, has_thickness=None):
    """The dense checks (:func:`glacgrid.glaciers.glacier_checks`: the same pixel terms and reasons) on the
    group's packed pixels, summed with bincount: reasons per glacier slot and ice area (m2)."""
    G = g.glacier.size
    gid = g.glacier_id[:n]
    a = g.pixel_area[:n]
    terms = pixel_check_terms(gid, thickness, surface, a, need_thickness=need_thickness)
    counts = {k: _sums(pos, np.asarray(v, dtype="float64"), G) for k, v in terms.items()}
    ice = a * (thickness > 0) if need_thickness else a
    reason = check_reasons(counts, need_thickness=need_thickness, has_thickness=has_thickness)
    return reason, _sums(pos, np.asarray(ice, dtype="float64"), G)


def _codes(reason: np.ndarray) -> np.ndarray:
    """The ``failure`` code of each glacier's reason (a loop over the few reasons, not the glaciers)."""
    codes = np.zeros(np.shape(reason), dtype="int8")
    for code, text in enumerate(REASONS[1:], start=1):
        codes[reason == text] = code
    return codes


@dataclass(frozen=True, eq=False)
class _Task:
    """One group's work: everything a worker needs to run it (picklable)."""

    domain: str
    cube: str
    store: str
    model: object
    run: DomainRun
    done: frozenset


def _write(task: _Task, k: int, i0: int, i1: int, pixel: dict, glacier: dict, domain: Domain) -> None:
    """Years ``i0:i1`` of group ``k``: its own chunks of the template (zarr, no dask graph, every array at
    once), then the mark."""
    ps, gs = domain.pixel_slice(k), domain.glacier_slice(k)
    cube_mod.write_arrays(task.store, {name: ((slice(i0, i1), Ellipsis, where), values)
                                       for names, where in ((pixel, ps), (glacier, gs)) for name, values in names.items()})
    cube_mod.mark_done(task.store, _key(k, i0, i1))


def _pad(values: np.ndarray, size: int, fill) -> np.ndarray:
    out = np.full(values.shape[:-1] + (size,), fill, dtype=values.dtype)
    out[..., : values.shape[-1]] = values
    return out


_NEIGHBOURS = ("neighbours", "neighbour_surface", "dx", "dy")


def _run_group(task: _Task, k: int) -> dict:
    """Every year of group ``k`` (resuming after its last done year); returns a small summary."""
    domain = open_domain(task.domain)
    run = task.run
    # (the window positions are for rasterising; the neighbours only for slopes of a surface that changed,
    # read by an evolving run once it has one)
    g = domain.group(k, skip=("row", "col") + _NEIGHBOURS)
    n = g.n_real_pixels
    if n == 0:  # nothing to write: its planned years are complete
        for key in _group_keys(run, k):
            cube_mod.mark_done(task.store, key)
        return {"group": k, "pixels": 0, "years": 0}
    cube = cube_mod.open_store(task.cube)
    weights = pixel_weights(cube["lat"].values, cube["lon"].values, g.lat[:n], g.lon[:n])
    clim = _group_climate(task.cube, cube, weights, run)
    if run.mode == "evolve":
        years = _evolve_group(task, domain, g, n, clim, weights)
    else:
        years = _reconstruct_group(task, domain, g, n, clim, weights)
    return {"group": k, "pixels": n, "years": years}


def _reconstruct_group(task: _Task, domain: Domain, g: GroupArrays, n: int, clim: _Climate, weights) -> int:
    run = task.run
    C, G = domain.group_pixels, domain.group_glaciers
    pos = _segments(g, n)
    z = g.surface[:n].astype("float64")
    h = np.nan_to_num(g.thickness[:n].astype("float64"))
    a = g.pixel_area[:n]
    reason, area_m2 = _checks(g, n, pos, h, z, need_thickness=False)
    ok = reason == ""
    okpix = ok[pos]
    zmean = _weighted_mean(pos, z, a, okpix, G)
    volume = np.where(g.has_thickness, _sums(pos, h * a, G) / M3_PER_KM3, np.nan)
    volume[g.n_pixels == 0] = np.nan
    ref = z.astype("float32")
    real = g.rgi_id != ""  # (padding slots are not glaciers: never "failed")
    part = None
    done_years = 0
    for i0 in range(0, run.years.size, run.year_batch):
        i1 = min(i0 + run.year_batch, run.years.size)
        if _key(g.k, i0, i1) in task.done:
            continue
        part = part or _static(run, g, n, pos, z, okpix, False, ref)  # a static geometry: once
        each = _smb(task.model, g, n, _downscaled(run, clim, weights, slice(i0, i1), ref), clim.days[i0:i1], part,
                    okpix)
        ny = i1 - i0
        smb = each.mean(axis=0) if each.shape[0] > 1 else each[0]
        rs = np.tile(reason, (ny, 1))
        gl_each = np.stack([[_weighted_mean(pos, each[m, y], a, okpix, G) for y in range(ny)]
                            for m in range(each.shape[0])])  # (member, year, G)
        nan_fail = ((np.isnan(smb) & okpix).astype("int64"))
        for y in range(ny):
            bad = _sums(pos, nan_fail[y].astype("float64"), G) > 0
            rs[y][ok & bad] = NAN_REASON
        failed = (rs != "") & real
        smb_gl = gl_each.mean(axis=0) if each.shape[0] > 1 else gl_each[0]
        pixel = {"smb": _pad(np.where(~failed[:, pos], smb, np.nan).astype("float32"), C, np.float32(np.nan))}
        glacier = {"smb_glacier": np.where(failed, np.nan, smb_gl),
                   "glacier_area": np.where(failed, np.nan, np.tile(area_m2 / M2_PER_KM2, (ny, 1))),
                   "volume": np.where(failed, np.nan, np.tile(volume, (ny, 1))),
                   "mean_elevation": np.where(failed, np.nan, np.tile(zmean, (ny, 1))),
                   "disappeared": np.zeros((ny, G), dtype="int8"),
                   "failed": failed.astype("int8"),
                   "failure": np.stack([_codes(r) * real for r in rs])}
        if each.shape[0] > 1:
            pixel["smb_spread"] = _pad(np.where(~failed[:, pos], each.std(axis=0), np.nan).astype("float32"), C,
                                       np.float32(np.nan))
            glacier["smb_glacier_spread"] = np.where(failed, np.nan, gl_each.std(axis=0))
        _write(task, g.k, i0, i1, pixel, glacier, domain)
        done_years += ny
    return done_years


def _evolve_group(task: _Task, domain: Domain, g: GroupArrays, n: int, clim: _Climate, weights) -> int:
    run = task.run
    C, G = domain.group_pixels, domain.group_glaciers
    pos = _segments(g, n)
    a = g.pixel_area[:n]
    z0 = g.surface[:n].astype("float64")
    h0 = np.nan_to_num(g.thickness[:n].astype("float64"))
    ref = z0.astype("float32")
    states = [(h0 * tf, z0.copy(), np.zeros(G, dtype=bool)) for tf, _ in run.members]
    keys = [_key(g.k, i, i + 1) for i in range(run.years.size)]
    first = 0
    while first < len(keys) and keys[first] in task.done:
        first += 1
    if first:  # resume: the state at the end of the last done year, read back from the store
        states = _stored_group_states(task, domain, g.k, first - 1, n)
    for i in range(first, run.years.size):
        climate = _downscaled(run, clim, weights, slice(i, i + 1), ref)  # the same for every member
        initial = i == 0  # the stored surface: its stored slope and aspect hold
        if not initial and g.neighbours.size == 0:
            g = domain.with_pixels(g, _NEIGHBOURS)
        parts = []
        for (h, z, gone), (_, df) in zip(states, run.members):
            parts.append(_evolve_year(task, g, n, pos, a, climate, clim.days[i:i + 1], h, z, gone, df, ref,
                                      initial))
        states = [(p["h"], p["z"], p["gone"]) for p in parts]
        stack = (lambda f: np.stack([f(p) for p in parts])[None]) if run.multi else (lambda f: f(parts[0])[None])
        pixel = {"smb": stack(lambda p: _pad(p["smb"], C, np.float32(np.nan))),
                 "thickness": stack(lambda p: _pad(p["h"], C, 0.0)),
                 "surface": stack(lambda p: _pad(p["z"], C, np.nan))}
        glacier = {name: stack(lambda p, name=name: p["glacier"][name]) for name in parts[0]["glacier"]}
        _write(task, g.k, i, i + 1, pixel, glacier, domain)
    return run.years.size - first


def _evolve_year(task, g, n, pos, a, climate, days, h, z, gone, deltah_factor, ref, initial: bool) -> dict:
    """One evolution year of one member on the group (the science of :func:`annual_step`); ``initial``: the
    surface is the stored one (the first year), whose stored slope and aspect are used."""
    run = task.run
    G = g.glacier.size
    ids = g.glacier
    reason, ice_area = _checks(g, n, pos, h, z, need_thickness=True, has_thickness=g.has_thickness)
    reason[gone] = ""
    ok = (reason == "") & ~gone
    active = ok[pos] & (h > 0)
    each = _smb(task.model, g, n, climate, days, _static(run, g, n, pos, z, active, not initial, ref), active)
    smb_pix = each.mean(axis=0)[0] if each.shape[0] > 1 else each[0, 0]
    smb_gl = _weighted_mean(pos, smb_pix.astype("float64"), a, active, G)
    nan_fail = _sums(pos, (np.isnan(smb_pix) & active).astype("float64"), G) > 0
    reason[ok & nan_fail] = NAN_REASON
    ok &= ~nan_fail
    okpix = ok[pos]
    listed = ids[ok]
    h_new, z_new = h.copy(), z.copy()
    area, volume, gone_now = np.zeros(G), np.zeros(G), gone.copy()
    if listed.size:
        sel = np.flatnonzero(okpix)
        state = xr.Dataset({"glacier_id": (("y", "x"), g.glacier_id[:n][sel][None]),
                            "thickness": (("y", "x"), h[sel][None]), "surface": (("y", "x"), z[sel][None]),
                            "pixel_area": (("y", "x"), a[sel][None])})
        smb_vec = xr.DataArray(np.nan_to_num(smb_gl[ok]), dims="glacier", coords={"glacier": listed},
                               attrs={"units": "m"})
        curves = perturbed_curves(ice_area[ok], listed, deltah_factor, run.curves)
        new, report = deltah_update(state, smb_vec, rho_ice=run.geometry.rho_ice, rho_water=run.geometry.rho_water,
                                    curves=curves)
        h_new[sel] = new["thickness"].values[0]
        z_new[sel] = new["surface"].values[0]
        area[ok] = report["glacier_area"].values
        volume[ok] = report["volume"].values
        gone_now[ok] = report["disappeared"].values.astype(bool)
    zmean = _weighted_mean(pos, z_new, a, okpix & (h_new > 0), G)
    real = g.rgi_id != ""  # (padding slots are not glaciers: never "failed")
    failed = (reason != "") & real
    smb_out = np.where(okpix, smb_pix, np.nan).astype("float32")
    glacier = {"smb_glacier": np.where(failed | gone, np.nan, smb_gl),
               "glacier_area": np.where(failed, np.nan, area), "volume": np.where(failed, np.nan, volume),
               "mean_elevation": np.where(failed, np.nan, zmean), "disappeared": gone_now.astype("int8"),
               "failed": failed.astype("int8"), "failure": _codes(reason) * real}
    return {"h": h_new, "z": z_new, "gone": gone_now, "smb": smb_out, "glacier": glacier}


def _stored_group_states(task: _Task, domain: Domain, k: int, i: int, n: int):
    res = cube_mod.open_store(task.store, chunks=None).isel(year=i)
    ps, gs = domain.pixel_slice(k), domain.glacier_slice(k)
    out = []
    for m in range(len(task.run.members)):
        r = res.isel(member=m) if task.run.multi else res
        h = np.asarray(r["thickness"][ps].values, dtype="float64")[:n]
        z = np.asarray(r["surface"][ps].values, dtype="float64")[:n]
        gone = np.asarray(r["disappeared"][gs].values).astype(bool)
        out.append((h, z, gone))
    return out


# --------------------------------------------------------------------------- the run
def simulate_domain(domain: Domain | str | Path, cube: str | Path, model, store: str | Path, run: DomainRun, *,
                    fingerprint: str = "", groups: Sequence[int] | None = None, spread: bool | None = None,
                    progress: Callable[[dict], None] = lambda summary: None) -> Path:
    """Run ``run`` on every glacier of ``domain`` (or of the ``groups`` given) into ``store``.

    Parameters
    ----------
    domain : Domain or path
        The glacier domain (:func:`glacgrid.domain.open_domain`).
    cube : path
        The climate cube store (``t2m`` K, ``tp`` kg m-2 per month on ``(time, lat, lon)``, ``orog`` m).
    model : fitted model or artifact directory
        A directory is loaded once per worker process.
    store : path
        The results store: created from :func:`domain_results_template`, or resumed when it holds the
        same run (same ``fingerprint``).
    run : DomainRun
    fingerprint : str
        A hash of what determines the results; a store with another one is rewritten.
    groups : sequence of int, optional
        Only these groups (a Slurm array task); default all.
    spread : bool, optional
        Write the spread of an ensemble model's members (reconstruct); default: when the model has members.
    progress : callable
        Called with each finished group's summary.

    Returns
    -------
    Path
        ``store``.

    Raises
    ------
    LockHeldError
        If another process writes ``store``: a whole run (``groups`` None) holds its run lock
        (``<store>.lock``) exclusively, the tasks of a Slurm array (``groups`` given) share it.

    Notes
    -----
    Every group's years are planned with the template; ``open_store(require_complete=True)`` refuses
    the store until all are written.
    """
    dom = domain if isinstance(domain, Domain) else open_domain(domain)
    store = Path(store)
    if spread is None:
        spread = run.mode == "reconstruct" and _is_ensemble(model)
    whole = groups is None
    with cube_mod.store_lock(store, purpose="glacgrid domain run" + ("" if whole else " (array task)"),
                             shared=not whole):
        if whole and store.exists():
            clean_partials(store)  # what a killed run left (no other writer: the lock is exclusive)
        return _simulate_domain(dom, cube, model, store, run, fingerprint, groups, spread, progress)


def _simulate_domain(dom: Domain, cube, model, store: Path, run: DomainRun, fingerprint: str, groups, spread: bool,
                     progress) -> Path:
    """:func:`simulate_domain` under the store's run lock."""
    _open_store(dom, run, store, fingerprint, spread)
    done = frozenset(cube_mod.completed_regions(store))
    todo = list(range(dom.n_groups)) if groups is None else [int(k) for k in groups]
    bad = [k for k in todo if not 0 <= k < dom.n_groups]
    if bad:
        raise InputDataError(f"Groups {bad} are not in the domain (0..{dom.n_groups - 1}).")
    task = _Task(str(dom.path), str(Path(cube)), str(store), model, run, done)
    tasks = [dask.delayed(_run_group, pure=False)(task, k, dask_key_name=f"domain-group-{k}-{store.name}")
             for k in todo]
    for summary in dask.compute(*tasks):
        progress(summary)
    return store


def _is_ensemble(model) -> bool:
    """Whether ``model`` (a fitted model or an artifact directory) is an ensemble (it then has a spread)."""
    if isinstance(model, (str, Path)):
        from ..models.schema import read_model_json

        return read_model_json(Path(model)).get("kind") == "ensemble"
    return bool(getattr(model, "members", None))


def domain_log(store: str | Path, domain: Domain, path: str | Path) -> pd.DataFrame:
    """``glacier_log.csv`` of a domain run: one row per isolated glacier, year (and member), with its reason."""
    res = cube_mod.open_store(store, chunks=None)
    reasons = json.loads(res.attrs.get("failure_reasons", json.dumps(REASONS)))
    codes = res["failure"]
    table = domain.table
    df = codes.to_dataframe(name="code").reset_index()
    df = df[df["code"] > 0]
    df = df[df["glacier"].isin(table.index)]
    out = pd.DataFrame({"glacier": df["glacier"].to_numpy(),
                        "rgi_id": table.loc[df["glacier"].to_numpy(), "rgi_id"].astype(str).to_numpy(),
                        "year": df["year"].to_numpy(),
                        "member": df["member"].to_numpy() if "member" in df else 0,
                        "reason": np.asarray(reasons, dtype=object)[df["code"].to_numpy()]})
    write_csv(out, path, index=False)
    return out


#: The features whose values depend on the glacier constants (:data:`glacgrid.glaciers.CONSTANTS`, the
#: elevation range): they differ between an observation unit of several outlines and each of its outlines.
_CONSTANT_FEATURES = frozenset((*CONSTANTS, *DERIVED, "cpdd_low"))
#: What the glacier constants of :func:`domain_pixel_features` are taken over.
CONSTANTS_OVER = ("glacier", "unit")


@dataclass(frozen=True, eq=False)
class DomainPixels:
    """The pixel features of the observed glaciers of a domain, years by pixels (:func:`domain_pixel_features`).

    Attributes
    ----------
    X : numpy.ndarray
        Shape ``(n_years * n_pixels, n_features)``, float64: row ``i * n_pixels + p`` is pixel ``p`` in
        ``years[i]``, columns in the order of ``features``.
    years : numpy.ndarray
        The hydrological years (sorted, int64).
    features : tuple of str
        The feature columns.
    unit_of_pixel : numpy.ndarray
        Observation unit of each pixel (1-based, int64).
    glacier_of_pixel : numpy.ndarray
        Glacier slot of each pixel (the domain's ``glacier_id``, int64).
    z : numpy.ndarray
        Surface elevation (m, float64).
    pixel_area : numpy.ndarray
        Pixel area (m2, float64).
    lon, lat : numpy.ndarray
        Pixel centre (degrees, float64).
    pixel : numpy.ndarray
        Position of each pixel on the domain's ``pixel`` dimension (int64).
    constants : {"glacier", "unit"}
        What the glacier constants (and ``elevation_norm``, ``cpdd_low``) were taken over.
    period : {"annual", "winter", "summer"}
        The part of the hydrological year the features are of (:func:`domain_pixel_features`).
    fraction : float
        The period's share of the year's months (1 for ``annual``).
    """

    X: np.ndarray
    years: np.ndarray
    features: tuple[str, ...]
    unit_of_pixel: np.ndarray
    glacier_of_pixel: np.ndarray
    z: np.ndarray
    pixel_area: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    pixel: np.ndarray
    constants: str = "glacier"
    period: str = "annual"
    fraction: float = 1.0

    @property
    def n_pixels(self) -> int:
        """Number of pixels (columns of a year's block of ``X``)."""
        return int(self.pixel.size)


def _unit_pixels(domain: Domain, units: np.ndarray) -> np.ndarray:
    """Domain positions of the pixels of every glacier slot with a unit (``units > 0``), slot by slot."""
    slots = np.flatnonzero(units > 0)
    first = domain.glaciers["first_pixel"].values[slots].astype("int64")
    count = domain.glaciers["n_pixels"].values[slots].astype("int64")
    keep = count > 0
    first, count = first[keep], count[keep]
    return np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())


def _pixel_features(domain: Domain, idx: np.ndarray, units: np.ndarray, cube: xr.Dataset, run: DomainRun,
                    years: np.ndarray, constants: str, period: str = "annual") -> DomainPixels:
    """:func:`domain_pixel_features` of the domain pixels ``idx``."""
    params = ClimateFeatureParams(HydroYear(run.hemisphere), period=period)
    within = params.within()
    px = domain.pixels.isel(pixel=idx).compute()
    n = idx.size
    gid = px["glacier_id"].values.astype("int64")
    unit_of_pixel = units[gid - 1]
    z = px["surface"].values.astype("float64")
    a = px["pixel_area"].values.astype("float64")
    lon, lat = px["lon"].values, px["lat"].values
    sa = np.stack([px["slope"].values, px["aspect_cos"].values, px["aspect_sin"].values], axis=1).astype("float32")
    key, G = (unit_of_pixel, int(units.max())) if constants == "unit" else (gid, units.size)
    const = _constants(key - 1, G, a, z, np.ones(n, dtype=bool), run.features, sa[:, 0])
    spec = spec_of(run.features, const, np.arange(1, G + 1), run.downscale, run.hemisphere)
    static = static_at(spec, z, key, lon, lat, sa)
    if within is not None:  # a season: its year-static features carry its share of the year (season_features)
        share = np.float32(params.fraction)
        static = {f: (v * share).astype("float32") if f in YEAR_STATIC and f in run.features else v
                  for f, v in static.items()}
    weights = pixel_weights(cube["lat"].values, cube["lon"].values, lat, lon)
    sub = DomainRun(run.mode, years, run.features, run.downscale, run.hemisphere)
    clim = _climate(cube, weights, sub)
    corr = spec.lapse_rate * (z - z.astype("float32")).astype("float32")
    climate = pixel_climate(clim.t2m, clim.tp, clim.orog, weights, z.astype("float32"), run.downscale)
    season = {} if within is None else {"within": within}  # (the numpy pass of inference sums a season)
    X, _ = assemble_climate(spec, climate, clim.days, corr, static, **season)
    return DomainPixels(np.asarray(X, dtype="float64").reshape(years.size * n, len(run.features)), years,
                        run.features, unit_of_pixel, gid, z, a, np.asarray(lon, "float64"),
                        np.asarray(lat, "float64"), idx.astype("int64"), constants, period, float(params.fraction))


def domain_pixel_features(domain: Domain, cube: xr.Dataset, units: np.ndarray, run: DomainRun,
                          years: Sequence[int], *, constants: str = "glacier", period: str = "annual") -> DomainPixels:
    """The features of every pixel of the observed glaciers of a domain, built with the inference kernels.

    The values the model sees at those pixels in a reconstruction run (static geometry, every glacier pixel
    active): the pixel feature matrix of joint training (:func:`glacgrid.pipeline.footprints_from_pixels`)
    and, averaged per unit, the training table (:func:`domain_glacier_features`).

    Parameters
    ----------
    domain : Domain
        The glacier domain.
    cube : xarray.Dataset
        The climate cube (``t2m``, ``tp``, ``orog``).
    units : numpy.ndarray
        Per domain glacier slot (aligned with ``domain.glaciers["glacier"]``), the observation unit it
        belongs to (1..U; 0 = none).
    run : DomainRun
        The features, downscaling and hemisphere.
    years : sequence of int
        The hydrological years.
    constants : {"glacier", "unit"}
        What the glacier constants (area, elevation range, ...; and with them ``elevation_norm`` and
        ``cpdd_low``) are taken over: each glacier slot, as the inference of a run does (default), or each
        unit (a unit of several outlines, e.g. divides, is one glacier), as the training table does.
    period : {"annual", "winter", "summer"}
        The features of the hydrological year, or of a season for seasonal balances
        (:class:`glacgrid.features.ClimateFeatureParams`): every sum over months (climate, products,
        snow bucket) taken over the season's months only, every year-static feature times the season's
        share of the year (as :func:`glacgrid.features.season_features` does).

    Returns
    -------
    DomainPixels
        The pixels of the units' glaciers, slot by slot in domain order.

    Raises
    ------
    InputDataError
        If ``constants`` or ``period`` is unknown, a season is asked of features that have no seasonal part
        (neither sums over months nor year-static), or no glacier of a unit has a pixel.
    """
    if constants not in CONSTANTS_OVER:
        raise InputDataError(f"constants must be one of {list(CONSTANTS_OVER)}; got {constants!r}.")
    ClimateFeatureParams(period=period)  # (an unknown period is refused there)
    if period != "annual":
        check_seasonal(run.features)
    units = np.asarray(units, dtype="int64")
    idx = _unit_pixels(domain, units)
    if idx.size == 0:
        raise InputDataError(f"None of the {int((units > 0).sum())} glacier slot(s) of the observation units has a "
                             "pixel in the domain; check the domain's glaciers and [observations] links.")
    return _pixel_features(domain, idx, units, cube, run, np.asarray(sorted(int(y) for y in years), dtype="int64"),
                           constants, period)


def _by_unit(domain: Domain, cube: xr.Dataset, units: np.ndarray, run: DomainRun, px: DomainPixels) -> np.ndarray:
    """The rows of ``px.X`` with the constants of each unit: ``px.X`` itself unless some features depend on the
    constants and some unit has several outlines; then those units' pixels are built again over the unit."""
    if px.period != "annual":
        raise InputDataError(f"The training table is of annual features; got the {px.period} pixel features.")
    if px.constants == "unit" or not _CONSTANT_FEATURES & set(run.features):
        return px.X
    outlines = np.bincount(units[units > 0], minlength=int(units.max()) + 1)
    again = np.isin(px.unit_of_pixel, np.flatnonzero(outlines > 1))
    if not again.any():
        return px.X
    sub = _pixel_features(domain, px.pixel[again], units, cube, run, px.years, "unit")
    ny, n = px.years.size, px.n_pixels
    X = px.X.reshape(ny, n, -1).copy()
    X[:, again] = sub.X.reshape(ny, sub.n_pixels, -1)
    return X.reshape(ny * n, -1)


def domain_glacier_features(domain: Domain, cube: xr.Dataset, units: np.ndarray, run: DomainRun,
                            years: Sequence[int], *, pixels: DomainPixels | None = None) -> xr.Dataset:
    """Area-weighted features of observation units (sets of the domain's glaciers) and years: a training table.

    ``units``: per domain glacier slot (aligned with ``domain.glaciers["glacier"]``), the unit it belongs to
    (1..U; 0 = none). The pixels of the units' glaciers are gathered from their groups, their features
    built with the inference kernels (:func:`domain_pixel_features`, glacier constants per unit) and
    averaged per unit and year with the pixel areas as weights. Returns ``(glacier, year)`` features with
    ``glacier`` the unit number 1..U.

    ``pixels``: the pixel features already built for these ``units``, ``run`` and ``years`` (e.g. for joint
    training, constants per glacier); only the pixels of units of several outlines are built again when a
    feature depends on the constants.
    """
    units = np.asarray(units, dtype="int64")
    px = pixels if pixels is not None else domain_pixel_features(domain, cube, units, run, years, constants="unit")
    U = int(units.max()) if units.size else 0
    ny, n, upos = px.years.size, px.n_pixels, px.unit_of_pixel - 1
    X = _by_unit(domain, cube, units, run, px).reshape(ny, n, len(run.features))
    active = np.ones(n, dtype=bool)
    out = {}
    for j, name in enumerate(run.features):
        out[name] = (("glacier", "year"),
                     np.stack([_weighted_mean(upos, X[y, :, j], px.pixel_area, active, U) for y in range(ny)],
                              axis=1))
    return xr.Dataset(out, coords={"glacier": np.arange(1, U + 1), "year": px.years})
