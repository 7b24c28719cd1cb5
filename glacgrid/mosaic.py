"""Regional mosaics from per-glacier tiles (e.g. the Farinotti et al. 2019 consensus thickness of the Alps).

The Farinotti product ships one GeoTIFF per glacier (``RGI60-11.NNNNN_thickness.tif``) and a matching
surface DEM on the same grid (``dem_NNNNN.asc.tif``, usually with **no CRS tag**). :func:`build_mosaic`
assembles them into one chunked Zarr cube per projection without ever holding more than one output
chunk (plus the few tiles touching it) in memory:

1. :func:`scan_tiles` reads only the headers: one row per glacier (CRS, transform, shape, paths) plus
   the tile's own area and volume (thickness > 0), so that the mosaic can be checked against them.
2. :func:`mosaic_grid` builds the :class:`~glacgrid.grid.TargetGrid` of one projection: the finest
   tile resolution, on the pixel lattice most tiles share, covering every tile.
3. :func:`mosaic_dataset` is a lazy Dataset on that grid; each dask block opens only the tiles that
   intersect it. Tiles on the lattice are pasted exactly; tiles at another resolution or off the
   lattice are resampled onto it (thickness: area-weighted ``average``; surface: ``bilinear``) and
   flagged ``resampled`` in the glacier table.
4. :func:`build_mosaic` writes each cube template-first, then row slabs of whole chunks with
   ``to_zarr(region=...)``, recording finished slabs (re-running resumes; a finished store is not
   rewritten). Zarr 3 does not store chunks equal to the fill value, so the mostly empty region costs
   nothing on disk.

Overlap rule (documented, counted): a pixel belongs to the glacier of the **lowest RGI number** among
the tiles with thickness > 0 there; its thickness and surface come from that tile. The thickness of
the other claimants is summed in ``thickness_overlap`` and the number of claimants in ``claim_count``,
so ``sum(thickness) + sum(thickness_overlap)`` equals the sum over the tiles. Off-glacier surface
comes from the first tile (lowest number) covering the pixel. Negative thickness values (a few
interpolation artefacts, e.g. -0.41 m in RGI60-11.03643) are set to 0 and counted per glacier.

Variables of a mosaic cube: ``thickness`` (float32, m, 0 where no ice; Zarr fill value 0),
``surface`` (float32, m, NaN outside every tile), ``glacier_id`` (int32, the RGI number NNNNN,
0 = no glacier), ``claim_count`` (uint8), ``thickness_overlap`` (float32, m), scalar ``pixel_area``
(m2), and on the ``glacier`` dimension (the RGI numbers of the glaciers in this projection):
``rgi_id``, ``tile_area``/``tile_volume`` (from the tiles), ``negative_pixels`` and ``resampled``.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from . import cube as cube_mod
from .exceptions import InputDataError, StoreError
from .glaciers import glacier_sums
from .grid import TargetGrid, check_raster
from .metadata import provenance, stamp
from .units import m2_to_km2, m3_to_km3

__all__ = ["MosaicSummary", "scan_tiles", "mosaic_grid", "mosaic_dataset", "build_mosaic", "open_mosaic",
           "mosaic_totals", "read_tile"]

_THICK_RE = re.compile(r"^(?P<prefix>RGI\d\d-\d\d)\.(?P<num>\d{5})_thickness\.tif$")
#: Default Zarr/dask chunk of a mosaic: 2048 x 2048 pixels = 16 MiB per float32 chunk, about 51 x 51 km
#: at 25 m. Few chunks (~80 for UTM 32N), most never written because empty.
DEFAULT_CHUNK = 2048


# ---------------------------------------------------------------------------------------------- scan
def scan_tiles(thickness_dir: str | Path, dem_dir: str | Path, *, read_values: bool = True,
               numbers: "list[int] | range | None" = None) -> pd.DataFrame:
    """One row per glacier tile: ids, CRS, transforms, shapes, paths and the tile's own totals.

    Parameters
    ----------
    thickness_dir : path
        Folder of ``RGIvv-rr.NNNNN_thickness.tif`` files (must carry a CRS).
    dem_dir : path
        Folder of ``dem_NNNNN.asc.tif`` files on the same grids; a DEM without CRS takes the CRS
        of the thickness tile with the same number.
    read_values : bool
        Also read each tile once to compute ``tile_area_km2``, ``tile_volume_km3`` (thickness > 0
        times the tile's pixel area) and ``negative_pixels``. Takes ~35 s for the 3,927 Alps tiles.
    numbers : list of int, optional
        Only these glacier numbers (NNNNN); default every tile in the folder.

    Returns
    -------
    pandas.DataFrame
        Indexed by the RGI number (int), sorted, with columns ``rgi_id``, ``epsg``, ``res``,
        ``transform`` (6-tuple), ``ny``, ``nx``, ``left``, ``bottom``, ``right``, ``top``,
        ``thickness_path``, ``dem_path``, ``dem_transform``, ``dem_crs`` and the totals.

    Raises
    ------
    InputDataError
        If a folder is missing or empty, a thickness tile has no CRS or is rotated, or a DEM is missing.
    """
    import rasterio

    tdir, ddir = Path(thickness_dir), Path(dem_dir)
    for d in (tdir, ddir):
        if not d.is_dir():
            raise InputDataError(f"Tile folder {d} does not exist; pass the Farinotti thickness and DEM folders.")
    rows = []
    wanted = None if numbers is None else set(int(n) for n in numbers)
    for path in sorted(tdir.iterdir()):
        m = _THICK_RE.match(path.name)
        if not m:
            continue
        num = int(m["num"])
        if wanted is not None and num not in wanted:
            continue
        dem = ddir / f"dem_{m['num']}.asc.tif"
        if not dem.exists():
            raise InputDataError(f"Thickness tile {path.name} has no matching DEM {dem}; expected dem_NNNNN.asc.tif.")
        check_raster(path)  # a cut or damaged tile is named here, once, before any pixel is read
        check_raster(dem)
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputDataError(f"Thickness tile {path} has no CRS; the mosaic takes every CRS from these tiles.")
            tr = tuple(src.transform)[:6]
            if tr[1] != 0 or tr[3] != 0 or tr[0] != -tr[4]:
                raise InputDataError(f"Tile {path} is rotated or has non-square pixels ({tr}); warp it first.")
            epsg = src.crs.to_epsg()
            if epsg is None:
                raise InputDataError(f"Tile {path} has a CRS without EPSG code ({src.crs}); reproject it to UTM.")
            row = {"number": num, "rgi_id": f"{m['prefix']}.{m['num']}", "epsg": int(epsg), "res": float(tr[0]),
                   "transform": tr, "ny": src.height, "nx": src.width, "nodata": src.nodata,
                   "thickness_path": str(path), "dem_path": str(dem)}
        with rasterio.open(dem) as d:
            row["dem_transform"] = tuple(d.transform)[:6]
            row["dem_crs"] = int(d.crs.to_epsg()) if d.crs is not None else int(epsg)
            row["dem_shape"] = (d.height, d.width)
        if read_values:
            a, _ = _read_band(path)
            a = np.where(np.isfinite(a), a, 0.0)
            row["negative_pixels"] = int((a < 0).sum())
            a = np.maximum(a, 0.0)
            px = tr[0] * tr[0]
            row["tile_area_km2"] = float(m2_to_km2((a > 0).sum() * px))
            row["tile_volume_km3"] = float(m3_to_km3(a.sum() * px))
        rows.append(row)
    if not rows:
        raise InputDataError(f"No RGIvv-rr.NNNNN_thickness.tif files in {tdir}.")
    df = pd.DataFrame(rows).set_index("number").sort_index()
    a, c, f = df["transform"].str[0], df["transform"].str[2], df["transform"].str[5]
    df["left"], df["top"] = c, f
    df["right"], df["bottom"] = c + a * df["nx"], f - a * df["ny"]
    return df


def read_tile(row: pd.Series) -> tuple[np.ndarray, np.ndarray, float]:
    """The whole thickness and surface (m, float64, NaN where nodata) of one glacier tile and its pixel area (m2).

    ``row`` is a row of :func:`scan_tiles`. Raises :class:`InputDataError` when the DEM is not on the
    thickness tile's grid.
    """
    thickness, tr = _read_band(row["thickness_path"])
    surface, _ = _read_band(row["dem_path"])
    if surface.shape != thickness.shape:
        raise InputDataError(f"DEM {row['dem_path']} has shape {surface.shape}, its thickness tile "
                             f"{thickness.shape}; expected one grid.")
    return thickness, surface, abs(tr[0] * tr[4])


def _read_band(path) -> tuple[np.ndarray, tuple]:
    """Band 1 of a GeoTIFF as float64 with nodata as NaN, and its affine transform (6-tuple)."""
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1, masked=True).filled(np.nan).astype("float64"), tuple(src.transform)[:6]


# ---------------------------------------------------------------------------------------------- grid
def mosaic_grid(tiles: pd.DataFrame, epsg: int, *, resolution: float | None = None,
                chunks: int = DEFAULT_CHUNK) -> TargetGrid:
    """The grid of the mosaic of the tiles in ``epsg``: covers all of them, on the majority lattice.

    ``resolution`` defaults to the finest tile resolution. The lattice offset (pixel corners modulo
    the resolution) is the most common one among the tiles at that resolution, so those tiles are
    pasted without resampling.
    """
    sub = tiles[tiles["epsg"] == epsg]
    if sub.empty:
        raise InputDataError(f"No tile in EPSG:{epsg}; projections present: {sorted(tiles['epsg'].unique())}.")
    res = float(resolution or sub["res"].min())
    same = sub[np.isclose(sub["res"], res)]
    if same.empty:
        same = sub
    ox = Counter(np.round(np.mod(same["left"], res), 6)).most_common(1)[0][0]
    oy = Counter(np.round(np.mod(same["top"], res), 6)).most_common(1)[0][0]
    left = math.floor((sub["left"].min() - ox) / res) * res + ox
    right = math.ceil((sub["right"].max() - ox) / res) * res + ox
    bottom = math.floor((sub["bottom"].min() - oy) / res) * res + oy
    top = math.ceil((sub["top"].max() - oy) / res) * res + oy
    return TargetGrid.from_spec(f"EPSG:{epsg}", res, (left, bottom, right, top), chunks=chunks)


def _placement(tiles: pd.DataFrame, grid: TargetGrid) -> pd.DataFrame:
    """Pixel window of each tile on ``grid`` (rows j0:j1, cols i0:i1) and whether it is on the lattice."""
    a, _, c, _, e, f = grid.transform
    fx = (tiles["left"] - c) / a
    fy = (f - tiles["top"]) / -e
    out = pd.DataFrame(index=tiles.index)
    aligned = (np.isclose(tiles["res"], a) & np.isclose(fx, np.round(fx), atol=1e-6)
               & np.isclose(fy, np.round(fy), atol=1e-6)
               & np.array([t == d for t, d in zip(tiles["transform"], tiles["dem_transform"])])
               & np.array([s == (ny, nx) for s, ny, nx in zip(tiles["dem_shape"], tiles["ny"], tiles["nx"])]))
    out["aligned"] = aligned
    out["i0"] = np.floor(fx + 1e-6).astype(int)
    out["j0"] = np.floor(fy + 1e-6).astype(int)
    out["i1"] = np.ceil((tiles["right"] - c) / a - 1e-6).astype(int)
    out["j1"] = np.ceil((f - tiles["bottom"]) / -e - 1e-6).astype(int)
    return out


# ---------------------------------------------------------------------------------------------- blocks
_LAYERS = ("thickness", "surface", "glacier_id", "claim_count", "thickness_overlap")


def _read_tile_window(row: pd.Series, place: pd.Series, grid: TargetGrid, rows: slice, cols: slice
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Thickness and surface of one tile on the grid window ``rows, cols`` (NaN where not covered)."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    from rasterio.windows import Window

    h, w = rows.stop - rows.start, cols.stop - cols.start
    if place["aligned"]:
        win = Window(cols.start - place["i0"], rows.start - place["j0"], w, h)
        with rasterio.open(row["thickness_path"]) as src:
            t = src.read(1, window=win, masked=True).filled(np.nan).astype("float32")
        with rasterio.open(row["dem_path"]) as src:
            z = src.read(1, window=win, masked=True).filled(np.nan).astype("float32")
        return t, z
    a, _, c, _, e, f = grid.transform
    dst_tr = rasterio.Affine(a, 0.0, c + a * cols.start, 0.0, e, f + e * rows.start)
    dst_crs = rasterio.crs.CRS.from_epsg(int(row["epsg"]))
    t = np.full((h, w), np.nan, dtype="float32")
    z = np.full((h, w), np.nan, dtype="float32")
    with rasterio.open(row["thickness_path"]) as src:
        tsrc = src.read(1, masked=True).filled(np.nan).astype("float32")
    reproject(tsrc, t, src_transform=rasterio.Affine(*row["transform"]), src_crs=dst_crs, src_nodata=np.nan,
              dst_transform=dst_tr, dst_crs=dst_crs, dst_nodata=np.nan, resampling=Resampling.average)
    with rasterio.open(row["dem_path"]) as src:
        zsrc = src.read(1, masked=True).filled(np.nan).astype("float32")
    reproject(zsrc, z, src_transform=rasterio.Affine(*row["dem_transform"]),
              src_crs=rasterio.crs.CRS.from_epsg(int(row["dem_crs"])), src_nodata=np.nan,
              dst_transform=dst_tr, dst_crs=dst_crs, dst_nodata=np.nan, resampling=Resampling.bilinear)
    return t, z


def _merge_block(tiles: pd.DataFrame, place: pd.DataFrame, grid: TargetGrid, rows: slice, cols: slice) -> np.ndarray:
    """The stacked layers (``_LAYERS``) of one block, merged with the overlap rule (lowest number wins)."""
    h, w = rows.stop - rows.start, cols.stop - cols.start
    out = np.zeros((len(_LAYERS), h, w), dtype="float32")
    thick, surf, gid, claims, lost = out
    surf[:] = np.nan
    for num in sorted(tiles.index):
        p = place.loc[num]
        r = slice(max(rows.start, p["j0"]), min(rows.stop, p["j1"]))
        cc = slice(max(cols.start, p["i0"]), min(cols.stop, p["i1"]))
        if r.stop <= r.start or cc.stop <= cc.start:
            continue
        t, z = _read_tile_window(tiles.loc[num], p, grid, r, cc)
        t = np.where(np.isfinite(t), np.maximum(t, 0.0), np.nan)
        lr = slice(r.start - rows.start, r.stop - rows.start)
        lc = slice(cc.start - cols.start, cc.stop - cols.start)
        bt, bs, bg, bc, bl = thick[lr, lc], surf[lr, lc], gid[lr, lc], claims[lr, lc], lost[lr, lc]
        ice = t > 0
        new = ice & (bg == 0)
        clash = ice & (bg > 0)
        bt[new] = t[new]
        bs[new] = z[new]
        bg[new] = num
        bl[clash] += t[clash]
        bc[ice] += 1
        fill = ~np.isfinite(bs) & np.isfinite(z) & (bg == 0)
        bs[fill] = z[fill]
    return out


def mosaic_dataset(tiles: pd.DataFrame, epsg: int, *, chunks: int = DEFAULT_CHUNK,
                   resolution: float | None = None) -> xr.Dataset:
    """The lazy mosaic of the tiles in ``epsg``: each dask block reads only the tiles touching it.

    ``tiles`` comes from :func:`scan_tiles`. See the module docstring for variables and the overlap rule.
    """
    grid = mosaic_grid(tiles, epsg, resolution=resolution, chunks=chunks)
    sub = tiles[tiles["epsg"] == epsg]
    place = _placement(sub, grid)
    cy, cx = grid.chunks
    ny, nx = grid.shape
    by_block: dict[tuple[int, int], list[int]] = defaultdict(list)
    for num, p in place.iterrows():  # one row per tile, not per pixel: builds the block -> tiles index
        for by in range(max(p["j0"], 0) // cy, (min(p["j1"], ny) - 1) // cy + 1):
            for bx in range(max(p["i0"], 0) // cx, (min(p["i1"], nx) - 1) // cx + 1):
                by_block[(by, bx)].append(num)
    ychunks = tuple(min(cy, ny - j) for j in range(0, ny, cy))
    xchunks = tuple(min(cx, nx - i) for i in range(0, nx, cx))

    def block(block_info=None):
        (_, _), (j0, j1), (i0, i1) = block_info[None]["array-location"]
        _, by, bx = block_info[None]["chunk-location"]
        nums = by_block.get((by, bx), [])
        if not nums:
            out = np.zeros((len(_LAYERS), j1 - j0, i1 - i0), dtype="float32")
            out[1] = np.nan
            return out
        return _merge_block(sub.loc[nums], place.loc[nums], grid, slice(j0, j1), slice(i0, i1))

    stack = dsa.map_blocks(block, chunks=((len(_LAYERS),), ychunks, xchunks), dtype="float32",
                           meta=np.array((), dtype="float32"))
    hist = provenance("mosaic", epsg=epsg, tiles=len(sub), chunks=chunks,
                      source=str(Path(sub["thickness_path"].iloc[0]).parent))
    coords = grid.coords()
    dims = ("y", "x")

    def layer(k, dtype):
        return xr.DataArray(stack[k].astype(dtype), dims=dims, coords=coords)

    ds = xr.Dataset({
        "thickness": stamp(layer(0, "float32"), "thickness", history=hist),
        "surface": stamp(layer(1, "float32"), "surface", history=hist),
        "glacier_id": stamp(layer(2, "int32"), "glacier_id", history=hist),
        "claim_count": stamp(layer(3, "uint8"), "claim_count", history=hist),
        "thickness_overlap": stamp(layer(4, "float32"), "thickness_overlap", history=hist),
    })
    ds["glacier_id"].attrs["long_name"] = "Glacier RGI number NNNNN (0 = no glacier); rgi_id on the glacier dim"
    px = grid.resolution[0] * grid.resolution[1]
    ds["pixel_area"] = stamp(xr.DataArray(px), "pixel_area")
    gl = sub.index.to_numpy().astype("int32")
    ds = ds.assign_coords(glacier=("glacier", gl, {"long_name": "RGI number NNNNN of the glacier (glacier_id value)"}))
    ds["rgi_id"] = ("glacier", sub["rgi_id"].to_numpy().astype(object), {"long_name": "RGI glacier id"})
    if "tile_area_km2" in sub:
        ds["tile_area"] = stamp(xr.DataArray(sub["tile_area_km2"].to_numpy(), dims="glacier"), "tile_area")
        ds["tile_volume"] = stamp(xr.DataArray(sub["tile_volume_km3"].to_numpy(), dims="glacier"), "tile_volume")
        ds["negative_pixels"] = ("glacier", sub["negative_pixels"].to_numpy().astype("int32"),
                                 {"units": "1", "long_name": "Tile pixels with negative thickness, set to 0"})
    ds["resampled"] = ("glacier", (~place["aligned"]).to_numpy().astype("int8"),
                       {"units": "1", "long_name": "1 if the tile was resampled onto the mosaic lattice"})
    ds.attrs.update({"epsg": int(epsg), "history": hist, "overlap_rule": "lowest RGI number wins where several tiles have ice",
                     "source": "Farinotti et al. (2019) consensus ice thickness and surface DEM"})
    ds = grid.attach(ds)  # rioxarray's spatial_ref; it drops "crs"/"transform" attrs, so set ours after
    ds.attrs.update({"crs_wkt": grid.crs, "transform_gdal": list(grid.transform), "chunk_size": int(chunks)})
    ds["thickness"].encoding["fill_value"] = 0.0
    ds["thickness_overlap"].encoding["fill_value"] = 0.0
    return ds


# ---------------------------------------------------------------------------------------------- write
@dataclass(frozen=True)
class MosaicSummary:
    """What :func:`build_mosaic` wrote for one projection."""

    epsg: int
    path: Path
    shape: tuple[int, int]
    chunks: tuple[int, int]
    glaciers: int
    resampled: tuple[str, ...]
    seconds: float


def build_mosaic(thickness_dir: str | Path, dem_dir: str | Path, out_dir: str | Path, *,
                 chunks: int = DEFAULT_CHUNK, epsgs: list[int] | None = None, overwrite: bool = False,
                 name: str = "alps", tiles: pd.DataFrame | None = None) -> list[MosaicSummary]:
    """Build one Zarr mosaic cube per projection: ``out_dir/<name>_<epsg>.zarr``.

    Parameters
    ----------
    thickness_dir, dem_dir : path
        Farinotti thickness and DEM tile folders (see :func:`scan_tiles`).
    out_dir : path
        Folder of the output stores.
    chunks : int
        Square chunk size in pixels (default 2048: 16 MiB per float32 chunk).
    epsgs : list of int, optional
        Projections to build; default every projection present among the tiles.
    overwrite : bool
        Replace existing stores; otherwise an existing store with the same schema is resumed (slabs
        already recorded are skipped).
    tiles : DataFrame, optional
        A :func:`scan_tiles` result, to avoid scanning twice.

    Returns
    -------
    list of MosaicSummary
    """
    tiles = scan_tiles(thickness_dir, dem_dir) if tiles is None else tiles
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    present = sorted(int(e) for e in tiles["epsg"].unique())
    todo = present if epsgs is None else [int(e) for e in epsgs]
    missing = sorted(set(todo) - set(present))
    if missing:
        raise InputDataError(f"No tile in EPSG {missing}; projections present: {present}.")
    out = []
    for epsg in todo:
        t0 = time.perf_counter()
        ds = mosaic_dataset(tiles, epsg, chunks=chunks)
        path = out_dir / f"{name}_{epsg}.zarr"
        write_mosaic(ds, path, overwrite=overwrite)
        res = ds["rgi_id"].values[ds["resampled"].values.astype(bool)]
        out.append(MosaicSummary(epsg, path, (ds.sizes["y"], ds.sizes["x"]), (chunks, chunks),
                                 ds.sizes["glacier"], tuple(map(str, res)), time.perf_counter() - t0))
    return out


def write_mosaic(ds: xr.Dataset, path: str | Path, *, overwrite: bool = False) -> Path:
    """Template (with its plan, written whole or not at all), then slabs of whole chunk rows; resumable and
    locked against a second writer (:func:`glacgrid.cube.write_dataset` along ``y``)."""
    return cube_mod.write_dataset(ds, path, region_dim="y", step=ds["thickness"].data.chunksize[0], overwrite=overwrite)


def open_mosaic(path: str | Path, *, chunks: dict | str | None = "auto") -> xr.Dataset:
    """Open a mosaic cube lazily (thin wrapper of :func:`glacgrid.cube.open_store`)."""
    ds = cube_mod.open_store(path, chunks={} if chunks == "auto" else chunks)
    return ds.set_coords([v for v in ("spatial_ref",) if v in ds.data_vars])


def mosaic_totals(ds: xr.Dataset) -> pd.DataFrame:
    """Per-glacier area (km2) and volume (km3) in the mosaic against the tiles' own totals (flox, lazy input).

    Columns: ``rgi_id``, ``area_km2``, ``volume_km3``, ``overlap_volume_km3`` (ice of this cube lost to
    a lower-numbered glacier is not attributable per glacier and is reported in total only),
    ``tile_area_km2``, ``tile_volume_km3``.
    """
    px = float(ds["pixel_area"])
    gl = ds["glacier"].values
    gid = ds["glacier_id"]
    ice = m2_to_km2((ds["thickness"] > 0).astype("float64") * px)
    vol = m3_to_km3(ds["thickness"].astype("float64") * px)
    both = xr.Dataset({"area": ice, "vol": vol})
    red = glacier_sums(both, gid, gl).compute()
    table = pd.DataFrame({"rgi_id": ds["rgi_id"].values, "area_km2": red["area"].values,
                          "volume_km3": red["vol"].values}, index=pd.Index(gl, name="glacier"))
    if "tile_area" in ds:
        table["tile_area_km2"] = ds["tile_area"].values
        table["tile_volume_km3"] = ds["tile_volume"].values
    table.attrs["overlap_volume_km3"] = float(m3_to_km3(ds["thickness_overlap"].astype("float64").sum() * px).compute())
    return table
