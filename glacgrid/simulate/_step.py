"""One year of a run: :func:`annual_step` (evolution) and :func:`reconstruct_step` (given geometry).

Both first check every glacier's geometry in one flox reduction and isolate the glaciers that fail
(no pixel on the grid, no initial thickness, NaN or negative thickness, non-finite surface or pixel
area): their pixels leave the active mask, so they get no features, no prediction and no update, and
the other glaciers are computed exactly as without them. After the prediction, a glacier with a NaN
SMB on any of its active pixels (NaN features, e.g. missing climate) is isolated the same way. Each
isolated glacier-year carries ``failed = 1``, NaN values and a reason (``failure_reason``).
"""

from __future__ import annotations

import dask
import numpy as np
import xarray as xr

from ..features import area_weighted_mean
from ..geometry import _kernels as gk
from ..features import glacier_constants
from ..features.sampling import FLOX_ENGINE
from ..geometry import _curve_vectors, deltah_update
from ..inference import infer
from ..metadata import stamp

__all__ = ["annual_step", "reconstruct_step", "perturbed_curves", "glacier_checks"]

_PIXEL_VARS = ("glacier_id", "thickness", "surface", "pixel_area")
_SURFACE_REASON = "surface elevation not finite on its pixels"


def _is_dask(ds) -> bool:
    return any(v.chunks is not None for v in ds.data_vars.values())


def _vector(values, index, dtype=None) -> xr.DataArray:
    return xr.DataArray(np.asarray(values, dtype=dtype), dims="glacier", coords={"glacier": index})


def _paint(glacier_id: xr.DataArray, index: np.ndarray, flags: np.ndarray) -> xr.DataArray:
    """A boolean pixel mask: ``flags`` (aligned with the sorted ``index``) of each pixel's glacier."""
    flags = np.asarray(flags, dtype=bool)

    def kernel(g):
        pos = gk.lookup(g, index)
        return (pos >= 0) & flags[np.maximum(pos, 0)] if flags.size else np.zeros(g.shape, bool)

    return xr.apply_ufunc(kernel, glacier_id, dask="parallelized", output_dtypes=[bool])


