"""The shared stages of a run: ingest -> grid and masks -> downscale, into the :class:`Prepared` hand-off."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import cube as cube_mod
from ..config import RunConfig, config_digest, require_dense
from ..downscale import downscale
from ..exceptions import StoreError
from ..features import HydroYear
from ..glaciers import GlacierGeometry, area_weighted_mean
from ..grid import TargetGrid
from ..ingest import check_months, ingest
from ..masks import glacier_table, rasterize_glaciers, read_outlines
from ..metadata import cf_dataset, provenance, stamp_dataset
from ..units import METRES_PER_DEGREE
from .forcing import FORCING_MEMBER, reference_years, spliced_cube
from .steps import Steps

__all__ = ["Prepared", "prepare", "FINGERPRINT_ATTR"]

#: The store attribute that records what a work store was computed from (its inputs: configuration sections and input file stamps).
FINGERPRINT_ATTR = "glacgrid_fingerprint"


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything on the target grid that the simulation needs (arrays lazy or small).

    Attributes
    ----------
    grid : TargetGrid
        The target grid.
    down : xarray.Dataset
        ``temp``, ``prcp`` ``(time, y, x)``; ``reference_elevation`` ``(y, x)``.
    static : xarray.Dataset
        ``glacier_id``, ``surface``, ``thickness``, ``pixel_area``, ``glacier_fraction`` ``(y, x)``.
    table : pandas.DataFrame
        Glacier index 1..N -> ``rgi_id``, ``name``, areas (:func:`glacgrid.masks.glacier_table`).
    has_thickness : numpy.ndarray
        Whether each glacier index has a thickness (bool; position 0 unused).
    notes : tuple of str
        What the preparation reported (repaired outlines, glaciers without a pixel).
    surfaces : xarray.DataArray or None
        The dated surfaces ``(surface_year, y, x)`` of ``[geometry] surfaces``.
    member_down : xarray.Dataset or None
        A run with a ``[forcing]`` of several members: ``temp``, ``prcp`` ``(forcing_member, time, y, x)``
        and ``reference_elevation``, lazy, each member's spliced cube downscaled (:attr:`down` is then their
        mean). None otherwise.
    reference_years : tuple of int or None
        A run with a ``[forcing]``: the first and last complete hydrological year of the ``[climate]``
        reference, inside the period or not (the model's training years); None otherwise or when none.
    """

    grid: TargetGrid
    down: xr.Dataset
    static: xr.Dataset
    table: pd.DataFrame
    has_thickness: np.ndarray
    notes: tuple[str, ...] = ()
    surfaces: xr.DataArray | None = None
    member_down: xr.Dataset | None = None
    reference_years: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def index(self) -> np.ndarray:
        """The glacier indices 1..N of :attr:`table`."""
        return self.table.index.to_numpy()

    @property
    def glaciers(self) -> GlacierGeometry:
        """The glacier geometry (index raster, surface, pixel areas, thickness) of :attr:`static` on the grid."""
        s = self.static
        return GlacierGeometry(s["glacier_id"], s["surface"], s["pixel_area"], self.index, self.grid,
                               s["thickness"] if "thickness" in s else None)


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


def _file_stamp(paths) -> str:
    """Size and modification time of each input file and its siblings (a shapefile's .dbf, a GeoTIFF's
    .aux.xml): cheap, and it changes when a file is rewritten in place."""
    stamps = []
    for p in paths:
        p = Path(p)
        for f in sorted(p.parent.glob(f"{p.stem}.*")) if p.parent.is_dir() else []:
            if f.is_file():
                st = f.stat()
                stamps.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(stamps)


def _stored_fingerprint(path: Path) -> str | None:
    """The fingerprint a work store was written with (None when absent or unreadable)."""
    if not path.exists():
        return None
    try:
        return cube_mod.open_store(path, chunks=None).attrs.get(FINGERPRINT_ATTR)
    except StoreError:
        return None


def _reusable(path: Path, fingerprint: str, chunks) -> xr.Dataset | None:
    """The work store at ``path`` when it is complete and was computed from the same inputs, else None."""
    if _stored_fingerprint(path) != fingerprint:
        return None
    try:
        return cube_mod.open_store(path, chunks=chunks, require_complete=True)
    except StoreError:  # an interrupted write of the same inputs: resumed by _write_work_store
        return None


