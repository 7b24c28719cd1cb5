"""Validation against HISTALP (and ERA5-Land) at their cells.

- :func:`histalp_validation`: downscaled ERA5-Land against HISTALP, before and after quantile mapping.
- :func:`downscaling_comparison`: ERA5 0.25 deg downscaled three ways -- the learned downscaling
  (:class:`~glacgrid.downscale.learned.LearnedDownscaling`), bilinear + lapse rate, empirical quantile
  mapping into ERA5-Land (xsdba) -- scored on a held-out period against ERA5-Land at its cells and against
  HISTALP at its cells.
- :func:`forcing_histalp_comparison`: CERA-20C (ensemble mean) bias-adjusted into ERA5-Land per method,
  against HISTALP at its cells, e.g. 1901-1980.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..config import DownscaleParams
from ..exceptions import InputDataError
from ..grid import TargetGrid
from .core import downscale
from .biascorrect import QuantileMapping, skill

__all__ = ["histalp_grid", "histalp_validation", "downscaling_comparison", "forcing_histalp_comparison"]


def histalp_grid(histalp: xr.Dataset, lat: np.ndarray, lon: np.ndarray) -> tuple[TargetGrid, xr.DataArray]:
    """The HISTALP cells with the given centres as a geographic TargetGrid, and their ``hgt`` (m) on it."""
    lat = np.sort(lat)[::-1]
    dlat = float(np.diff(np.sort(histalp["lat"].values)).mean())
    dlon = float(np.diff(histalp["lon"].values).mean())
    transform = (dlon, 0.0, float(lon[0]) - dlon / 2, 0.0, -dlat, float(lat[0]) + dlat / 2)
    grid = TargetGrid("EPSG:4326", transform, (lat.size, lon.size), chunks=(lat.size, lon.size))
    hgt = histalp["hgt"].sel(lat=lat, lon=lon).rename({"lat": "y", "lon": "x"})
    return grid, hgt.assign_coords(grid.coords()).astype("float64")


def histalp_validation(climate_dir: str | Path, *, params: DownscaleParams = DownscaleParams(),
                       fit_period: tuple[str, str] = ("1981-01", "2000-12"),
                       eval_period: tuple[str, str] = ("2001-01", "2014-09"),
                       lapse_rates: xr.DataArray | None = None, n_quantiles: int = 21) -> pd.DataFrame:
    """Downscale ERA5-Land onto the HISTALP cells (their ``hgt`` as DEM) and score it against HISTALP.

    Quantile mapping (additive for temperature, multiplicative for precipitation) is fitted per cell
    and calendar month on ``fit_period`` and scored on ``eval_period`` (out of sample) as well as on the
    fit period. Only HISTALP cells whose centres lie within the ERA5-Land cell centres (plus half a
    cell) are used.

    Returns
    -------
    DataFrame indexed by (variable, period, stage) with ``bias``, ``rmse``, ``r``, ``n``; temperature
    in degC, precipitation in kg m-2 per month (= mm).
    """
    d = Path(climate_dir)
    _require([d / "HISTALP_oetztal.nc"])
    cube = _era5land(d)
    hist = xr.open_dataset(d / "HISTALP_oetztal.nc", engine="netcdf4").load()
    half_lat = float(np.diff(cube["lat"].values).max()) / 2
    half_lon = float(np.diff(cube["lon"].values).max()) / 2
    lat = hist["lat"].values[(hist["lat"].values >= cube["lat"].values[0] - half_lat)
                             & (hist["lat"].values <= cube["lat"].values[-1] + half_lat)]
    lon = hist["lon"].values[(hist["lon"].values >= cube["lon"].values[0] - half_lon)
                             & (hist["lon"].values <= cube["lon"].values[-1] + half_lon)]
    grid, hgt = histalp_grid(hist, lat, lon)
    down = downscale(cube, grid, hgt, params, lapse_rates=lapse_rates).compute()
    ref = hist[["temp", "prcp"]].sel(lat=np.sort(lat)[::-1], lon=lon).rename({"lat": "y", "lon": "x"})
    ref = ref.assign_coords(grid.coords())
    times = np.intersect1d(down["time"].values, ref["time"].values)
    rows = []
    for var, kind in (("temp", "additive"), ("prcp", "multiplicative")):
        sim, obs = down[var].sel(time=times), ref[var].sel(time=times)
        qm = QuantileMapping.fit(sim, obs, kind=kind, n_quantiles=n_quantiles, period=fit_period)
        corrected = qm.apply(sim).compute()
        for pname, (a, b) in (("fit", fit_period), ("eval", eval_period)):
            sl = slice(a, b)
            rows.append({"variable": var, "period": f"{pname} {a}..{b}", "stage": "before",
                         **skill(sim.sel(time=sl), obs.sel(time=sl))})
            rows.append({"variable": var, "period": f"{pname} {a}..{b}", "stage": "after",
                         **skill(corrected.sel(time=sl), obs.sel(time=sl))})
    table = pd.DataFrame(rows).set_index(["variable", "period", "stage"])
    table.attrs["cells"] = int(lat.size * lon.size)
    return table


_ERA5 = ("sel_era5_monthly_t2m_1979-2018.nc", "sel_era5_monthly_prcp_1979-2018.nc")
_ERA5LAND = ("sel_era5_land_monthly_t2m_1981-2018.nc", "sel_era5_land_monthly_prcp_1981-2018.nc")
_CERA = ("sel_cera-20c_t2m_1901-2010.nc", "sel_cera-20c_pcp_1901-2010.nc")
#: Output variable and its cube variable.
_PAIRS = (("temp", "t2m"), ("prcp", "tp"))


def _require(paths) -> None:
    for f in paths:
        if not Path(f).exists():
            raise InputDataError(f"{f} is missing; expected the shared data folders (hef/climate, forcing).")


def _era5land(d: Path) -> xr.Dataset:
    from ..ingest import open_era5land

    _require([d / f for f in _ERA5LAND] + [d / "sel_era5_land_invariant.nc"])
    return open_era5land([d / f for f in _ERA5LAND], invariant=d / "sel_era5_land_invariant.nc",
                         variables=["t2m", "tp"]).load()


def _histalp_cells(d: Path, cube: xr.Dataset) -> tuple[TargetGrid, xr.DataArray, xr.Dataset]:
    """The HISTALP cells whose centres lie within ``cube``'s cell centres plus half a cell: grid, ``hgt`` and
    ``temp``/``prcp`` on the grid's ``(time, y, x)``."""
    _require([d / "HISTALP_oetztal.nc"])
    hist = xr.open_dataset(d / "HISTALP_oetztal.nc", engine="netcdf4").load()
    lat_c, lon_c = cube["lat"].values, cube["lon"].values
    hl, ho = float(np.diff(lat_c).max()) / 2, float(np.diff(lon_c).max()) / 2
    lat = hist["lat"].values[(hist["lat"].values >= lat_c[0] - hl) & (hist["lat"].values <= lat_c[-1] + hl)]
    lon = hist["lon"].values[(hist["lon"].values >= lon_c[0] - ho) & (hist["lon"].values <= lon_c[-1] + ho)]
    grid, hgt = histalp_grid(hist, lat, lon)
    ref = hist[["temp", "prcp"]].sel(lat=np.sort(lat)[::-1], lon=lon).rename({"lat": "y", "lon": "x"})
    return grid, hgt, ref.assign_coords(grid.coords())


