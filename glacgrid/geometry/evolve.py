"""Several years of delta-h geometry evolution.

:func:`evolve` applies :func:`glacgrid.geometry.deltah_update` year after year to a series of
glacier-wide SMB and returns the final state with per-glacier, per-year area, volume, volume change
(asked, achieved, unmet) and the year each glacier disappeared in.

:func:`evolve` on a dask-backed state gathers the glacier pixels once, runs every year on them with the
fused kernel and scatters the final thickness and surface back lazily (the same numbers as year after
year on the full raster, without a graph that grows with the years).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..exceptions import InputDataError
from ..metadata import provenance, stamp
from ..units import km3_to_m3
from .deltah import deltah_update, gather_pixels, scattered_state
from .inputs import check_negative, is_dask, pixel_fields, smb_vectors

__all__ = ["evolve"]


def evolve(state: xr.Dataset, smb: xr.DataArray, *, rho_ice: float = 900.0, rho_water: float = 1000.0,
           curves: xr.Dataset | None = None, max_iter: int = 100,
           rtol: float = 1e-9) -> tuple[xr.Dataset, xr.Dataset]:
    """Evolve the geometry through the years of ``smb``.

    Parameters
    ----------
    state : xr.Dataset
        As for :func:`~glacgrid.geometry.deltah_update`: ``glacier_id``, ``thickness`` (m),
        ``surface`` (m), ``pixel_area`` (m2) on ``(y, x)``.
    smb : xr.DataArray
        Glacier-wide SMB (m w.e.) with dims ``(year, glacier)``, years in the order they are applied.
    rho_ice, rho_water : float
        Densities (kg m-3).
    curves : xr.Dataset, optional
        Glacier-specific delta-h curves (see :func:`~glacgrid.geometry.deltah_update`).
    max_iter, rtol
        Solver settings of each annual update.

    Returns
    -------
    state : xr.Dataset
        The state after the last year (lazy when the input is dask-backed).
    report : xr.Dataset
        Dims ``(year, glacier)``: the variables of the annual reports (``glacier_area``, ``volume``
        after each year, ``volume_change_target``, ``volume_change``, ``volume_change_unmet``,
        ``disappeared``); dim ``glacier``: ``disappeared_year`` (the year at whose end a glacier that
        had ice lost the last of it; -1 if it never did).
    """
    if not isinstance(smb, xr.DataArray) or set(smb.dims) != {"year", "glacier"}:
        raise InputDataError(
            f"smb must be a DataArray with dims ('year', 'glacier'); got {type(smb).__name__} with dims "
            f"{getattr(smb, 'dims', None)}. For one year use deltah_update.")
    smb = smb.transpose("year", "glacier")
    full, step = state, state
    fields = pixel_fields(state)
    glaciers, _ = smb_vectors(smb.isel(year=0, drop=True)) if smb.sizes["year"] else (np.zeros(0), None)
    gathered = None
    if glaciers.size and is_dask(fields):
        # the glacier pixels are gathered once, the years run on them, the result is scattered once
        gathered = gather_pixels(fields, glaciers)
        check_negative(gathered.negative)
        step = xr.Dataset({k: (("y", "x"), v[None, :]) for k, v in
                           (("glacier_id", gathered.gid), ("thickness", gathered.h), ("surface", gathered.z),
                            ("pixel_area", gathered.a))})
        for k in step.data_vars:
            step[k].attrs = dict(state[k].attrs)
    reports = []
    for year in smb["year"].values:  # years are sequential: each starts from the last one's state
        step, report = deltah_update(step, smb.sel(year=year, drop=True), rho_ice=rho_ice,
                                     rho_water=rho_water, max_iter=max_iter, rtol=rtol, curves=curves)
        reports.append(report.compute().expand_dims(year=[year]))
    if not reports:
        raise InputDataError("smb has no years; give at least one year of SMB.")
    if gathered is not None:
        state = scattered_state(full, fields, gathered, step["thickness"].values[0], step["surface"].values[0],
                                 reports[-1].attrs["history"])
        for k in ("thickness", "surface"):
            state[k].attrs = dict(step[k].attrs)
    else:
        state = step
    report = xr.concat(reports, dim="year", combine_attrs="drop_conflicts")
    before = km3_to_m3(report["volume"]) - report["volume_change"]
    vanished = (report["disappeared"] == 1) & (before > 0)
    first = vanished.argmax("year")
    years = report["year"].values
    report["disappeared_year"] = stamp(
        xr.DataArray(np.where(vanished.any("year").values, years[first.values], -1).astype("int64"),
                     dims="glacier", coords={"glacier": report["glacier"]}), "disappeared_year",
        history=provenance("evolve", years=f"{years[0]}-{years[-1]}", rho_ice=rho_ice, rho_water=rho_water))
    report.attrs["solver_passes"] = [r.attrs["solver_passes"] for r in reports]
    return state, report
