"""Packed domain fields back onto rasters (one glacier's window, a CRS zone, any grid) and to GeoTIFFs."""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as dsa
import numpy as np
import xarray as xr

from ..atomic import atomic_path
from ..exceptions import GridMismatchError, InputDataError
from ..grid import TargetGrid
from .store import Domain

__all__ = ["rasterise", "export"]


def _values(values, domain: Domain, sl: slice | None = None) -> tuple[np.ndarray, tuple[str, ...], dict]:
    """``values`` as numpy ``(..., pixel)`` (optionally only pixels ``sl``), its leading dims and coords."""
    n = domain.pixels.sizes["pixel"]
    if isinstance(values, xr.DataArray):
        if "pixel" not in values.dims:
            raise InputDataError(f"values has dims {values.dims}; expected a 'pixel' dimension.")
        values = values.transpose(..., "pixel")
        lead = values.dims[:-1]
        coords = {d: values[d].values for d in lead if d in values.coords}
        data = values.data
    else:
        data = values
        lead = tuple(f"dim_{i}" for i in range(np.ndim(values) - 1))
        coords = {}
    if data.shape[-1] != n:
        raise InputDataError(f"values has {data.shape[-1]} pixels; the domain has {n} (groups x group_pixels).")
    if sl is not None:
        data = data[..., sl]
    if isinstance(data, dsa.Array):
        data = data.compute()
    return np.asarray(data), lead, coords


def _slot(domain: Domain, glacier) -> int:
    """0-based slot of ``glacier`` (slot number, 1-based, or rgi_id)."""
    g = domain.glaciers
    if isinstance(glacier, str):
        hit = np.flatnonzero(g["rgi_id"].values.astype(object) == glacier)
        if hit.size == 0:
            raise InputDataError(f"No glacier {glacier!r} in the domain {domain.path}.")
        return int(hit[0])
    k = int(glacier) - 1
    if not 0 <= k < g.sizes["glacier"] or str(g["rgi_id"].values[k]) == "":
        raise InputDataError(f"Glacier slot {glacier} is not a real glacier of {domain.path}; "
                             "see Domain.table for the slot numbers.")
    return k


def _da(out: np.ndarray, lead, coords, grid: TargetGrid, name) -> xr.DataArray:
    da = xr.DataArray(out, dims=tuple(lead) + ("y", "x"), coords=coords, name=name)
    return grid.attach(da)


