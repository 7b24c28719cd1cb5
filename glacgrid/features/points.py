"""Point sampling (stakes: lat, lon, elevation) on the same climate code as pixels and glaciers.

:func:`sample_points` takes the downscaled monthly fields at the four pixels around each point and
moves each pixel's temperature from its reference elevation to the point elevation with the lapse rate
before the bilinear weighting, then computes the same predictors as for pixels
(:func:`glacgrid.features.climate.climate_from_monthly`). Readers turn the Norwegian (NVE) and
Icelandic stake files and the real Iceland ERA5 point-feature table into the same column layout.
"""

from __future__ import annotations

import calendar
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..config import DownscaleParams
from ..exceptions import InputDataError, MissingVariableError
from ..grid import TargetGrid
from ..metadata import stamp
from ..observations import read_stakes as read_stake_files
from ..units import RHO_WATER, SECONDS_PER_DAY, T0
from . import _kernels
from .climate import ClimateFeatureParams, _finish, climate_stacked
from .hydro import hydrological_years
from .topo import topo_pixel_features

__all__ = ["sample_points", "read_stakes", "iceland_era5_point_features", "STAKE_COLUMNS"]

log = logging.getLogger(__name__)

#: Columns of a standard stake table (balances in m w.e.).
STAKE_COLUMNS = ("point_id", "rgi_id", "year", "lat", "lon", "elevation", "balance_winter", "balance_summer",
                 "balance_annual")


def _points_dataset(points) -> xr.Dataset:
    if isinstance(points, pd.DataFrame):
        missing = [c for c in ("lat", "lon", "elevation") if c not in points.columns]
        if missing:
            raise MissingVariableError(f"The points table lacks columns {missing} (has {list(points.columns)}).")
        pid = points["point_id"].to_numpy() if "point_id" in points.columns else np.arange(len(points))
        return xr.Dataset({c: ("point", points[c].to_numpy("float64")) for c in ("lat", "lon", "elevation")},
                          coords={"point": pid})
    return points


