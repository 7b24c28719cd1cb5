"""Coarse climate fields (``lat``, ``lon``) onto a :class:`~glacgrid.grid.TargetGrid`, lazily and chunked.

Three engines, one call (:func:`regrid`); every result is chunked ``(time_chunk, *grid.chunks)``
(or ``grid.chunks`` for static fields) whatever the engine does internally:

``"glacgrid"`` (default)
    Blockwise numpy kernels (:mod:`glacgrid.downscale._kernels`), any target CRS. Bilinear:
    interpolation between ERA5-Land cell centres at every pixel centre's lon/lat; exact for fields
    linear in lon/lat; outside the outermost cell centres the edge value is held. Conservative: the
    overlap-weighted mean of the (at most 2 x 2) cells a pixel touches, from the pixel's lon/lat
    footprint (exact on geographic grids; on projected grids the footprint is approximated by a
    lon/lat box); chunking-invariant to the last bit.
``"xarray-regrid"`` (geographic targets)
    ``xarray-regrid``'s ``linear`` or ``conservative`` (``output_chunks`` = the grid chunks).
``"odc-geo"`` (any target CRS)
    ``odc.geo.xr.xr_reproject`` with GDAL ``bilinear`` or, for the conservative option, ``average``
    (area-weighted over the source cells a pixel overlaps), with ``chunks`` = the grid chunks.

``method="conservative"``: coarse-to-fine, each pixel takes the overlap-weighted mean of the cells it
touches, so the coarse field's area mean is preserved (a step field, unlike bilinear). Note: GDAL's
``average`` (odc-geo engine) differs by chunking on pixels straddling a cell edge (up to ~3 % of the
step between neighbouring cells, measured); use the glacgrid engine where chunking invariance matters.
"""

from __future__ import annotations

import functools

import warnings

import dask.array as dsa
import numpy as np
import xarray as xr

from ..exceptions import GridMismatchError, InputDataError
from ..grid import TargetGrid
from . import _kernels

__all__ = ["regrid", "METHODS", "ENGINES"]

METHODS = ("bilinear", "conservative")
ENGINES = ("auto", "glacgrid", "xarray-regrid", "odc-geo")


def _check(field: xr.DataArray, method: str, engine: str) -> None:
    if method not in METHODS:
        raise InputDataError(f"Unknown regrid method {method!r}; choose one of {METHODS}.")
    if engine not in ENGINES:
        raise InputDataError(f"Unknown regrid engine {engine!r}; choose one of {ENGINES}.")
    for dim in ("lat", "lon"):
        if dim not in field.dims or field.sizes[dim] < 2:
            raise GridMismatchError(f"The field needs a '{dim}' dimension of at least 2 cells; got {dict(field.sizes)}.")
    if np.any(np.diff(field["lat"].values) <= 0) or np.any(np.diff(field["lon"].values) <= 0):
        raise GridMismatchError("The climate field needs ascending lat and lon; ingest it with glacgrid.ingest.")


