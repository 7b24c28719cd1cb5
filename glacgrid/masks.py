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

from dataclasses import dataclass, replace
from pathlib import Path

import dask.array as dsa
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from .exceptions import GeometryError, GridMismatchError, InputDataError
from .glaciers import glacier_sums
from .grid import TargetGrid
from .metadata import provenance, stamp
from .units import convert, m2_to_km2

__all__ = ["read_outlines", "rasterize_glaciers", "glacier_table", "TileLayout", "TILE_HALO", "plan_tiles", "tile_glaciers",
           "tile_grid", "RGI_COLUMNS"]

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
        If the file is missing, truncated (a shapefile's ``.shp``/``.shx``/``.dbf`` or a GeoPackage shorter
        than its header says) or unreadable.
    GeometryError
        Missing id column, no CRS, duplicated ids, empty geometries.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"Outline file {path} does not exist.")
    _check_outline_file(path)
    try:
        gdf = gpd.read_file(path)
    except (RuntimeError, OSError, ValueError) as err:  # pyogrio's DataSourceError, ... (RuntimeError)
        raise InputDataError(
            f"Cannot read outline file {path}: {type(err).__name__}: {str(err).rstrip('.')}. It is damaged or not a vector format "
            "GDAL reads (a shapefile with its .shx, .dbf and .prj beside it, or a GeoPackage); download or "
            "export it again."
        ) from err
    version, id_column, name_column, area_column = _rgi_columns(gdf, path, id_column, name_column)
    _check_outlines(gdf, path, id_column, name_column)
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


def _outline_extents(path: Path) -> list[tuple[Path, int]]:
    """(file, size its header implies) for a shapefile's .shp, .shx and .dbf, or a GeoPackage (SQLite)."""
    out = []
    if path.suffix.lower() == ".shp":
        for part in (path, path.with_suffix(".shx"), path.with_suffix(".dbf")):
            if not part.is_file():
                continue
            with open(part, "rb") as fh:
                head = fh.read(32)
            if part.suffix.lower() == ".dbf":  # records x record length after the header
                if len(head) >= 12:
                    n, header, record = (int.from_bytes(head[4:8], "little"), int.from_bytes(head[8:10], "little"),
                                         int.from_bytes(head[10:12], "little"))
                    out.append((part, header + n * record))
            elif len(head) >= 28 and head[:4] == b"\x00\x00\x27\x0a":  # file length in 16-bit words
                out.append((part, 2 * int.from_bytes(head[24:28], "big")))
            else:
                out.append((part, 100))  # the fixed header of .shp and .shx
    elif path.suffix.lower() == ".gpkg":
        with open(path, "rb") as fh:
            head = fh.read(100)
        if head[:16] == b"SQLite format 3\x00" and len(head) == 100 and head[24:28] == head[92:96]:
            page = int.from_bytes(head[16:18], "big")
            out.append((path, (65536 if page == 1 else page) * int.from_bytes(head[28:32], "big")))
    return out


def _check_outline_file(path: Path) -> None:
    """:class:`InputDataError` if a part of the outline file is shorter than its header says."""
    for part, expected in _outline_extents(path):
        size = part.stat().st_size
        if size < expected:
            raise InputDataError(
                f"Outline file {part} is truncated: by its header it holds {expected:,} bytes, but the file has "
                f"{size:,} ({expected - size:,} missing). The download or copy was cut short; download or export "
                "it again (all of .shp, .shx, .dbf and .prj for a shapefile)."
            )


def _rgi_columns(gdf: gpd.GeoDataFrame, path: Path, id_column: str, name_column: str) -> tuple[str, str, str, str]:
    """The RGI version and the id, name and inventory-area columns of an outline file (``"auto"`` resolved)."""
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
    return version, id_column, name_column, area_column


def _check_outlines(gdf: gpd.GeoDataFrame, path: Path, id_column: str, name_column: str) -> None:
    """Raise :class:`GeometryError` for missing columns, no CRS, duplicated ids or empty geometries."""
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


def _numbers(values) -> str:
    """``(600000, 5.2e+06, ...)``: numbers for a message (numpy scalars would print as ``np.float64(...)``)."""
    return "(" + ", ".join(f"{float(v):.10g}" for v in values) + ")"


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
    inter = m2_to_km2(shapely.area(shapely.intersection(geoms[left], geoms[right])))
    ids = gdf["rgi_id"].to_numpy()
    return [(ids[a], ids[b], float(k)) for a, b, k in zip(left, right, inter) if k > min_km2]


