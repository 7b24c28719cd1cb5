"""Glacier masks: outlines -> integer glacier-index raster (and fractional cover), blockwise.

Convention used by every later stage: ``glacier_id`` is an int32 raster with 0 for no glacier and
1..N for the glaciers of the outline table, in table order. The table (a pandas DataFrame indexed
1..N, column ``rgi_id``) maps indices to the outlines' own ids.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as dsa
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from .exceptions import GeometryError, InputDataError
from .grid import TargetGrid
from .metadata import provenance, stamp

__all__ = ["read_outlines", "rasterize_glaciers", "glacier_table"]


def read_outlines(path: str | Path, id_column: str = "RGIId", name_column: str = "") -> gpd.GeoDataFrame:
    """Read outlines and check them: ids present and unique, geometries valid (repaired if not).

    Invalid geometries are repaired with ``make_valid`` and listed in ``gdf.attrs["repaired"]``.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"Outline file {path} does not exist.")
    gdf = gpd.read_file(path)
    if id_column not in gdf.columns:
        raise GeometryError(
            f"Outline file {path} has no column {id_column!r}; columns are {list(gdf.columns)}. "
            "Set [glaciers] id_column to the column holding the glacier ids."
        )
    if gdf.crs is None:
        raise GeometryError(f"Outline file {path} has no CRS (.prj missing); add one before use.")
    dup = gdf[id_column][gdf[id_column].duplicated()].tolist()
    if dup:
        raise GeometryError(f"Outline file {path} has duplicated ids in {id_column!r}: {dup[:10]}. Ids must be unique.")
    empty = gdf.geometry.is_empty | gdf.geometry.isna()
    if empty.any():
        raise GeometryError(f"Outlines with empty geometry in {path}: {gdf.loc[empty, id_column].tolist()[:10]}.")
    invalid = ~gdf.geometry.is_valid
    repaired = gdf.loc[invalid, id_column].tolist()
    if repaired:
        gdf.loc[invalid, "geometry"] = gdf.loc[invalid, "geometry"].make_valid()
    out = gpd.GeoDataFrame(
        {"rgi_id": gdf[id_column].astype(str).to_numpy(),
         "name": gdf[name_column].astype(str).to_numpy() if name_column else [""] * len(gdf)},
        geometry=gdf.geometry.to_numpy(), crs=gdf.crs,
    )
    out.attrs["repaired"] = repaired
    out.attrs["source"] = str(path)
    return out


def _outline_area_km2(gdf: gpd.GeoDataFrame) -> np.ndarray:
    """Outline areas (km2) on a local equal-area projection."""
    lon, lat = gdf.to_crs("EPSG:4326").union_all().centroid.coords[0]
    laea = f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m"
    return gdf.to_crs(laea).area.to_numpy() / 1e6


