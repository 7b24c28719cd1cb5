"""Glacier masks: outlines -> integer glacier-index raster (and fractional cover), blockwise.

Convention used by every later stage: ``glacier_id`` is an int32 raster with 0 for no glacier and
1..N for the glaciers of the outline table, in table order. The table (a pandas DataFrame indexed
1..N, column ``rgi_id``) maps indices to the outlines' own ids.

RGI v6 (``RGIId``, ``Name``, ``Area``) and v7 (``rgi_id``, ``glac_name``, ``area_km2``; glacier and
complex products) are both read; ``id_column="auto"`` picks whichever is present.

Edge cases and how they are resolved (each is reported, nothing is dropped silently):

* **duplicate ids**, **empty geometries**, **no CRS**: :class:`GeometryError` naming the ids.
* **invalid geometries** (self-intersections): repaired with ``make_valid``; ids listed in
  ``gdf.attrs["repaired"]`` and in the ``status`` column of :func:`glacier_table`.
* **overlapping outlines**: the pixel goes to the glacier that comes **first** in the table (lowest
  index, i.e. the lower RGI id for a sorted inventory — the same rule as :mod:`glacgrid.mosaic`);
  overlaps are listed in ``gdf.attrs["overlaps"]`` and counted per glacier (``overlap_km2``).
* **CRS mismatch**: outlines are reprojected to the grid's CRS (recorded in the history); if no
  outline then intersects the grid (typically a wrong ``.prj``), :class:`GridMismatchError`.
* **outlines outside / partly outside the grid**: kept with ``raster_area_km2 = 0`` (or the part on
  the grid) and ``status`` ``"outside grid"`` / ``"partly outside grid"``.

Area tolerance: the rasterised area (pixel centres inside the outline) differs from the outline area
by about ``perimeter x pixel size / 4`` at random edge positions; :func:`glacier_table` flags a glacier
``"area mismatch"`` when the relative difference exceeds ``max(rel_tol, perimeter * pixel / (2 * area))``
(``rel_tol`` = 1 %: Hintereisferner at 25 m is within 0.10 %).
"""

from __future__ import annotations

from pathlib import Path

import dask.array as dsa
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from .exceptions import GeometryError, GridMismatchError, InputDataError
from .grid import TargetGrid
from .metadata import provenance, stamp

__all__ = ["read_outlines", "rasterize_glaciers", "glacier_table", "tile_glaciers", "tile_grid", "RGI_COLUMNS"]

#: Id, name and inventory-area (km2) columns of the RGI versions, tried in this order by ``"auto"``.
RGI_COLUMNS = {"6": ("RGIId", "Name", "Area"), "7": ("rgi_id", "glac_name", "area_km2")}


