"""Downscaling of the coarse climate cube to the fine glacier grid: bilinear + lapse rate.

Temperature is interpolated bilinearly from the ERA5-Land cell centres to every pixel centre, then moved
from the interpolated ERA5-Land orography to the DEM elevation with a lapse rate. Precipitation is
interpolated, multiplied by a correction factor and by ``1 + gradient * (z_dem - z_era)``. The result
keeps the DEM it refers to as ``reference_elevation`` so that later stages can move temperature to an
evolving surface with the same lapse rate.
"""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import xarray as xr

from ..config import DownscaleParams
from ..exceptions import GridMismatchError, MissingVariableError
from ..grid import TargetGrid
from ..metadata import provenance, stamp
from ..units import T0
from . import _kernels

__all__ = ["downscale", "DownscaleParams", "solid_precipitation"]


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
              *, time_chunk: int = 12) -> xr.Dataset:
    """Downscale monthly ``t2m`` (K) and ``tp`` (kg m-2) to ``grid`` with surface elevation ``dem`` (m).

    Returns a lazy Dataset with ``temp`` (degC), ``prcp`` (kg m-2) on ``(time, y, x)`` chunked
    ``(time_chunk, *grid.chunks)``, and ``reference_elevation`` (the DEM, m). Pixels where the DEM is NaN
    get NaN.
    """
    _check_cube(cube)
    if dem.dims != ("y", "x") or dem.shape != grid.shape:
        raise GridMismatchError(f"The DEM has dims {dem.dims} and shape {dem.shape}; expected ('y', 'x') and {grid.shape}.")
    lat = np.asarray(cube["lat"].values, dtype="float64")
    lon = np.asarray(cube["lon"].values, dtype="float64")
    if np.any(np.diff(lat) <= 0) or np.any(np.diff(lon) <= 0):
        raise GridMismatchError("The climate cube needs ascending lat and lon; ingest it with glacgrid.ingest.")
    ll = grid.lonlat()
    _check_coverage(ll, lat, lon)

    # Interpolation indices and weights, blockwise on the target grid.
    def weights(lat2d, lon2d, which):
        j, wy = _kernels.bilinear_weights(lat, lat2d)
        i, wx = _kernels.bilinear_weights(lon, lon2d)
        return (j, wy, i, wx)[which].astype("int64" if which in (0, 2) else "float64")

    w = [dsa.map_blocks(weights, ll["lat"].data, ll["lon"].data, k, dtype="int64" if k in (0, 2) else "float64")
         for k in range(4)]
    # The source fields are small (coarse grid): one chunk in space, chunked in time.
    t2m = cube["t2m"].transpose("time", "lat", "lon").chunk({"time": time_chunk, "lat": -1, "lon": -1}).data
    tp = cube["tp"].transpose("time", "lat", "lon").chunk({"time": time_chunk, "lat": -1, "lon": -1}).data
    orog = np.asarray(cube["orog"].transpose("lat", "lon").values, dtype="float64")
    z = dem.data.astype("float64") if isinstance(dem.data, dsa.Array) else dsa.from_array(np.asarray(dem, "float64"), chunks=grid.chunks)
    z = z.rechunk(grid.chunks)

    def interp_time(field, j, wy, i, wx):
        return _kernels.bilinear_apply(field, j, wy, i, wx)

    def interp_static(j, wy, i, wx):
        return _kernels.bilinear_apply(orog, j, wy, i, wx)

    z_era = dsa.map_blocks(interp_static, *w, dtype="float64")

    def t_block(field, j, wy, i, wx, zc, zf):
        t = interp_time(field[:, :, :], j, wy, i, wx)
        return (_kernels.lapse_rate_correction(t, zc, zf, params.lapse_rate) - T0).astype("float32")

    def p_block(field, j, wy, i, wx, zc, zf):
        p = interp_time(field, j, wy, i, wx) * params.precip_factor
        p = p * np.maximum(1.0 + params.precip_gradient * (zf - zc), 0.0)
        return np.maximum(p, 0.0).astype("float32")

    args = [w[0], "yx", w[1], "yx", w[2], "yx", w[3], "yx", z_era, "yx", z, "yx"]
    temp = dsa.blockwise(t_block, "tyx", t2m, "tab", *args, concatenate=True, dtype="float32")
    prcp = dsa.blockwise(p_block, "tyx", tp, "tab", *args, concatenate=True, dtype="float32")
    coords = {"time": cube["time"], **grid.coords()}
    hist = provenance("downscale", lapse_rate=params.lapse_rate, precip_factor=params.precip_factor,
                      precip_gradient=params.precip_gradient)
    out = xr.Dataset(
        {
            "temp": stamp(xr.DataArray(temp, dims=("time", "y", "x"), coords=coords), "temp", history=hist),
            "prcp": stamp(xr.DataArray(prcp, dims=("time", "y", "x"), coords=coords), "prcp", history=hist),
            "reference_elevation": stamp(xr.DataArray(z.astype("float32"), dims=("y", "x"), coords=grid.coords()),
                                         "reference_elevation"),
        }
    )
    out.attrs.update({"lapse_rate": params.lapse_rate, "precip_factor": params.precip_factor,
                      "precip_gradient": params.precip_gradient, "history": hist})
    return out


def _check_coverage(ll: xr.Dataset, lat: np.ndarray, lon: np.ndarray) -> None:
    """The target must lie within the climate grid plus half a cell (else extrapolation would be silent)."""
    dlat, dlon = np.diff(lat).max(), np.diff(lon).max()
    ext = xr.Dataset({"lat_min": ll["lat"].min(), "lat_max": ll["lat"].max(),
                      "lon_min": ll["lon"].min(), "lon_max": ll["lon"].max()}).compute()
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