def _write_work_store(ds: xr.Dataset, path: Path, fingerprint: str, region_dim: str, chunks) -> xr.Dataset:
    """Write a work store (resumed when it holds an interrupted write of the same inputs, replaced when it
    was computed from other inputs) and open it back, complete."""
    ds = ds.assign_attrs({FINGERPRINT_ATTR: fingerprint})
    replace = path.exists() and _stored_fingerprint(path) != fingerprint
    cube_mod.write_dataset(ds, path, region_dim=region_dim, overwrite=replace)
    return cube_mod.open_store(path, chunks=chunks, require_complete=True)


def _read_surfaces(cfg: RunConfig, grid: TargetGrid, workdir: Path) -> xr.DataArray | None:
    """The dated surfaces of ``[geometry] surfaces`` on the grid (bilinear), stored in ``surfaces.zarr``."""
    if not cfg.geometry.surfaces:
        return None
    chunks = dict(zip(("y", "x"), grid.chunks))
    store = workdir / "surfaces.zarr"
    fingerprint = config_digest(cfg, ("grid", "glaciers", "geometry"),
                                inputs=_file_stamp([cfg.grid.dem, cfg.glaciers.outlines, *cfg.geometry.surfaces]))
    kept = _reusable(store, fingerprint, {"surface_year": 1, **chunks})
    if kept is not None:
        return kept["surface"]
    z = xr.concat([grid.read(p, resampling="bilinear") for p in cfg.geometry.surfaces], dim="surface_year")
    z = z.assign_coords(surface_year=np.asarray(cfg.geometry.surface_years, dtype="int64"))
    z = grid.attach(stamp_dataset(z.rename("surface").astype("float64").to_dataset(),
                                  history=provenance("prepare", surfaces=[str(p) for p in cfg.geometry.surfaces])))
    z = z.drop_vars("spatial_ref", errors="ignore")
    return _write_work_store(z.chunk({"surface_year": 1, **chunks}), store, fingerprint, "surface_year",
                             {"surface_year": 1, **chunks})["surface"]


def _target_grid(cfg: RunConfig, outlines) -> TargetGrid:
    """The grid of ``[grid] dem``, cropped around the outlines when ``crop_to_glaciers``."""
    grid = TargetGrid.from_raster(cfg.grid.dem, chunks=cfg.grid.chunks)
    if cfg.grid.crop_to_glaciers:
        buffer = cfg.grid.buffer
        if grid.is_geographic:
            buffer = buffer / METRES_PER_DEGREE  # metres -> degrees (an approximation, for the crop margin only)
        grid = grid.crop(tuple(outlines.to_crs(grid.pyproj_crs).total_bounds), buffer=buffer)
    return grid


def _static(cfg: RunConfig, outlines, grid: TargetGrid, workdir: Path) -> xr.Dataset:
    """Glacier masks, surface, thickness and pixel areas on the grid, written to and read back from
    ``static.zarr`` (kept as it is when it is complete and was computed from the same inputs)."""
    chunks = dict(zip(("y", "x"), grid.chunks))
    store = workdir / "static.zarr"
    fingerprint = config_digest(cfg, ("grid", "glaciers"), grid=repr(grid),
                                inputs=_file_stamp([cfg.grid.dem, cfg.glaciers.outlines, *cfg.glaciers.thickness]))
    kept = _reusable(store, fingerprint, chunks)
    if kept is not None:
        return kept
    dem = grid.read(cfg.grid.dem)
    masks = rasterize_glaciers(outlines, grid)
    if cfg.glaciers.thickness:
        thickness = _read_thickness(cfg.glaciers.thickness, grid)
    else:
        thickness = xr.full_like(dem, np.nan)
    static = xr.Dataset({"glacier_id": masks["glacier_id"], "glacier_fraction": masks["glacier_fraction"],
                         "surface": dem, "thickness": thickness, "pixel_area": grid.pixel_area()})
    static["thickness"] = static["thickness"].where(static["glacier_id"] > 0)
    static = grid.attach(static).drop_vars("spatial_ref", errors="ignore")
    static = stamp_dataset(static, history=provenance("prepare", dem=str(cfg.grid.dem)))
    static = cf_dataset(static, title="glacgrid static fields: glacier masks, surface, thickness", crs=grid.crs)
    return _write_work_store(static.chunk(chunks), store, fingerprint, "y", chunks)