def _laea(gdf: gpd.GeoDataFrame) -> str:
    lon, lat = gdf.to_crs("EPSG:4326").union_all().centroid.coords[0]
    return f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m"


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
    ``supersample ** 2`` sub-pixels.

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
            f"{reprojected or gdf.crs.to_string()}) intersects the grid (bounds {_numbers(grid.bounds)} in "
            f"{grid.pyproj_crs.to_string()}); outline bounds in the grid CRS are {_numbers(gdf.total_bounds)}. "
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
    n = len(outlines)
    idx = np.arange(1, n + 1)
    area = glacier_sums(pixel_area.where(glacier_id > 0, 0.0), glacier_id, idx)
    raster_km2 = m2_to_km2(np.asarray(area.values, dtype="float64"))
    eq = outlines.to_crs(_laea(outlines))
    outline_km2 = m2_to_km2(eq.area.to_numpy())
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
        tol = np.maximum(rel_tol, eq.length.to_numpy() * pix / (2 * convert(outline_km2, "km2", "m2")))
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
#: Pixels around a tile's window (:meth:`TileLayout.window`): the slope/aspect stencil needs 1.
TILE_HALO = 2


@dataclass(frozen=True)
class TileLayout:
    """Tiles as sets of grid chunks (blocks) and the glaciers whose pixels lie in them.

    ``blocks[k]`` are the ``(block_row, block_col)`` of tile ``k``; ``glaciers[k]`` its glacier indices
    (the ``glacier_id`` values; glaciers without a pixel on the grid go to tile 0).
    """

    shape: tuple[int, int]
    chunks: tuple[int, int]
    blocks: tuple[tuple[tuple[int, int], ...], ...]
    glaciers: tuple[tuple[int, ...], ...]

    @property
    def n_tiles(self) -> int:
        """The number of tiles."""
        return len(self.blocks)

    def block_slices(self, block: tuple[int, int]) -> tuple[slice, slice]:
        """Rows and columns of the grid chunk ``block`` (``(block_row, block_col)``)."""
        (by, bx), (cy, cx), (ny, nx) = block, self.chunks, self.shape
        return slice(by * cy, min((by + 1) * cy, ny)), slice(bx * cx, min((bx + 1) * cx, nx))

    def window(self, k: int, halo: int = TILE_HALO) -> tuple[slice, slice]:
        """Rows and columns of the bounding box of tile ``k``'s chunks, plus ``halo`` pixels."""
        sl = [self.block_slices(b) for b in self.blocks[k]]
        y0, y1 = min(s[0].start for s in sl), max(s[0].stop for s in sl)
        x0, x1 = min(s[1].start for s in sl), max(s[1].stop for s in sl)
        return (slice(max(y0 - halo, 0), min(y1 + halo, self.shape[0])),
                slice(max(x0 - halo, 0), min(x1 + halo, self.shape[1])))

    def to_dict(self) -> dict:
        """A JSON-ready dict (:meth:`from_dict` reads it back)."""
        return {"shape": list(self.shape), "chunks": list(self.chunks),
                "blocks": [[list(b) for b in t] for t in self.blocks], "glaciers": [list(g) for g in self.glaciers]}

    @classmethod
    def from_dict(cls, d: dict) -> "TileLayout":
        """The layout of :meth:`to_dict`."""
        return cls(tuple(d["shape"]), tuple(d["chunks"]), tuple(tuple(tuple(b) for b in t) for t in d["blocks"]),
                   tuple(tuple(int(g) for g in t) for t in d["glaciers"]))