def read_outlines(path: str | Path, id_column: str = "auto", name_column: str = "") -> gpd.GeoDataFrame:
    """Read RGI v6/v7 outlines (shapefile or GeoPackage) and check them.

    Parameters
    ----------
    path : path
        Outline file.
    id_column : str
        Column of unique glacier ids; ``"auto"``: ``RGIId`` (v6) or ``rgi_id`` (v7).
    name_column : str
        Column of glacier names; empty: the RGI name column when ``id_column="auto"``, else none.

    Returns
    -------
    GeoDataFrame with ``rgi_id``, ``name``, ``inventory_area_km2`` (NaN if the file has none) and the
    geometry. ``attrs``: ``source``, ``rgi_version`` ("6", "7" or ""), ``repaired`` (ids whose
    geometry was invalid and repaired with ``make_valid``) and ``overlaps`` (list of
    ``(id_a, id_b, km2)`` for outlines sharing area).

    Raises
    ------
    InputDataError
        If the file is missing.
    GeometryError
        Missing id column, no CRS, duplicated ids, empty geometries.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"Outline file {path} does not exist.")
    gdf = gpd.read_file(path)
    version, area_column = "", ""
    if id_column == "auto":
        for v, (idc, namec, areac) in RGI_COLUMNS.items():
            if idc in gdf.columns:
                version, id_column, area_column = v, idc, areac
                name_column = name_column or (namec if namec in gdf.columns else "")
                break
        else:
            raise GeometryError(
                f"Outline file {path} has neither an RGI v6 'RGIId' nor an RGI v7 'rgi_id' column; columns are "
                f"{list(gdf.columns)}. Pass id_column= the column holding the glacier ids."
            )
    else:
        for v, (idc, _, areac) in RGI_COLUMNS.items():
            if idc == id_column:
                version, area_column = v, areac
    if id_column not in gdf.columns:
        raise GeometryError(
            f"Outline file {path} has no column {id_column!r}; columns are {list(gdf.columns)}. "
            "Set [glaciers] id_column to the column holding the glacier ids (RGI v6: 'RGIId', v7: 'rgi_id')."
        )
    if name_column and name_column not in gdf.columns:
        raise GeometryError(f"Outline file {path} has no name column {name_column!r}; columns are {list(gdf.columns)}.")
    if gdf.crs is None:
        raise GeometryError(f"Outline file {path} has no CRS (.prj missing); add one before use.")
    dup = gdf[id_column][gdf[id_column].duplicated()].tolist()
    if dup:
        raise GeometryError(f"Outline file {path} has duplicated ids in {id_column!r}: {dup[:10]}. Ids must be unique.")
    empty = gdf.geometry.is_empty | gdf.geometry.isna()
    if empty.any():
        raise GeometryError(f"Outlines with empty geometry in {path}: {gdf.loc[empty, id_column].tolist()[:10]}.")
    invalid = ~gdf.geometry.is_valid
    repaired = gdf.loc[invalid, id_column].astype(str).tolist()
    if repaired:
        gdf.loc[invalid, "geometry"] = gdf.loc[invalid, "geometry"].make_valid()
    inv_area = (pd.to_numeric(gdf[area_column], errors="coerce").to_numpy(dtype="float64")
                if area_column in gdf.columns else np.full(len(gdf), np.nan))
    out = gpd.GeoDataFrame(
        {"rgi_id": gdf[id_column].astype(str).to_numpy(),
         "name": gdf[name_column].astype(str).to_numpy() if name_column else [""] * len(gdf),
         "inventory_area_km2": inv_area},
        geometry=gdf.geometry.to_numpy(), crs=gdf.crs,
    )
    out.attrs["repaired"] = repaired
    out.attrs["source"] = str(path)
    out.attrs["rgi_version"] = version
    out.attrs["overlaps"] = _overlaps(out)
    return out


def _overlaps(gdf: gpd.GeoDataFrame, min_km2: float = 1e-6) -> list[tuple[str, str, float]]:
    """Pairs of outlines sharing more than ``min_km2`` of area (spatial-index query, vectorised)."""
    if len(gdf) < 2:
        return []
    eq = gdf.to_crs(_laea(gdf))
    left, right = eq.sindex.query(eq.geometry, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    if left.size == 0:
        return []
    import shapely

    geoms = eq.geometry.to_numpy()
    inter = shapely.area(shapely.intersection(geoms[left], geoms[right])) / 1e6
    ids = gdf["rgi_id"].to_numpy()
    return [(ids[a], ids[b], float(k)) for a, b, k in zip(left, right, inter) if k > min_km2]


def _laea(gdf: gpd.GeoDataFrame) -> str:
    lon, lat = gdf.to_crs("EPSG:4326").union_all().centroid.coords[0]
    return f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m"


def _outline_area_km2(gdf: gpd.GeoDataFrame) -> np.ndarray:
    """Outline areas (km2) on a local equal-area projection."""
    return gdf.to_crs(_laea(gdf)).area.to_numpy() / 1e6


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
    # rasterio burns later shapes over earlier ones: reversed, the first outline in the table wins
    ids = rasterize(shapes[::-1], out_shape=shape, transform=aff, fill=0, dtype="int32")
    fine = rasterize(
        [(g, 1) for g, _ in shapes], out_shape=(shape[0] * supersample, shape[1] * supersample),
        transform=aff @ Affine.scale(1 / supersample), fill=0, dtype="uint8",
    )
    frac = fine.reshape(shape[0], supersample, shape[1], supersample).mean(axis=(1, 3)).astype("float32")
    return ids, frac


def rasterize_glaciers(outlines: gpd.GeoDataFrame, grid: TargetGrid, *, supersample: int = 4) -> xr.Dataset:
    """Rasterise outlines onto ``grid`` block by block (lazy).

    A pixel belongs to the glacier whose outline contains its centre (``glacier_id``); where outlines
    overlap, the outline that comes first in the table wins (documented, and counted in the glacier
    table). ``glacier_fraction`` is the share of the pixel covered by any outline, from
    ``supersample``² sub-pixels.

    Outlines in another CRS are reprojected to the grid's (recorded in the history). Outlines outside
    the grid are kept (and reported by :func:`glacier_table`), but if none intersects the grid a
    :class:`GridMismatchError` is raised: a wrong CRS is the usual cause.

    Returns a Dataset with ``glacier_id`` (int32) and ``glacier_fraction`` on the grid, and the glacier
    table in ``ds.attrs`` is *not* stored: use :func:`glacier_table`.
    """
    gdf = outlines
    if gdf.crs is None:
        raise GeometryError("Outlines have no CRS.")
    reprojected = ""
    if not gdf.crs.equals(grid.pyproj_crs):
        reprojected = gdf.crs.to_string()
        gdf = gdf.to_crs(grid.pyproj_crs)  # documented resolution of a CRS mismatch: reproject outlines
    on_grid = gdf.intersects(_box(*grid.bounds))
    if not on_grid.any():
        raise GridMismatchError(
            f"None of the {len(gdf)} outlines ({outlines.attrs.get('source', 'given')}, CRS "
            f"{reprojected or gdf.crs.to_string()}) intersects the grid (bounds {grid.bounds} in "
            f"{grid.pyproj_crs.to_string()}); outline bounds in the grid CRS are {tuple(gdf.total_bounds)}. "
            "Check the outlines' .prj / CRS and the grid."
        )
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
    hist = provenance("rasterize_glaciers", source=outlines.attrs.get("source", "?"), supersample=supersample,
                      reprojected_from=reprojected or None, overlap_rule="first in table wins")
    ds["glacier_id"] = stamp(ds["glacier_id"], history=hist)
    ds["glacier_fraction"] = stamp(ds["glacier_fraction"], history=hist)
    return ds


def glacier_table(outlines: gpd.GeoDataFrame, glacier_id: xr.DataArray, pixel_area: xr.DataArray, *,
                  grid: TargetGrid | None = None, rel_tol: float = 0.01) -> pd.DataFrame:
    """Per-glacier area report indexed 1..N (nothing dropped).

    Columns: ``rgi_id``, ``name``, ``outline_area_km2`` (equal-area projection),
    ``inventory_area_km2`` (the RGI attribute, NaN if absent), ``raster_area_km2`` (pixels whose
    centre is inside, times their area), ``area_rel_diff``, ``tolerance``
    (``max(rel_tol, perimeter * pixel / (2 * area))``), ``overlap_km2`` (outline area shared with
    other outlines), ``status``: ``ok``, ``area mismatch``, ``outside grid``, ``partly outside grid``,
    ``no pixel`` (smaller than a pixel), ``repaired`` (invalid geometry made valid), joined by ``"; "``.

    ``grid`` (optional) enables the outside/partly-outside statuses and the pixel-size tolerance.
    """
    from flox.xarray import xarray_reduce

    n = len(outlines)
    idx = np.arange(1, n + 1)
    area = xarray_reduce(pixel_area.where(glacier_id > 0, 0.0), glacier_id.rename("glacier"),
                         func="sum", expected_groups=(idx,), fill_value=0.0, engine="flox")
    raster_km2 = np.asarray(area.values, dtype="float64") / 1e6
    eq = outlines.to_crs(_laea(outlines))
    outline_km2 = eq.area.to_numpy() / 1e6
    table = pd.DataFrame(
        {"rgi_id": outlines["rgi_id"].to_numpy(), "name": outlines["name"].to_numpy(),
         "outline_area_km2": outline_km2,
         "inventory_area_km2": (outlines["inventory_area_km2"].to_numpy() if "inventory_area_km2" in outlines
                                else np.full(n, np.nan)),
         "raster_area_km2": raster_km2},
        index=pd.Index(idx, name="glacier"),
    )
    table["area_rel_diff"] = (table["raster_area_km2"] - table["outline_area_km2"]) / table["outline_area_km2"]
    tol = np.full(n, rel_tol)
    status = [[] for _ in range(n)]
    if grid is not None:
        pix = float(np.sqrt(np.prod(grid.resolution))) if not grid.is_geographic else float(
            np.sqrt(float(pixel_area.mean())))
        tol = np.maximum(rel_tol, eq.length.to_numpy() * pix / (2 * outline_km2 * 1e6))
        g = outlines.to_crs(grid.pyproj_crs).geometry
        frame = _box(*grid.bounds)
        inside = g.within(frame).to_numpy()
        touches = g.intersects(frame).to_numpy()
        for k in np.flatnonzero(~touches):
            status[k].append("outside grid")
        for k in np.flatnonzero(touches & ~inside):
            status[k].append("partly outside grid")
    else:
        inside = np.ones(n, dtype=bool)
    table["tolerance"] = tol
    ov = np.zeros(n)
    pos = {r: k for k, r in enumerate(table["rgi_id"])}
    for a, b, km2 in outlines.attrs.get("overlaps", []):
        ov[pos[a]] += km2
        ov[pos[b]] += km2
    table["overlap_km2"] = ov
    for k in np.flatnonzero((raster_km2 == 0) & inside):
        status[k].append("no pixel")
    bad = (np.abs(table["area_rel_diff"].to_numpy()) > tol) & inside & (raster_km2 > 0)
    for k in np.flatnonzero(bad):
        status[k].append("area mismatch")
    for rid in outlines.attrs.get("repaired", []):
        status[pos[str(rid)]].append("repaired")
    table["status"] = ["; ".join(x) if x else "ok" for x in status]
    return table


# ---------------------------------------------------------------------------------------------- tiling
def tile_glaciers(outlines: gpd.GeoDataFrame, grid: TargetGrid, *, tile_size: int | tuple[int, int] = 2048,
                  buffer: float = 0.0) -> pd.DataFrame:
    """Split a large run into tiles of whole glaciers: each glacier belongs to exactly one tile.

    A glacier is assigned to the ``tile_size`` seed tile of the grid that holds its representative
    point; each tile's extent is then the union of its glaciers' bounding boxes plus ``buffer`` (grid
    CRS units), snapped outward to grid pixels and clipped to the grid. Tiles may therefore overlap a
    little at their edges, but no glacier is ever split across tiles. Glaciers with no part on the grid
    are in no tile and listed in ``attrs["outside"]``.

    Parameters
    ----------
    outlines : GeoDataFrame
        From :func:`read_outlines` (any CRS; reprojected to the grid's). Table order defines the
        glacier index 1..N, as in :func:`rasterize_glaciers`.
    grid : TargetGrid
        The full grid.
    tile_size : int or (int, int)
        Seed tile size in pixels (rows, cols).
    buffer : float
        Margin around the glaciers of a tile, in grid CRS units (e.g. for slope or flow kernels).

    Returns
    -------
    DataFrame, one row per non-empty tile (index ``tile`` 0..T-1), columns ``seed_row``, ``seed_col``,
    ``j0``, ``j1``, ``i0``, ``i1`` (pixel window: ``rows j0:j1, cols i0:i1`` of ``grid``), ``left``,
    ``bottom``, ``right``, ``top`` (CRS units), ``n_glaciers``, ``glacier_index`` (list of ints 1..N)
    and ``rgi_ids`` (list of str). Use :func:`tile_grid` for the sub-grid of a row.
    """
    ty, tx = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    if ty < 1 or tx < 1 or buffer < 0:
        raise InputDataError(f"tile_size must be positive and buffer >= 0; got {tile_size}, {buffer}.")
    gdf = outlines.to_crs(grid.pyproj_crs) if not outlines.crs.equals(grid.pyproj_crs) else outlines
    a, _, c, _, e, f = grid.transform
    ny, nx = grid.shape
    b = gdf.geometry.bounds.to_numpy()  # minx, miny, maxx, maxy
    on = gdf.intersects(_box(*grid.bounds)).to_numpy()
    rp = gdf.geometry.representative_point()
    col = np.clip(np.floor((rp.x.to_numpy() - c) / a), 0, nx - 1).astype(int)
    row = np.clip(np.floor((rp.y.to_numpy() - f) / e), 0, ny - 1).astype(int)
    frame = pd.DataFrame({"seed_row": row // ty, "seed_col": col // tx, "glacier_index": np.arange(1, len(gdf) + 1),
                          "rgi_id": gdf["rgi_id"].to_numpy(),
                          "i0": np.floor((b[:, 0] - buffer - c) / a), "i1": np.ceil((b[:, 2] + buffer - c) / a),
                          "j0": np.floor((b[:, 3] + buffer - f) / e), "j1": np.ceil((b[:, 1] - buffer - f) / e)})[on]
    tiles = frame.groupby(["seed_row", "seed_col"], sort=True).agg(
        j0=("j0", "min"), j1=("j1", "max"), i0=("i0", "min"), i1=("i1", "max"),
        glacier_index=("glacier_index", list), rgi_ids=("rgi_id", list)).reset_index()
    tiles["j0"] = tiles["j0"].clip(0, ny).astype(int)
    tiles["j1"] = tiles["j1"].clip(0, ny).astype(int)
    tiles["i0"] = tiles["i0"].clip(0, nx).astype(int)
    tiles["i1"] = tiles["i1"].clip(0, nx).astype(int)
    tiles["left"], tiles["right"] = c + a * tiles["i0"], c + a * tiles["i1"]
    tiles["top"], tiles["bottom"] = f + e * tiles["j0"], f + e * tiles["j1"]
    tiles["n_glaciers"] = tiles["glacier_index"].str.len()
    tiles.index.name = "tile"
    tiles.attrs["outside"] = gdf["rgi_id"].to_numpy()[~on].tolist()
    tiles.attrs["tile_size"] = (ty, tx)
    cols = ["seed_row", "seed_col", "j0", "j1", "i0", "i1", "left", "bottom", "right", "top", "n_glaciers",
            "glacier_index", "rgi_ids"]
    return tiles[cols]


def tile_grid(grid: TargetGrid, tile: pd.Series) -> TargetGrid:
    """The sub-grid of one row of :func:`tile_glaciers` (same resolution, CRS and chunks)."""
    from dataclasses import replace

    a, _, c, _, e, f = grid.transform
    j0, j1, i0, i1 = int(tile["j0"]), int(tile["j1"]), int(tile["i0"]), int(tile["i1"])
    return replace(grid, transform=(a, 0.0, c + a * i0, 0.0, e, f + e * j0), shape=(j1 - j0, i1 - i0))


def _box(minx: float, miny: float, maxx: float, maxy: float):
    from shapely.geometry import box

    return box(minx, miny, maxx, maxy)


def _chunks(grid: TargetGrid) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ny, nx = grid.shape
    cy, cx = grid.chunks
    return (tuple(min(cy, ny - j) for j in range(0, ny, cy)), tuple(min(cx, nx - i) for i in range(0, nx, cx)))