def _has_thickness(static: xr.Dataset, index: np.ndarray) -> np.ndarray:
    """Glaciers more than half covered by the thickness rasters (bool per index; position 0 unused)."""
    cover = area_weighted_mean(static["thickness"].notnull().astype("float32"), static["glacier_id"],
                               static["glacier_id"] > 0, static["pixel_area"], index)
    return np.r_[False, np.nan_to_num(cover.values) > 0.5]


def _downscaled(cfg: RunConfig, cube: xr.Dataset, grid: TargetGrid, surface: xr.DataArray,
                workdir: Path, years: tuple[int, int] | None = None) -> xr.Dataset:
    """The climate of the run's hydrological years (or ``years``) downscaled to the grid, in ``downscaled.zarr``
    (kept as it is when it is complete and was computed from the same cube, DEM and parameters)."""
    chunks = {"time": 12, "y": grid.chunks[0], "x": grid.chunks[1]}
    store = workdir / "downscaled.zarr"
    sections = ("climate", "grid", "period", "downscale") + (("forcing",) if cfg.forcing is not None else ())
    fingerprint = config_digest(cfg, sections, grid=repr(grid),
                                cube=str(cube.attrs.get("source_files", "")), inputs=_file_stamp([cfg.grid.dem]),
                                **({"years": repr(years)} if years is not None else {}))
    kept = _reusable(store, fingerprint, chunks)
    if kept is not None:
        return kept
    months = HydroYear(cfg.period.hemisphere).period_months(*(years or (cfg.period.start, cfg.period.end)))
    first, last = months[0], months[-1]
    down = downscale(cube.sel(time=slice(first, last)), grid, surface, cfg.downscale)
    down = cf_dataset(down, title="glacgrid downscaled monthly climate", crs=grid.crs)
    return _write_work_store(down, store, fingerprint, "time", chunks)


def _forcing_cube(cfg: RunConfig, reference: xr.Dataset, workdir: Path) -> xr.Dataset:
    """The spliced climate of ``[forcing]`` + ``[climate]`` (:func:`glacgrid.pipeline.forcing.spliced_cube`) in
    ``forcing_cube.zarr`` (kept when complete and computed from the same inputs)."""
    store = workdir / "forcing_cube.zarr"
    fc = cfg.forcing
    fingerprint = config_digest(cfg, ("climate", "forcing"), cube=str(reference.attrs.get("source_files", "")),
                                inputs=_file_stamp([*fc.files, *((fc.invariant,) if fc.invariant else ())]))
    chunks = {"time": 120}
    kept = _reusable(store, fingerprint, chunks)
    if kept is not None:
        return kept
    spliced = stamp_dataset(spliced_cube(cfg, reference), history=provenance("prepare", forcing=fc.kind,
                                                                             method=fc.method))
    spliced["time"].attrs.update(standard_name="time", long_name="time")
    spliced = cf_dataset(spliced.transpose("member", "time", ...),  # (CF: other dimensions left of T, Y, X)
                         title=f"glacgrid monthly climate: {fc.kind} forcing bias-adjusted ({fc.method}) into the "
                               "reference and spliced with it")
    return _write_work_store(spliced.chunk({"time": 120, "member": -1}), store, fingerprint, "time", chunks)


def _member_down(cfg: RunConfig, spliced: xr.Dataset, grid: TargetGrid, surface: xr.DataArray) -> xr.Dataset:
    """Each forcing member's climate of the run's years downscaled (lazy), along ``forcing_member``."""
    months = HydroYear(cfg.period.hemisphere).period_months(cfg.period.start, cfg.period.end)
    cube = spliced.sel(time=slice(months[0], months[-1]))
    parts = [downscale(cube.isel(member=k, drop=True), grid, surface, cfg.downscale)
             for k in range(cube.sizes["member"])]  # a handful of members
    out = xr.concat([p[["temp", "prcp"]] for p in parts], dim=FORCING_MEMBER)
    out["reference_elevation"] = parts[0]["reference_elevation"]
    return out.assign_coords({FORCING_MEMBER: cube["member"].values}).assign_attrs(parts[0].attrs)


