"""The downscaling of the coarse climate cube to the fine glacier grid: :func:`downscale` (regridding +
lapse rate) and :func:`solid_precipitation`.

Temperature is regridded (bilinear by default, or conservative; see :mod:`glacgrid.downscale.regrid`)
from the ERA5-Land cell centres to every pixel centre, then moved from the interpolated ERA5-Land
orography to the DEM elevation with a lapse rate. Precipitation is interpolated, multiplied by a
correction factor and by ``1 + gradient * (z_dem - z_era)``. The result keeps the DEM it refers to as
``reference_elevation`` so that later stages can move temperature to an evolving surface with the same
lapse rate.
"""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import xarray as xr

from ..config import DownscaleParams
from ..exceptions import GridMismatchError, InputDataError, MissingVariableError
from ..grid import TargetGrid
from ..metadata import provenance, stamp
from . import _kernels
from .regrid import regrid

__all__ = ["downscale", "solid_precipitation"]


def _check_cube(cube: xr.Dataset) -> None:
    for name in ("t2m", "tp", "orog"):
        if name not in cube:
            raise MissingVariableError(
                f"The climate cube has no {name!r} (variables: {list(cube.data_vars)}). "
                "Ingest t2m and tp together with the invariant file (geopotential z)."
            )
    for dim in ("lat", "lon"):
        if dim not in cube.dims or cube.sizes[dim] < 2:
            raise GridMismatchError(f"The climate cube needs a '{dim}' dimension of at least 2 cells; got {dict(cube.sizes)}.")


def downscale(cube: xr.Dataset, grid: TargetGrid, dem: xr.DataArray, params: DownscaleParams = DownscaleParams(),
              *, time_chunk: int = 12, method: str = "bilinear", engine: str = "auto",
              lapse_rates: xr.DataArray | None = None) -> xr.Dataset:
    """Downscale monthly ``t2m`` (K) and ``tp`` (kg m-2) to ``grid`` with surface elevation ``dem`` (m).

    Parameters
    ----------
    cube : Dataset
        ``t2m`` (K), ``tp`` (kg m-2 per month) on ``(time, lat, lon)`` and ``orog`` (m) on ``(lat, lon)``.
    grid : TargetGrid
        Target grid; output chunks are ``(time_chunk, *grid.chunks)``.
    dem : DataArray
        Surface elevation (m) on the grid's ``(y, x)``.
    params : DownscaleParams
        ``lapse_rate`` (K m-1, default -0.0065), ``precip_factor`` (1), ``precip_gradient`` (m-1):
        ``prcp = tp * precip_factor * max(1 + precip_gradient * (z_dem - z_era), 0)``.
    method : {"bilinear", "conservative"}
        Horizontal regridding (see :func:`glacgrid.downscale.regrid.regrid`); the ERA5-Land orography
        is regridded the same way, so the lapse-rate step is consistent.
    engine : {"auto", "glacgrid", "xarray-regrid", "odc-geo"}
    lapse_rates : DataArray, optional
        Monthly lapse rates (K m-1) on a ``month`` dim (1..12), e.g. from
        :func:`glacgrid.downscale.lapse.fit_lapse_rates`; replaces ``params.lapse_rate``.

    Returns
    -------
    Dataset
        Lazy, with ``temp`` (degC), ``prcp`` (kg m-2) on ``(time, y, x)`` chunked
        ``(time_chunk, *grid.chunks)``, and ``reference_elevation`` (the DEM, m). Pixels where the DEM
        is NaN get NaN.
    """
    _check_cube(cube)
    if dem.dims != ("y", "x") or dem.shape != grid.shape:
        raise GridMismatchError(f"The DEM has dims {dem.dims} and shape {dem.shape}; expected ('y', 'x') and {grid.shape}.")
    lat = np.asarray(cube["lat"].values, dtype="float64")
    lon = np.asarray(cube["lon"].values, dtype="float64")
    if np.any(np.diff(lat) <= 0) or np.any(np.diff(lon) <= 0):
        raise GridMismatchError("The climate cube needs ascending lat and lon; ingest it with glacgrid.ingest.")
    _check_coverage(grid, lat, lon)
    kw = dict(method=method, engine=engine, time_chunk=time_chunk)
    t_c = regrid(cube["t2m"], grid, **kw)
    p_c = regrid(cube["tp"], grid, **kw)
    z_era = regrid(cube["orog"], grid, **kw)
    z = dem.data if isinstance(dem.data, dsa.Array) else dsa.from_array(np.asarray(dem), chunks=grid.chunks)
    z = xr.DataArray(z.astype("float32").rechunk(grid.chunks), dims=("y", "x"), coords=grid.coords())
    if lapse_rates is None:
        gamma = xr.full_like(cube["time"], params.lapse_rate, dtype="float64")
        lapse_desc: object = params.lapse_rate
    else:
        lapse_rates = _check_lapse_rates(lapse_rates)
        gamma = lapse_rates.sel(month=cube["time"].dt.month).drop_vars("month")
        lapse_desc = [round(float(v), 6) for v in lapse_rates.values]
    gamma = gamma.astype("float32").chunk({"time": time_chunk})
    temp = xr.apply_ufunc(_kernels.lapse_rate_correction_c, t_c, z_era, z, gamma,
                          dask="parallelized", output_dtypes=["float32"])
    prcp = xr.apply_ufunc(_kernels.precip_correction, p_c, z_era, z, params.precip_factor, params.precip_gradient,
                          dask="parallelized", output_dtypes=["float32"])
    coords = {"time": cube["time"], **grid.coords()}
    hist = provenance("downscale", lapse_rate=lapse_desc, precip_factor=params.precip_factor,
                      precip_gradient=params.precip_gradient, method=method, engine=engine)
    out = xr.Dataset(
        {
            "temp": stamp(temp.transpose("time", "y", "x").assign_coords(coords), "temp", history=hist),
            "prcp": stamp(prcp.transpose("time", "y", "x").assign_coords(coords), "prcp", history=hist),
            "reference_elevation": stamp(z, "reference_elevation"),
        }
    )
    out.attrs.update({"lapse_rate": params.lapse_rate if lapse_rates is None else lapse_desc,
                      "precip_factor": params.precip_factor, "precip_gradient": params.precip_gradient,
                      "regrid_method": method, "history": hist})
    return out