def _neighbours(grid: TargetGrid, lon: np.ndarray, lat: np.ndarray, ids) -> tuple[list, list]:
    """Indices and bilinear weights of the 4 pixel centres around each point (grid CRS)."""
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", grid.pyproj_crs, always_xy=True)
    px, py = tr.transform(lon, lat)
    x, y = grid.x, grid.y
    dxr, dyr = grid.resolution
    outside = ((px < x.min() - dxr / 2) | (px > x.max() + dxr / 2) | (py < y.min() - dyr / 2)
               | (py > y.max() + dyr / 2) | ~np.isfinite(px) | ~np.isfinite(py))
    if outside.any():
        bad = list(np.asarray(ids)[outside][:10])
        raise InputDataError(f"{int(outside.sum())} point(s) lie outside the target grid (e.g. {bad}); "
                             "sample them from a grid that covers them or remove them explicitly.")
    i0, wx = _kernels.bilinear_index(x, px)
    j0, wy = _kernels.bilinear_index(y, py)
    i1 = np.minimum(i0 + 1, x.size - 1)
    j1 = np.minimum(j0 + 1, y.size - 1)
    idx = [(j0, i0), (j0, i1), (j1, i0), (j1, i1)]
    w = [(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx]
    return idx, w


def _gather(da: xr.DataArray, idx, w) -> list[tuple[xr.DataArray, xr.DataArray]]:
    out = []
    for (j, i), wk in zip(idx, w):
        v = da.isel(y=xr.DataArray(j, dims="point"), x=xr.DataArray(i, dims="point"))
        out.append((v.drop_vars(["x", "y"], errors="ignore"), xr.DataArray(wk, dims="point")))
    return out


def _weighted(pairs) -> xr.DataArray:
    """NaN-aware weighted sum: weights of NaN neighbours are redistributed over the valid ones."""
    num = sum((v.fillna(0.0) * wk) for v, wk in pairs)
    den = sum(v.notnull() * wk for v, wk in pairs)
    return num / den.where(den > 0)


def sample_points(down: xr.Dataset, points, grid: TargetGrid, params: DownscaleParams = DownscaleParams(), *,
                  start: int, end: int, climate: ClimateFeatureParams | None = None,
                  surface: xr.DataArray | None = None) -> xr.Dataset:
    """Climate and topographic features at points (stakes), dims ``(point, year)``; lazy.

    Parameters
    ----------
    down : Dataset
        Downscaled climate on ``grid`` (``temp`` degC, ``prcp`` kg m-2, ``reference_elevation`` m).
    points : DataFrame or Dataset
        ``lat``, ``lon`` (degrees), ``elevation`` (m) and optionally ``point_id``; as DataFrame columns
        or as Dataset variables on dim ``point``.
    surface : DataArray, optional
        Surface DEM; adds ``slope``, ``aspect_cos``, ``aspect_sin`` (bilinear).

    Notes
    -----
    Temperature of each of the four neighbouring pixels is moved to the point elevation with the
    lapse rate of ``down`` (``attrs['lapse_rate']``, else ``params.lapse_rate``) before weighting;
    precipitation is weighted as is. Points outside the grid raise :class:`InputDataError`.
    """
    climate = climate or ClimateFeatureParams()
    pts = _points_dataset(points)
    lon = np.asarray(pts["lon"].values, "float64")
    lat = np.asarray(pts["lat"].values, "float64")
    zp = xr.DataArray(np.asarray(pts["elevation"].values, "float64"), dims="point")
    idx, w = _neighbours(grid, lon, lat, pts["point"].values)
    lapse = float(down.attrs.get("lapse_rate", params.lapse_rate))
    t_pairs = [(t + lapse * (zp - z), wk) for (t, wk), (z, _) in
               zip(_gather(down["temp"], idx, w), _gather(down["reference_elevation"], idx, w))]
    temp = _weighted(t_pairs).astype("float32")
    prcp = _weighted(_gather(down["prcp"], idx, w)).astype("float32")
    zref = _weighted(_gather(down["reference_elevation"], idx, w))
    lo, hi = start, end
    if climate.reference is not None:
        lo, hi = min(lo, climate.reference[0]), max(hi, climate.reference[1])
    hy, days = hydrological_years(xr.Dataset({"temp": temp, "prcp": prcp}), lo, hi, hydro=climate.hydro)
    stacked = climate_stacked(hy["temp"], hy["prcp"], days, climate, params.snow_threshold, params.rain_threshold)
    ds = _finish(stacked, climate, start, end)
    out = dict(ds.data_vars)
    out["point_elevation"] = stamp(zp.copy(), "point_elevation")
    out["elevation_difference"] = stamp((zp - zref).astype("float32"), "elevation_difference")
    out["lat"] = stamp(xr.DataArray(lat.astype("float32"), dims="point"), "lat")
    out["lon"] = stamp(xr.DataArray(lon.astype("float32"), dims="point"), "lon")
    if surface is not None:
        topo = topo_pixel_features(surface, grid)
        for name in ("slope", "aspect_cos", "aspect_sin"):
            out[name] = stamp(_weighted(_gather(topo[name], idx, w)).astype("float32"), name)
    res = xr.Dataset(out).assign_coords(point=pts["point"].values)
    return res.transpose("point", "year", ...)


# --------------------------------------------------------------------------------------------- readers

def read_stakes(path: str | Path, source: str) -> pd.DataFrame:
    """Read a stake file into :data:`STAKE_COLUMNS` (balances m w.e., year = hydrological end year).

    ``source``: ``"norway"`` (the NVE ``;``-separated file) or ``"iceland"`` (``{HOFS,LANG,VATN}_RGIIDV6.csv``).
    The file is read, checked and dated by :func:`glacgrid.observations.read_stakes` (one home for stake
    files: NVE stakes are named ``location_id/stake_no``, rows without any balance are dropped); this
    renames its columns for the point-balance tables.
    """
    fmt = {"norway": "nve", "iceland": "iceland"}.get(source)
    if fmt is None:
        raise InputDataError(f"source must be 'norway' or 'iceland', got {source!r}.")
    st = read_stake_files([path], fmt=fmt)
    out = st.rename(columns={"stake": "point_id", "obs_id": "rgi_id", "winter": "balance_winter",
                             "summer": "balance_summer", "smb": "balance_annual"})
    return out.astype({"year": "Int64"})[list(STAKE_COLUMNS)]


#: Iceland ERA5 table: column -> (glacgrid name, conversion of the monthly value given the days in month).
_ICELAND_VARS = {
    "t2m": ("t2m", lambda v, d: v),                       # K
    "tp": ("tp", lambda v, d: v * d * RHO_WATER),         # m per day -> kg m-2 per month
    "slhf": ("slhf", lambda v, d: v / SECONDS_PER_DAY),   # J m-2 per day -> W m-2
    "sshf": ("sshf", lambda v, d: v / SECONDS_PER_DAY),
    "ssrd": ("ssrd", lambda v, d: v / SECONDS_PER_DAY),
    "str": ("str", lambda v, d: v / SECONDS_PER_DAY),
    "fal": ("fal", lambda v, d: v),                       # 1
}
_MONTHS = [calendar.month_abbr[m].lower() for m in range(1, 13)]


def iceland_era5_point_features(path: str | Path, lapse_rate: float = -0.0065) -> pd.DataFrame:
    """The real Iceland ERA5 point feature table as one row per stake observation, monthly columns.

    The source (MassBalanceMachine format) has one row per month of each observation period
    (``ID``); months ``oct_``/``nov_`` are the October/November after the hydrological year. Output:
    ``obs_id, point_id, rgi_id, year, lat, lon, point_elevation, elevation_difference, n_months,
    balance`` (m w.e.), then ``<var>_<mon>`` in glacgrid units (t2m K, tp kg m-2, fluxes W m-2, fal 1;
    ``_oct2``/``_nov2`` for the months after the year), ``temp_<mon>`` (degC, moved to the stake
    elevation with ``lapse_rate``) and ``cpdd`` (K d) over the months of the period. Months outside an
    observation period are NaN; no row is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"Iceland ERA5 feature table {path} does not exist.")
    df = pd.read_csv(path)
    need = {"ID", "YEAR", "MONTHS", "POINT_ID", "POINT_LAT", "POINT_LON", "POINT_ELEVATION",
            "ELEVATION_DIFFERENCE", "POINT_BALANCE", "N_MONTHS", "RGIId", *_ICELAND_VARS}
    missing = sorted(need - set(df.columns))
    if missing:
        raise MissingVariableError(f"{path} lacks columns {missing}.")
    mon = df["MONTHS"].str.rstrip("_")
    nxt = df["MONTHS"].str.endswith("_")
    unknown = sorted(set(mon) - set(_MONTHS))
    if unknown:
        raise InputDataError(f"{path}: unknown month labels {unknown}.")
    mnum = mon.map({m: i + 1 for i, m in enumerate(_MONTHS)})
    # calendar year of the month: Oct-Dec belong to the previous calendar year of the hydrological year
    cyear = df["YEAR"] - (mnum >= 10).astype(int) + nxt.astype(int)
    days = pd.to_datetime(dict(year=cyear, month=mnum, day=1)).dt.days_in_month.to_numpy("float64")
    label = mon + np.where(nxt, "2", "")
    long = pd.DataFrame({"ID": df["ID"], "label": label})
    for col, (name, conv) in _ICELAND_VARS.items():
        long[name] = conv(df[col].to_numpy("float64"), days)
    long["temp"] = df["t2m"].to_numpy("float64") - T0 + lapse_rate * df["ELEVATION_DIFFERENCE"].to_numpy("float64")
    long["pdd"] = np.maximum(long["temp"], 0.0) * days
    wide = long.pivot(index="ID", columns="label")
    hydro_order = _MONTHS[9:] + _MONTHS[:9] + ["oct2", "nov2"]
    cols = {}
    for name in [*(_ICELAND_VARS[c][0] for c in _ICELAND_VARS), "temp"]:
        for m in hydro_order:
            if (name, m) in wide.columns:
                cols[f"{name}_{m}"] = wide[(name, m)]
    meta = df.groupby("ID").first()
    out = pd.DataFrame({
        "obs_id": meta.index, "point_id": meta["POINT_ID"].to_numpy(), "rgi_id": meta["RGIId"].to_numpy(),
        "year": meta["YEAR"].to_numpy(), "lat": meta["POINT_LAT"].to_numpy(), "lon": meta["POINT_LON"].to_numpy(),
        "point_elevation": meta["POINT_ELEVATION"].to_numpy(),
        "elevation_difference": meta["ELEVATION_DIFFERENCE"].to_numpy(),
        "n_months": meta["N_MONTHS"].to_numpy(), "balance": meta["POINT_BALANCE"].to_numpy(),
    }).set_index("obs_id")
    out = out.join(pd.DataFrame(cols)).join(wide["pdd"].sum(axis=1, min_count=1).rename("cpdd"))
    return out.reset_index()