def _rasterize_block(shapes_gdf: gpd.GeoDataFrame, transform: tuple, shape: tuple[int, int],
                     supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Glacier index (by pixel centre) and covered fraction for one block."""
    from affine import Affine
    from rasterio.features import rasterize

    aff = Affine(*transform)
    shapes = list(zip(shapes_gdf.geometry, shapes_gdf["index"].astype("int32")))
    ids = np.zeros(shape, dtype="int32")
    frac = np.zeros(shape, dtype="float32")
    if not shapes:
        return ids, frac
    ids = rasterize(shapes, out_shape=shape, transform=aff, fill=0, dtype="int32")
    fine = rasterize(
        [(g, 1) for g, _ in shapes], out_shape=(shape[0] * supersample, shape[1] * supersample),
        transform=aff @ Affine.scale(1 / supersample), fill=0, dtype="uint8",
    )
    frac = fine.reshape(shape[0], supersample, shape[1], supersample).mean(axis=(1, 3)).astype("float32")
    return ids, frac


def rasterize_glaciers(outlines: gpd.GeoDataFrame, grid: TargetGrid, *, supersample: int = 4) -> xr.Dataset:
    """Rasterise outlines onto ``grid`` block by block (lazy).

    A pixel belongs to the glacier whose outline contains its centre (``glacier_id``); where outlines
    overlap, the later outline in the table wins (documented, and counted in the glacier table).
    ``glacier_fraction`` is the share of the pixel covered by any outline, from ``supersample``² sub-pixels.

    Returns a Dataset with ``glacier_id`` (int32) and ``glacier_fraction`` on the grid, and the glacier
    table in ``ds.attrs`` is *not* stored: use :func:`glacier_table`.
    """
    gdf = outlines
    if gdf.crs is None:
        raise GeometryError("Outlines have no CRS.")
    if not gdf.crs.equals(grid.pyproj_crs):
        gdf = gdf.to_crs(grid.pyproj_crs)  # documented resolution of a CRS mismatch: reproject outlines
    gdf = gdf.reset_index(drop=True)
    gdf["index"] = np.arange(1, len(gdf) + 1, dtype="int32")
    sindex = gdf.sindex
    cy, cx = grid.chunks
    ny, nx = grid.shape
    a, _, c, _, e, f = grid.transform

    def block(block_id_y: int, block_id_x: int, which: int) -> np.ndarray:
        j0, i0 = block_id_y * cy, block_id_x * cx
        h, w = min(cy, ny - j0), min(cx, nx - i0)
        transform = (a, 0.0, c + a * i0, 0.0, e, f + e * j0)
        box = (c + a * i0, f + e * (j0 + h), c + a * (i0 + w), f + e * j0)
        hits = sindex.query(_box(*box))
        ids, frac = _rasterize_block(gdf.iloc[np.sort(hits)], transform, (h, w), supersample)
        return ids if which == 0 else frac

    def make(which: int, dtype: str) -> dsa.Array:
        def fn(block_info=None):
            loc = block_info[None]["chunk-location"]
            return block(loc[0], loc[1], which)

        return dsa.map_blocks(fn, chunks=_chunks(grid), dtype=dtype, meta=np.array((), dtype=dtype))

    ds = xr.Dataset(
        {"glacier_id": (("y", "x"), make(0, "int32")),
         "glacier_fraction": (("y", "x"), make(1, "float32"))},
        coords=grid.coords(),
    )
    hist = provenance("rasterize_glaciers", source=gdf.attrs.get("source", "?"), supersample=supersample)
    ds["glacier_id"] = stamp(ds["glacier_id"], history=hist)
    ds["glacier_fraction"] = stamp(ds["glacier_fraction"], history=hist)
    return ds


def glacier_table(outlines: gpd.GeoDataFrame, glacier_id: xr.DataArray, pixel_area: xr.DataArray) -> pd.DataFrame:
    """Per-glacier table indexed 1..N: rgi_id, name, outline and rasterised area (km2), relative difference.

    Glaciers that get no pixel (outside the grid or smaller than a pixel) keep ``raster_area_km2 = 0``
    and are reported by the caller; nothing is dropped.
    """
    from flox.xarray import xarray_reduce

    n = len(outlines)
    idx = np.arange(1, n + 1)
    area = xarray_reduce(pixel_area.where(glacier_id > 0, 0.0), glacier_id.rename("glacier"),
                         func="sum", expected_groups=(idx,), fill_value=0.0)
    raster_km2 = np.asarray(area.values, dtype="float64") / 1e6
    outline_km2 = _outline_area_km2(outlines)
    table = pd.DataFrame(
        {"rgi_id": outlines["rgi_id"].to_numpy(), "name": outlines["name"].to_numpy(),
         "outline_area_km2": outline_km2, "raster_area_km2": raster_km2},
        index=pd.Index(idx, name="glacier"),
    )
    table["area_rel_diff"] = (table["raster_area_km2"] - table["outline_area_km2"]) / table["outline_area_km2"]
    return table


def _box(minx: float, miny: float, maxx: float, maxy: float):
    from shapely.geometry import box

    return box(minx, miny, maxx, maxy)


def _chunks(grid: TargetGrid) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ny, nx = grid.shape
    cy, cx = grid.chunks
    return (tuple(min(cy, ny - j) for j in range(0, ny, cy)), tuple(min(cx, nx - i) for i in range(0, nx, cx)))