def regrid(field: xr.DataArray, grid: TargetGrid, *, method: str = "bilinear", engine: str = "auto",
           time_chunk: int = 12) -> xr.DataArray:
    """``field`` on ``(lat, lon)`` (optionally with ``time`` first) onto ``grid``: lazy, chunked.

    Parameters
    ----------
    field : DataArray
        Dims ``("time", "lat", "lon")`` or ``("lat", "lon")``, ascending lat and lon (degrees).
    grid : TargetGrid
        Target grid; its ``chunks`` are the output chunks along ``y`` and ``x``.
    method : {"bilinear", "conservative"}
    engine : {"auto", "glacgrid", "xarray-regrid", "odc-geo"}
        ``"auto"`` is ``"glacgrid"`` for both methods: chunking-invariant to the last bit and with
        memory bounded by the chunk size (odc-geo's ``average`` is not chunking-invariant; see the
        module notes). ``"xarray-regrid"`` (geographic targets) and ``"odc-geo"`` on request.
    time_chunk : int
        Output chunk along ``time``.

    Returns
    -------
    DataArray on ``(["time",] "y", "x")`` with the grid's coordinates, chunked explicitly.
    """
    _check(field, method, engine)
    if engine == "auto":
        engine = "glacgrid"
    if engine == "xarray-regrid" and not grid.is_geographic:
        raise InputDataError("engine='xarray-regrid' needs a geographic (lat/lon) target grid; use engine='odc-geo'.")
    has_time = "time" in field.dims
    field = field.transpose(*(("time",) if has_time else ()), "lat", "lon")
    if engine == "glacgrid":
        out = _glacgrid(field, grid, time_chunk, method)
    elif engine == "xarray-regrid":
        out = _xarray_regrid(field, grid, method, time_chunk)
    else:
        out = _odc_geo(field, grid, method, time_chunk)
    chunks = {"y": grid.chunks[0], "x": grid.chunks[1], **({"time": time_chunk} if has_time else {})}
    out = out.chunk(chunks)
    out.attrs = dict(field.attrs)
    return out.rename(field.name)


def _glacgrid(field: xr.DataArray, grid: TargetGrid, time_chunk: int, method: str) -> xr.DataArray:
    """Blockwise kernels. Each output block computes its own pixel lon/lat and weights from the 1-D
    ``y``/``x`` coordinates of the block, so no 2-D intermediate is shared between tasks (or between
    the fields downscaled together) and memory stays bounded by the chunk size, not the region."""
    lat = np.asarray(field["lat"].values, dtype="float64")
    lon = np.asarray(field["lon"].values, dtype="float64")
    crs, geographic = grid.crs, grid.is_geographic
    dx, dy = grid.resolution

    def apply(f, yb, xb):
        key = (crs, geographic, method, float(dx), float(dy), np.asarray(yb, "float64").tobytes(),
               np.asarray(xb, "float64").tobytes(), lat.tobytes(), lon.tobytes())
        j, wy, i, wx = _block_weights(key)
        return _kernels.bilinear_apply(np.asarray(f, dtype="float32"), j, wy, i, wx)

    coords = grid.coords()
    yd = dsa.from_array(grid.y, chunks=grid.chunks[0])
    xd = dsa.from_array(grid.x, chunks=grid.chunks[1])
    if "time" in field.dims:
        src = field.chunk({"time": time_chunk, "lat": -1, "lon": -1}).data
        data = dsa.blockwise(apply, "tyx", src, "tab", yd, "y", xd, "x", concatenate=True, dtype="float32")
        return xr.DataArray(data, dims=("time", "y", "x"), coords={"time": field["time"], **coords})
    src = np.asarray(field.values, dtype="float32")
    data = dsa.blockwise(lambda yb, xb: apply(src, yb, xb), "yx", yd, "y", xd, "x", dtype="float32")
    return xr.DataArray(data, dims=("y", "x"), coords=coords)


@functools.lru_cache(maxsize=8)
def _block_weights(key: tuple) -> tuple[np.ndarray, ...]:
    """Interpolation indices and weights of one output block, kept per process for the last few blocks:
    the fields downscaled together (t2m, tp, orog) and every time chunk of a block share them, so the
    projection to lon/lat (pyproj) and the weights are computed once per block, not once per task."""
    crs, geographic, method, dx, dy, yb, xb, lat, lon = key
    yb, xb = np.frombuffer(yb, "float64"), np.frombuffer(xb, "float64")
    lat, lon = np.frombuffer(lat, "float64"), np.frombuffer(lon, "float64")
    lat2d, lon2d = _block_lonlat(yb, xb, crs, geographic)
    if method == "bilinear":
        j, wy = _kernels.bilinear_weights(lat, lat2d)
        i, wx = _kernels.bilinear_weights(lon, lon2d)
    else:
        hlat, hlon = _block_half_widths(yb, xb, crs, geographic, dx, dy)
        j, wy = _kernels.conservative_weights(lat, lat2d, hlat)
        i, wx = _kernels.conservative_weights(lon, lon2d, hlon)
    # float32 arithmetic (weights in [0, 1]): ~1e-5 relative, half the memory of float64
    out = (j, wy.astype("float32"), i, wx.astype("float32"))
    for a in out:  # shared between tasks: read-only
        a.flags.writeable = False
    return out


