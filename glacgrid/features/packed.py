"""Every glacier pixel of a large, mostly empty raster as one packed ``pixel`` dimension.

A regional mosaic (e.g. the Alps at 25 m: 270 million pixels, 1 % of them ice) is too sparse to
carry monthly climate on every pixel. :func:`pack_feature_pixels` keeps the glacier pixels only,
with their topographic predictors (slope and aspect from each pixel's four raster neighbours), so
that :func:`glacgrid.features.compute_features` runs on ``(time, pixel)`` climate with the same code
as on ``(time, y, x)``: every step of it is dimension-agnostic.
"""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import xarray as xr

from ..exceptions import InputDataError
from ..grid import EARTH_RADIUS, TargetGrid
from ..metadata import stamp
from . import _kernels

__all__ = ["pack_feature_pixels"]


def _nonzero_block(ids: np.ndarray, block_info=None) -> np.ndarray:
    """Flat raster positions of the glacier pixels of one block (an object array holding one array)."""
    (r0, _), (c0, _) = block_info[0]["array-location"]
    ny, nx = block_info[0]["shape"]
    jj, ii = np.nonzero(ids > 0)
    out = np.empty((1, 1), dtype=object)
    out[0, 0] = (jj + r0).astype("int64") * nx + (ii + c0)
    return out


def _glacier_pixels(glacier_id: xr.DataArray, grid: TargetGrid) -> tuple[np.ndarray, np.ndarray]:
    """Raster rows and columns of the glacier pixels (id > 0), row by row; computes the raster once,
    block by block."""
    if glacier_id.dims != ("y", "x") or glacier_id.shape != grid.shape:
        raise InputDataError(f"glacier_id has dims {glacier_id.dims} and shape {glacier_id.shape}; "
                             f"expected ('y', 'x') and {grid.shape}.")
    gid = glacier_id.data if isinstance(glacier_id.data, dsa.Array) else dsa.from_array(
        np.asarray(glacier_id), chunks=grid.chunks)
    parts = dsa.map_blocks(_nonzero_block, gid, dtype=object, chunks=((1,) * gid.numblocks[0],
                                                                      (1,) * gid.numblocks[1])).compute()
    flat = np.sort(np.concatenate([p for p in parts.ravel()])) if parts.size else np.zeros(0, "int64")
    if flat.size == 0:
        raise InputDataError("The glacier-id raster holds no glacier pixel (all ids are 0).")
    return flat // grid.shape[1], flat % grid.shape[1]


def _lonlat(grid: TargetGrid, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of the pixel centres ``(rows, cols)``."""
    x, y = grid.x[cols], grid.y[rows]
    if grid.is_geographic:
        return x, y
    from pyproj import Transformer

    return Transformer.from_crs(grid.pyproj_crs, "EPSG:4326", always_xy=True).transform(x, y)


def pack_feature_pixels(glacier_id: xr.DataArray, surface: xr.DataArray, grid: TargetGrid, *,
                        thickness: xr.DataArray | None = None, chunk: int = 2**18) -> xr.Dataset:
    """The glacier pixels (id > 0) of a raster with their pixel topography, on dim ``pixel`` (row by row).

    The input of :func:`glacgrid.features.compute_features` on a sparse raster (with ``topo=`` the packed
    Dataset). Not to be confused with :func:`glacgrid.geometry.pack_state`, which packs a
    glacier state for the delta-h update.

    Parameters
    ----------
    glacier_id, surface : (y, x) rasters on ``grid`` (dask-backed for large grids)
    thickness : optional (y, x) ice thickness (m), packed along
    chunk : pixels per chunk of the packed arrays

    Returns
    -------
    Dataset with ``glacier_id``, ``surface``, ``pixel_area`` (m2), ``thickness`` (if given) and the
    pixel topography (``mean_elevation``, ``slope``, ``aspect_cos``, ``aspect_sin``, ``aspect``,
    ``lat``, ``lon``), coordinates ``row``/``col`` (raster indices). Finding the pixels computes the
    glacier-id raster once (block by block); the rest stays lazy.
    """
    rows, cols = _glacier_pixels(glacier_id, grid)
    ny, nx = grid.shape

    def take(arr, r=rows, c=cols) -> dsa.Array:
        a = arr.data if isinstance(getattr(arr, "data", None), dsa.Array) else dsa.from_array(
            np.asarray(arr), chunks=grid.chunks)
        return a.rechunk(grid.chunks).vindex[r, c].rechunk(chunk)

    coords = {"row": ("pixel", rows), "col": ("pixel", cols)}
    z = take(surface).astype("float64")
    out = {"glacier_id": ("pixel", take(glacier_id).astype("int32")), "surface": ("pixel", z)}
    if thickness is not None:
        out["thickness"] = ("pixel", take(thickness).astype("float32"))
    out["pixel_area"] = ("pixel", take(grid.pixel_area()).astype("float64"))
    # slope and aspect from the four neighbours of each pixel only (clipped at the raster edge, as the
    # raster version pads with the nearest values): no need to compute them on the empty raster
    nb = [take(surface, rows, np.maximum(cols - 1, 0)), take(surface, rows, np.minimum(cols + 1, nx - 1)),
          take(surface, np.maximum(rows - 1, 0), cols), take(surface, np.minimum(rows + 1, ny - 1), cols)]
    lon, lat = _lonlat(grid, rows, cols)
    dxr, dyr = grid.resolution
    if grid.is_geographic:
        dx = dsa.from_array(EARTH_RADIUS * np.deg2rad(dxr) * np.cos(np.deg2rad(lat)), chunks=chunk)
        dy = EARTH_RADIUS * np.deg2rad(dyr)
    else:
        dx, dy = float(dxr), float(dyr)
    sa = dsa.map_blocks(lambda w, e, n, s, d: _kernels.slope_aspect_at(w, e, n, s, d, dy), *nb,
                        dx if isinstance(dx, dsa.Array) else dsa.full(rows.size, dx, chunks=chunk),
                        dtype="float32", new_axis=1, chunks=(z.chunks[0], (3,)))
    out["mean_elevation"] = ("pixel", z.astype("float32"))
    out["slope"] = ("pixel", sa[:, 0])
    out["aspect_cos"] = ("pixel", sa[:, 1])
    out["aspect_sin"] = ("pixel", sa[:, 2])
    out["aspect"] = ("pixel", (dsa.arctan2(sa[:, 2], sa[:, 1]) % (2 * np.pi)).astype("float32"))
    out["lon"] = ("pixel", dsa.from_array(np.asarray(lon, "float32"), chunks=chunk))
    out["lat"] = ("pixel", dsa.from_array(np.asarray(lat, "float32"), chunks=chunk))
    ds = xr.Dataset(out, coords=coords)
    for name in ("glacier_id", "surface", "pixel_area", "thickness", "mean_elevation", "slope", "aspect_cos",
                 "aspect_sin", "aspect", "lat", "lon"):
        if name in ds:
            ds[name] = stamp(ds[name], name)
    return ds
