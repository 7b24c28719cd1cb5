"""One year of the delta-h geometry update (:func:`deltah_update`): its three paths and its report.

- numpy-backed states: the fused, compiled kernel (:mod:`glacgrid.geometry._fused`), about two passes
  over the pixels;
- dask-backed states (``engine="fused"``): the glacier pixels are gathered in one pass over the blocks
  (:mod:`glacgrid.geometry._scatter`), the fused kernel updates them and the new thickness and surface
  are lazy rasters with the new values written into their blocks (the numpy path's numbers to the bit);
- ``engine="flox"``: the fully distributed path of :mod:`glacgrid.geometry.grouped`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..exceptions import InputDataError
from ..metadata import provenance, stamp
from ..units import m2_to_km2, m3_to_km3
from . import _fused, _kernels, _scatter
from .curves import aligned_curves
from .grouped import update_grouped
from .inputs import REQUIRED, check_params, check_pixels, is_dask, pixel_fields, smb_vectors

__all__ = ["deltah_update", "gather_pixels", "scattered_state"]

_ENGINES = ("fused", "flox")


def deltah_update(state: xr.Dataset, smb: xr.DataArray, *, rho_ice: float = 900.0,
                  rho_water: float = 1000.0, max_iter: int = 100, rtol: float = 1e-9,
                  curves: xr.Dataset | None = None, engine: str = "fused") -> tuple[xr.Dataset, xr.Dataset]:
    """Update ice thickness and surface for one year of glacier-wide surface mass balance.

    Parameters
    ----------
    state : xr.Dataset
        Dims ``(y, x)`` with ``glacier_id`` (int; 0 = no glacier, 1..N), ``thickness`` (m, >= 0),
        ``surface`` (m) and ``pixel_area`` (m2). numpy- or dask-backed, any chunking.
    smb : xr.DataArray
        Glacier-wide SMB in m w.e. (units ``"m"`` if given), dim ``glacier`` with an integer coordinate
        ``glacier`` of glacier indices present in ``state.glacier_id``. Glaciers of the raster not
        listed do not change; a NaN SMB means no change (``volume_change_target`` is NaN).
    rho_ice, rho_water : float
        Densities of ice and water (kg m-3) converting m w.e. into m of ice.
    max_iter : int
        Maximum number of solver passes over the pixels (each is one redistribution step).
    rtol : float
        Tolerance of the volume change, relative to the target.
    curves : xr.Dataset, optional
        Glacier-specific delta-h curves (e.g. from :func:`glacgrid.geometry.calibrate.calibrate_deltah`):
        dim ``glacier`` (glacier indices of ``state.glacier_id``) with coefficients ``gamma``, ``a``,
        ``b``, ``c`` and optionally a ``calibrated`` flag (glaciers with 0/False are skipped). Listed
        glaciers use their own curve whatever their size; the others the generic Huss et al. (2010)
        curve of their size class.
    engine : {"fused", "flox"}
        ``"fused"`` (default): the compiled kernel, on the glacier pixels gathered out of a dask state
        (lazy outputs) or on numpy arrays. ``"flox"``: per-glacier flox reductions over the pixels, one
        eager pass per solver step, for dask states whose glacier pixels do not fit in one process.

    Returns
    -------
    new_state : xr.Dataset
        ``state`` with ``thickness`` and ``surface`` updated (float64; lazy when the inputs are dask).
        Pixels whose ice is used up get thickness 0 and leave the ice mask; ``glacier_id`` is kept.
    report : xr.Dataset
        Per glacier (the ``glacier`` coordinate of ``smb``): ``glacier_area`` (km2) and ``volume``
        (km3) after the update, ``volume_change_target`` and ``volume_change`` (m3 of ice, asked and
        achieved), ``volume_change_unmet`` (m3, target minus achieved for a glacier that lost all
        its ice or did not converge; 0 otherwise), ``disappeared`` (int8, 1 where no ice is left) and ``deltah_curve``
        (int8: 0 uniform, 1 small, 2 medium, 3 large, 4 glacier-specific).

    Raises
    ------
    MissingVariableError, GridMismatchError, GeometryError, InputDataError
        On missing variables, variables not on ``(y, x)``, non-integer or unknown glacier indices,
        negative or NaN thickness, bad pixel areas or surfaces, bad densities or solver settings.
    """
    check_params(rho_ice, rho_water, max_iter, rtol)
    if engine not in _ENGINES:
        raise InputDataError(f"engine must be 'fused' or 'flox'; got {engine!r}.")
    fields = pixel_fields(state)
    glaciers, smb_values = smb_vectors(smb)
    calibrated, coefficients = aligned_curves(curves, glaciers)
    history = provenance("deltah_update", rho_ice=rho_ice, rho_water=rho_water, max_iter=max_iter,
                         rtol=rtol, curves=int(calibrated.sum()))
    if glaciers.size == 0:  # nothing to update (and flox cannot group into no groups)
        none = np.zeros(0)
        sol = _kernels.Solution(none, none, none > 0, none, none, 0, none > 0)
        return state.copy(), _report(smb, glaciers, none, none, sol, none.astype("int8"), history)
    update = dict(smb=smb, glaciers=glaciers, smb_values=smb_values, calibrated=calibrated,
                  coefficients=coefficients, rho_ice=rho_ice, rho_water=rho_water, max_iter=max_iter, rtol=rtol,
                  history=history)
    if engine == "flox":
        return _update_flox(state, fields, **update)
    if not is_dask(fields):  # the fused, compiled kernel (one update, ~2 pixel passes)
        return _update_fused(state, fields, **update)
    # dask: gather the glacier pixels, fused kernel, lazy scatter
    return _update_gathered(state, fields, gather_pixels(fields, glaciers), **update)


def _update_fused(state, fields, *, smb, glaciers, smb_values, calibrated, coefficients, history, **solver):
    """:func:`deltah_update` on numpy-backed fields with :func:`_fused.deltah_update_fused`."""
    h_new, z_new, report = _solve_fused(
        (fields[v].values for v in REQUIRED), smb, glaciers, smb_values, calibrated, coefficients,
        history=history, **solver)
    new_state = _new_state(state, fields["thickness"].copy(data=h_new), fields["surface"].copy(data=z_new),
                           history)
    return new_state, report


def gather_pixels(fields: xr.Dataset, glaciers: np.ndarray) -> _scatter.Gathered:
    """The pixels of ``glaciers`` out of the dask-backed fields of :func:`~glacgrid.geometry.inputs.pixel_fields`
    (one pass over the blocks)."""
    return _scatter.gather(*(fields[v].data for v in REQUIRED), glaciers)


def _update_gathered(state, fields, gathered, *, smb, glaciers, smb_values, calibrated, coefficients, history,
                     **solver):
    """:func:`deltah_update` of gathered pixels; the new thickness and surface are scattered back lazily."""
    h_new, z_new, report = _solve_fused(
        (gathered.gid, gathered.h, gathered.z, gathered.a), smb, glaciers, smb_values, calibrated, coefficients,
        history=history, negative_elsewhere=gathered.negative, **solver)
    return scattered_state(state, fields, gathered, h_new, z_new, history), report


def scattered_state(state: xr.Dataset, fields: xr.Dataset, gathered: _scatter.Gathered, h_new: np.ndarray,
                    z_new: np.ndarray, history: str) -> xr.Dataset:
    """``state`` with the new thickness and surface of the gathered pixels written into its blocks (lazy)."""
    h = _scatter.scatter(fields["thickness"].data, gathered, h_new, name="deltah-thickness")
    z = _scatter.scatter(fields["surface"].data, gathered, z_new, name="deltah-surface")
    return _new_state(state, fields["thickness"].copy(data=h), fields["surface"].copy(data=z), history)


def _solve_fused(arrays, smb, glaciers, smb_values, calibrated, coefficients, *, rho_ice, rho_water, max_iter,
                 rtol, history, negative_elsewhere: int = 0):
    """The fused kernel on pixel arrays, its input checks and the report."""
    gid, h, z, a = arrays
    h_new, z_new, res = _fused.deltah_update_fused(
        gid, h, z, a, glaciers, smb_values, rho_ice=rho_ice, rho_water=rho_water, max_iter=max_iter, rtol=rtol,
        calibrated=calibrated, coefficients=coefficients)
    check_pixels(glaciers, {"pixels": res.pixels, **res.bad}, res.negative + negative_elsewhere)
    sol = res.solution
    # (stacklevel: the warning points at the caller of deltah_update)
    _kernels.warn_not_converged(sol.converged, rtol=rtol, max_iter=max_iter, stacklevel=4)
    curve_code = np.where(calibrated, 4, res.size_cls).astype("int8")
    return h_new, z_new, _report(smb, glaciers, res.target, res.volume, sol, curve_code, history)


def _update_flox(state, fields, *, smb, glaciers, smb_values, calibrated, coefficients, history, **solver):
    """:func:`deltah_update` by per-glacier flox reductions (:func:`~glacgrid.geometry.grouped.update_grouped`)."""
    res = update_grouped(fields, glaciers, smb_values, calibrated, coefficients, **solver)
    new_state = _new_state(state, res.thickness, res.surface, history)
    return new_state, _report(smb, glaciers, res.target, res.volume, res.solution, res.curve_code, history)


def _new_state(state: xr.Dataset, thickness: xr.DataArray, surface: xr.DataArray, history: str) -> xr.Dataset:
    new_state = state.copy()
    for name, da in (("thickness", thickness), ("surface", surface)):
        if da.dims != state[name].dims:
            da = da.transpose(*state[name].dims)
        da = da.assign_attrs(state[name].attrs)
        new_state[name] = stamp(da, name, history=history)
    return new_state


def _report(smb, glaciers, target, volume, sol, curve_code, history) -> xr.Dataset:
    """The per-glacier report of :func:`deltah_update` (on the ``glacier`` coordinate of ``smb``)."""
    coords = {"glacier": glaciers}

    def vec(values):
        return xr.DataArray(values, dims="glacier", coords=coords)

    report = xr.Dataset({
        "glacier_area": stamp(vec(m2_to_km2(sol.area)), "glacier_area"),
        "volume": stamp(vec(m3_to_km3(volume + sol.change)), "volume"),
        "volume_change_target": vec(target).assign_attrs(
            units="m3", long_name="Ice volume change asked for by the SMB (SMB * area * rho_w / rho_i)"),
        "volume_change": vec(sol.change).assign_attrs(
            units="m3", long_name="Ice volume change achieved by the delta-h update"),
        "volume_change_unmet": vec(np.where(np.isfinite(target) & (sol.gone | ~sol.converged),
                                            target - sol.change, 0.0)).assign_attrs(
            units="m3", long_name="Ice volume change asked for but not achieved (glacier ran out of ice)"),
        "disappeared": stamp(vec((sol.area <= 0).astype("int8")), "disappeared"),
        "deltah_curve": vec(curve_code).assign_attrs(
            units="1", long_name="Delta-h curve used: 0 uniform, 1 small, 2 medium, 3 large, 4 glacier-specific"),
    })
    report = report.sel(glacier=smb["glacier"].values).assign_coords(smb.coords)
    report.attrs.update(history=history, solver_passes=sol.iterations,
                        not_converged=int((~sol.converged).sum()))
    return report