def _on_cells(ds: xr.Dataset, grid: TargetGrid) -> xr.Dataset:
    """``t2m``/``tp`` of a lat/lon cube whose cells are the grid's pixels as ``temp`` (degC)/``prcp`` on ``(time, y, x)``."""
    from ..units import T0

    sub = ds[["t2m", "tp"]].sortby("lat", ascending=False).rename({"lat": "y", "lon": "x"})
    out = xr.Dataset({"temp": sub["t2m"] - T0, "prcp": sub["tp"]})
    return out.transpose("time", "y", "x").assign_coords(grid.coords())


def _score(rows: list, sim: xr.Dataset, obs: xr.Dataset, period: tuple[str, str], **labels) -> None:
    times = np.intersect1d(sim["time"].values, obs["time"].values)
    sl = slice(*period)
    for var, _ in _PAIRS:
        s = sim[var].sel(time=times).sel(time=sl)
        o = obs[var].sel(time=times).sel(time=sl)
        s = s.assign_coords(y=o["y"].values, x=o["x"].values)
        r_cells = float(xr.corr(s, o, dim="time").mean())
        rows.append({**labels, "variable": var, **skill(s, o), "r_cells": r_cells})


def downscaling_comparison(climate_dir: str | Path, *, fit_period: tuple[str, str] = ("1981-01", "2000-12"),
                           eval_period: tuple[str, str] = ("2001-01", "2018-12"),
                           params: DownscaleParams = DownscaleParams(), model_kwargs: dict | None = None,
                           return_model: bool = False):
    """ERA5 (0.25 deg) downscaled three ways, fitted on ``fit_period`` and scored on ``eval_period``.

    Methods (``method`` level of the index):

    - ``learned``: :class:`~glacgrid.downscale.learned.LearnedDownscaling` fitted on ERA5 -> ERA5-Land cells,
      applied at the target cells with their elevation (ERA5-Land ``orog`` or HISTALP ``hgt``);
    - ``bilinear_lapse``: :func:`~glacgrid.downscale.downscale` of ERA5 (bilinear + ``params.lapse_rate``
      from ERA5's orography);
    - ``eqm``: ERA5 adjusted into ERA5-Land by empirical quantile mapping per calendar month
      (:class:`~glacgrid.downscale.BiasAdjustment`, fitted on ``fit_period``); at the HISTALP cells then moved
      from ERA5-Land's cells with bilinear + lapse rate;
    - ``era5land_lapse`` (HISTALP only): ERA5-Land itself with bilinear + lapse rate, the fine reference the
      other three aim at.

    Parameters
    ----------
    climate_dir : path
        The ``hef/climate`` folder of the shared data (ERA5, ERA5-Land, HISTALP).
    fit_period, eval_period : (str, str)
        Fitting and held-out months (HISTALP ends 2014-09: its scores stop there).
    params : DownscaleParams
        Lapse rate and precipitation settings of the bilinear + lapse-rate method.
    model_kwargs : dict, optional
        Hyperparameters of :meth:`LearnedDownscaling.fit`.
    return_model : bool
        Also return the fitted learned model.

    Returns
    -------
    DataFrame
        Indexed by (reference, variable, method) with ``bias``, ``rmse``, ``r``, ``n`` of the monthly values
        at all cells of the held-out period (temperature in degC, precipitation in kg m-2 per month) and
        ``r_cells``, the mean over cells of each cell's correlation in time (``r`` pools cells, so it also
        scores the spatial pattern); with
        ``return_model`` the pair ``(table, model)``.
    """
    from ..ingest import read_forcing
    from .biascorrect import BiasAdjustment
    from .learned import LearnedDownscaling, cell_grid

    d = Path(climate_dir)
    _require([d / f for f in _ERA5] + [d / "sel_era5_invariant.nc"])
    era5 = read_forcing([d / f for f in _ERA5], "era5", invariant=d / "sel_era5_invariant.nc").load()
    land = _era5land(d)
    model = LearnedDownscaling.fit(era5, land, period=fit_period, **(model_kwargs or {}))
    eqm = BiasAdjustment.fit(era5, land, method="eqm", period=fit_period).apply(era5, land).load()
    eval_era5 = era5.sel(time=slice(*eval_period))

    lgrid = cell_grid(land["lat"].values, land["lon"].values)
    lz = xr.DataArray(land["orog"].sortby("lat", ascending=False).values, dims=("y", "x"), coords=lgrid.coords())
    hgrid, hgt, hist = _histalp_cells(d, land)
    land_obs = _on_cells(land, lgrid)
    rows: list = []
    for ref_name, grid, dem, obs in (("era5land", lgrid, lz, land_obs), ("histalp", hgrid, hgt, hist)):
        sims = {"learned": model.downscale(eval_era5, grid, dem),
                "bilinear_lapse": downscale(eval_era5, grid, dem, params)}
        if ref_name == "era5land":
            sims["eqm"] = _on_cells(eqm, grid)
        else:
            sims["eqm"] = downscale(eqm, grid, dem, params)
            sims["era5land_lapse"] = downscale(land, grid, dem, params)
        for method, sim in sims.items():
            _score(rows, sim.compute(), obs, eval_period, reference=ref_name, method=method)
    table = pd.DataFrame(rows).set_index(["reference", "variable", "method"]).sort_index()
    table.attrs.update({"fit_period": fit_period, "eval_period": eval_period, "histalp_cells": int(np.prod(hgrid.shape)),
                        "era5land_cells": int(np.prod(lgrid.shape)), "training": dict(model.training)})
    return (table, model) if return_model else table