def _pixel_xy(domain: Domain, gid: np.ndarray, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Native-CRS pixel-centre x, y of domain pixels from their glacier's window transform."""
    tr = domain.glaciers["transform"].values[gid - 1]
    return tr[:, 2] + tr[:, 0] * (col + 0.5), tr[:, 5] + tr[:, 4] * (row + 0.5)


def _resolutions(domain: Domain) -> np.ndarray:
    """The pixel size of each glacier slot's window (m or degrees)."""
    return np.round(domain.glaciers["transform"].values[:, 0], 9)


def _zone_positions(domain: Domain, epsg: int, res: float | None = None):
    """The union grid of a zone (its glaciers of resolution ``res`` when given) and, for the domain's pixels
    on it, their positions in the domain and their rows and columns on that grid."""
    target = _zone_grid(domain, epsg, res)
    pix = domain.pixels[["glacier_id", "row", "col"]].compute()
    gid = pix["glacier_id"].values
    real = np.flatnonzero(gid > 0)
    mine = domain.glaciers["epsg"].values == epsg
    if res is not None:
        mine &= _resolutions(domain) == round(float(res), 9)
    real = real[mine[gid[real] - 1]]
    x, y = _pixel_xy(domain, gid[real], pix["row"].values[real].astype("int64"), pix["col"].values[real].astype("int64"))
    a, _, c, _, e, f = target.transform
    return target, real, np.round((y - f) / e - 0.5).astype("int64"), np.round((x - c) / a - 0.5).astype("int64")


def _zone_grid(domain: Domain, epsg: int, res: float | None = None) -> TargetGrid:
    """The union grid of the windows of ``epsg`` (of resolution ``res`` only, when given) at their single
    resolution."""
    g = domain.glaciers
    sel = (g["epsg"].values == epsg) & (g["n_pixels"].values > 0)
    if res is not None:
        sel &= _resolutions(domain) == round(float(res), 9)
    if not sel.any():
        raise InputDataError(f"No glacier in EPSG:{epsg} in {domain.path}; zones present: "
                             f"{sorted(set(g['epsg'].values[g['n_pixels'].values > 0].tolist()))}.")
    tr = g["transform"].values[sel]
    shp = g["window_shape"].values[sel]
    res = np.unique(np.round(np.c_[tr[:, 0], -tr[:, 4]], 9), axis=0)
    if len(res) > 1:
        raise GridMismatchError(f"The glaciers of EPSG:{epsg} have several resolutions {res.tolist()}; "
                                "rasterise them onto one grid with grid=TargetGrid(...) instead.")
    a, e = tr[0, 0], tr[0, 4]
    left, top = tr[:, 2].min(), tr[:, 5].max()
    right = (tr[:, 2] + a * shp[:, 1]).max()
    bottom = (tr[:, 5] + e * shp[:, 0]).min()
    nx = int(np.ceil((right - left) / a - 1e-6))
    ny = int(np.ceil((top - bottom) / -e - 1e-6))
    return TargetGrid(f"EPSG:{epsg}", (a, 0.0, left, 0.0, e, top), (ny, nx))


def rasterise(values, domain: Domain, *, glacier=None, epsg: int | None = None, grid: TargetGrid | None = None,
              fill: float = np.nan) -> xr.DataArray:
    """Packed values ``(..., pixel)`` back onto a raster.

    Parameters
    ----------
    values : array-like or xarray.DataArray
        ``(pixel,)`` or ``(..., pixel)`` values on the domain (numpy, dask or DataArray).
    domain : Domain
        The domain the values are packed on.
    glacier : int or str, optional
        One glacier's window: its slot number (``glacier_id`` value) or its ``rgi_id``.
    epsg : int, optional
        A whole zone: the union grid of the windows in that CRS (one resolution required).
    grid : TargetGrid, optional
        Any grid: each domain pixel whose centre (reprojected with pyproj) falls in a grid pixel goes
        to that pixel; several domain pixels in one grid pixel are averaged (NaN ignored).
    fill : float
        Value off the glaciers.

    Returns
    -------
    xarray.DataArray
        ``(..., y, x)`` with the grid's coordinates and CRS (rioxarray ``spatial_ref``).

    Raises
    ------
    InputDataError
        If not exactly one of ``glacier``, ``epsg``, ``grid`` is given, the glacier is unknown or the
        values do not have the domain's pixel count.
    GridMismatchError
        If the glaciers of ``epsg`` have several resolutions.
    """
    if sum(x is not None for x in (glacier, epsg, grid)) != 1:
        raise InputDataError("rasterise needs exactly one of glacier=, epsg= or grid=.")
    name = getattr(values, "name", None)
    g = domain.glaciers
    if glacier is not None:
        k = _slot(domain, glacier)
        first, n = int(g["first_pixel"].values[k]), int(g["n_pixels"].values[k])
        ny, nx = (int(v) for v in g["window_shape"].values[k])
        target = TargetGrid(f"EPSG:{int(g['epsg'].values[k])}", tuple(g["transform"].values[k]), (ny, nx))
        sl = slice(max(first, 0), max(first, 0) + n)
        data, lead, coords = _values(values, domain, sl)
        rc = domain.pixels[["row", "col"]].isel(pixel=sl).compute()
        out = np.full(data.shape[:-1] + (ny, nx), fill, dtype=np.result_type(data.dtype, np.float32))
        out[..., rc["row"].values, rc["col"].values] = data
        return _da(out, lead, coords, target, name)
    data, lead, coords = _values(values, domain)
    dtype = np.result_type(data.dtype, np.float32)
    if epsg is not None:
        target, at, rr, cc = _zone_positions(domain, int(epsg))
        out = np.full(data.shape[:-1] + target.shape, fill, dtype=dtype)
        out[..., rr, cc] = data[..., at]
        return _da(out, lead, coords, target, name)
    pix = domain.pixels[["glacier_id", "row", "col"]].compute()
    gid = pix["glacier_id"].values
    real = np.flatnonzero(gid > 0)
    gid, row, col = gid[real], pix["row"].values[real].astype("int64"), pix["col"].values[real].astype("int64")
    return _da(_onto_grid(domain, data[..., real], gid, row, col, grid, fill, dtype), lead, coords, grid, name)


def _onto_grid(domain: Domain, data, gid, row, col, grid: TargetGrid, fill, dtype) -> np.ndarray:
    """Mean of the domain pixels whose centres fall in each pixel of ``grid``."""
    from pyproj import CRS, Transformer

    ny, nx = grid.shape
    x, y = _pixel_xy(domain, gid, row, col)
    ep = domain.glaciers["epsg"].values[gid - 1]
    X, Y = np.empty_like(x), np.empty_like(y)
    for code in np.unique(ep):  # a loop over the CRSs of the domain
        s = ep == code
        tr = Transformer.from_crs(CRS.from_epsg(int(code)), grid.pyproj_crs, always_xy=True)
        X[s], Y[s] = tr.transform(x[s], y[s])
    a, _, c, _, e, f = grid.transform
    cc, rr = np.floor((X - c) / a).astype("int64"), np.floor((Y - f) / e).astype("int64")
    inside = (cc >= 0) & (cc < nx) & (rr >= 0) & (rr < ny)
    flat = rr[inside] * nx + cc[inside]
    vals = data[..., inside].reshape(-1, flat.size)
    out = np.full((vals.shape[0], ny * nx), fill, dtype=dtype)
    for i in range(vals.shape[0]):  # a loop over the leading entries (years, members)
        v = vals[i]
        ok = np.isfinite(v)
        s = np.bincount(flat[ok], weights=v[ok], minlength=ny * nx)
        cnt = np.bincount(flat[ok], minlength=ny * nx)
        hit = cnt > 0
        out[i, hit] = s[hit] / cnt[hit]
    return out.reshape(data.shape[:-1] + (ny, nx))


def _write_tif(da: xr.DataArray, path: Path, bands: list[str]) -> Path:
    """A float32 GeoTIFF (bands = leading entries, described by ``bands``), written atomically."""
    import rasterio

    arr = np.asarray(da.values, dtype="float32").reshape(-1, da.sizes["y"], da.sizes["x"])
    crs = da.rio.crs
    transform = da.rio.transform()
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0],
                           dtype="float32", crs=crs, transform=transform, nodata=np.nan, compress="deflate") as dst:
            dst.write(arr)
            for i, b in enumerate(bands, start=1):
                dst.set_band_description(i, b)
    return path


