"""Batched inference: a fitted SMB model applied blockwise to every glacier pixel, then aggregated per glacier.

:func:`infer` is the engine of reconstruction and evolution runs. Each (y, x) block of the grid gets its
raw inputs -- monthly temperature and precipitation of the downscaled cube, its reference elevation, the
surface with a one-pixel halo, the glacier-index raster and the active mask -- and computes the features
of its active pixels and the model's prediction in one task (:func:`glacgrid.inference._kernels.infer_block`);
the feature cube is never materialised. Glacier constants travel as small lookup tables. Glacier-wide SMB
is the area-weighted mean of the gridded SMB (flox).

:func:`predict_pixels` applies a model to an already built feature Dataset and :func:`glacier_mean`
reduces any pixel field per glacier.
"""

from __future__ import annotations

import uuid
from typing import Sequence

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from .. import features as feat
from ..exceptions import GridMismatchError, MissingVariableError, ModelError
from ..features import area_weighted_mean
from ..metadata import provenance, stamp
from ..models.schema import read_model_json
from . import _cache, _kernels

__all__ = ["predict_pixels", "glacier_mean", "infer", "block_spec"]


def _predict_block(x: np.ndarray, model) -> np.ndarray:
    """Apply ``model.predict`` to a block whose last axis is the feature axis (NaN rows stay NaN)."""
    flat = x.reshape(-1, x.shape[-1]).astype("float64", copy=False)
    out = np.full(flat.shape[0], np.nan, dtype="float64")
    ok = np.isfinite(flat).all(axis=1)
    if ok.any():
        out[ok] = model.predict(flat[ok])
    return out.reshape(x.shape[:-1]).astype("float32")


def predict_pixels(model, pix: xr.Dataset, features: Sequence[str]) -> xr.DataArray:
    """Gridded SMB (m w.e.) from pixel features, block by block (lazy with dask inputs).

    ``features`` gives the model's column order; pixels with any NaN feature (outside glaciers) get NaN.
    """
    missing = [f for f in features if f not in pix]
    if missing:
        raise MissingVariableError(f"Pixel features {missing} are missing; available: {list(pix.data_vars)}.")
    stacked = xr.concat([pix[f].astype("float32") for f in features], dim="feature", coords="minimal",
                        compat="override", join="override")
    stacked = stacked.chunk({"feature": -1}) if stacked.chunks else stacked
    smb = xr.apply_ufunc(_predict_block, stacked, kwargs={"model": model}, input_core_dims=[["feature"]],
                         dask="parallelized", output_dtypes=["float32"])
    return stamp(smb.rename("smb"), "smb", history=provenance("predict_pixels", features=list(features)))


def glacier_mean(field: xr.DataArray, glacier_id: xr.DataArray, active: xr.DataArray,
                 pixel_area: xr.DataArray, index: np.ndarray, name: str = "smb_glacier") -> xr.DataArray:
    """Area-weighted mean of ``field`` over each glacier's active pixels (flox), dim ``glacier``."""
    mean = area_weighted_mean(field, glacier_id, active, pixel_area, index)
    return stamp(mean.rename(name), name)


# --------------------------------------------------------------------------------------------- the engine
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
    """The small, block-independent part of an inference task: feature names, climate parameters, grid
    geometry and the glacier constants as numpy lookup tables sorted by glacier index."""
    from ..grid import EARTH_RADIUS

    names = tuple(str(f) for f in features)
    const = {k: constants[k] for k in _kernels.CONSTANTS if k in constants}
    _require_buildable(names, const)
    gl = np.asarray(constants["glacier"].values) if "glacier" in constants.coords else np.asarray(index)
    order = np.argsort(gl, kind="stable")
    tables = {k: np.asarray(v.transpose("glacier").values, dtype="float64")[order] for k, v in const.items()}
    params = feat.ClimateFeatureParams(feat.HydroYear(hemisphere))
    winter, summer = params.masks()
    dxr, dyr = grid.resolution
    if grid.is_geographic:
        dx_scale, dy = EARTH_RADIUS * np.deg2rad(dxr), EARTH_RADIUS * np.deg2rad(dyr)
    else:
        dx_scale, dy = dxr, dyr
    lapse = float(downscale.lapse_rate if lapse_rate is None else lapse_rate)
    return _kernels.BlockSpec(names, lapse, downscale.snow_threshold, downscale.rain_threshold, winter, summer,
                              tuple(params.ablation), grid.crs, bool(grid.is_geographic), dx_scale, dy,
                              gl[order], tables)


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
    from itertools import product

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


