"""One year of a run: :func:`annual_step` (evolution) and :func:`reconstruct_step` (given geometry).

Both first check every glacier's geometry in one flox reduction (:func:`glacgrid.glaciers.glacier_checks`)
and isolate the glaciers that fail (no pixel on the grid, no initial thickness, NaN or negative thickness,
non-finite surface or pixel area): their pixels leave the active mask, so they get no features, no
prediction and no update, and the other glaciers are computed exactly as without them. After the
prediction, a glacier with a NaN SMB on any of its active pixels (NaN features, e.g. missing climate) is
isolated the same way. Each isolated glacier-year carries ``failed = 1``, NaN values and a reason
(``failure_reason``).
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from ..config import GeometryParams
from ..features import glacier_constants
from ..geometry import deltah_update, perturbed_curves
from ..glaciers import (SURFACE_REASON, GlacierGeometry, area_weighted_mean, glacier_checks, glacier_vector,
                        paint_flags)
from ..inference import infer
from ..metadata import stamp
from ..units import m2_to_km2

__all__ = ["annual_step", "reconstruct_step", "CheckedGeometry"]

#: The reason of a glacier isolated because its SMB is NaN on an active pixel.
NAN_REASON = "NaN features or SMB on its pixels"


def _is_dask(ds) -> bool:
    return any(v.chunks is not None for v in ds.data_vars.values())


def _persisted(glaciers: GlacierGeometry) -> GlacierGeometry:
    """``glaciers`` with its rasters persisted together when dask-backed (read once a year)."""
    st = glaciers.as_dataset()
    if not _is_dask(st):
        return glaciers
    return GlacierGeometry.from_dataset(st.persist(), glaciers.index, glaciers.grid)


def _filled_surface(surface: xr.DataArray) -> xr.DataArray:
    """``surface`` with each non-finite pixel replaced by the mean of its finite 3 x 3 neighbours.

    Used when an isolated glacier has a non-finite surface: the slope and aspect stencils of the pixels
    around it (other glaciers) then stay finite instead of turning NaN. The isolated glacier's own
    pixels are inactive, so their filled values are never used.
    """
    finite = surface.where(np.isfinite(surface))
    local = finite.rolling(y=3, x=3, center=True, min_periods=1).mean()
    return finite.fillna(local)


def _smb(model, down, g: GlacierGeometry, active, *, year, features, downscale, hemisphere, fill=False,
         constants=None):
    """``infer`` on the active pixels, and which glaciers got a NaN SMB on any active pixel."""
    res = infer(model, down, g.with_surface(_filled_surface(g.surface)) if fill else g, active=active,
                features=features, downscale=downscale, start=int(year), end=int(year), hemisphere=hemisphere,
                constants=constants)
    res = res.persist() if _is_dask(res) else res
    nan = res["smb"].isel(year=0).isnull().where(active, 0.0).astype("float64")
    nan_frac = area_weighted_mean(nan, g.glacier_id, active, g.pixel_area, g.index)
    (glacier_vars, nan_frac) = dask.compute({k: res[k] for k in res.data_vars if "glacier" in res[k].dims},
                                            nan_frac)
    nan_fail = np.nan_to_num(nan_frac.values) > 0
    return res, {k: v.isel(year=0, drop=True).values for k, v in glacier_vars.items()}, nan_fail


def _bad_surface(reason: np.ndarray) -> bool:
    return bool(np.any(reason == SURFACE_REASON))


def _finish(year, index, reason, smb_pixels, okpix_final, values: dict, spread=None) -> xr.Dataset:
    """The year's Dataset: gridded SMB masked to computed glaciers, per-glacier values NaN where failed."""
    failed = reason != ""
    out = {"smb": stamp(smb_pixels.where(okpix_final).astype("float32"), "smb")}
    for name, v in values.items():
        v = np.asarray(v, dtype="int8" if name == "disappeared" else "float64")
        if name != "disappeared":
            v = np.where(failed, np.nan, v)
        out[name] = stamp(glacier_vector(v, index), name)
    out["failed"] = stamp(glacier_vector(failed.astype("int8"), index), "failed")
    for name, da in (spread or {}).items():
        out[name] = stamp(da, name)
    ds = xr.Dataset(out)
    ds["failure_reason"] = glacier_vector(reason.astype(str), index)
    return ds.assign_coords(year=int(year))