def export(results: xr.Dataset, domain: Domain, out_dir: str | os.PathLike, *,
           variables=("smb", "thickness"), by: str = "glacier", grid: TargetGrid | None = None,
           years=None) -> list[Path]:
    """Packed result fields to GeoTIFFs: one file per variable and glacier (or zone, or grid), bands = years.

    Parameters
    ----------
    results : xarray.Dataset
        Variables on ``(year, [member,] pixel)`` packed on ``domain``.
    domain : Domain
        The domain of ``results``.
    out_dir : path
        Output folder (created).
    variables : sequence of str
        Variables of ``results`` to write.
    by : {"glacier", "zone"}
        ``"glacier"``: ``<var>_<rgi_id>[_m<member>].tif`` on each glacier's window; ``"zone"``:
        ``<var>_EPSG<code>[_<res>m][_m<member>].tif`` on each CRS zone's union grid (one per resolution
        where a zone holds several), written tile by tile.
    grid : TargetGrid, optional
        Instead of ``by``: everything onto this grid, ``<var>_grid[_m<member>].tif``.
    years : sequence of int, optional
        Only these years (default all).

    Returns
    -------
    list of pathlib.Path
        The files written (float32, nodata NaN, CRS and transform set, band descriptions = years).
    """
    if by not in ("glacier", "zone"):
        raise InputDataError(f"by={by!r}; expected 'glacier' or 'zone'.")
    missing = [v for v in variables if v not in results]
    if missing:
        raise InputDataError(f"results has no variable(s) {missing}; it has {sorted(map(str, results.data_vars))}.")
    if years is not None:
        results = results.sel(year=list(years))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for var in variables:  # a loop over the few variables and members
        da = results[var]
        if "year" not in da.dims:
            da = da.expand_dims(year=[0])
        members = da["member"].values if "member" in da.dims else [None]
        for m in members:
            one = da if m is None else da.sel(member=m, drop=True)
            one = one.transpose("year", "pixel")
            bands = [str(y) for y in one["year"].values]
            sfx = "" if m is None else f"_m{m}"
            if grid is not None:
                written.append(_write_tif(rasterise(one, domain, grid=grid), out_dir / f"{var}_grid{sfx}.tif", bands))
            elif by == "zone":
                present = domain.glaciers["n_pixels"].values > 0
                eps = domain.glaciers["epsg"].values[present]
                for code in np.unique(eps):  # one file per zone (and per resolution where a zone has several)
                    res = np.unique(_resolutions(domain)[present][eps == code])
                    for r in res:
                        tag = f"_{r:g}m" if res.size > 1 else ""
                        written.append(_export_zone(one, domain, int(code), r,
                                                    out_dir / f"{var}_EPSG{int(code)}{tag}{sfx}.tif", bands))
            else:
                written.extend(_export_glaciers(one, domain, out_dir, var, sfx, bands))
    return written