def _components(pairs: np.ndarray, n_blocks: int, max_id: int) -> np.ndarray:
    """Connected components of the bipartite chunk-glacier graph of the ``(block, glacier)`` pairs.

    Returns the component label of every node: nodes ``0..n_blocks-1`` are the chunks, ``n_blocks + g``
    is glacier ``g``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_nodes = n_blocks + max_id + 1
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], n_blocks + pairs[:, 1])), shape=(n_nodes, n_nodes))
    return connected_components(graph, directed=False)[1]


def _cut_components(label: np.ndarray, n_blocks: int, ice: np.ndarray, weight: np.ndarray,
                    n_tiles: int) -> tuple[np.ndarray, int]:
    """Cut the components, in row-major order of their first chunk, into at most ``n_tiles`` contiguous
    runs of about equal ``weight`` (per chunk); every run holds a chunk with ``ice`` > 0.

    Returns the tile of every component label (0 for components without a chunk) and the number of tiles.
    """
    block_label = label[:n_blocks]
    comps, first = np.unique(block_label, return_index=True)  # first: lowest (row-major) chunk of each
    order = comps[np.argsort(first)]
    comp_weight = np.bincount(block_label, weights=weight)[order]
    comp_ice = np.bincount(block_label, weights=ice)[order] > 0
    n = max(1, min(n_tiles, int(comp_ice.sum())))
    # walk the components in order; a new tile starts at a glaciated component once the running weight
    # passed the next multiple of total / n (or when the glaciated components left are just enough);
    # ice-free components join the tile being filled, so that every tile has glaciers
    tile_of_comp = np.zeros(len(order), dtype=np.int64)
    t, acc, seen, left, total = 0, 0.0, False, int(comp_ice.sum()), comp_weight.sum()
    for i in range(len(order)):  # components, i.e. at most the number of chunks
        if comp_ice[i]:
            if seen and t < n - 1 and (acc >= (t + 1) * total / n or left == n - 1 - t):
                t += 1
            seen, left = True, left - 1
        tile_of_comp[i] = t
        acc += comp_weight[i]
    tile_of_label = np.zeros(label.max() + 1, dtype=np.int64)  # glaciers without a chunk: tile 0
    tile_of_label[order] = tile_of_comp
    return tile_of_label, n


def plan_tiles(glacier_id: np.ndarray, chunks: tuple[int, int], n_tiles: int,
               index: np.ndarray | None = None) -> TileLayout:
    """Split a glacier-id raster into at most ``n_tiles`` tiles of whole chunks, no glacier split.

    Chunks touched by the same glacier are joined (connected components of the chunk-glacier graph);
    the components, in row-major order of their first chunk, are cut into contiguous runs of about
    equal weight (glacier pixels, plus a hundredth of all pixels so that ice-free chunks count a
    little). Every tile holds glaciers; fewer tiles than asked are returned when there are fewer
    glaciated components.

    Parameters
    ----------
    glacier_id : numpy.ndarray
        The glacier index raster (0: no glacier).
    chunks : (int, int)
        The chunk shape (rows, cols): tiles are unions of these chunks.
    n_tiles : int
        The number of tiles wanted (at least 1).
    index : numpy.ndarray, optional
        Every glacier index to place (glaciers without a pixel go to tile 0); default: those in the raster.

    Returns
    -------
    TileLayout
    """
    if n_tiles < 1:
        raise InputDataError(f"The number of tiles must be at least 1, got {n_tiles}.")
    gid = np.asarray(glacier_id)
    ny, nx = gid.shape
    cy, cx = chunks
    nby, nbx = -(-ny // cy), -(-nx // cx)
    # glacier ids of every chunk: pad to whole chunks and view as (block row, block col, pixel)
    padded = np.zeros((nby * cy, nbx * cx), dtype=np.int64)
    padded[:ny, :nx] = gid
    blocks = padded.reshape(nby, cy, nbx, cx).transpose(0, 2, 1, 3).reshape(nby * nbx, cy * cx)
    nb = nby * nbx
    rows, cols = np.nonzero(blocks > 0)
    pairs = np.unique(np.stack([rows, blocks[rows, cols]], axis=1), axis=0) if rows.size else np.zeros((0, 2), int)
    max_id = int(max(gid.max(initial=0), 0 if index is None else np.max(index, initial=0)))
    label = _components(pairs, nb, max_id)
    ice = (blocks > 0).sum(axis=1)
    tile_of_label, n = _cut_components(label, nb, ice, ice + 0.01 * cy * cx, n_tiles)
    tile_of_block = tile_of_label[label[:nb]]
    all_ids = np.unique(gid[gid > 0]) if index is None else np.asarray(index, dtype=np.int64)
    glacier_tile = tile_of_label[label[nb + all_ids]]
    tile_blocks, tile_glaciers = [], []
    for t in range(n):
        bl = np.flatnonzero(tile_of_block == t)
        tile_blocks.append(tuple((int(b // nbx), int(b % nbx)) for b in bl))
        tile_glaciers.append(tuple(int(g) for g in all_ids[glacier_tile == t]))
    return TileLayout((ny, nx), (cy, cx), tuple(tile_blocks), tuple(tile_glaciers))


def _glacier_windows(gdf: gpd.GeoDataFrame, grid: TargetGrid, buffer: float) -> pd.DataFrame:
    """Pixel window ``j0:j1, i0:i1`` of each outline's bounding box plus ``buffer`` (snapped outward to
    grid pixels, clipped to the grid)."""
    a, _, c, _, e, f = grid.transform
    ny, nx = grid.shape
    b = gdf.geometry.bounds.to_numpy()  # minx, miny, maxx, maxy
    win = pd.DataFrame({"j0": np.floor((b[:, 3] + buffer - f) / e), "j1": np.ceil((b[:, 1] - buffer - f) / e),
                        "i0": np.floor((b[:, 0] - buffer - c) / a), "i1": np.ceil((b[:, 2] + buffer - c) / a)})
    for col, size in (("j0", ny), ("j1", ny), ("i0", nx), ("i1", nx)):
        win[col] = win[col].clip(0, size).astype(int)
    return win


def _window_pairs(win: pd.DataFrame, glacier_index: np.ndarray, chunks: tuple[int, int],
                  nbx: int) -> np.ndarray:
    """``(block, glacier)`` for every chunk that each glacier's pixel window touches (no loop over glaciers:
    each window's chunk rectangle is enumerated with ``np.repeat``)."""
    cy, cx = chunks
    j0, j1, i0, i1 = (win[c].to_numpy(dtype=np.int64) for c in ("j0", "j1", "i0", "i1"))
    keep = (j1 > j0) & (i1 > i0)
    if not keep.any():
        return np.zeros((0, 2), int)
    by0, bx0 = j0[keep] // cy, i0[keep] // cx
    nby, nbx_g = (j1[keep] - 1) // cy - by0 + 1, (i1[keep] - 1) // cx - bx0 + 1  # chunk rows, cols per glacier
    count = nby * nbx_g
    owner = np.repeat(np.arange(count.size), count)  # the glacier of each (glacier, chunk) pair
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)  # the pair's rank within its glacier
    by = by0[owner] + k // nbx_g[owner]
    bx = bx0[owner] + k % nbx_g[owner]
    return np.stack([by * nbx + bx, np.asarray(glacier_index)[keep][owner]], axis=1)