# --------------------------------------------------------------------------- evolution
def annual_step(glaciers: GlacierGeometry, down: xr.Dataset, model, *, year: int, features, downscale,
                geometry: GeometryParams, hemisphere: str = "north", curves: xr.Dataset | None = None,
                has_thickness=None, deltah_factor: float = 1.0,
                disappeared: np.ndarray | None = None) -> tuple[GlacierGeometry, xr.Dataset]:
    """One evolution year on the current geometry, glaciers that fail isolated.

    Topography and glacier constants from the current ``surface`` and ``thickness`` -> features ->
    SMB (:func:`glacgrid.inference.infer`) -> delta-h update (:func:`glacgrid.geometry.deltah_update`).

    Parameters
    ----------
    glaciers : GlacierGeometry
        The glaciers at the start of the year: ``glacier_id`` (int, 0 = none), ``thickness`` (m),
        ``surface`` (m), ``pixel_area`` (m2) on ``(y, x)`` (numpy or dask), ``grid`` (the target grid) and
        ``index`` (sorted glacier indices 1..N).
    down : xr.Dataset
        Downscaled monthly climate (``glacgrid.downscale``) covering hydrological year ``year``.
    model : object
        Fitted SMB model or artifact path (an ensemble's mean drives the update).
    year : int
        The hydrological year.
    features : list of str
        Model features.
    downscale : DownscaleParams
        Downscaling parameters.
    geometry : GeometryParams
        ``rho_ice``, ``rho_water`` (kg m-3).
    hemisphere : {"north", "south"}
        Hydrological year.
    curves : xr.Dataset, optional
        Glacier-specific delta-h curves (see :func:`glacgrid.geometry.deltah_update`).
    has_thickness : array of bool aligned with ``index``, optional
        Glaciers with an initial thickness; the others are isolated ("no initial ice thickness").
    deltah_factor : float
        Factor on the delta-h curve exponent (see :func:`glacgrid.geometry.perturbed_curves`);
        1 = unperturbed.
    disappeared : array of bool aligned with ``index``, optional
        Glaciers that had left the loop before this year (no features, no prediction; SMB NaN, area and
        volume 0): the ``disappeared`` vector of the previous year.

    Returns
    -------
    new_glaciers : GlacierGeometry
        ``glaciers`` after the update (``thickness``, ``surface`` float64; those of isolated glaciers
        unchanged; persisted when dask-backed).
    year_ds : xr.Dataset
        Per glacier ``smb_glacier`` (m w.e.), ``glacier_area`` (km2), ``volume`` (km3),
        ``mean_elevation`` (m; after the update), ``disappeared`` (the vector of the next year),
        ``failed`` (int8) and ``failure_reason`` (str); gridded ``smb`` (y, x) float32. Coordinate
        ``year``.
    """
    index = np.asarray(glaciers.index)
    g = _persisted(glaciers)
    st = g.as_dataset()
    gone = (np.zeros(index.size, dtype=bool) if disappeared is None
            else np.asarray(getattr(disappeared, "values", disappeared), dtype=bool))
    reason, ice_area = _evolution_checks(st, index, gone, has_thickness)
    ok = (reason == "") & ~gone
    active = paint_flags(st["glacier_id"], index, ok) & (st["thickness"] > 0)
    res, gl, nan_fail = _smb(model, down, g, active, year=year, features=features, downscale=downscale,
                             hemisphere=hemisphere, fill=_bad_surface(reason))
    reason[ok & nan_fail] = NAN_REASON
    ok &= ~nan_fail
    okpix = paint_flags(st["glacier_id"], index, ok)
    thickness, surface, report = _update(st, okpix, index[ok], gl["smb_glacier"][ok], ice_area[ok],
                                         geometry=geometry, curves=curves, deltah_factor=deltah_factor)
    new = g.with_thickness(thickness).with_surface(surface)
    values = _evolved_values(new, st, okpix, index, ok, gone, gl["smb_glacier"], report)
    return new, _finish(year, index, reason, res["smb"].isel(year=0, drop=True), okpix, values)