def _block_lonlat(yb: np.ndarray, xb: np.ndarray, crs: str, geographic: bool) -> tuple[np.ndarray, np.ndarray]:
    """2-D latitude and longitude (degrees) of the pixel centres of one block."""
    yy, xx = np.meshgrid(yb, xb, indexing="ij")
    if geographic:
        return yy, xx
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    return np.asarray(lat), np.asarray(lon)


def _block_half_widths(yb: np.ndarray, xb: np.ndarray, crs: str, geographic: bool, dx: float, dy: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Half the extent of every pixel of a block in latitude and longitude (degrees).

    Geographic grids: exact. Projected grids: from the lon/lat of the pixel-edge midpoints, i.e. the
    pixel's footprint approximated by a lon/lat box (the rotation by meridian convergence, ~1-2 deg in
    UTM, is neglected: a few tenths of a percent of the pixel's area changes cell on straddling pixels).
    """
    if geographic:
        return np.full((yb.size, xb.size), dy / 2), np.full((yb.size, xb.size), dx / 2)
    from pyproj import Transformer

    yy, xx = np.meshgrid(yb, xb, indexing="ij")
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    _, la0 = tr.transform(xx, yy - dy / 2)
    _, la1 = tr.transform(xx, yy + dy / 2)
    lo0, _ = tr.transform(xx - dx / 2, yy)
    lo1, _ = tr.transform(xx + dx / 2, yy)
    return np.abs(np.asarray(la1) - np.asarray(la0)) / 2, np.abs(np.asarray(lo1) - np.asarray(lo0)) / 2


def _xarray_regrid(field: xr.DataArray, grid: TargetGrid, method: str, time_chunk: int) -> xr.DataArray:
    import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

    # xarray-regrid wants ascending target coordinates; the grid's y is north-up (descending).
    target = xr.Dataset(coords={"lat": np.sort(grid.y), "lon": grid.x})
    src = field.chunk({"lat": -1, "lon": -1, **({"time": time_chunk} if "time" in field.dims else {})})
    if method == "bilinear":
        out = src.regrid.linear(target)
    else:
        out = src.regrid.conservative(target, latitude_coord="lat", skipna=False,
                                      output_chunks={"lat": grid.chunks[0], "lon": grid.chunks[1]})
    out = out.isel(lat=slice(None, None, -1)).rename({"lat": "y", "lon": "x"})
    return out.assign_coords(grid.coords()).astype("float32")


def _odc_geo(field: xr.DataArray, grid: TargetGrid, method: str, time_chunk: int) -> xr.DataArray:
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_reproject

    src = field.rename({"lat": "latitude", "lon": "longitude"}).isel(latitude=slice(None, None, -1))
    src = src.chunk({"latitude": -1, "longitude": -1, **({"time": time_chunk} if "time" in field.dims else {})})
    src = src.astype("float32")
    src.attrs = {}
    with warnings.catch_warnings():  # odc-geo warns about the grid_mapping it has just assigned itself
        warnings.filterwarnings("ignore", message="grid_mapping=spatial_ref is not pointing")
        src = src.odc.assign_crs("EPSG:4326")
        gbox = GeoBox(grid.shape, grid.affine, grid.crs)
        out = xr_reproject(src, gbox, resampling="bilinear" if method == "bilinear" else "average",
                           dst_nodata=np.nan, chunks=grid.chunks)
    out = out.drop_vars([c for c in out.coords if c not in out.dims])
    return out.rename({out.odc.spatial_dims[0]: "y", out.odc.spatial_dims[1]: "x"}).assign_coords(grid.coords())