def tile_glaciers(outlines: gpd.GeoDataFrame, grid: TargetGrid, *, tile_size: int | tuple[int, int] = 2048,
                  buffer: float = 0.0) -> pd.DataFrame:
    """Split a large run into tiles of whole glaciers: each glacier belongs to exactly one tile.

    The grid is cut into ``tile_size`` chunks; each glacier joins the chunks its outline's bounding box
    touches, and every group of joined chunks is a tile (the grouping of :func:`plan_tiles`, one tile
    per group, so a tile may span several chunks where glaciers straddle chunk edges). A tile's extent
    is the union of its glaciers' windows: the bounding box of each outline plus ``buffer`` (grid CRS
    units), snapped outward to grid pixels and clipped to the grid. No glacier is ever split and no
    chunk holds glaciers of two tiles, though the extents of two tiles may overlap a little at their
    edges. Glaciers with no part on the grid are in no tile and listed in ``attrs["outside"]``.

    Parameters
    ----------
    outlines : GeoDataFrame
        From :func:`read_outlines` (any CRS; reprojected to the grid's). Table order defines the
        glacier index 1..N, as in :func:`rasterize_glaciers`.
    grid : TargetGrid
        The full grid.
    tile_size : int or (int, int)
        Chunk size in pixels (rows, cols).
    buffer : float
        Margin around the glaciers of a tile, in grid CRS units (e.g. for slope or flow kernels).

    Returns
    -------
    DataFrame
        One row per tile (index ``tile`` 0..T-1, in row-major order of the tiles' first chunks), columns
        ``seed_row``, ``seed_col`` (the tile's first chunk), ``j0``, ``j1``, ``i0``, ``i1`` (pixel window:
        ``rows j0:j1, cols i0:i1`` of ``grid``), ``left``, ``bottom``, ``right``, ``top`` (CRS units),
        ``n_glaciers``, ``glacier_index`` (list of ints 1..N) and ``rgi_ids`` (list of str). Use
        :func:`tile_grid` for the sub-grid of a row.
    """
    ty, tx = (tile_size, tile_size) if isinstance(tile_size, int) else tile_size
    if ty < 1 or tx < 1 or buffer < 0:
        raise InputDataError(f"tile_size must be positive and buffer >= 0; got {tile_size}, {buffer}.")
    gdf = outlines.to_crs(grid.pyproj_crs) if not outlines.crs.equals(grid.pyproj_crs) else outlines
    a, _, c, _, e, f = grid.transform
    ny, nx = grid.shape
    nby, nbx = -(-ny // ty), -(-nx // tx)
    on = gdf.intersects(_box(*grid.bounds)).to_numpy()
    index = np.arange(1, len(gdf) + 1)[on]
    win = _glacier_windows(gdf, grid, buffer)[on].assign(glacier_index=index, rgi_id=gdf["rgi_id"].to_numpy()[on])
    pairs = _window_pairs(_glacier_windows(gdf, grid, 0.0)[on], index, (ty, tx), nbx)  # the outlines join chunks
    label = _components(pairs, nby * nbx, len(gdf))
    touched = np.bincount(pairs[:, 0], minlength=nby * nbx)
    tile_of_label, _ = _cut_components(label, nby * nbx, touched, touched.astype("float64"), nby * nbx)
    win["tile"] = tile_of_label[label[nby * nbx + index]]
    tiles = win.groupby("tile", sort=True).agg(
        j0=("j0", "min"), j1=("j1", "max"), i0=("i0", "min"), i1=("i1", "max"),
        glacier_index=("glacier_index", list), rgi_ids=("rgi_id", list))
    block_tile = tile_of_label[label[:nby * nbx]]
    first = np.array([np.flatnonzero((block_tile == t) & (touched > 0)).min() for t in tiles.index], dtype=int)
    tiles["seed_row"], tiles["seed_col"] = first // nbx, first % nbx
    tiles["left"], tiles["right"] = c + a * tiles["i0"], c + a * tiles["i1"]
    tiles["top"], tiles["bottom"] = f + e * tiles["j0"], f + e * tiles["j1"]
    tiles["n_glaciers"] = tiles["glacier_index"].map(len).astype(int)
    tiles.index.name = "tile"
    tiles.attrs["outside"] = gdf["rgi_id"].to_numpy()[~on].tolist()
    tiles.attrs["tile_size"] = (ty, tx)
    cols = ["seed_row", "seed_col", "j0", "j1", "i0", "i1", "left", "bottom", "right", "top", "n_glaciers",
            "glacier_index", "rgi_ids"]
    return tiles[cols]


def tile_grid(grid: TargetGrid, tile: pd.Series | tuple[slice, slice]) -> TargetGrid:
    """The sub-grid of a window (same resolution, CRS and chunks).

    ``tile`` is a row of :func:`tile_glaciers` (``j0``, ``j1``, ``i0``, ``i1``) or the ``(rows, cols)``
    slices of :meth:`TileLayout.window`.
    """
    if isinstance(tile, tuple):
        (j0, j1), (i0, i1) = (tile[0].start, tile[0].stop), (tile[1].start, tile[1].stop)
    else:
        j0, j1, i0, i1 = int(tile["j0"]), int(tile["j1"]), int(tile["i0"]), int(tile["i1"])
    a, _, c, _, e, f = grid.transform
    return replace(grid, transform=(a, 0.0, c + a * i0, 0.0, e, f + e * j0), shape=(j1 - j0, i1 - i0))


def _box(minx: float, miny: float, maxx: float, maxy: float):
    from shapely.geometry import box

    return box(minx, miny, maxx, maxy)


def _chunks(grid: TargetGrid) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ny, nx = grid.shape
    cy, cx = grid.chunks
    return (tuple(min(cy, ny - j) for j in range(0, ny, cy)), tuple(min(cx, nx - i) for i in range(0, nx, cx)))