def _evolution_checks(st: xr.Dataset, index: np.ndarray, gone: np.ndarray, has_thickness):
    """Failure reasons ('' = fine) and ice areas (m2) of the glaciers; those that left the loop are fine."""
    if has_thickness is not None:
        has_thickness = np.asarray(getattr(has_thickness, "values", has_thickness), dtype=bool)
    reason, ice_area = glacier_checks(st, index, need_thickness=True, has_thickness=has_thickness)
    reason[gone] = ""  # glaciers that left the loop are not checked again
    return reason, ice_area


def _update(st: xr.Dataset, okpix: xr.DataArray, listed: np.ndarray, smb_glacier: np.ndarray,
            ice_area: np.ndarray, *, geometry: GeometryParams, curves, deltah_factor: float):
    """The delta-h update of the computed glaciers (``listed``, pixels ``okpix``): new thickness and
    surface (those of the other pixels unchanged; persisted when dask-backed) and the update's report."""
    # the update sees only the computed glaciers: the others' pixels are off the raster for it
    clean = st.assign(glacier_id=st["glacier_id"].where(okpix, 0).astype(st["glacier_id"].dtype),
                      thickness=st["thickness"].where(okpix, 0.0), surface=st["surface"].where(okpix, 0.0))
    smb_vec = xr.DataArray(np.nan_to_num(smb_glacier), dims="glacier", coords={"glacier": listed},
                           attrs={"units": "m"})  # (NaN: no active pixel, no ice: no change)
    upd, report = deltah_update(clean, smb_vec, rho_ice=geometry.rho_ice, rho_water=geometry.rho_water,
                                curves=perturbed_curves(ice_area, listed, deltah_factor, curves))
    new = {}
    for name in ("thickness", "surface"):
        da = xr.where(okpix, upd[name], st[name]).astype("float64")
        new[name] = stamp(da.assign_attrs(st[name].attrs), name)
    if any(da.chunks is not None for da in new.values()):
        new = dict(zip(new, dask.persist(*new.values())))
    return new["thickness"], new["surface"], report


def _evolved_values(new: GlacierGeometry, st: xr.Dataset, okpix: xr.DataArray, index: np.ndarray, ok: np.ndarray,
                    gone: np.ndarray, smb_glacier: np.ndarray, report: xr.Dataset) -> dict[str, np.ndarray]:
    """Per-glacier values of the year after the update (area, volume, mean elevation, disappeared)."""
    ice = okpix & (new.thickness > 0)
    zmean = area_weighted_mean(new.surface, st["glacier_id"], ice, st["pixel_area"], index)
    zmean = zmean.compute() if zmean.chunks is not None else zmean
    area, volume, gone_now = np.zeros(index.size), np.zeros(index.size), gone.copy()
    area[ok] = report["glacier_area"].values
    volume[ok] = report["volume"].values
    gone_now[ok] = report["disappeared"].values.astype(bool)
    return {"smb_glacier": np.where(gone, np.nan, smb_glacier), "glacier_area": area, "volume": volume,
            "mean_elevation": zmean.values, "disappeared": gone_now.astype("int8")}


