"""Monthly temperature lapse rates fitted on the ERA5-Land cells surrounding a target grid."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..exceptions import InputDataError, MissingVariableError
from ..grid import TargetGrid
from ..metadata import provenance
from . import _kernels

__all__ = ["fit_lapse_rates"]


def fit_lapse_rates(cube: xr.Dataset, grid: TargetGrid | None = None, *, margin: int = 1,
                    min_cells: int = 6) -> xr.DataArray:
    """Lapse rate (K m-1) per calendar month, regressed on the cells around ``grid``.

    For every time step, ``t2m`` of the selected cells is regressed linearly on their orography
    (``orog``, m); the slopes are averaged per calendar month. Cells: those whose centres lie within
    the grid's lon/lat extent plus ``margin`` cells on every side (all cells if ``grid`` is None).

    Parameters
    ----------
    cube : Dataset
        ``t2m`` (K) on ``(time, lat, lon)`` and ``orog`` (m) on ``(lat, lon)``.
    grid : TargetGrid, optional
    margin : int
        Extra cells around the grid's extent.
    min_cells : int
        Fewer selected cells raise :class:`InputDataError` (a regression on 2-3 cells is noise).

    Returns
    -------
    DataArray on ``month`` (1..12), units ``K m-1``, with coordinates ``r2`` (mean coefficient of
    determination per month) and ``orography_range`` (m) and the number of cells in ``attrs``.
    """
    for name in ("t2m", "orog"):
        if name not in cube:
            raise MissingVariableError(f"fit_lapse_rates needs {name!r} in the cube; variables: {list(cube.data_vars)}.")
    sub = cube[["t2m", "orog"]]
    if grid is not None:
        ll = grid.lonlat()
        lo0, lo1 = float(ll["lon"].min()), float(ll["lon"].max())
        la0, la1 = float(ll["lat"].min()), float(ll["lat"].max())
        lat, lon = cube["lat"].values, cube["lon"].values
        dlat, dlon = np.diff(lat).max(), np.diff(lon).max()
        sub = sub.sel(lat=slice(la0 - (margin + 0.5) * dlat, la1 + (margin + 0.5) * dlat),
                      lon=slice(lo0 - (margin + 0.5) * dlon, lo1 + (margin + 0.5) * dlon))
    z = np.asarray(sub["orog"].values, dtype="float64").ravel()
    ok = np.isfinite(z)
    if ok.sum() < min_cells:
        raise InputDataError(
            f"Only {int(ok.sum())} ERA5-Land cells around the grid (need {min_cells}) to fit lapse rates; "
            "increase margin= or use a constant lapse rate."
        )
    if np.ptp(z[ok]) < 200.0:
        raise InputDataError(
            f"The selected cells span only {np.ptp(z[ok]):.0f} m of orography; a lapse-rate fit needs >= 200 m. "
            "Increase margin= or use a constant lapse rate."
        )
    t = np.asarray(sub["t2m"].transpose("time", "lat", "lon").values, dtype="float64").reshape(sub.sizes["time"], -1)
    t = t[:, ok]
    if not np.all(np.isfinite(t)):
        raise InputDataError("t2m has missing values on the cells selected for the lapse-rate fit.")
    slope, r2 = _kernels.regress_slope(t, z[ok])
    month = cube["time"].dt.month.values
    if sorted(set(month.tolist())) != list(range(1, 13)):
        raise InputDataError(f"The cube covers months {sorted(set(month.tolist()))}; monthly lapse rates need all 12.")
    rates = np.array([slope[month == m].mean() for m in range(1, 13)])
    r2m = np.array([np.nanmean(r2[month == m]) for m in range(1, 13)])
    out = xr.DataArray(
        rates, dims="month",
        coords={"month": np.arange(1, 13), "r2": ("month", r2m)},
        attrs={"units": "K m-1", "long_name": "Monthly temperature lapse rate fitted on ERA5-Land cells",
               "n_cells": int(ok.sum()), "orography_range": float(np.ptp(z[ok])),
               "history": provenance("fit_lapse_rates", margin=margin, n_cells=int(ok.sum()))},
        name="lapse_rate",
    )
    return out