def prepare(cfg: RunConfig, workdir: Path, steps: Steps | None = None) -> Prepared:
    """Ingest the climate, build grid and masks, downscale; write the intermediate stores into ``workdir``.

    With a ``[forcing]`` the climate is the forcing adjusted into the ``[climate]`` reference and spliced with it
    (``forcing_cube.zarr``, :func:`glacgrid.pipeline.forcing.spliced_cube`); ``downscaled.zarr`` holds the mean
    over its members over the period and the reference's years (the training years) and
    :attr:`Prepared.member_down` each member over the period (lazy).

    Parameters
    ----------
    cfg : RunConfig
        The run.
    workdir : Path
        Folder of ``cube.zarr``, ``static.zarr``, ``downscaled.zarr`` (and ``surfaces.zarr``).
    steps : Steps, optional
        Progress display and timings of the stages ``ingest``, ``grid and masks``, ``downscale``.

    Returns
    -------
    Prepared
        With the notes of the preparation.
    """
    require_dense(cfg, "The gridded pipeline (prepare: grid and masks)")
    steps = steps or Steps(False)
    notes: list[str] = []
    with steps.stage("ingest"):
        cube_path = ingest(list(cfg.climate.files), workdir / "cube.zarr", invariant=cfg.climate.invariant,
                           variables=list(cfg.climate.variables))
        cube = cube_mod.open_store(cube_path, require_complete=True)
        spliced, span = None, None
        if cfg.forcing is not None:  # the forcing adjusted into the reference, spliced where it has no months
            span = reference_years(cfg, cube)
            spliced = _forcing_cube(cfg, cube, workdir)
            check_months(pd.DatetimeIndex(spliced["time"].values), cfg.period.start, cfg.period.end,
                         hydro=HydroYear(cfg.period.hemisphere), source="the forcing spliced with the reference")
            cube = spliced.mean("member").assign_attrs(spliced.attrs)
            for name in ("orog", "lsm"):
                if name in spliced:
                    cube[name] = spliced[name]
    with steps.stage("grid and masks"):
        outlines = read_outlines(cfg.glaciers.outlines, cfg.glaciers.id_column, cfg.glaciers.name_column)
        if outlines.attrs.get("repaired"):
            notes.append(f"repaired invalid outline geometries: {outlines.attrs['repaired']}")
        grid = _target_grid(cfg, outlines)
        static = _static(cfg, outlines, grid, workdir)
        table = glacier_table(outlines, static["glacier_id"], static["pixel_area"])
        empty = table.index[table["raster_area_km2"] == 0].tolist()
        if empty:
            notes.append(f"glaciers with no pixel on the grid (kept, reported with NaN): "
                         f"{table.loc[empty, 'rgi_id'].tolist()}")
        has_thickness = _has_thickness(static, table.index.to_numpy())
        surfaces = _read_surfaces(cfg, grid, workdir)
    with steps.stage("downscale"):
        years = None
        if spliced is not None and span is not None:  # the period and the reference's (training) years
            years = (min(cfg.period.start, span[0]), max(cfg.period.end, span[1]))
        down = _downscaled(cfg, cube, grid, static["surface"], workdir, years)
        member_down = None
        if spliced is not None and spliced.sizes["member"] > 1:
            member_down = _member_down(cfg, spliced, grid, static["surface"])
        if spliced is not None:
            notes.append(f"climate: {cfg.forcing.kind} forcing ({spliced.sizes['member']} member(s), "
                         f"{cfg.forcing.method} on {spliced.attrs.get('bias_adjustment', '')}) outside the reference "
                         f"{'..'.join(spliced.attrs.get('reference_months', []))}")
    return Prepared(grid, down, static, table, has_thickness, tuple(notes), surfaces, member_down, span)
