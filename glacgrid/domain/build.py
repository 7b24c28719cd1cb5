"""Build a glacier domain from per-glacier tiles (Farinotti et al. 2019) or from rasters on a grid.

Both builders reduce their input to the glacier pixels of each glacier in packing order, with the
surface at the pixel's four raster neighbours (edge-replicated at the raster edge), and hand that to
the shared writer, which lays the glaciers out in groups and writes the store group by group.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import InputDataError, MissingVariableError
from ..grid import TargetGrid
from ..mosaic import read_tile, scan_tiles
from . import _kernels
from ._writer import STRING, PackedSource, write_domain
from .store import Domain, open_domain

__all__ = ["domain_from_tiles", "domain_from_rasters", "domain_from_windows", "DEFAULT_GROUP_PIXELS"]

#: Default pixels per group (and Zarr chunk along ``pixel``): 2**18 = 262,144 (2 MiB per float64 array).
DEFAULT_GROUP_PIXELS = 2**18


# ---------------------------------------------------------------------------------------------- tiles
def _window_pixels(h: np.ndarray, z: np.ndarray) -> dict:
    """The glacier pixels (thickness > 0; NaN counts as 0) of one window: their rows, columns, thickness,
    surface and the surface at their four neighbours, and the number of negative thickness values."""
    h = np.where(np.isfinite(h), h, 0.0)
    rows, cols = np.nonzero(h > 0)
    return {"rows": rows.astype("int32"), "cols": cols.astype("int32"), "thickness": h[rows, cols],
            "surface": z[rows, cols], "nb": _kernels.edge_neighbours(z, rows, cols), "negative": int((h < 0).sum())}


def _read_glacier_tile(row: pd.Series) -> dict:
    """The glacier pixels of one tile (:func:`_window_pixels` of its thickness and DEM)."""
    h, z, _ = read_tile(row)
    return _window_pixels(h, z)


def _pack_windows(parts: list[dict], *, rgi_id, name, source_index, epsg, crs, transform, shape,
                  rule: str) -> tuple[PackedSource, dict]:
    """The :class:`PackedSource` of glacier windows in packing order (the tiles' and the windows' rule):
    where windows of one CRS on one pixel lattice overlap, a pixel belongs to the first window; ice
    pixels without a finite surface are dropped; the pixel area is ``|a * e|``. Also the counts of what
    was given up, as store attributes."""
    N = len(parts)
    n = np.array([p["rows"].size for p in parts], dtype="int64")
    glacier = np.repeat(np.arange(N), n)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("rows", "cols", "thickness", "surface", "nb")}
    tr = np.asarray(transform, dtype="float64")
    res_x, res_y = tr[:, 0], -tr[:, 4]
    left, top = tr[:, 2], tr[:, 5]
    ox, oy = np.round(np.mod(left, res_x), 6), np.round(np.mod(top, res_y), 6)
    crs = np.asarray(crs, dtype=object)
    zone = pd.MultiIndex.from_arrays([crs, res_x, res_y, ox, oy]).factorize()[0].astype("int64")
    ix0 = np.round((left - ox) / res_x).astype("int64")
    iy0 = np.round((oy - top) / res_y).astype("int64")
    keep = _kernels.first_claims(zone[glacier], iy0[glacier] + cat["rows"], ix0[glacier] + cat["cols"])
    overlap = int((~keep).sum())
    no_surface = keep & ~np.isfinite(cat["surface"])
    area = np.abs(res_x * res_y)
    dropped = float((cat["thickness"][no_surface] * area[glacier[no_surface]]).sum())
    keep &= ~no_surface
    glacier = glacier[keep]
    cat = {k: v[keep] for k, v in cat.items()}
    src = PackedSource(
        rgi_id=np.asarray(rgi_id).astype(STRING), name=np.asarray(name).astype(STRING),
        source_index=np.asarray(source_index, dtype="int64"), epsg=np.asarray(epsg, dtype="int32"), crs=crs,
        geographic=np.zeros(N, bool), transform=tr, window_shape=np.asarray(shape, dtype="int32"),
        origin=np.c_[left, top, np.zeros((N, 2))], zone=zone, iy0=iy0, ix0=ix0,
        glacier=glacier, row=cat["rows"], col=cat["cols"], surface=cat["surface"], thickness=cat["thickness"],
        pixel_area=area[glacier], neighbour_surface=cat["nb"])
    attrs = {"negative_pixels": int(sum(p["negative"] for p in parts)), "overlap_pixels": overlap,
             "ice_pixels_without_surface": int(no_surface.sum()), "volume_dropped_m3": dropped, "overlap_rule": rule}
    return src, attrs


def domain_from_tiles(thickness_dir: str | os.PathLike, dem_dir: str | os.PathLike, store: str | os.PathLike, *,
                      numbers=None, group_pixels: int = DEFAULT_GROUP_PIXELS, overwrite: bool = False,
                      progress: bool = False, workers: int | None = None) -> Domain:
    """The domain of per-glacier thickness + DEM tiles (``RGIvv-rr.NNNNN_thickness.tif``, ``dem_NNNNN.asc.tif``).

    Parameters
    ----------
    thickness_dir, dem_dir : path
        The Farinotti thickness and surface DEM folders (see :func:`glacgrid.mosaic.scan_tiles`).
    store : path
        The domain Zarr store to write.
    numbers : list of int, optional
        Only these glacier numbers NNNNN (default: every tile).
    group_pixels : int
        Requested pixels per group (the chunk along ``pixel``; raised to the largest glacier).
    overwrite : bool
        Replace an existing store; otherwise a store with the same layout is resumed.
    progress : bool
        Print the time of each phase.
    workers : int, optional
        Threads reading tiles (default ``4 * cpu_count``, at most 32).

    Returns
    -------
    Domain

    Notes
    -----
    Glacier pixels are the tile's pixels with thickness > 0 (negative values count as 0). Where tiles
    of one CRS on one pixel lattice overlap, a pixel belongs to the tile of the **lowest RGI number**
    (the mosaic's rule, :mod:`glacgrid.mosaic`); the pixels given up are counted in the store
    attribute ``overlap_pixels``. Ice pixels without a finite surface are then dropped and counted
    (``ice_pixels_without_surface``, ``volume_dropped_m3``). Each glacier's window is its tile; its
    slope and aspect come from the tile's own DEM (edge-replicated at the tile edge).
    """
    t0 = time.perf_counter()
    tiles = scan_tiles(thickness_dir, dem_dir, read_values=False, numbers=numbers)
    if numbers is not None:
        missing = sorted(set(int(n) for n in numbers) - set(tiles.index))
        if missing:
            raise InputDataError(f"No tile for glacier numbers {missing[:10]} in {thickness_dir}; "
                                 "pass numbers that have a RGIvv-rr.NNNNN_thickness.tif tile.")
    tiles = tiles[~tiles.index.duplicated()]
    t1 = time.perf_counter()
    workers = workers or min(32, 4 * (os.cpu_count() or 1))
    rows_list = [r for _, r in tiles.iterrows()]
    with ThreadPoolExecutor(workers) as pool:  # file reading, one tile per glacier
        parts = list(pool.map(_read_glacier_tile, rows_list))
    t2 = time.perf_counter()
    epsg = tiles["epsg"].to_numpy().astype("int32")
    src, attrs = _pack_windows(parts, rgi_id=tiles["rgi_id"].to_numpy(), name=np.full(len(tiles), ""),
                               source_index=tiles.index.to_numpy(), epsg=epsg, crs=[f"EPSG:{e}" for e in epsg],
                               transform=tiles["transform"].tolist(), shape=tiles[["ny", "nx"]].to_numpy(),
                               rule="lowest RGI number wins where tiles of one lattice overlap")
    source = f"Farinotti et al. (2019) tiles: {Path(thickness_dir)} + {Path(dem_dir)}"
    write_domain(src, store, group_pixels=group_pixels, source=source, overwrite=overwrite, attrs=attrs)
    t3 = time.perf_counter()
    if progress:
        print(f"domain_from_tiles: scan {t1 - t0:.1f} s, read {len(tiles)} tiles {t2 - t1:.1f} s, "
              f"pack+write {t3 - t2:.1f} s; {src.glacier.size} pixels, {attrs['overlap_pixels']} overlap pixels "
              f"given up, {attrs['ice_pixels_without_surface']} ice pixels without surface dropped")
    return open_domain(store)


# ---------------------------------------------------------------------------------------------- rasters
def _nonzero_block(ids: np.ndarray, block_info=None) -> np.ndarray:
    """Flat raster positions and ids of the glacier pixels of one block (object array of one tuple)."""
    (r0, _), (c0, _) = block_info[0]["array-location"]
    nx = block_info[0]["shape"][1]
    jj, ii = np.nonzero(ids > 0)
    out = np.empty((1, 1), dtype=object)
    out[0, 0] = ((jj + r0).astype("int64") * nx + (ii + c0), ids[jj, ii].astype("int64"))
    return out


def _as_dask(da: xr.DataArray, grid: TargetGrid) -> dsa.Array:
    data = da.data
    return data if isinstance(data, dsa.Array) else dsa.from_array(np.asarray(data), chunks=grid.chunks)


def _gather(da: xr.DataArray, grid: TargetGrid, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values of a (y, x) raster at the given pixels (dask: only the blocks holding them are read)."""
    if isinstance(da.data, dsa.Array):
        return np.asarray(da.data.vindex[rows, cols].compute())
    return np.asarray(da.values)[rows, cols]


def domain_from_rasters(static: xr.Dataset, grid: TargetGrid, table: pd.DataFrame, store: str | os.PathLike, *,
                        group_pixels: int = DEFAULT_GROUP_PIXELS, overwrite: bool = False) -> Domain:
    """The domain of glacier rasters on a grid (what the dense run's prepare stage builds).

    Parameters
    ----------
    static : xarray.Dataset
        ``glacier_id`` (int, 0 = none; values = ``table`` index), ``surface`` (m), ``thickness`` (m,
        NaN where no data) and ``pixel_area`` (m2) on ``(y, x)`` of ``grid``, numpy or dask.
    grid : TargetGrid
        The grid of ``static``.
    table : pandas.DataFrame
        :func:`glacgrid.masks.glacier_table` output: index 1..N, columns ``rgi_id`` and ``name``.
    store : path
        The domain Zarr store to write.
    group_pixels : int
        Requested pixels per group.
    overwrite : bool
        Replace an existing store.

    Returns
    -------
    Domain

    Notes
    -----
    The glacier pixels are found block by block (the raster is never loaded whole). Each glacier's
    window is the bounding box of its pixels on the grid; its ``source_index`` is its table index.
    Slope and aspect use the surface at the four raster neighbours (edge-replicated at the raster
    edge) and the dense path's pixel sizes, so they equal
    :func:`glacgrid.features.topo_pixel_features` bit for bit.
    """
    for name in ("glacier_id", "surface", "thickness", "pixel_area"):
        if name not in static:
            raise MissingVariableError(f"static has no {name!r} (variables: {sorted(map(str, static.data_vars))}); "
                                       "pass the dense prepare's static dataset.")
        if static[name].dims != ("y", "x") or static[name].shape != grid.shape:
            raise InputDataError(f"static[{name!r}] has dims {static[name].dims} and shape {static[name].shape}; "
                                 f"expected ('y', 'x') and the grid's {grid.shape}.")
    for col in ("rgi_id", "name"):
        if col not in table:
            raise InputDataError(f"table has no {col!r} column; pass glacgrid.masks.glacier_table output.")
    index = table.index.to_numpy().astype("int64")
    if not np.array_equal(index, np.arange(1, index.size + 1)):
        raise InputDataError("table index must be 1..N (glacgrid.masks.glacier_table order).")
    epsg = grid.pyproj_crs.to_epsg()
    if epsg is None:
        raise InputDataError(f"The grid CRS has no EPSG code ({grid.crs[:80]}...); reproject to an EPSG CRS.")
    gid = _as_dask(static["glacier_id"], grid)
    parts = dsa.map_blocks(_nonzero_block, gid, dtype=object,
                           chunks=((1,) * gid.numblocks[0], (1,) * gid.numblocks[1])).compute()
    flat = np.concatenate([p[0] for p in parts.ravel()])
    ids = np.concatenate([p[1] for p in parts.ravel()])
    bad = np.setdiff1d(np.unique(ids), index)
    if bad.size:
        raise InputDataError(f"glacier_id holds ids {bad[:10].tolist()} that are not in the table index "
                             f"1..{index.size}; pass the glacier_table of the same outlines.")
    order = np.lexsort((flat, ids))  # by glacier, row-major inside
    flat, ids = flat[order], ids[order]
    ny, nx = grid.shape
    grow, gcol = flat // nx, flat % nx
    z = static["surface"]
    nb_r = np.clip(grow[:, None] + np.array([0, 0, -1, 1]), 0, ny - 1)
    nb_c = np.clip(gcol[:, None] + np.array([-1, 1, 0, 0]), 0, nx - 1)
    zz = _gather(z, grid, np.r_[grow, nb_r.ravel()], np.r_[gcol, nb_c.ravel()]).astype("float64")
    surface, nb = zz[: flat.size], zz[flat.size:].reshape(-1, 4)
    thickness = _gather(static["thickness"], grid, grow, gcol).astype("float64")
    area = _gather(static["pixel_area"], grid, grow, gcol).astype("float64")
    N = index.size
    glacier = ids - 1
    n_pix = np.bincount(glacier, minlength=N)
    has = n_pix > 0
    r0 = np.zeros(N, "int64")
    c0 = np.zeros(N, "int64")
    r1 = np.zeros(N, "int64")
    c1 = np.zeros(N, "int64")
    starts = np.r_[0, np.cumsum(n_pix)][:-1][has]
    r0[has] = np.minimum.reduceat(grow, starts)
    r1[has] = np.maximum.reduceat(grow, starts) + 1
    c0[has] = np.minimum.reduceat(gcol, starts)
    c1[has] = np.maximum.reduceat(gcol, starts) + 1
    a, _, c, _, e, f = grid.transform
    tr = np.zeros((N, 6))
    tr[:, 0], tr[:, 4] = a, e
    tr[:, 2], tr[:, 5] = c + a * c0, f + e * r0
    src = PackedSource(
        rgi_id=table["rgi_id"].astype(str).to_numpy().astype(STRING),
        name=table["name"].fillna("").astype(str).to_numpy().astype(STRING),
        source_index=index, epsg=np.full(N, epsg, "int32"), crs=np.full(N, grid.crs, dtype=object),
        geographic=np.full(N, grid.is_geographic), transform=tr,
        window_shape=np.c_[r1 - r0, c1 - c0].astype("int32"),
        origin=np.c_[np.full(N, c), np.full(N, f), c0, r0].astype("float64"),
        zone=np.zeros(N, "int64"), iy0=r0, ix0=c0,
        glacier=glacier, row=(grow - r0[glacier]).astype("int32"), col=(gcol - c0[glacier]).astype("int32"),
        surface=surface, thickness=thickness, pixel_area=area, neighbour_surface=nb)
    source = static.attrs.get("source", "rasters on a grid") + f" (grid EPSG:{epsg}, shape {grid.shape})"
    write_domain(src, store, group_pixels=group_pixels, source=source, overwrite=overwrite)
    return open_domain(store)


# ---------------------------------------------------------------------------------------------- windows
_WINDOW_KEYS = ("rgi_id", "transform", "surface", "thickness")


def _window_parts(i: int, rec: Mapping) -> dict:
    """One window record reduced to its glacier pixels (thickness > 0), as :func:`_read_glacier_tile` does."""
    missing = [k for k in _WINDOW_KEYS if k not in rec] + ([] if ("crs" in rec or "epsg" in rec) else ["crs/epsg"])
    if missing:
        raise InputDataError(f"Window {i} ({rec.get('rgi_id', '?')}) has no {missing}; a window record needs "
                             "rgi_id, crs or epsg, transform (a, b, c, d, e, f), surface and thickness (2-D).")
    rgi = str(rec["rgi_id"])
    tr = tuple(float(v) for v in tuple(rec["transform"])[:6])
    if len(tr) != 6 or tr[1] != 0 or tr[3] != 0 or tr[0] <= 0 or tr[4] >= 0:
        raise InputDataError(f"Window {rgi} has transform {tr}; expected a north-up affine (a, 0, c, 0, e, f) with "
                             "a > 0 and e < 0. Warp rotated or south-up rasters first.")
    z = np.asarray(rec["surface"], dtype="float64")
    h = np.asarray(rec["thickness"], dtype="float64")
    if z.ndim != 2 or z.shape != h.shape:
        raise InputDataError(f"Window {rgi} has surface {z.shape} and thickness {h.shape}; expected two 2-D "
                             "arrays of one shape (the window).")
    if "epsg" in rec and rec["epsg"] is not None:
        epsg = int(rec["epsg"])
        crs = str(rec.get("crs") or f"EPSG:{epsg}")
    else:
        from pyproj import CRS

        crs = str(rec["crs"])
        epsg = CRS.from_user_input(crs).to_epsg() or 0
    return {**_window_pixels(h, z), "rgi_id": rgi, "name": str(rec.get("name", "") or ""),
            "source_index": int(rec.get("source_index", i)), "epsg": epsg, "crs": crs, "transform": tr,
            "shape": z.shape}


def domain_from_windows(windows: Iterable[Mapping], store: str | os.PathLike, *,
                        group_pixels: int = DEFAULT_GROUP_PIXELS, overwrite: bool = False) -> Domain:
    """The domain of per-glacier windows held in memory (synthetic inventories, or rasters read elsewhere).

    Parameters
    ----------
    windows : iterable of mapping
        One record per glacier, in packing order (a generator is consumed one window at a time):
        ``rgi_id`` (str), ``crs`` (any string pyproj reads) and/or ``epsg`` (int), ``transform``
        (affine ``(a, b, c, d, e, f)``, north-up), ``surface`` (m, 2-D) and ``thickness`` (m, 2-D, NaN
        = no data); optional ``name`` (default ``""``) and ``source_index`` (default: the position).
    store : path
        The domain Zarr store to write.
    group_pixels : int
        Requested pixels per group (the chunk along ``pixel``; raised to the largest glacier).
    overwrite : bool
        Replace an existing store; otherwise a store with the same layout is resumed.

    Returns
    -------
    Domain

    Raises
    ------
    InputDataError
        If a record misses a key, its arrays are not two 2-D arrays of one shape, its transform is
        rotated or south-up, its CRS is geographic, or no window holds a glacier pixel.

    Notes
    -----
    The rules of :func:`domain_from_tiles`, window for tile: glacier pixels are those with thickness
    > 0 (negative values count as 0, counted in ``negative_pixels``); where windows of one CRS on one
    pixel lattice overlap, a pixel belongs to the window that comes **first**; ice pixels without a
    finite surface are dropped and counted; slope and aspect come from the window's own surface
    (edge-replicated at the window edge), so give each window a halo of at least one pixel around its
    ice for central differences on real neighbours. Windows of projected CRSs only (UTM, polar
    stereographic, ...): the pixel area is ``|a * e|``.
    """
    parts = [_window_parts(i, rec) for i, rec in enumerate(windows)]  # one window at a time
    if not parts:
        raise InputDataError("No window given; pass one record per glacier.")
    from pyproj import CRS

    crs_list = [p["crs"] for p in parts]
    geographic = {c: CRS.from_user_input(c).is_geographic for c in set(crs_list)}  # a loop over the few CRSs
    bad = sorted(c for c, g in geographic.items() if g)
    if bad:
        raise InputDataError(f"Windows in geographic CRSs {bad[:3]}; expected projected windows (metres). "
                             "Reproject them to the local UTM zone (or a polar stereographic CRS).")
    src, attrs = _pack_windows(parts, rgi_id=[p["rgi_id"] for p in parts], name=[p["name"] for p in parts],
                               source_index=[p["source_index"] for p in parts], epsg=[p["epsg"] for p in parts],
                               crs=crs_list, transform=[p["transform"] for p in parts],
                               shape=[p["shape"] for p in parts],
                               rule="the first window wins where windows of one lattice overlap")
    n_crs = len(set(crs_list))
    write_domain(src, store, group_pixels=group_pixels, source=f"{len(parts)} glacier windows in {n_crs} CRSs",
                 overwrite=overwrite, attrs=attrs)
    return open_domain(store)