def forcing_histalp_comparison(climate_dir: str | Path, forcing_dir: str | Path, *,
                               methods: tuple[str, ...] = ("delta", "eqm", "qdm"),
                               fit_period: tuple[str, str] = ("1981-01", "2000-12"),
                               period: tuple[str, str] = ("1901-01", "1980-12"),
                               params: DownscaleParams = DownscaleParams()) -> pd.DataFrame:
    """CERA-20C (ensemble mean) adjusted into ERA5-Land per method, against HISTALP at its cells over ``period``.

    Each method's :class:`~glacgrid.downscale.BiasAdjustment` is fitted on ``fit_period`` (members pooled) and
    applied to ``period``; the member mean on ERA5-Land's cells is moved to the HISTALP cells with bilinear +
    lapse rate from ERA5-Land's orography. ``raw`` is CERA-20C as read, moved with bilinear + lapse rate from
    its own orography.

    Parameters
    ----------
    climate_dir, forcing_dir : path
        The ``hef/climate`` and ``forcing`` folders of the shared data.
    methods : tuple of str
        Bias-adjustment methods (:data:`~glacgrid.downscale.METHODS`).
    fit_period, period : (str, str)
        Fitting months (inside ERA5-Land) and scored months.
    params : DownscaleParams
        Lapse rate and precipitation settings of the move to the HISTALP cells.

    Returns
    -------
    DataFrame
        Indexed by (variable, method) with ``bias``, ``rmse``, ``r``, ``n`` of the monthly values at all cells
        (temperature in degC, precipitation in kg m-2 per month) and ``r_cells`` (mean over cells of the
        correlation in time).
    """
    from ..ingest import read_forcing
    from .biascorrect import BiasAdjustment

    d, f = Path(climate_dir), Path(forcing_dir)
    _require([f / n for n in _CERA] + [f / "sel_cera-20c_invariant.nc"])
    land = _era5land(d)
    cera = read_forcing([f / n for n in _CERA], "era5", invariant=f / "sel_cera-20c_invariant.nc").load()
    hgrid, hgt, hist = _histalp_cells(d, land)
    target = cera.sel(time=slice(*period))
    rows: list = []
    raw = target[["t2m", "tp"]].mean("member").assign(orog=cera["orog"])
    _score(rows, downscale(raw, hgrid, hgt, params).compute(), hist, period, method="raw")
    for method in methods:
        fitted = BiasAdjustment.fit(cera, land, method=method, period=fit_period)
        adjusted = fitted.apply(target, land)
        mean = adjusted[["t2m", "tp"]].mean("member").assign(orog=land["orog"]).load()
        _score(rows, downscale(mean, hgrid, hgt, params).compute(), hist, period, method=method)
    table = pd.DataFrame(rows).set_index(["variable", "method"]).sort_index()
    table.attrs.update({"fit_period": fit_period, "period": period, "histalp_cells": int(np.prod(hgrid.shape)),
                        "members": int(cera.sizes.get("member", 1))})
    return table