def glacier_checks(state: xr.Dataset, index: np.ndarray, *, need_thickness: bool,
                   has_thickness: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per glacier of ``index``: the reason it cannot be computed ('' = fine) and its ice area (m2).

    One flox reduction over the pixels. ``need_thickness``: thickness must be finite and >= 0 on every
    glacier pixel (evolution); ``has_thickness`` (bool aligned with ``index``) marks glaciers that
    have an initial thickness at all.
    """
    from flox.xarray import xarray_reduce

    gid, h, z, a = (state[v] for v in _PIXEL_VARS)
    ing = gid > 0
    terms = {
        "pixels": ing.astype("float64"),
        "bad_surface": (ing & ~np.isfinite(z)).astype("float64"),
        "bad_area": (ing & ~(np.isfinite(a) & (a > 0))).astype("float64"),
        "ice_area": a.where(ing & (h > 0), 0.0).astype("float64") if need_thickness else a.where(ing, 0.0),
    }
    if need_thickness:
        terms["bad_thickness"] = (ing & ~(h >= 0)).astype("float64")
    red = xarray_reduce(xr.Dataset(terms), gid.rename("glacier"), func="sum", expected_groups=(index,),
                        fill_value=0.0, engine=FLOX_ENGINE)
    red = red.compute() if _is_dask(red) else red
    reason = np.full(index.size, "", dtype=object)

    def flag(mask, text):
        sel = mask & (reason == "")
        reason[sel] = text

    flag(~(red["pixels"].values > 0), "no pixel on the grid")
    if need_thickness and has_thickness is not None:
        flag(~np.asarray(has_thickness, dtype=bool), "no initial ice thickness")
    if need_thickness:
        flag(red["bad_thickness"].values > 0, "thickness NaN or negative on its pixels")
    flag(red["bad_surface"].values > 0, _SURFACE_REASON)
    flag(red["bad_area"].values > 0, "pixel area not finite and positive on its pixels")
    return reason, np.nan_to_num(red["ice_area"].values)


def perturbed_curves(ice_area_m2: np.ndarray, index: np.ndarray, factor: float,
                     curves: xr.Dataset | None = None) -> xr.Dataset | None:
    """Delta-h curves whose exponent ``gamma`` is multiplied by ``factor``.

    Scaling the whole curve by a constant would change nothing (the update rescales the curve to the
    glacier's volume change), so the perturbation changes its shape: ``gamma * factor`` makes the
    thinning more (factor > 1) or less (< 1) concentrated at the terminus. Glaciers with their own
    curve in ``curves`` (dim ``glacier``, ``gamma, a, b, c``, optional ``calibrated``) get their gamma
    scaled; the others the Huss et al. (2010) curve of their size class (from ``ice_area_m2``);
    glaciers of the uniform class stay uniform. ``factor == 1`` returns ``curves`` unchanged.
    """
    if factor == 1.0:
        return curves
    size = gk.size_class(np.asarray(ice_area_m2) / 1e6)
    calibrated, coeff = _curve_vectors(curves, index)  # the checks and alignment deltah_update applies
    vec = gk.curve_vectors(size, calibrated, coeff)
    keep = ~vec["uniform"]
    return xr.Dataset({k: ("glacier", vec[k][keep] * (factor if k == "gamma" else 1.0))
                       for k in ("gamma", "a", "b", "c")}, coords={"glacier": index[keep]})


def _filled_surface(surface: xr.DataArray) -> xr.DataArray:
    """``surface`` with each non-finite pixel replaced by the mean of its finite 3 x 3 neighbours.

    Used when an isolated glacier has a non-finite surface: the slope and aspect stencils of the pixels
    around it (other glaciers) then stay finite instead of turning NaN. The isolated glacier's own
    pixels are inactive, so their filled values are never used.
    """
    finite = surface.where(np.isfinite(surface))
    local = finite.rolling(y=3, x=3, center=True, min_periods=1).mean()
    return finite.fillna(local)


def _smb(model, down, st, active, grid, index, *, year, features, downscale, hemisphere, fill=False,
         constants=None):
    """``infer`` on the active pixels, and which glaciers got a NaN SMB on any active pixel."""
    surface = _filled_surface(st["surface"]) if fill else st["surface"]
    res = infer(model, down, surface, st["glacier_id"], active, st["pixel_area"], grid, index,
                features=features, downscale=downscale, start=int(year), end=int(year), hemisphere=hemisphere,
                constants=constants)
    res = res.persist() if _is_dask(res) else res
    nan = res["smb"].isel(year=0).isnull().where(active, 0.0).astype("float64")
    nan_frac = area_weighted_mean(nan, st["glacier_id"], active, st["pixel_area"], index)
    (glacier_vars, nan_frac) = dask.compute({k: res[k] for k in res.data_vars if "glacier" in res[k].dims},
                                            nan_frac)
    nan_fail = np.nan_to_num(nan_frac.values) > 0
    return res, {k: v.isel(year=0, drop=True).values for k, v in glacier_vars.items()}, nan_fail


def _bad_surface(reason: np.ndarray) -> bool:
    return bool(np.any(reason == _SURFACE_REASON))


def _finish(year, index, reason, smb_pixels, okpix_final, values: dict, spread=None) -> xr.Dataset:
    """The year's Dataset: gridded SMB masked to computed glaciers, per-glacier values NaN where failed."""
    failed = reason != ""
    out = {"smb": stamp(smb_pixels.where(okpix_final).astype("float32"), "smb")}
    for name, v in values.items():
        v = np.asarray(v, dtype="int8" if name == "disappeared" else "float64")
        if name != "disappeared":
            v = np.where(failed, np.nan, v)
        out[name] = stamp(_vector(v, index), name)
    out["failed"] = stamp(_vector(failed.astype("int8"), index), "failed")
    for name, da in (spread or {}).items():
        out[name] = stamp(da, name)
    ds = xr.Dataset(out)
    ds["failure_reason"] = _vector(reason.astype(str), index)
    return ds.assign_coords(year=int(year))


def annual_step(state: xr.Dataset, down: xr.Dataset, model, *, year: int, grid, index, features, downscale,
                geometry, hemisphere: str = "north", curves: xr.Dataset | None = None,
                has_thickness=None, deltah_factor: float = 1.0) -> tuple[xr.Dataset, xr.Dataset]:
    """One evolution year on the current geometry, glaciers that fail isolated.

    Topography and glacier constants from the current ``surface`` and ``thickness`` -> features ->
    SMB (:func:`glacgrid.inference.infer`) -> delta-h update (:func:`glacgrid.geometry.deltah_update`).

    Parameters
    ----------
    state : xr.Dataset
        ``glacier_id`` (int, 0 = none), ``thickness`` (m), ``surface`` (m), ``pixel_area`` (m2) on
        ``(y, x)`` (numpy or dask); optionally ``disappeared`` (int8, dim ``glacier``): glaciers that
        had left the loop before this year (no features, no prediction; SMB NaN, area and volume 0).
    down : xr.Dataset
        Downscaled monthly climate (``glacgrid.downscale``) covering hydrological year ``year``.
    model
        Fitted SMB model or artifact path (an ensemble's mean drives the update).
    year : int
        The hydrological year.
    grid, index, features, downscale, hemisphere
        Target grid, sorted glacier indices (1..N), model features, downscaling parameters.
    geometry : GeometryParams
        ``rho_ice``, ``rho_water`` (kg m-3).
    curves : xr.Dataset, optional
        Glacier-specific delta-h curves (see :func:`glacgrid.geometry.deltah_update`).
    has_thickness : array of bool aligned with ``index``, optional
        Glaciers with an initial thickness; the others are isolated ("no initial ice thickness").
    deltah_factor : float
        Factor on the delta-h curve exponent (see :func:`perturbed_curves`); 1 = unperturbed.

    Returns
    -------
    new_state : xr.Dataset
        ``state`` after the update (``thickness``, ``surface`` float64; those of isolated glaciers
        unchanged) with the updated ``disappeared`` vector.
    year_ds : xr.Dataset
        Per glacier ``smb_glacier`` (m w.e.), ``glacier_area`` (km2), ``volume`` (km3),
        ``mean_elevation`` (m; after the update), ``disappeared``, ``failed`` (int8) and
        ``failure_reason`` (str); gridded ``smb`` (y, x) float32. Coordinate ``year``.
    """
    index = np.asarray(index)
    st = state[list(_PIXEL_VARS)]
    st = st.persist() if _is_dask(st) else st
    gone = (np.asarray(state["disappeared"].sel(glacier=index).values, dtype=bool) if "disappeared" in state
            else np.zeros(index.size, dtype=bool))
    if has_thickness is not None:
        has_thickness = np.asarray(getattr(has_thickness, "values", has_thickness), dtype=bool)
    reason, ice_area = glacier_checks(st, index, need_thickness=True, has_thickness=has_thickness)
    reason[gone] = ""  # glaciers that left the loop are not checked again
    ok = (reason == "") & ~gone
    okpix = _paint(st["glacier_id"], index, ok)
    active = okpix & (st["thickness"] > 0)
    res, gl, nan_fail = _smb(model, down, st, active, grid, index, year=year, features=features,
                             downscale=downscale, hemisphere=hemisphere, fill=_bad_surface(reason))
    reason[ok & nan_fail] = "NaN features or SMB on its pixels"
    ok &= ~nan_fail
    okpix = _paint(st["glacier_id"], index, ok)
    # the update sees only the computed glaciers: the others' pixels are off the raster for it
    clean = st.assign(glacier_id=st["glacier_id"].where(okpix, 0).astype(st["glacier_id"].dtype),
                      thickness=st["thickness"].where(okpix, 0.0), surface=st["surface"].where(okpix, 0.0))
    listed = index[ok]
    smb_ok = np.nan_to_num(gl["smb_glacier"][ok])  # no active pixel (no ice): no change
    smb_vec = xr.DataArray(smb_ok, dims="glacier", coords={"glacier": listed}, attrs={"units": "m"})
    upd, report = deltah_update(clean, smb_vec, rho_ice=geometry.rho_ice, rho_water=geometry.rho_water,
                                curves=perturbed_curves(ice_area[ok], listed, deltah_factor, curves))
    thickness = xr.where(okpix, upd["thickness"], st["thickness"]).astype("float64")
    surface = xr.where(okpix, upd["surface"], st["surface"]).astype("float64")
    new_state = state.assign(thickness=stamp(thickness.assign_attrs(state["thickness"].attrs), "thickness"),
                             surface=stamp(surface.assign_attrs(state["surface"].attrs), "surface"))
    if _is_dask(new_state[["thickness", "surface"]]):
        new_state = new_state.assign(**new_state[["thickness", "surface"]].persist())
    ice = okpix & (new_state["thickness"] > 0)
    zmean = area_weighted_mean(new_state["surface"], st["glacier_id"], ice, st["pixel_area"], index)
    zmean = zmean.compute() if zmean.chunks is not None else zmean
    area, volume, gone_now = np.zeros(index.size), np.zeros(index.size), gone.copy()
    area[ok] = report["glacier_area"].values
    volume[ok] = report["volume"].values
    gone_now[ok] = report["disappeared"].values.astype(bool)
    values = {"smb_glacier": np.where(gone, np.nan, gl["smb_glacier"]), "glacier_area": area, "volume": volume,
              "mean_elevation": zmean.values, "disappeared": gone_now.astype("int8")}
    year_ds = _finish(year, index, reason, res["smb"].isel(year=0, drop=True), okpix, values)
    new_state["disappeared"] = year_ds["disappeared"]
    return new_state, year_ds


def reconstruct_step(state: xr.Dataset, down: xr.Dataset, model, *, year: int, grid, index, features,
                     downscale, hemisphere: str = "north", static_volume: np.ndarray | None = None,
                     constants_cache: dict | None = None) -> xr.Dataset:
    """SMB of one year on a given geometry (static or interpolated), glaciers that fail isolated.

    ``state`` as in :func:`annual_step` (thickness is not needed); every glacier pixel is active.
    ``static_volume`` (km3, aligned with ``index``) is reported as the volume. ``constants_cache``:
    a dict in which the geometry checks and mean elevation are kept across years when the geometry is
    static (pass the same dict every year). Returns the year's Dataset of :func:`annual_step`, with
    ``smb_spread`` and ``smb_glacier_spread`` for an ensemble model.
    """
    index = np.asarray(index)
    st = state[list(_PIXEL_VARS)]
    cache = constants_cache if constants_cache is not None else {}
    if "reason" not in cache:
        st = st.persist() if _is_dask(st) else st
        reason, area_m2 = glacier_checks(st, index, need_thickness=False)
        okpix = _paint(st["glacier_id"], index, reason == "")
        zmean = area_weighted_mean(st["surface"], st["glacier_id"], okpix, st["pixel_area"], index)
        zmean = zmean.compute() if zmean.chunks is not None else zmean
        step = {"st": st, "reason": reason, "area": area_m2 / 1e6, "zmean": zmean.values}
        if constants_cache is not None:  # a static geometry: its glacier constants are the same every year
            const = glacier_constants(st["glacier_id"], st["surface"], okpix, st["pixel_area"], index)
            step["constants"] = const.compute() if _is_dask(const) else const
        if constants_cache is not None:
            cache.update(step)
    else:
        step = cache
    st, reason = step["st"], step["reason"].copy()
    ok = reason == ""
    okpix = _paint(st["glacier_id"], index, ok)
    res, gl, nan_fail = _smb(model, down, st, okpix, grid, index, year=year, features=features,
                             downscale=downscale, hemisphere=hemisphere, fill=_bad_surface(reason),
                             constants=step.get("constants"))
    reason[ok & nan_fail] = "NaN features or SMB on its pixels"
    ok &= ~nan_fail
    okpix = _paint(st["glacier_id"], index, ok)
    volume = np.full(index.size, np.nan) if static_volume is None else np.asarray(static_volume, dtype="float64")
    values = {"smb_glacier": gl["smb_glacier"], "glacier_area": step["area"], "volume": volume,
              "mean_elevation": step["zmean"], "disappeared": np.zeros(index.size, dtype="int8")}
    spread = None
    if "smb_spread" in res:
        failed = reason != ""
        spread = {"smb_spread": res["smb_spread"].isel(year=0, drop=True).where(okpix).astype("float32"),
                  "smb_glacier_spread": _vector(np.where(failed, np.nan, gl["smb_glacier_spread"]), index)}
    return _finish(year, index, reason, res["smb"].isel(year=0, drop=True), okpix, values, spread)
