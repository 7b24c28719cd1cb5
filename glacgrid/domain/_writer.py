"""The writer shared by both domain builders: packed sources -> grouped Zarr store, group by group.

A builder reduces its input to a :class:`PackedSource` (per glacier: window, CRS, lattice; per real
pixel, in packing order: window row/col, surface, thickness, area, the four source neighbours'
surfaces). :func:`write_domain` lays the glaciers out in groups (:func:`~._kernels.group_layout`),
writes the template, then each group's pixel chunk and glacier chunk as regions (threads; the
groups own disjoint chunks), recording each in the store's sidecar so a killed build resumes.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dask.array as dsa
import numpy as np
import xarray as xr

from .. import cube as cube_mod
from ..exceptions import InputDataError
from ..features import slope_aspect_at
from ..grid import EARTH_RADIUS
from ..metadata import provenance, stamp
from ..units import m2_to_km2
from . import _kernels

__all__ = ["PackedSource", "write_domain", "PIXEL_VARS", "GLACIER_VARS", "STRING"]

STRING = np.dtypes.StringDType()

#: Per-pixel variables: name -> (dtype, padding value, extra dim or None, attrs when not in the registry).
PIXEL_VARS: dict[str, tuple] = {
    "glacier_id": ("int32", 0, None, {"units": "1", "long_name": "Glacier slot number + 1 (0 = padding)"}),
    "surface": ("float64", 0.0, None, None),
    "thickness": ("float64", 0.0, None, None),
    "pixel_area": ("float64", 1.0, None, None),
    "lon": ("float64", 0.0, None, None),
    "lat": ("float64", 0.0, None, None),
    "slope": ("float32", 0.0, None, None),
    "aspect_cos": ("float32", 0.0, None, None),
    "aspect_sin": ("float32", 0.0, None, None),
    "row": ("int32", 0, None, {"units": "1", "long_name": "Row of the pixel in its glacier's window"}),
    "col": ("int32", 0, None, {"units": "1", "long_name": "Column of the pixel in its glacier's window"}),
    "neighbours": ("int32", -1, "side", {"units": "1", "long_name": "Position in the group of the W/E/N/S "
                                         "neighbour when it is a domain pixel of the same group, else -1"}),
    "neighbour_surface": ("float64", 0.0, "side", {"units": "m", "long_name": "Source surface elevation of "
                                                   "the W/E/N/S neighbour (edge-replicated at the raster edge)"}),
    "dx": ("float64", 1.0, None, {"units": "m", "long_name": "Pixel width used for the slope"}),
    "dy": ("float64", 1.0, None, {"units": "m", "long_name": "Pixel height used for the slope"}),
}
#: Per-glacier-slot variables: name -> (dtype, padding value, extra dim or None, attrs).
GLACIER_VARS: dict[str, tuple] = {
    "rgi_id": (STRING, "", None, {"long_name": "RGI glacier id ('' on padding slots)"}),
    "name": (STRING, "", None, {"long_name": "Glacier name"}),
    "source_index": ("int64", 0, None, {"units": "1", "long_name": "Index of the glacier in its input "
                                        "(tile number, or glacier-table index); 0 on padding"}),
    "epsg": ("int32", 0, None, {"units": "1", "long_name": "EPSG code of the glacier's window"}),
    "transform": ("float64", 0.0, "affine", {"long_name": "Affine (a, b, c, d, e, f) of the window, rasterio order"}),
    "window_shape": ("int32", 0, "axis", {"units": "1", "long_name": "Window shape (ny, nx)"}),
    "first_pixel": ("int64", -1, None, {"units": "1", "long_name": "Global position of the glacier's first pixel"}),
    "n_pixels": ("int64", 0, None, {"units": "1", "long_name": "Number of domain pixels of the glacier"}),
    "area_km2": ("float64", 0.0, None, {"units": "km2", "long_name": "Sum of the glacier's pixel areas"}),
    "has_thickness": ("bool", False, None, {"long_name": "More than half of the glacier's area has thickness data"}),
}
_EXTRA = {"side": 4, "affine": 6, "axis": 2}


@dataclass(frozen=True, eq=False)
class PackedSource:
    """The real glaciers and pixels of a domain in packing order, before the group layout.

    Per glacier (length N): ``rgi_id``, ``name``, ``source_index``, ``epsg``, ``crs`` (any string
    pyproj reads, used for lon/lat), ``geographic``, ``transform`` (N, 6), ``window_shape`` (N, 2),
    ``origin`` (N, 4): the source raster's ``(c, f, col0, row0)`` so that a pixel's centre is
    ``c + a * ((col0 + col) + 0.5)`` exactly as the source grid computes it, ``zone``/``iy0``/``ix0``
    (the pixel lattice and the window's offset on it). Per pixel (length P, glacier-contiguous):
    ``glacier`` (0..N-1, non-decreasing), ``row``, ``col``, ``surface``, ``thickness`` (NaN = no
    data), ``pixel_area``, ``neighbour_surface`` (P, 4).
    """

    rgi_id: np.ndarray
    name: np.ndarray
    source_index: np.ndarray
    epsg: np.ndarray
    crs: np.ndarray
    geographic: np.ndarray
    transform: np.ndarray
    window_shape: np.ndarray
    origin: np.ndarray
    zone: np.ndarray
    iy0: np.ndarray
    ix0: np.ndarray
    glacier: np.ndarray
    row: np.ndarray
    col: np.ndarray
    surface: np.ndarray
    thickness: np.ndarray
    pixel_area: np.ndarray
    neighbour_surface: np.ndarray

    @property
    def n_pixels(self) -> np.ndarray:
        return np.bincount(self.glacier, minlength=self.rgi_id.size).astype("int64")


def _template(n_groups: int, C: int, G: int, attrs: dict) -> xr.Dataset:
    hist = attrs.get("history")
    data = {}
    for name, (dtype, fill, extra, at) in PIXEL_VARS.items():
        shape, chunks, dims = (n_groups * C,), (C,), ("pixel",)
        if extra:
            shape, chunks, dims = shape + (_EXTRA[extra],), chunks + (_EXTRA[extra],), dims + (extra,)
        da = xr.DataArray(dsa.full(shape, fill, dtype=dtype, chunks=chunks), dims=dims)
        data[name] = stamp(da, name, history=hist) if at is None else da.assign_attrs(at)
        data[name].encoding["compressors"] = cube_mod.fast_compressors()  # read again every year of a run
    for name, (dtype, fill, extra, at) in GLACIER_VARS.items():
        shape, chunks, dims = (n_groups * G,), (G,), ("glacier",)
        if extra:
            shape, chunks, dims = shape + (_EXTRA[extra],), chunks + (_EXTRA[extra],), dims + (extra,)
        if dtype is STRING:
            arr = dsa.from_array(np.full(shape, fill, dtype=STRING), chunks=chunks)
        else:
            arr = dsa.full(shape, fill, dtype=dtype, chunks=chunks)
        data[name] = xr.DataArray(arr, dims=dims, attrs=at)
    coords = {"glacier": ("glacier", np.arange(1, n_groups * G + 1, dtype="int64"),
                          {"long_name": "Glacier slot number + 1 (glacier_id value)"}),
              "side": ("side", np.array(_kernels.SIDES, dtype=STRING), {"long_name": "W, E, N (row - 1), S"})}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _padded(spec: tuple, dim: str, size: int, values) -> tuple[tuple[str, ...], np.ndarray]:
    """``values`` at the start of a ``size``-long (group-sized) variable, the rest its fill value."""
    dtype, fill, extra, _ = spec
    shape = (size, _EXTRA[extra]) if extra else (size,)
    out = np.full(shape, fill, dtype=dtype)
    out[:len(values)] = values
    return ((dim, extra) if extra else (dim,)), out


def _group_parts(src: PackedSource, k: int, C: int, G: int, g0: int, g1: int, p0: int, p1: int,
                 first: np.ndarray, area_km2: np.ndarray, has_th: np.ndarray) -> tuple[xr.Dataset, xr.Dataset]:
    """The pixel chunk and the glacier chunk of group ``k`` (glaciers g0:g1, pixels p0:p1), numpy."""
    n = p1 - p0
    gl = src.glacier[p0:p1]
    row, col = src.row[p0:p1].astype("int64"), src.col[p0:p1].astype("int64")
    tr = src.transform[gl]
    org = src.origin[gl]
    x = org[:, 0] + tr[:, 0] * ((org[:, 2].astype("int64") + col) + 0.5)
    y = org[:, 1] + tr[:, 4] * ((org[:, 3].astype("int64") + row) + 0.5)
    lon, lat = x.copy(), y.copy()
    geo = src.geographic[gl]
    if (~geo).any():
        from pyproj import Transformer

        crs = src.crs[gl]
        for c in np.unique(crs[~geo]):  # a loop over the few CRSs of the group
            sel = (crs == c) & ~geo
            lon[sel], lat[sel] = Transformer.from_crs(str(c), "EPSG:4326", always_xy=True).transform(x[sel], y[sel])
    dxr, dyr = tr[:, 0], -tr[:, 4]
    dx = np.where(geo, EARTH_RADIUS * np.deg2rad(dxr) * np.cos(np.deg2rad(lat)), dxr)
    dy = np.where(geo, EARTH_RADIUS * np.deg2rad(dyr), dyr)
    nb = src.neighbour_surface[p0:p1]
    sa = slope_aspect_at(nb[:, 0], nb[:, 1], nb[:, 2], nb[:, 3], dx, dy)
    local = np.arange(n, dtype="int64")
    neigh = _kernels.lattice_neighbours(np.zeros(n, "int64"), src.zone[gl], src.iy0[gl] + row,
                                        src.ix0[gl] + col, local)

    def pix(name, values):
        return _padded(PIXEL_VARS[name], "pixel", C, values)

    thick = src.thickness[p0:p1]
    pixels = xr.Dataset({
        "glacier_id": pix("glacier_id", k * G + (gl - g0) + 1),
        "surface": pix("surface", src.surface[p0:p1]),
        "thickness": pix("thickness", np.where(np.isfinite(thick), thick, 0.0)),
        "pixel_area": pix("pixel_area", src.pixel_area[p0:p1]),
        "lon": pix("lon", lon), "lat": pix("lat", lat),
        "slope": pix("slope", sa[:, 0]), "aspect_cos": pix("aspect_cos", sa[:, 1]),
        "aspect_sin": pix("aspect_sin", sa[:, 2]),
        "row": pix("row", row), "col": pix("col", col),
        "neighbours": pix("neighbours", neigh), "neighbour_surface": pix("neighbour_surface", nb),
        "dx": pix("dx", dx), "dy": pix("dy", dy),
    })
    m = g1 - g0

    def glac(name, values):
        return _padded(GLACIER_VARS[name], "glacier", G, values)

    sl = slice(g0, g1)
    glaciers = xr.Dataset({
        "rgi_id": glac("rgi_id", src.rgi_id[sl]), "name": glac("name", src.name[sl]),
        "source_index": glac("source_index", src.source_index[sl]), "epsg": glac("epsg", src.epsg[sl]),
        "transform": glac("transform", src.transform[sl]), "window_shape": glac("window_shape", src.window_shape[sl]),
        "first_pixel": glac("first_pixel", first[sl]), "n_pixels": glac("n_pixels", src.n_pixels[sl]),
        "area_km2": glac("area_km2", area_km2[sl]), "has_thickness": glac("has_thickness", has_th[sl]),
    }, coords={"glacier": np.arange(k * G + 1, (k + 1) * G + 1, dtype="int64")})
    return pixels, glaciers


def _fingerprint(src: PackedSource, C: int) -> str:
    h = hashlib.sha1()
    h.update(np.asarray(src.n_pixels, "int64").tobytes())
    h.update("\n".join(map(str, src.rgi_id)).encode())
    h.update(str(C).encode())
    return h.hexdigest()


def write_domain(src: PackedSource, store: str | os.PathLike, *, group_pixels: int, source: str,
                 overwrite: bool = False, attrs: dict | None = None, workers: int | None = None) -> Path:
    """Lay ``src`` out in groups and write the domain store (template, then one region per group).

    Re-running on a finished store with the same layout writes nothing; on an interrupted one, only
    the groups not recorded as done.
    """
    n_pix = src.n_pixels
    if n_pix.sum() == 0:
        raise InputDataError(f"No glacier pixel in {source}; nothing to pack into a domain. Check the inputs "
                             "(thickness > 0 with a finite surface, or glacier_id > 0).")
    group, C, G = _kernels.group_layout(n_pix, group_pixels)
    first, slot = _kernels.layout_positions(n_pix, group, C, G)
    first = np.where(n_pix > 0, first, -1)
    n_groups = int(group.max()) + 1
    # slots are k*G + (rank in group): padding slots between groups, so place glaciers by slot
    w = src.pixel_area
    area = np.bincount(src.glacier, weights=w, minlength=n_pix.size)
    cover = np.bincount(src.glacier, weights=w * np.isfinite(src.thickness), minlength=n_pix.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        has_th = np.nan_to_num(cover / area) > 0.5
    area_km2 = m2_to_km2(area)
    meta = {"glacgrid_domain": 1, "group_pixels": int(C), "group_glaciers": int(G), "n_groups": n_groups,
            "n_glaciers": int(n_pix.size), "n_pixels": int(n_pix.sum()), "source": source,
            "source_files": _fingerprint(src, C),
            "history": provenance("domain", source=source, group_pixels=int(group_pixels))}
    meta.update(attrs or {})
    path = Path(store)
    tmpl = _template(n_groups, C, G, meta)
    keys = {k: (cube_mod.region_key("pixel", slice(k * C, (k + 1) * C)),
                cube_mod.region_key("glacier", slice(k * G, (k + 1) * G))) for k in range(n_groups)}
    with cube_mod.store_lock(path, purpose="glacgrid domain"):  # one writer; the template comes with its plan
        cube_mod.create_template(tmpl, path, overwrite=overwrite, planned=[x for pair in keys.values() for x in pair])
        _write_groups(src, path, keys, group, n_pix, C, G, first, area_km2, has_th, workers)
    return path


def _write_groups(src: PackedSource, path: Path, keys: dict, group, n_pix, C: int, G: int, first, area_km2, has_th,
                  workers: int | None) -> None:
    """The groups of the domain not recorded as done, in a few threads."""
    n_groups = len(keys)
    done = cube_mod.completed_regions(path)
    gb = np.searchsorted(group, np.arange(n_groups + 1))  # glacier bounds of each group
    pb = np.r_[0, np.cumsum(n_pix)][gb]  # pixel bounds (pixels are glacier-contiguous)

    def one(k: int) -> None:
        if keys[k][0] in done and keys[k][1] in done:
            return
        pixels, glaciers = _group_parts(src, k, C, G, int(gb[k]), int(gb[k + 1]), int(pb[k]), int(pb[k + 1]),
                                        first, area_km2, has_th)
        cube_mod.write_region(pixels, path, region_dim="pixel", index=slice(k * C, (k + 1) * C))
        cube_mod.write_region(glaciers, path, region_dim="glacier", index=slice(k * G, (k + 1) * G))
        cube_mod.mark_done(path, keys[k][0])
        cube_mod.mark_done(path, keys[k][1])

    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1 and n_groups > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(n_groups)))
    else:
        for k in range(n_groups):  # a loop over groups
            one(k)
