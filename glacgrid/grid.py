"""TargetGrid: the fine grid (CRS, affine transform, shape, chunks) on which glaciers live."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import dask.array as dsa
import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS, Transformer

from .exceptions import GridMismatchError, InputDataError

__all__ = ["TargetGrid", "EARTH_RADIUS"]

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
                f"TargetGrid needs a north-up grid without rotation; got transform {self.transform}. "
                "Warp the raster to a north-up grid first (e.g. gdalwarp)."
            )
        if a <= 0 or e >= 0:
            raise InputDataError(
                f"TargetGrid expects positive pixel width and negative pixel height; got a={a}, e={e}."
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
        with rasterio.open(path) as src:
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
                f"Invalid grid spec: bounds {bounds} must be (left, bottom, right, top) with "
                f"left < right and bottom < top, and resolution {resolution} positive."
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
                f"Bounds {bounds} do not overlap the grid {self.bounds}; check both CRSs."
            )
        transform = (a, 0.0, c + a * i0, 0.0, e, f + e * j0)
        return replace(self, transform=transform, shape=(j1 - j0, i1 - i0))

    def window(self, other: "TargetGrid") -> tuple[slice, slice]:
        """Row and column slices of ``other`` (a crop of this grid) inside this grid."""
        a, _, c, _, e, f = self.transform
        oa, _, oc, _, oe, of = other.transform
        if not (np.isclose(a, oa) and np.isclose(e, oe)):
            raise GridMismatchError(f"Grids have different resolutions: {self.resolution} vs {other.resolution}.")
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
        src = rioxarray.open_rasterio(path, masked=True).sel(band=band, drop=True)
        if src.rio.crs is None:
            if crs_from is None:
                raise InputDataError(f"Raster {path} has no CRS; pass crs_from= a raster with the right CRS.")
            with rasterio.open(crs_from) as ref:
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


def _pair(chunks: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(chunks, int):
        return (chunks, chunks)
    cy, cx = chunks
    return (int(cy), int(cx))


def _to_lonlat(x: np.ndarray, y: np.ndarray, crs: str, which: int) -> np.ndarray:
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(x, y)
    return np.asarray(lon if which == 0 else lat, dtype="float64")
