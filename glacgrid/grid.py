"""TargetGrid: the fine grid (CRS, affine transform, shape, chunks) on which glaciers live."""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import dask.array as dsa
import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS, Transformer

from .exceptions import GridMismatchError, InputDataError

__all__ = ["TargetGrid", "EARTH_RADIUS", "check_raster"]

#: Authalic Earth radius (m) used for pixel areas on geographic grids.
EARTH_RADIUS = 6_371_007.2


@dataclass(frozen=True)
class TargetGrid:
    """A north-up raster grid.

    Parameters
    ----------
    crs : str
        Any CRS pyproj understands (``"EPSG:32632"``, WKT).
    transform : tuple of 6 floats
        GDAL-order affine ``(a, b, c, d, e, f)`` of the pixel corners (rasterio's ``Affine``);
        ``a`` is the pixel width and ``e`` the (negative) pixel height, in CRS units.
    shape : (ny, nx)
        Number of rows and columns.
    chunks : (cy, cx)
        Dask chunk sizes along y and x for every array on this grid.
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]
    chunks: tuple[int, int] = (512, 512)

    def __post_init__(self) -> None:
        a, b, _, d, e, _ = self.transform
        if b != 0 or d != 0:
            raise InputDataError(
                f"TargetGrid needs a north-up grid without rotation; got transform {_numbers(self.transform)}. "
                "Warp the raster to a north-up grid first (e.g. gdalwarp)."
            )
        if a <= 0 or e >= 0:
            raise InputDataError(
                f"TargetGrid expects positive pixel width and negative pixel height; got a={float(a):g}, e={float(e):g}."
            )
        if min(self.shape) < 1 or min(self.chunks) < 1:
            raise InputDataError(f"TargetGrid shape {self.shape} and chunks {self.chunks} must be positive.")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_raster(cls, path: str | Path, chunks: int | tuple[int, int] = 512) -> "TargetGrid":
        """The grid of a GeoTIFF (or any raster rasterio opens)."""
        import rasterio

        path = Path(path)
        if not path.exists():
            raise InputDataError(f"Raster {path} does not exist; check the path in your config.")
        check_raster(path)
        with _raster_errors(path), rasterio.open(path) as src:
            if src.crs is None:
                raise InputDataError(
                    f"Raster {path} has no CRS. Give it one (gdal_edit.py -a_srs EPSG:XXXX) "
                    "or build the grid with TargetGrid.from_spec()."
                )
            crs = src.crs.to_wkt()
            transform = tuple(src.transform)[:6]
            shape = (src.height, src.width)
        return cls(crs, transform, shape, _pair(chunks))

    @classmethod
    def from_spec(
        cls,
        crs: str,
        resolution: float,
        bounds: tuple[float, float, float, float],
        chunks: int | tuple[int, int] = 512,
    ) -> "TargetGrid":
        """A grid from CRS, square pixel size and bounds ``(left, bottom, right, top)``."""
        left, bottom, right, top = bounds
        if right <= left or top <= bottom or resolution <= 0:
            raise InputDataError(
                f"Invalid grid spec: bounds {_numbers(bounds)} must be (left, bottom, right, top) with "
                f"left < right and bottom < top, and resolution {float(resolution):g} positive."
            )
        nx = int(math.ceil((right - left) / resolution - 1e-9))
        ny = int(math.ceil((top - bottom) / resolution - 1e-9))
        transform = (resolution, 0.0, left, 0.0, -resolution, top)
        return cls(CRS.from_user_input(crs).to_wkt(), transform, (ny, nx), _pair(chunks))

    # ------------------------------------------------------------------ properties
    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def pyproj_crs(self) -> CRS:
        return CRS.from_user_input(self.crs)

    @property
    def is_geographic(self) -> bool:
        return self.pyproj_crs.is_geographic

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(dx, dy)``, both positive, in CRS units."""
        return self.transform[0], -self.transform[4]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        a, _, c, _, e, f = self.transform
        ny, nx = self.shape
        return c, f + e * ny, c + a * nx, f

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates."""
        a, _, c, *_ = self.transform
        return c + a * (np.arange(self.shape[1]) + 0.5)

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (descending: north-up)."""
        *_, e, f = self.transform
        return f + e * (np.arange(self.shape[0]) + 0.5)

    def with_chunks(self, chunks: int | tuple[int, int]) -> "TargetGrid":
        return replace(self, chunks=_pair(chunks))

    # ------------------------------------------------------------------ arrays on the grid
    def coords(self) -> dict[str, xr.DataArray]:
        """The ``y`` and ``x`` coordinates, with CF attributes."""
        if self.is_geographic:
            xa = {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}
            ya = {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}
        else:
            xa = {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"}
            ya = {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"}
        return {
            "y": xr.DataArray(self.y, dims="y", attrs=ya),
            "x": xr.DataArray(self.x, dims="x", attrs=xa),
        }

    def attach(self, obj: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
        """Attach this grid's coordinates and CRS (rioxarray ``spatial_ref``) to ``obj``."""
        import rioxarray  # noqa: F401  (registers the .rio accessor)

        if obj.sizes.get("y") != self.shape[0] or obj.sizes.get("x") != self.shape[1]:
            raise GridMismatchError(
                f"Array of sizes {dict(obj.sizes)} does not match grid shape (y={self.shape[0]}, "
                f"x={self.shape[1]})."
            )
        out = obj.assign_coords(self.coords())
        out = out.rio.write_crs(self.pyproj_crs).rio.write_transform(self.affine)
        return out

    def lonlat(self) -> xr.Dataset:
        """Lazy 2-D ``lon``/``lat`` of pixel centres, chunked like the grid."""
        ny, nx = self.shape
        yy = dsa.from_array(self.y, chunks=self.chunks[0])[:, None]
        xx = dsa.from_array(self.x, chunks=self.chunks[1])[None, :]
        yy, xx = dsa.broadcast_arrays(yy, xx)
        yy = yy.rechunk(self.chunks)
        xx = xx.rechunk(self.chunks)
        if self.is_geographic:
            lon, lat = xx, yy
        else:
            crs = self.crs
            lon = dsa.map_blocks(_to_lonlat, xx, yy, crs, 0, dtype="float64")
            lat = dsa.map_blocks(_to_lonlat, xx, yy, crs, 1, dtype="float64")
        ds = xr.Dataset(
            {
                "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
                "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            },
            coords=self.coords(),
        )
        return ds

    def pixel_area(self) -> xr.DataArray:
        """Pixel area (m2): constant on projected grids, latitude-dependent on geographic grids."""
        from .metadata import stamp

        dx, dy = self.resolution
        if self.is_geographic:
            lat = np.deg2rad(self.y)
            half = np.deg2rad(dy) / 2
            band = EARTH_RADIUS**2 * np.deg2rad(dx) * np.abs(np.sin(lat + half) - np.sin(lat - half))
            col = dsa.from_array(band, chunks=self.chunks[0])[:, None]
            arr = dsa.broadcast_to(col, self.shape, chunks=self.chunks)
        else:
            unit = self.pyproj_crs.axis_info[0].unit_conversion_factor if self.pyproj_crs.axis_info else 1.0
            arr = dsa.full(self.shape, dx * dy * unit * unit, chunks=self.chunks, dtype="float64")
        return stamp(xr.DataArray(arr, dims=("y", "x"), coords=self.coords()), "pixel_area")

    def crop(self, bounds: tuple[float, float, float, float], buffer: float = 0.0) -> "TargetGrid":
        """The sub-grid covering ``bounds`` (in this grid's CRS) plus ``buffer``, snapped to pixels."""
        left, bottom, right, top = bounds
        a, _, c, _, e, f = self.transform
        ny, nx = self.shape
        i0 = max(int(math.floor((left - buffer - c) / a)), 0)
        i1 = min(int(math.ceil((right + buffer - c) / a)), nx)
        j0 = max(int(math.floor((f - (top + buffer)) / -e)), 0)
        j1 = min(int(math.ceil((f - (bottom - buffer)) / -e)), ny)
        if i1 <= i0 or j1 <= j0:
            raise GridMismatchError(
                f"Bounds {_numbers(bounds)} do not overlap the grid {_numbers(self.bounds)}; check both CRSs."
            )
        transform = (a, 0.0, c + a * i0, 0.0, e, f + e * j0)
        return replace(self, transform=transform, shape=(j1 - j0, i1 - i0))

    def window(self, other: "TargetGrid") -> tuple[slice, slice]:
        """Row and column slices of ``other`` (a crop of this grid) inside this grid."""
        a, _, c, _, e, f = self.transform
        oa, _, oc, _, oe, of = other.transform
        if not (np.isclose(a, oa) and np.isclose(e, oe)):
            raise GridMismatchError(f"Grids have different resolutions: {_numbers(self.resolution)} vs "
                                    f"{_numbers(other.resolution)}.")
        i0 = int(round((oc - c) / a))
        j0 = int(round((of - f) / e))
        return slice(j0, j0 + other.shape[0]), slice(i0, i0 + other.shape[1])

    def read(self, path: str | Path, *, band: int = 1, crs_from: str | Path | None = None,
             resampling: str = "bilinear", nodata: float | None = None) -> xr.DataArray:
        """Read a raster onto this grid (lazily chunked), reprojecting it when its grid differs.

        ``crs_from`` names a raster whose CRS to use when ``path`` carries none. Pixels outside the
        source raster are NaN.
        """
        import rasterio
        import rioxarray

        path = Path(path)
        if not path.exists():
            raise InputDataError(f"Raster {path} does not exist; check the path in your config.")
        check_raster(path)
        with _raster_errors(path):
            src = rioxarray.open_rasterio(path, masked=True)
            if band not in src["band"].values:
                raise InputDataError(f"Raster {path} has bands {src['band'].values.tolist()}; band {band} was asked for.")
            src = src.sel(band=band, drop=True).load()  # reads every block now: a damaged one fails here
        if src.rio.crs is None:
            if crs_from is None:
                raise InputDataError(f"Raster {path} has no CRS; pass crs_from= a raster with the right CRS.")
            with _raster_errors(Path(crs_from)), rasterio.open(crs_from) as ref:
                src = src.rio.write_crs(ref.crs)
        if nodata is not None:
            src = src.where(src != nodata)
        src = src.astype("float32")
        same = (
            CRS.from_user_input(src.rio.crs) == self.pyproj_crs
            and src.shape == self.shape
            and np.allclose(tuple(src.rio.transform())[:6], self.transform)
        )
        if not same:
            from rasterio.enums import Resampling

            src = src.rio.reproject(
                self.pyproj_crs,
                shape=self.shape,
                transform=self.affine,
                resampling=Resampling[resampling],
                nodata=np.nan,
            )
        data = dsa.from_array(np.asarray(src.values, dtype="float32"), chunks=self.chunks)
        return xr.DataArray(data, dims=("y", "x"), coords=self.coords())


def _numbers(values) -> str:
    """``(600000, 25, ...)``: numbers for a message (numpy scalars would print as ``np.float64(...)``)."""
    return "(" + ", ".join(f"{float(v):.10g}" for v in values) + ")"


def _pair(chunks: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(chunks, int):
        return (chunks, chunks)
    cy, cx = chunks
    return (int(cy), int(cx))


def _to_lonlat(x: np.ndarray, y: np.ndarray, crs: str, which: int) -> np.ndarray:
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(x, y)
    return np.asarray(lon if which == 0 else lat, dtype="float64")


# ----------------------------------------------------------------------------- damaged rasters
#: Bytes per value of the TIFF field types (BYTE .. IFD8).
_TIFF_TYPE = {1: "u1", 2: "u1", 3: "u2", 4: "u4", 5: "u8", 6: "i1", 7: "u1", 8: "i2", 9: "i4", 10: "i8", 11: "f4",
              12: "f8", 13: "u4", 16: "u8", 17: "i8", 18: "u8"}
#: (offsets tag, byte-counts tag) of strips and of tiles.
_TIFF_BLOCKS = ((273, 279), (324, 325))


class _Cut(Exception):
    """The raster file ends before a structure its header points to."""


def _tiff_extents(fh, size: int) -> list[tuple[str, int]]:
    """(what, byte where it ends) of every image directory, tag value and strip/tile of a (Big)TIFF file."""
    def read(offset: int, n: int) -> bytes:
        fh.seek(offset)
        data = fh.read(n)
        if len(data) < n:
            raise _Cut(offset + n)
        return data

    head = read(0, 16) if size >= 16 else read(0, 8)
    order = {b"II": "<", b"MM": ">"}[head[:2]]
    big = int.from_bytes(head[2:4], "little" if order == "<" else "big") == 43
    unpack = lambda b: int.from_bytes(b, "little" if order == "<" else "big")  # noqa: E731
    count_size, entry_size, inline = (8, 20, 8) if big else (2, 12, 4)
    ifd = unpack(head[8:16]) if big else unpack(head[4:8])
    out, seen = [], set()
    while ifd and ifd not in seen and len(seen) < 10_000:
        seen.add(ifd)
        label = f"image directory {len(seen)}"
        n = unpack(read(ifd, count_size))
        entries = read(ifd + count_size, n * entry_size + (8 if big else 4))
        out.append((label, ifd + count_size + len(entries)))
        values = {}
        for k in range(n):
            e = entries[k * entry_size:(k + 1) * entry_size]
            tag, kind = unpack(e[0:2]), unpack(e[2:4])
            count = unpack(e[4:12]) if big else unpack(e[4:8])
            field = e[12:20] if big else e[8:12]
            dtype = np.dtype(order + _TIFF_TYPE.get(kind, "u1"))
            nbytes = count * dtype.itemsize
            if nbytes > inline:
                offset = unpack(field)
                out.append((f"tag {tag} of {label}", offset + nbytes))
                if tag in (273, 279, 324, 325):
                    values[tag] = np.frombuffer(read(offset, nbytes), dtype)
            elif tag in (273, 279, 324, 325):
                values[tag] = np.frombuffer(field[:nbytes], dtype)
        for offsets_tag, counts_tag in _TIFF_BLOCKS:
            if offsets_tag in values and counts_tag in values:
                ends = values[offsets_tag].astype("int64") + values[counts_tag].astype("int64")
                ends = np.where(values[counts_tag] > 0, ends, 0)
                if ends.size:
                    last = int(np.argmax(ends))
                    what = "strip" if offsets_tag == 273 else "tile"
                    out.append((f"{what} {last + 1} of {ends.size} of {label}", int(ends[last])))
        ifd = unpack(entries[-(8 if big else 4):])
    return out


def check_raster(path: str | os.PathLike) -> None:
    """Refuse a GeoTIFF that is shorter than its own header says (a cut download or copy).

    Reads only the TIFF structure (image directories, tag values, strip/tile offsets and byte
    counts): every strip or tile must lie inside the file. Other raster formats pass unchecked.

    Parameters
    ----------
    path : path
        The raster file.

    Raises
    ------
    InputDataError
        The file is truncated: the message gives the bytes expected and received.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(4)
        if magic not in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            return
        try:
            extents = _tiff_extents(fh, size)
        except _Cut as cut:
            extents = [("its header", int(cut.args[0]))]
    cut = [label for label, stop in extents if stop > size]
    if cut:
        end = max(stop for _, stop in extents)
        raise InputDataError(
            f"Raster {path} is not a complete GeoTIFF: it is truncated. By its header it holds at least {end:,} "
            f"bytes, but the file has {size:,} ({end - size:,} missing; cut: {', '.join(cut[:3])}). The download "
            "or copy was cut short; download or export it again."
        )


@contextmanager
def _raster_errors(path: Path):
    """Turn GDAL/rasterio errors on ``path`` into :class:`InputDataError` naming the file."""
    from rasterio.errors import RasterioError

    try:
        yield
    except RasterioError as err:
        text = str(err).replace(" See previous exception for details.", "").rstrip(".")
        cause = f" ({str(err.__cause__).rstrip('.')})" if err.__cause__ is not None else ""
        raise InputDataError(
            f"Cannot read raster {path}: {type(err).__name__}: {text}{cause}. The file is damaged or "
            "not a raster GDAL reads (GeoTIFF, ...); download or export it again."
        ) from err
