"""Validation of downscaled ERA5-Land against HISTALP at the HISTALP cells, before and after bias correction."""

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

__all__ = ["histalp_grid", "histalp_validation"]


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
    from ..ingest import open_era5land

    d = Path(climate_dir)
    files = [d / "sel_era5_land_monthly_t2m_1981-2018.nc", d / "sel_era5_land_monthly_prcp_1981-2018.nc"]
    for f in [*files, d / "sel_era5_land_invariant.nc", d / "HISTALP_oetztal.nc"]:
        if not f.exists():
            raise InputDataError(f"{f} is missing; expected the HEF climate folder of the shared data.")
    cube = open_era5land(files, invariant=d / "sel_era5_land_invariant.nc", variables=["t2m", "tp"]).load()
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
