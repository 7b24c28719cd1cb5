"""Topographic predictors per pixel and per glacier, recomputed from an evolving surface and thickness.

Per pixel: elevation, slope (degree), aspect (radians, clockwise from north) and its cosine and sine,
latitude and longitude. Per glacier (flox over the glacier-index raster, no loop over glaciers): area,
minimum and maximum elevation and the mean slope of the lowermost 20 % of the elevation range; the
area-weighted means of the pixel predictors come from :func:`glacgrid.features.glacier_features`.
"""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import xarray as xr

from ..glaciers import area_weighted_mean, glacier_sums, paint
from ..grid import EARTH_RADIUS, TargetGrid
from ..metadata import stamp
from ..units import m2_to_km2
from . import _kernels

__all__ = ["topo_pixel_features", "glacier_constants", "active_pixels", "LOWER_FRACTION"]

#: Share of the elevation range that defines a glacier's lowermost part (for ``slope_lower20``).
LOWER_FRACTION = 0.2


def active_pixels(glacier_id: xr.DataArray, thickness: xr.DataArray | None = None) -> xr.DataArray:
    """Pixels that belong to a glacier (id > 0) and, when ``thickness`` is given, still hold ice."""
    active = glacier_id > 0
    if thickness is not None:
        active = active & (thickness.fillna(0.0) > 0)
    return active.rename("active")


def topo_pixel_features(surface: xr.DataArray, grid: TargetGrid) -> xr.Dataset:
    """Per-pixel elevation, slope, aspect (radians, cos, sin), latitude and longitude (lazy, 1-pixel halo)."""
    z = surface.data if isinstance(surface.data, dsa.Array) else dsa.from_array(np.asarray(surface), chunks=grid.chunks)
    z = z.astype("float64").rechunk(grid.chunks)
    ll = grid.lonlat()
    dxr, dyr = grid.resolution
    if grid.is_geographic:
        dy = EARTH_RADIUS * np.deg2rad(dyr)
        dx = (EARTH_RADIUS * np.deg2rad(dxr) * np.cos(np.deg2rad(ll["lat"].data)))
    else:
        dx = dsa.full(grid.shape, dxr, chunks=grid.chunks)
        dy = dyr

    def kernel(zb, dxb):
        return _kernels.slope_aspect(zb, dxb, dy)

    # A one-pixel halo from the neighbouring blocks; the kernel adds a trailing axis, so trim by hand.
    zp = dsa.overlap.overlap(z, depth={0: 1, 1: 1}, boundary={0: "nearest", 1: "nearest"})
    dxp = dsa.overlap.overlap(dx, depth={0: 1, 1: 1}, boundary={0: "nearest", 1: "nearest"})
    sa = dsa.map_blocks(lambda a, b: kernel(a, b)[1:-1, 1:-1], zp, dxp, dtype="float32",
                        new_axis=2, chunks=z.chunks + ((3,),))
    coords = grid.coords()
    dims = ("y", "x")
    aspect = (dsa.arctan2(sa[..., 2], sa[..., 1]) % (2 * np.pi)).astype("float32")
    return xr.Dataset({
        "mean_elevation": stamp(xr.DataArray(z.astype("float32"), dims=dims, coords=coords), "mean_elevation"),
        "slope": stamp(xr.DataArray(sa[..., 0], dims=dims, coords=coords), "slope"),
        "aspect_cos": stamp(xr.DataArray(sa[..., 1], dims=dims, coords=coords), "aspect_cos"),
        "aspect_sin": stamp(xr.DataArray(sa[..., 2], dims=dims, coords=coords), "aspect_sin"),
        "aspect": stamp(xr.DataArray(aspect, dims=dims, coords=coords), "aspect"),
        "lat": stamp(ll["lat"].astype("float32"), "lat"),
        "lon": stamp(ll["lon"].astype("float32"), "lon"),
    })


def glacier_constants(glacier_id: xr.DataArray, surface: xr.DataArray, active: xr.DataArray,
                      pixel_area: xr.DataArray, index: np.ndarray, topo: xr.Dataset | None = None) -> xr.Dataset:
    """Per-glacier area (km2), maximum and minimum elevation (m) over active pixels, with flox (lazy).

    With ``topo`` (from :func:`topo_pixel_features`), also ``slope_lower20``: the area-weighted mean
    pixel slope of the pixels below ``min + 0.2 (max - min)`` of the glacier.
    """
    gid = glacier_id.where(active, 0)
    z = surface.where(active)
    area = glacier_sums(pixel_area.where(active, 0.0), gid, index)
    zmax = glacier_sums(z, gid, index, func="nanmax", fill_value=np.nan)
    zmin = glacier_sums(z, gid, index, func="nanmin", fill_value=np.nan)
    out = {
        "area": stamp(m2_to_km2(area).astype("float64"), "area"),
        "max_elevation": stamp(zmax.astype("float64"), "max_elevation"),
        "min_elevation": stamp(zmin.astype("float64"), "min_elevation"),
    }
    if topo is not None:
        threshold = paint(zmin + LOWER_FRACTION * (zmax - zmin), glacier_id, active)
        lower = active & (surface <= threshold)
        slope20 = area_weighted_mean(topo["slope"], glacier_id, lower, pixel_area, index)
        out["slope_lower20"] = stamp(slope20.astype("float64"), "slope_lower20")
    return xr.Dataset(out)
