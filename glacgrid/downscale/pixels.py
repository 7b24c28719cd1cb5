"""Downscaling at the packed pixels of a glacier domain: interpolation weights computed once per pixel,
applied to every month of every year.

The dense path (:func:`glacgrid.downscale.downscale`) evaluates the same bilinear kernel at every pixel
of a raster, block by block; a glacier domain (:mod:`glacgrid.domain`) holds only the glacier pixels, each
with its own longitude and latitude, so the weights are a per-pixel table (:class:`PixelWeights`, like an
xESMF ``Regridder``: fit once, apply many). :func:`downscale_pixels` applies it to a window of the coarse
cube and moves temperature from the climate orography to the reference elevation with the same lapse-rate
and precipitation kernels, in the same dtypes: at the same pixel the values equal the dense path's to the
bit. Pure numpy: no xarray here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import DownscaleParams
from ..exceptions import GridMismatchError
from . import _kernels

__all__ = ["PixelWeights", "PixelClimate", "pixel_weights", "pixel_climate", "downscale_pixels"]


@dataclass(frozen=True, eq=False)
class PixelWeights:
    """Bilinear interpolation of a coarse ``(lat, lon)`` grid at a set of points.

    ``lat_index``/``lon_index`` are relative to the window ``lat_window``/``lon_window`` of the coarse grid
    (the cells the points touch), so only that window of the cube need be read. Weights are float32, as
    the dense path's.
    """

    lat_index: np.ndarray
    lat_weight: np.ndarray
    lon_index: np.ndarray
    lon_weight: np.ndarray
    lat_window: slice
    lon_window: slice

    @property
    def size(self) -> int:
        """The number of points."""
        return int(self.lat_index.size)


def pixel_weights(cube_lat: np.ndarray, cube_lon: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> PixelWeights:
    """The bilinear weights of points ``(lat, lon)`` (degrees) on the coarse grid ``cube_lat``/``cube_lon``.

    Raises :class:`~glacgrid.exceptions.GridMismatchError` when a point lies beyond the coarse grid by more
    than half a cell (the dense path's coverage rule).
    """
    clat, clon = np.asarray(cube_lat, dtype="float64"), np.asarray(cube_lon, dtype="float64")
    lat, lon = np.asarray(lat, dtype="float64"), np.asarray(lon, dtype="float64")
    if clat.size < 2 or clon.size < 2 or np.any(np.diff(clat) <= 0) or np.any(np.diff(clon) <= 0):
        raise GridMismatchError(f"The climate cube needs ascending lat and lon of at least 2 cells; got "
                                f"{clat.size} x {clon.size}. Ingest it with glacgrid.ingest.")
    if lat.size:
        dlat, dlon = np.diff(clat).max(), np.diff(clon).max()
        if (lat.min() < clat[0] - dlat / 2 or lat.max() > clat[-1] + dlat / 2 or lon.min() < clon[0] - dlon / 2
                or lon.max() > clon[-1] + dlon / 2):
            raise GridMismatchError(
                f"The glacier pixels span lat {lat.min():.3f}..{lat.max():.3f}, lon {lon.min():.3f}..{lon.max():.3f}, "
                f"beyond the climate cube (lat {clat[0]:.3f}..{clat[-1]:.3f}, lon {clon[0]:.3f}..{clon[-1]:.3f}) by "
                "more than half a cell. Download a larger climate domain.")
    j, wy = _kernels.bilinear_weights(clat, lat)
    i, wx = _kernels.bilinear_weights(clon, lon)
    j0, j1 = (int(j.min()), int(j.max()) + 2) if j.size else (0, 2)
    i0, i1 = (int(i.min()), int(i.max()) + 2) if i.size else (0, 2)
    return PixelWeights(j - j0, wy.astype("float32"), i - i0, wx.astype("float32"), slice(j0, j1), slice(i0, i1))


def downscale_pixels(t2m: np.ndarray, tp: np.ndarray, orog: np.ndarray, weights: PixelWeights,
                     reference: np.ndarray, params: DownscaleParams = DownscaleParams(),
                     lapse_rate: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Monthly temperature (degC) and precipitation (kg m-2) at the points, at elevation ``reference``.

    Parameters
    ----------
    t2m, tp : (time, lat, lon) arrays of the window ``weights.lat_window``/``lon_window`` (K; kg m-2)
    orog : (lat, lon) the climate orography of the window (m)
    weights : PixelWeights
    reference : (n,) the elevation the temperature is moved to (m; cast to float32 as the dense path's
        ``reference_elevation``)
    params : DownscaleParams
        ``lapse_rate`` (unless ``lapse_rate`` is given), ``precip_factor``, ``precip_gradient``.
    lapse_rate : (time,) optional monthly lapse rates (K m-1)

    Returns
    -------
    temp, prcp : (time, n) float32
    """
    nt = np.shape(t2m)[0]
    gamma = np.full(nt, params.lapse_rate) if lapse_rate is None else np.asarray(lapse_rate)
    return pixel_climate(np.reshape(t2m, (1, nt, *np.shape(t2m)[1:])), np.reshape(tp, (1, nt, *np.shape(tp)[1:])),
                         orog, weights, reference, params, gamma.reshape(1, nt)).materialise_months()


@dataclass(frozen=True, eq=False)
class PixelClimate:
    """The monthly climate of points, kept as the coarse window and the per-point terms (not materialised).

    ``t2m``, ``tp``: ``(year, 12, lat, lon)`` float32 windows of the cube (K; kg m-2); ``weights`` their
    bilinear weights; ``dz`` (float32) the elevation of each point above the interpolated climate orography
    and ``scale`` (float32) its precipitation factor; ``gamma``: ``(year, 12)`` float32 lapse rates.
    A compiled consumer (the feature rows of :mod:`glacgrid.inference`) interpolates each pixel-month where
    it is used; :meth:`materialise` gives the ``(year, 12, n)`` arrays of :func:`downscale_pixels`.
    """

    t2m: np.ndarray
    tp: np.ndarray
    weights: PixelWeights
    dz: np.ndarray
    scale: np.ndarray
    gamma: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(year, 12, n)``."""
        return (self.t2m.shape[0], 12, self.weights.size)

    def materialise_months(self) -> tuple[np.ndarray, np.ndarray]:
        """Temperature (degC, at the reference elevation) and precipitation of every month, ``(month, n)``
        float32 each (the months of the window in order)."""
        w = self.weights
        months = self.t2m.shape[0] * self.t2m.shape[1]
        temp, prcp = np.empty((months, w.size), "float32"), np.empty((months, w.size), "float32")
        _kernels.pixel_fields(self.t2m.reshape(months, *self.t2m.shape[2:]), self.tp.reshape(months, *self.tp.shape[2:]),
                              w.lat_index, w.lat_weight, w.lon_index, w.lon_weight, self.dz, self.scale,
                              self.gamma.reshape(-1), temp, prcp)
        return temp, prcp

    def materialise(self) -> tuple[np.ndarray, np.ndarray]:
        """Temperature (degC, at the reference elevation) and precipitation, ``(year, 12, n)`` float32 each."""
        ny, _, n = self.shape
        temp, prcp = self.materialise_months()
        return temp.reshape(ny, 12, n), prcp.reshape(ny, 12, n)


def pixel_climate(t2m: np.ndarray, tp: np.ndarray, orog: np.ndarray, weights: PixelWeights, reference: np.ndarray,
                  params: DownscaleParams = DownscaleParams(), lapse_rate: np.ndarray | None = None) -> PixelClimate:
    """The :class:`PixelClimate` of points: ``t2m``, ``tp`` ``(year, 12, lat, lon)`` windows (``(1, month,
    lat, lon)`` for months that are not whole years), ``orog``
    ``(lat, lon)``, the reference elevation of the points (m) and the downscaling parameters (the same values
    as :func:`downscale_pixels`, to the bit, wherever they are computed)."""
    w = weights
    dz, scale = _kernels.orography_terms(orog, w.lat_index, w.lat_weight, w.lon_index, w.lon_weight,
                                         np.asarray(reference).astype("float32"), params.precip_factor,
                                         params.precip_gradient)
    lead = np.shape(t2m)[:2]
    gamma = np.full(lead, params.lapse_rate) if lapse_rate is None else np.asarray(lapse_rate).reshape(lead)
    return PixelClimate(np.ascontiguousarray(t2m, dtype="float32"), np.ascontiguousarray(tp, dtype="float32"), w,
                        dz, scale, np.ascontiguousarray(gamma, dtype="float32"))