def infer(model, down: xr.Dataset, surface: xr.DataArray, glacier_id: xr.DataArray, active: xr.DataArray,
          pixel_area: xr.DataArray, grid, index: np.ndarray, *, features: Sequence[str], downscale,
          start: int, end: int, hemisphere: str = "north", constants: xr.Dataset | None = None) -> xr.Dataset:
    """Gridded and glacier-wide SMB for hydrological years ``start..end`` on one geometry (lazy, blockwise).

    Parameters
    ----------
    model : fitted model or str/Path
        A fitted :class:`~glacgrid.models.SMBModel` (an :class:`~glacgrid.models.EnsembleModel` gives mean
        and spread) or the directory of a model artifact. A path travels in the graph as a small reference
        (path + digest of its ``model.json`` files); each worker process loads the artifact once, on its
        first block, and keeps it in a per-process cache. A fitted model object is embedded once in the
        graph, as a single key every block depends on (dask ships it once to each worker).
    down : Dataset
        Downscaled climate: ``temp`` (degC) and ``prcp`` (kg m-2) on ``(time, y, x)`` and
        ``reference_elevation`` (m); its ``lapse_rate`` attribute moves temperature to ``surface``.
        Its y/x chunks are the blocks of the computation (``grid.chunks`` when it is not dask-backed) and
        its time chunks, in whole years, the years per block.
    surface, glacier_id, active, pixel_area : DataArray (y, x)
        Surface elevation (m), glacier index (0 = none), pixels that count, pixel area (m2).
    grid : TargetGrid
        CRS and pixel size (slope, aspect, lat/lon).
    index : array of int
        Glaciers to report; every one gets a value (NaN when it has no active pixel).
    features : sequence of str
        The model's feature names in column order: any of the climate, topographic and glacier-constant
        features of :func:`glacgrid.features.pixel_features` (default climate parameters).
    downscale : DownscaleParams
        Rain/snow thresholds (and the lapse rate when ``down`` does not record one).
    start, end : int
        Hydrological years (labels = end years).
    hemisphere : {"north", "south"}
    constants : Dataset, optional
        Glacier constants of this geometry (:func:`glacgrid.features.glacier_constants`); computed (a small
        flox reduction) when not given.

    Returns
    -------
    Dataset
        ``smb`` (year, y, x) float32 m w.e. and ``smb_glacier`` (year, glacier) float64; for an ensemble
        also ``smb_spread`` and ``smb_glacier_spread`` (standard deviation across members; the glacier
        spread is that of the members' glacier means). Lazy: nothing is computed here but, in one compute,
        the constants (when not given) and, for a dask-backed ``active``, one boolean per block (whether it
        holds an active pixel). Blocks without an active pixel are NaN and nothing upstream of them (their
        climate) is ever computed. Every pixel value depends on that pixel's inputs only: bitwise the same for any
        chunking. Torch models predict on CUDA when available (``device="auto"``), in batches of
        :data:`glacgrid.models.ann.PREDICT_BATCH` rows; give each dask worker thread one torch thread.
    """
    # checked before anything is computed (glacier_constants gives area and max/min elevation)
    _require_buildable(features, constants if constants is not None else ("area", "max_elevation", "min_elevation"))
    is_path = not hasattr(model, "predict")
    mref = _cache.model_ref(model) if is_path else model
    n_members, trained = _model_info(mref)
    if trained is not None and tuple(features) != trained:
        raise ModelError(f"features {list(features)} differ from those the model was trained on {list(trained)}; "
                         "pass features in the model's column order.")
    ny, nx = _check_grid(down, surface=surface, glacier_id=glacier_id, active=active, pixel_area=pixel_area)
    hydro = feat.HydroYear(hemisphere)
    _, days = feat.hydrological_years(down["time"], start, end, hydro=hydro)  # checks the months are there
    months = np.concatenate([hydro.months_of(y).to_numpy() for y in range(start, end + 1)])
    temp = down["temp"].sel(time=months).transpose("time", "y", "x")
    prcp = down["prcp"].sel(time=months).transpose("time", "y", "x")
    n_years = end - start + 1
    if temp.chunks:
        ychunks, xchunks = temp.chunks[1], temp.chunks[2]
        per_block = max(1, int(down["temp"].chunks[down["temp"].get_axis_num("time")][0]) // 12)
    else:
        ychunks = dsa.core.normalize_chunks(grid.chunks[0], (ny,))[0]
        xchunks = dsa.core.normalize_chunks(grid.chunks[1], (nx,))[0]
        per_block = n_years
    yxc = (ychunks, xchunks)
    tc = dsa.core.normalize_chunks(per_block, (n_years,))[0]
    clim_chunks = (tuple(12 * k for k in tc), ychunks, xchunks)  # whole hydrological years per block
    t4, p4 = _as_dask(temp, clim_chunks), _as_dask(prcp, clim_chunks)
    d2 = dsa.from_array(days.transpose("year", "month").values, chunks=(tc, (12,)))
    ref = _as_dask(down["reference_elevation"].transpose("y", "x"), yxc)
    z = _as_dask(surface.transpose("y", "x"), yxc)
    zpad = dsa.overlap.overlap(z, depth={0: 1, 1: 1}, boundary={0: "nearest", 1: "nearest"})
    gid = _as_dask(glacier_id.transpose("y", "x"), yxc)
    act = _as_dask(active.transpose("y", "x").astype(bool), yxc)
    # the glacier constants (when not given) and which blocks hold an active pixel, in one compute
    lazy_const = feat.glacier_constants(glacier_id, surface, active, pixel_area, index) if constants is None \
        else constants
    constants, occupied = dask.compute(lazy_const, _occupied_blocks(active, act))
    lapse = float(down.attrs.get("lapse_rate", downscale.lapse_rate))
    spec = block_spec(features, constants, index, grid, downscale, hemisphere, lapse_rate=lapse)
    yv = np.asarray(surface["y"].values if "y" in surface.coords else grid.y)
    xv = np.asarray(surface["x"].values if "x" in surface.coords else grid.x)
    ycoord, xcoord = dsa.from_array(yv, chunks=(ychunks,)), dsa.from_array(xv, chunks=(xchunks,))
    # one graph key each for the small spec and the model (a fitted object is shipped once per worker)
    spec_key = dask.delayed(spec, traverse=False, name=f"infer-spec-{uuid.uuid4().hex}")
    mtoken = dask.base.tokenize(mref) if is_path else uuid.uuid4().hex
    model_key = dask.delayed(mref, traverse=False, name=f"infer-model-{mtoken}")
    arr = dsa.blockwise(
        _block, "mtyx", t4, "tyx", p4, "tyx", d2, "tn", ref, "yx", zpad, "yx", gid, "yx", act, "yx",
        ycoord, "y", xcoord, "x", dsa.arange(ny, chunks=(ychunks,)), "y", dsa.arange(nx, chunks=(xchunks,)), "x",
        spec_key, None, model_key, None, nx, None,
        new_axes={"m": n_members}, adjust_chunks={"t": tc, "y": ychunks, "x": xchunks}, concatenate=True,
        align_arrays=False, dtype="float32", meta=np.empty((0, 0, 0, 0), dtype="float32"),
        name=f"infer-smb-{dask.base.tokenize(t4, p4, ref, z, gid, act, spec_key, model_key)}",
    )
    arr = _without_empty_blocks(arr, occupied)
    coords = {"year": np.arange(start, end + 1), "y": yv, "x": xv}
    hist = provenance("infer", features=list(features), start=start, end=end, hemisphere=hemisphere,
                      model=str(model) if is_path else repr(model))
    each = xr.DataArray(arr, dims=("member", "year", "y", "x"), coords=coords)
    if n_members > 1:
        gl = glacier_mean(each, glacier_id, active, pixel_area, index)
        out = xr.Dataset({
            "smb": stamp(each.mean("member"), "smb", history=hist),
            "smb_spread": stamp(each.std("member"), "smb_spread", history=hist),
            "smb_glacier": stamp(gl.mean("member"), "smb_glacier", history=hist),
            "smb_glacier_spread": stamp(gl.std("member"), "smb_glacier_spread", history=hist),
        })
    else:
        smb = stamp(each.isel(member=0, drop=True), "smb", history=hist)
        out = xr.Dataset({"smb": smb,
                          "smb_glacier": stamp(glacier_mean(smb, glacier_id, active, pixel_area, index),
                                               "smb_glacier", history=hist)})
    out["smb_glacier"] = out["smb_glacier"].transpose("year", "glacier")
    if "smb_glacier_spread" in out:
        out["smb_glacier_spread"] = out["smb_glacier_spread"].transpose("year", "glacier")
    out.attrs["history"] = hist
    return out