def _check_lapse_rates(rates: xr.DataArray) -> xr.DataArray:
    if "month" not in rates.dims or sorted(int(m) for m in rates["month"].values) != list(range(1, 13)):
        raise InputDataError(
            f"lapse_rates must have a 'month' dimension with months 1..12; got dims {rates.dims}. "
            "Fit them with glacgrid.downscale.lapse.fit_lapse_rates(cube)."
        )
    vals = np.asarray(rates.values, dtype="float64")
    if not np.all(np.isfinite(vals)) or np.any(np.abs(vals) > 0.015):
        raise InputDataError(
            f"lapse_rates must be finite and within +-0.015 K m-1 (K per metre, not per km); got {vals}."
        )
    return rates


def _check_coverage(grid: TargetGrid, lat: np.ndarray, lon: np.ndarray) -> None:
    """The target must lie within the climate grid plus half a cell (else extrapolation would be silent).

    The lon/lat extremes of the pixel centres are taken on the grid's outer ring of pixels (exact for
    geographic grids, and for projected grids whose lon/lat vary monotonically inside, as UTM does),
    so the check computes nothing lazy and costs O(nx + ny).
    """
    from pyproj import Transformer

    dlat, dlon = np.diff(lat).max(), np.diff(lon).max()
    gy, gx = grid.y, grid.x
    ring_y = np.concatenate([np.full(gx.size, gy[0]), np.full(gx.size, gy[-1]), gy, gy])
    ring_x = np.concatenate([gx, gx, np.full(gy.size, gx[0]), np.full(gy.size, gx[-1])])
    if grid.is_geographic:
        rlon, rlat = ring_x, ring_y
    else:
        rlon, rlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(ring_x, ring_y)
    ext = xr.Dataset({"lat_min": np.min(rlat), "lat_max": np.max(rlat),
                      "lon_min": np.min(rlon), "lon_max": np.max(rlon)})
    if (ext.lat_min < lat[0] - dlat / 2 or ext.lat_max > lat[-1] + dlat / 2
            or ext.lon_min < lon[0] - dlon / 2 or ext.lon_max > lon[-1] + dlon / 2):
        raise GridMismatchError(
            f"The target grid spans lat {float(ext.lat_min):.3f}..{float(ext.lat_max):.3f}, "
            f"lon {float(ext.lon_min):.3f}..{float(ext.lon_max):.3f}, beyond the climate cube "
            f"(lat {lat[0]:.3f}..{lat[-1]:.3f}, lon {lon[0]:.3f}..{lon[-1]:.3f}) by more than half a cell. "
            "Download a larger climate domain or crop the target grid."
        )


def solid_precipitation(temp: xr.DataArray, prcp: xr.DataArray, params: DownscaleParams = DownscaleParams()) -> xr.DataArray:
    """Solid share of ``prcp`` given ``temp`` (degC), with the linear rain/snow transition band."""
    frac = xr.apply_ufunc(_kernels.solid_fraction, temp, params.snow_threshold, params.rain_threshold,
                          dask="parallelized", output_dtypes=["float32"])
    return stamp((prcp * frac).astype("float32"), "prcp_solid")