# --------------------------------------------------------------------------- reconstruction
@dataclass(frozen=True, eq=False)
class CheckedGeometry:
    """A glacier geometry with its checks, area and mean elevation computed once (reconstruction).

    Build it with :meth:`of`; pass the same object to :func:`reconstruct_step` every year of a static
    geometry (with ``constants=True`` its glacier constants are computed once too).

    Attributes
    ----------
    glaciers : GlacierGeometry
        The geometry (its rasters persisted when dask-backed).
    reason : numpy.ndarray
        Per glacier of ``glaciers.index``: why it cannot be computed ('' = fine).
    area : numpy.ndarray
        Glacier area (km2) over the glacier pixels.
    mean_elevation : numpy.ndarray
        Area-weighted mean surface (m) of the glaciers that pass the checks (NaN for the others).
    constants : xr.Dataset or None
        Glacier constants (:func:`glacgrid.features.glacier_constants`, computed), or None to let each
        year compute them.
    """

    glaciers: GlacierGeometry
    reason: np.ndarray
    area: np.ndarray
    mean_elevation: np.ndarray
    constants: xr.Dataset | None = None

    @classmethod
    def of(cls, glaciers: GlacierGeometry, *, constants: bool = False) -> "CheckedGeometry":
        """Check ``glaciers`` (one flox reduction, thickness not needed) and compute their area and mean
        elevation; with ``constants``, also their glacier constants (for a geometry used every year)."""
        index = np.asarray(glaciers.index)
        persisted = _persisted(glaciers)
        st = persisted.as_dataset()
        reason, area_m2 = glacier_checks(st, index, need_thickness=False)
        okpix = paint_flags(st["glacier_id"], index, reason == "")
        zmean = area_weighted_mean(st["surface"], st["glacier_id"], okpix, st["pixel_area"], index)
        zmean = zmean.compute() if zmean.chunks is not None else zmean
        const = None
        if constants:  # a static geometry: its glacier constants are the same every year
            const = glacier_constants(st["glacier_id"], st["surface"], okpix, st["pixel_area"], index)
            const = const.compute() if _is_dask(const) else const
        return cls(persisted, reason, m2_to_km2(area_m2), zmean.values, const)


def reconstruct_step(glaciers: GlacierGeometry | CheckedGeometry, down: xr.Dataset, model, *, year: int,
                     features, downscale, hemisphere: str = "north",
                     static_volume: np.ndarray | None = None) -> xr.Dataset:
    """SMB of one year on a given geometry (static or interpolated), glaciers that fail isolated.

    Parameters
    ----------
    glaciers : GlacierGeometry or CheckedGeometry
        The geometry of the year (thickness is not needed; every glacier pixel is active). A
        :class:`CheckedGeometry` carries the checks, mean elevation and glacier constants computed once:
        pass the same one every year of a static geometry.
    down, model, year, features, downscale, hemisphere
        As for :func:`annual_step`.
    static_volume : numpy.ndarray, optional
        Volume (km3, aligned with the index) reported as the volume; NaN when not given.

    Returns
    -------
    xr.Dataset
        The year's Dataset of :func:`annual_step`, with ``smb_spread`` and ``smb_glacier_spread`` for an
        ensemble model.
    """
    checked = glaciers if isinstance(glaciers, CheckedGeometry) else CheckedGeometry.of(glaciers)
    g = checked.glaciers
    index = np.asarray(g.index)
    st = g.as_dataset()
    reason = checked.reason.copy()
    ok = reason == ""
    okpix = paint_flags(st["glacier_id"], index, ok)
    res, gl, nan_fail = _smb(model, down, g, okpix, year=year, features=features, downscale=downscale,
                             hemisphere=hemisphere, fill=_bad_surface(reason), constants=checked.constants)
    reason[ok & nan_fail] = NAN_REASON
    ok &= ~nan_fail
    okpix = paint_flags(st["glacier_id"], index, ok)
    volume = np.full(index.size, np.nan) if static_volume is None else np.asarray(static_volume, dtype="float64")
    values = {"smb_glacier": gl["smb_glacier"], "glacier_area": checked.area, "volume": volume,
              "mean_elevation": checked.mean_elevation, "disappeared": np.zeros(index.size, dtype="int8")}
    spread = None
    if "smb_spread" in res:
        failed = reason != ""
        spread = {"smb_spread": res["smb_spread"].isel(year=0, drop=True).where(okpix).astype("float32"),
                  "smb_glacier_spread": glacier_vector(np.where(failed, np.nan, gl["smb_glacier_spread"]), index)}
    return _finish(year, index, reason, res["smb"].isel(year=0, drop=True), okpix, values, spread)
