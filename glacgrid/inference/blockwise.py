"""The engine of batched inference: :func:`infer`, a fitted SMB model applied blockwise to every glacier pixel.

Each (y, x) block of the grid gets its raw inputs -- monthly temperature and precipitation of the
downscaled cube, its reference elevation, the surface with a one-pixel halo, the glacier-index raster and
the active mask -- and computes the features of its active pixels and the model's prediction in one task
(the numpy kernel :func:`glacgrid.inference.block_features` and the model); the feature cube is never
materialised. Glacier constants travel as small lookup tables (:func:`block_spec`). Glacier-wide SMB is
the area-weighted mean of the gridded SMB (flox).

:func:`infer` runs in named steps: ``_check_inputs`` (before anything is computed), ``_block_inputs``
(the dask arrays of every block), ``_plan`` (the glacier constants and the occupied blocks, in one
compute), ``_smb_blocks`` (the graph of inference tasks, empty blocks culled) and ``_smb_dataset`` (the
gridded and glacier-wide SMB, an ensemble's spread).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from itertools import product
from typing import Sequence

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from ..exceptions import GridMismatchError, InputDataError, MissingVariableError, ModelError
from ..features import ClimateFeatureParams, HydroYear, active_pixels, glacier_constants, hydrological_years
from ..glaciers import CONSTANTS, GlacierGeometry
from ..grid import EARTH_RADIUS
from ..metadata import provenance, stamp
from ..models.schema import read_model_json
from . import _cache, _kernels
from .predict import glacier_mean

__all__ = ["spec_of", "pixel_smb", "infer", "block_spec"]


def _model_info(model) -> tuple[int, tuple[str, ...] | None]:
    """Number of ensemble members (1: single) and trained feature names of a model or a
    :class:`~glacgrid.inference._cache.ModelRef` (read from its ``model.json``)."""
    if isinstance(model, _cache.ModelRef):
        meta = read_model_json(model.path)
        n = len(meta["members"]) if meta.get("kind") == "ensemble" else 1
        return n, tuple(meta.get("schema", {}).get("names", ())) or None
    members, schema = getattr(model, "members", None), getattr(model, "schema", None)
    return (len(members) if members else 1), (tuple(schema.names) if schema is not None else None)


def _require_buildable(features: Sequence[str], constants) -> None:
    """Every feature must be one a block can build from the climate, the surface and ``constants``."""
    can = _kernels.buildable(constants)
    missing = [f for f in features if f not in can]
    if missing:
        raise MissingVariableError(f"infer cannot build the features {missing}; it builds {list(can)} (glacier "
                                   "constants from `constants`). Train the model on these features, or pass "
                                   "constants holding slope_lower20 (glacier_constants(..., topo=...)).")


def block_spec(features: Sequence[str], constants: xr.Dataset, index: np.ndarray, grid, downscale,
               hemisphere: str = "north", lapse_rate: float | None = None) -> _kernels.BlockSpec:
    """The small, block-independent part of an inference task.

    Parameters
    ----------
    features : sequence of str
        The model's feature names in column order.
    constants : xr.Dataset
        Glacier constants (:func:`glacgrid.features.glacier_constants`), dim ``glacier``.
    index : numpy.ndarray
        The glacier indices of ``constants`` when it has no ``glacier`` coordinate.
    grid : TargetGrid
        CRS and pixel size.
    downscale : DownscaleParams
        Rain/snow thresholds (and the lapse rate when ``lapse_rate`` is None).
    hemisphere : {"north", "south"}
        Hydrological year and default seasons.
    lapse_rate : float, optional
        The lapse rate the downscaled cube was built with (K m-1).

    Returns
    -------
    BlockSpec
        Feature names, climate parameters, grid geometry and the glacier constants as numpy lookup
        tables sorted by glacier index.
    """
    dxr, dyr = grid.resolution
    if grid.is_geographic:
        dx_scale, dy = EARTH_RADIUS * np.deg2rad(dxr), EARTH_RADIUS * np.deg2rad(dyr)
    else:
        dx_scale, dy = dxr, dyr
    return spec_of(features, constants, index, downscale, hemisphere, lapse_rate, crs=grid.crs,
                   geographic=bool(grid.is_geographic), dx_scale=dx_scale, dy=dy)


def spec_of(features: Sequence[str], constants, index: np.ndarray, downscale, hemisphere: str = "north",
            lapse_rate: float | None = None, *, crs: str = "", geographic: bool = False, dx_scale: float = 1.0,
            dy: float = 1.0) -> _kernels.BlockSpec:
    """A :class:`BlockSpec` without a grid (the packed pixels of a glacier domain carry their own lon/lat and
    slope); :func:`block_spec` adds the grid's CRS and pixel size. ``constants``: a Dataset or a mapping of
    per-glacier vectors (aligned with ``index`` when it has no ``glacier`` coordinate)."""
    names = tuple(str(f) for f in features)
    const = {k: constants[k] for k in CONSTANTS if k in constants}
    _require_buildable(names, const)
    has_coord = isinstance(constants, xr.Dataset) and "glacier" in constants.coords
    gl = np.asarray(constants["glacier"].values) if has_coord else np.asarray(index)
    order = np.argsort(gl, kind="stable")
    tables = {k: np.asarray(v.transpose("glacier").values if isinstance(v, xr.DataArray) else v,
                            dtype="float64")[order] for k, v in const.items()}
    params = ClimateFeatureParams(HydroYear(hemisphere))
    winter, summer = params.masks()
    lapse = float(downscale.lapse_rate if lapse_rate is None else lapse_rate)
    return _kernels.BlockSpec(names, lapse, downscale.snow_threshold, downscale.rain_threshold, winter, summer,
                              tuple(params.ablation), crs, bool(geographic), float(dx_scale), float(dy),
                              gl[order], tables)


def pixel_smb(model, climate, days: np.ndarray, corr: np.ndarray, static: dict, spec: _kernels.BlockSpec,
              key: np.ndarray | None = None) -> np.ndarray:
    """SMB (m w.e., float32, ``(member, year, n)``) of packed pixels: numpy in, numpy out.

    ``model`` is a fitted model or an artifact directory (loaded once per process); the other arguments are
    those of :func:`glacgrid.inference.infer_pixels` (``climate``: a :class:`glacgrid.downscale.PixelClimate`
    or a ``(temp, prcp)`` pair).
    """
    if isinstance(model, (str, Path)):
        model = _cache.model_ref(model)
    return _kernels.infer_pixels(climate, days, corr, static, spec, _cache.resolve(model), key)


def _block(temp, prcp, days, ref, zpad, gid, active, ycoord, xcoord, rows, cols, spec, model, ncols):
    """One dask task: resolve the model (per-process cache for artifact paths), then the numpy kernel.

    ``temp``/``prcp`` hold whole hydrological years of months; they are viewed as (year, 12, y, x).
    """
    temp = temp.reshape(-1, 12, *temp.shape[1:])
    prcp = prcp.reshape(-1, 12, *prcp.shape[1:])
    return _kernels.infer_block(temp, prcp, days, ref, zpad, gid, active, ycoord, xcoord, spec,
                                _cache.resolve(model), row0=int(rows[0]), col0=int(cols[0]), ncols=ncols)


def _occupied_blocks(active: xr.DataArray, act: dsa.Array):
    """Whether each (y, x) block of ``act`` holds an active pixel: numpy for in-memory masks, else a
    tiny lazy array (one boolean per block) to compute with the glacier constants."""
    if not isinstance(active.data, dsa.Array):
        mask = np.asarray(active.transpose("y", "x").values, dtype=bool)
        ys, xs = np.cumsum((0,) + act.chunks[0][:-1]), np.cumsum((0,) + act.chunks[1][:-1])
        return np.logical_or.reduceat(np.logical_or.reduceat(mask, ys, axis=0), xs, axis=1)
    return act.map_blocks(lambda b: np.array([[bool(b.any())]]), dtype=bool,
                          chunks=((1,) * act.numblocks[0], (1,) * act.numblocks[1]))


def _without_empty_blocks(arr: dsa.Array, occupied: np.ndarray) -> dsa.Array:
    """``arr`` (member, year, y, x) with every (y, x) block without an active pixel replaced by NaN.

    The replaced blocks no longer refer to their inference tasks, so dask's culling drops those tasks and
    everything upstream of them only: the climate of an empty block (a lazy regrid of the coarse cube,
    ~99 % of an Alps-scale grid) is never computed. All blocks occupied: ``arr`` itself.
    """
    if occupied.all():
        return arr
    from dask.highlevelgraph import HighLevelGraph

    name = f"infer-occupied-{dask.base.tokenize(arr, occupied)}"
    dsk = {}
    for m, t, i, j in product(*(range(n) for n in arr.numblocks)):
        if occupied[i, j]:
            dsk[(name, m, t, i, j)] = (arr.name, m, t, i, j)  # an alias of the inference task
        else:
            shape = (arr.chunks[0][m], arr.chunks[1][t], arr.chunks[2][i], arr.chunks[3][j])
            dsk[(name, m, t, i, j)] = (np.full, shape, np.nan, arr.dtype)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[arr])
    return dsa.Array(graph, name, arr.chunks, dtype=arr.dtype, meta=arr._meta)


def _as_dask(da: xr.DataArray, chunks: tuple) -> dsa.Array:
    data = da.data
    if isinstance(data, dsa.Array):
        return data.rechunk(chunks) if data.chunks != chunks else data
    return dsa.from_array(np.asarray(data), chunks=chunks)


def _check_grid(down: xr.Dataset, **rasters: xr.DataArray) -> tuple[int, int]:
    for name in ("temp", "prcp", "reference_elevation"):
        if name not in down:
            raise MissingVariableError(f"The downscaled cube lacks {name!r} (has {list(down.data_vars)}); pass the "
                                       "output of `glacgrid downscale` (temp, prcp, reference_elevation).")
    shape = (down.sizes.get("y"), down.sizes.get("x"))
    for name, da in rasters.items():
        if set(da.dims) != {"y", "x"} or (da.sizes["y"], da.sizes["x"]) != shape:
            raise GridMismatchError(f"{name} has dims {dict(da.sizes)}; expected (y={shape[0]}, x={shape[1]}) "
                                    "like the downscaled cube. Put every raster on the same grid.")
    return shape


# --------------------------------------------------------------------------------------------- the steps
@dataclass(frozen=True, eq=False)
class _Model:
    """The model as the graph carries it: itself or a reference to its artifact, and its member count."""

    ref: object
    is_path: bool
    n_members: int


@dataclass(frozen=True, eq=False)
class _BlockInputs:
    """The dask arrays every inference task reads, on the blocks of the computation.

    ``temp``/``prcp``: (time, y, x) with whole hydrological years per time chunk (``years`` per block);
    ``days``: (year, 12); ``ref``, ``zpad`` (one-pixel halo), ``gid``, ``act``: (y, x); ``yv``/``xv`` the
    pixel-centre coordinates.
    """

    temp: dsa.Array
    prcp: dsa.Array
    days: dsa.Array
    ref: dsa.Array
    z: dsa.Array
    zpad: dsa.Array
    gid: dsa.Array
    act: dsa.Array
    ychunks: tuple[int, ...]
    xchunks: tuple[int, ...]
    years: tuple[int, ...]
    yv: np.ndarray
    xv: np.ndarray


def _check_inputs(model, down: xr.Dataset, g: GlacierGeometry, active: xr.DataArray, features: Sequence[str],
                  constants: xr.Dataset | None) -> tuple[_Model, tuple[int, int]]:
    """Everything :func:`infer` refuses, checked before anything is computed; the model as the graph carries
    it and the grid shape ``(ny, nx)``."""
    # glacier_constants gives area and max/min elevation when no constants are given
    _require_buildable(features, constants if constants is not None else ("area", "max_elevation", "min_elevation"))
    if g.grid is None:
        raise InputDataError("infer needs the grid of the glaciers (CRS and pixel size): build the "
                             "GlacierGeometry with grid=.")
    is_path = not hasattr(model, "predict")
    mref = _cache.model_ref(model) if is_path else model
    n_members, trained = _model_info(mref)
    if trained is not None and tuple(features) != trained:
        raise ModelError(f"features {list(features)} differ from those the model was trained on {list(trained)}; "
                         "pass features in the model's column order.")
    shape = _check_grid(down, surface=g.surface, glacier_id=g.glacier_id, active=active, pixel_area=g.pixel_area)
    return _Model(mref, is_path, n_members), shape


def _block_inputs(down: xr.Dataset, g: GlacierGeometry, active: xr.DataArray, shape: tuple[int, int], *,
                  start: int, end: int, hemisphere: str) -> _BlockInputs:
    """The climate of hydrological years ``start..end`` and the rasters as dask arrays on one set of blocks:
    the y/x chunks of ``down`` (``grid.chunks`` when it is not dask-backed), its time chunks in whole years."""
    ny, nx = shape
    hydro = HydroYear(hemisphere)
    _, days = hydrological_years(down["time"], start, end, hydro=hydro)  # checks the months are there
    months = np.concatenate([hydro.months_of(y).to_numpy() for y in range(start, end + 1)])
    temp = down["temp"].sel(time=months).transpose("time", "y", "x")
    prcp = down["prcp"].sel(time=months).transpose("time", "y", "x")
    n_years = end - start + 1
    if temp.chunks:
        ychunks, xchunks = temp.chunks[1], temp.chunks[2]
        per_block = max(1, int(down["temp"].chunks[down["temp"].get_axis_num("time")][0]) // 12)
    else:
        ychunks = dsa.core.normalize_chunks(g.grid.chunks[0], (ny,))[0]
        xchunks = dsa.core.normalize_chunks(g.grid.chunks[1], (nx,))[0]
        per_block = n_years
    yxc = (ychunks, xchunks)
    tc = dsa.core.normalize_chunks(per_block, (n_years,))[0]
    clim_chunks = (tuple(12 * k for k in tc), ychunks, xchunks)  # whole hydrological years per block
    z = _as_dask(g.surface.transpose("y", "x"), yxc)
    return _BlockInputs(
        temp=_as_dask(temp, clim_chunks), prcp=_as_dask(prcp, clim_chunks),
        days=dsa.from_array(days.transpose("year", "month").values, chunks=(tc, (12,))),
        ref=_as_dask(down["reference_elevation"].transpose("y", "x"), yxc), z=z,
        zpad=dsa.overlap.overlap(z, depth={0: 1, 1: 1}, boundary={0: "nearest", 1: "nearest"}),
        gid=_as_dask(g.glacier_id.transpose("y", "x"), yxc),
        act=_as_dask(active.transpose("y", "x").astype(bool), yxc),
        ychunks=ychunks, xchunks=xchunks, years=tc,
        yv=np.asarray(g.surface["y"].values if "y" in g.surface.coords else g.grid.y),
        xv=np.asarray(g.surface["x"].values if "x" in g.surface.coords else g.grid.x),
    )


def _plan(down: xr.Dataset, g: GlacierGeometry, active: xr.DataArray, inputs: _BlockInputs,
          constants: xr.Dataset | None, *, features: Sequence[str], downscale,
          hemisphere: str) -> tuple[_kernels.BlockSpec, np.ndarray]:
    """The block spec (with the glacier constants, computed when not given) and which blocks hold an
    active pixel, in one compute."""
    lazy_const = glacier_constants(g.glacier_id, g.surface, active, g.pixel_area, g.index) if constants is None \
        else constants
    constants, occupied = dask.compute(lazy_const, _occupied_blocks(active, inputs.act))
    lapse = float(down.attrs.get("lapse_rate", downscale.lapse_rate))
    spec = block_spec(features, constants, g.index, g.grid, downscale, hemisphere, lapse_rate=lapse)
    return spec, occupied


def _smb_blocks(inputs: _BlockInputs, spec: _kernels.BlockSpec, model: _Model, occupied: np.ndarray,
                shape: tuple[int, int]) -> dsa.Array:
    """The (member, year, y, x) SMB: one inference task per occupied block, NaN blocks elsewhere."""
    ny, nx = shape
    ychunks, xchunks = inputs.ychunks, inputs.xchunks
    ycoord = dsa.from_array(inputs.yv, chunks=(ychunks,))
    xcoord = dsa.from_array(inputs.xv, chunks=(xchunks,))
    # one graph key each for the small spec and the model (a fitted object is shipped once per worker)
    spec_key = dask.delayed(spec, traverse=False, name=f"infer-spec-{uuid.uuid4().hex}")
    mtoken = dask.base.tokenize(model.ref) if model.is_path else uuid.uuid4().hex
    model_key = dask.delayed(model.ref, traverse=False, name=f"infer-model-{mtoken}")
    i = inputs
    arr = dsa.blockwise(
        _block, "mtyx", i.temp, "tyx", i.prcp, "tyx", i.days, "tn", i.ref, "yx", i.zpad, "yx", i.gid, "yx",
        i.act, "yx", ycoord, "y", xcoord, "x", dsa.arange(ny, chunks=(ychunks,)), "y",
        dsa.arange(nx, chunks=(xchunks,)), "x", spec_key, None, model_key, None, nx, None,
        new_axes={"m": model.n_members}, adjust_chunks={"t": i.years, "y": ychunks, "x": xchunks},
        concatenate=True, align_arrays=False, dtype="float32", meta=np.empty((0, 0, 0, 0), dtype="float32"),
        name=f"infer-smb-{dask.base.tokenize(i.temp, i.prcp, i.ref, i.z, i.gid, i.act, spec_key, model_key)}",
    )
    return _without_empty_blocks(arr, occupied)


def _smb_dataset(each: xr.DataArray, g: GlacierGeometry, active: xr.DataArray, hist: str) -> xr.Dataset:
    """``smb`` and ``smb_glacier`` from the members' SMB ``each`` (member, year, y, x); for an ensemble
    their mean, and ``smb_spread``/``smb_glacier_spread`` (the spread of the members' glacier means)."""
    if each.sizes["member"] > 1:
        gl = glacier_mean(each, g.glacier_id, active, g.pixel_area, g.index)
        out = xr.Dataset({
            "smb": stamp(each.mean("member"), "smb", history=hist),
            "smb_spread": stamp(each.std("member"), "smb_spread", history=hist),
            "smb_glacier": stamp(gl.mean("member"), "smb_glacier", history=hist),
            "smb_glacier_spread": stamp(gl.std("member"), "smb_glacier_spread", history=hist),
        })
    else:
        smb = stamp(each.isel(member=0, drop=True), "smb", history=hist)
        out = xr.Dataset({"smb": smb,
                          "smb_glacier": stamp(glacier_mean(smb, g.glacier_id, active, g.pixel_area, g.index),
                                               "smb_glacier", history=hist)})
    out["smb_glacier"] = out["smb_glacier"].transpose("year", "glacier")
    if "smb_glacier_spread" in out:
        out["smb_glacier_spread"] = out["smb_glacier_spread"].transpose("year", "glacier")
    out.attrs["history"] = hist
    return out


def infer(model, down: xr.Dataset, glaciers: GlacierGeometry, *, active: xr.DataArray | None = None,
          features: Sequence[str], downscale, start: int, end: int, hemisphere: str = "north",
          constants: xr.Dataset | None = None) -> xr.Dataset:
    """Gridded and glacier-wide SMB for hydrological years ``start..end`` on one geometry (lazy, blockwise).

    Parameters
    ----------
    model : fitted model or str or Path
        A fitted :class:`~glacgrid.models.SMBModel` (an :class:`~glacgrid.models.EnsembleModel` gives mean
        and spread) or the directory of a model artifact. A path travels in the graph as a small reference
        (path + digest of its ``model.json`` files); each worker process loads the artifact once, on its
        first block, and keeps it in a per-process cache. A fitted model object is embedded once in the
        graph, as a single key every block depends on (dask ships it once to each worker).
    down : xr.Dataset
        Downscaled climate: ``temp`` (degC) and ``prcp`` (kg m-2) on ``(time, y, x)`` and
        ``reference_elevation`` (m); its ``lapse_rate`` attribute moves temperature to the surface.
        Its y/x chunks are the blocks of the computation (``glaciers.grid.chunks`` when it is not
        dask-backed) and its time chunks, in whole years, the years per block.
    glaciers : GlacierGeometry
        The geometry on the grid of ``down``: ``surface`` (m), ``glacier_id`` (0 = none), ``pixel_area``
        (m2), ``grid`` (CRS and pixel size: slope, aspect, lat/lon) and ``index``, the glaciers to
        report (every one gets a value, NaN when it has no active pixel).
    active : xr.DataArray, optional
        The pixels that count (y, x); default: the glacier pixels, and of those only the ones holding
        ice when ``glaciers`` has a thickness (:func:`glacgrid.features.active_pixels`).
    features : sequence of str
        The model's feature names in column order: any of the climate, topographic and glacier-constant
        features of :func:`glacgrid.features.pixel_features` (default climate parameters).
    downscale : DownscaleParams
        Rain/snow thresholds (and the lapse rate when ``down`` does not record one).
    start, end : int
        Hydrological years (labels = end years).
    hemisphere : {"north", "south"}
        Hydrological year and default seasons.
    constants : xr.Dataset, optional
        Glacier constants of this geometry (:func:`glacgrid.features.glacier_constants`); computed (a small
        flox reduction) when not given.

    Returns
    -------
    xr.Dataset
        ``smb`` (year, y, x) float32 m w.e. and ``smb_glacier`` (year, glacier) float64; for an ensemble
        also ``smb_spread`` and ``smb_glacier_spread`` (standard deviation across members; the glacier
        spread is that of the members' glacier means). Lazy: nothing is computed here but, in one compute,
        the constants (when not given) and, for a dask-backed ``active``, one boolean per block (whether it
        holds an active pixel). Blocks without an active pixel are NaN and nothing upstream of them (their
        climate) is ever computed. Every pixel value depends on that pixel's inputs only: bitwise the same
        for any chunking. Torch models predict on CUDA when available (``device="auto"``), in batches of
        :data:`glacgrid.models.ann.PREDICT_BATCH` rows; give each dask worker thread one torch thread.
    """
    g = glaciers
    active = active_pixels(g.glacier_id, g.thickness) if active is None else active
    mdl, shape = _check_inputs(model, down, g, active, features, constants)
    inputs = _block_inputs(down, g, active, shape, start=start, end=end, hemisphere=hemisphere)
    spec, occupied = _plan(down, g, active, inputs, constants, features=features, downscale=downscale,
                           hemisphere=hemisphere)
    arr = _smb_blocks(inputs, spec, mdl, occupied, shape)
    hist = provenance("infer", features=list(features), start=start, end=end, hemisphere=hemisphere,
                      model=str(model) if mdl.is_path else repr(model))
    coords = {"year": np.arange(start, end + 1), "y": inputs.yv, "x": inputs.xv}
    each = xr.DataArray(arr, dims=("member", "year", "y", "x"), coords=coords)
    return _smb_dataset(each, g, active, hist)