def _export_zone(one: xr.DataArray, domain: Domain, epsg: int, res: float, path: Path, bands,
                 tile: int = 512) -> Path:
    """One zone's union grid as a tiled, sparse GeoTIFF written band by band and tile by tile: memory is one
    year of the domain's values and one tile, never the zone raster (the Alps' EPSG:32632 union grid at 25 m
    is hundreds of millions of pixels)."""
    import rasterio

    target, real, rr, cc = _zone_positions(domain, epsg, res)
    ny, nx = target.shape
    key = (rr // tile) * (-(-nx // tile)) + cc // tile  # the tile of each pixel
    order = np.argsort(key, kind="stable")
    tiles, starts = np.unique(key[order], return_index=True)
    ends = np.r_[starts[1:], order.size]
    profile = dict(driver="GTiff", height=ny, width=nx, count=len(bands), dtype="float32", crs=target.crs,
                   transform=rasterio.Affine(*target.transform), nodata=np.nan, compress="deflate", tiled=True,
                   blockxsize=256, blockysize=256, sparse_ok=True, BIGTIFF="IF_SAFER")
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            for b, name in enumerate(bands, start=1):  # a loop over years and the occupied tiles
                vals = np.asarray(one.isel(year=b - 1).values, dtype="float32")[real]
                for t, lo, hi in zip(tiles, starts, ends):
                    sel = order[lo:hi]
                    r0, c0 = (t // (-(-nx // tile))) * tile, (t % (-(-nx // tile))) * tile
                    h, w = min(tile, ny - r0), min(tile, nx - c0)
                    block = np.full((h, w), np.nan, dtype="float32")
                    block[rr[sel] - r0, cc[sel] - c0] = vals[sel]
                    dst.write(block, b, window=rasterio.windows.Window(c0, r0, w, h))
                dst.set_band_description(b, name)
    return path


def _export_glaciers(one: xr.DataArray, domain: Domain, out_dir: Path, var: str, sfx: str, bands) -> list[Path]:
    """One GeoTIFF per glacier with pixels, reading one group of values at a time."""
    g = domain.glaciers
    out = []
    for k in range(domain.n_groups):  # a loop over groups; inside, one file per glacier (file writing)
        ps, gs = domain.pixel_slice(k), domain.glacier_slice(k)
        vals = np.asarray(one.isel(pixel=ps).values)
        rc = domain.pixels[["row", "col"]].isel(pixel=ps).compute()
        rows, cols = rc["row"].values, rc["col"].values
        for s in range(gs.start, gs.stop):
            n = int(g["n_pixels"].values[s])
            if n == 0:
                continue
            lo = int(g["first_pixel"].values[s]) - ps.start
            ny, nx = (int(v) for v in g["window_shape"].values[s])
            arr = np.full((vals.shape[0], ny, nx), np.nan, dtype="float32")
            arr[:, rows[lo:lo + n], cols[lo:lo + n]] = vals[:, lo:lo + n]
            target = TargetGrid(f"EPSG:{int(g['epsg'].values[s])}", tuple(g["transform"].values[s]), (ny, nx))
            da = target.attach(xr.DataArray(arr, dims=("year", "y", "x")))
            rgi = str(g["rgi_id"].values[s])
            out.append(_write_tif(da, out_dir / f"{var}_{rgi}{sfx}.tif", bands))
    return out
