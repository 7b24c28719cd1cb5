"""Numpy kernels of the downscaling stage. No xarray here."""

from __future__ import annotations

import numpy as np

__all__ = ["bilinear_weights", "bilinear_apply", "lapse_rate_correction", "solid_fraction"]


def bilinear_weights(src: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour index and weight of the right neighbour for 1-D linear interpolation.

    ``src`` is strictly ascending (n >= 2); targets outside ``[src[0], src[-1]]`` take the edge value
    (weight clipped to 0 or 1).
    """
    i = np.clip(np.searchsorted(src, target, side="right") - 1, 0, src.size - 2)
    w = (target - src[i]) / (src[i + 1] - src[i])
    return i, np.clip(w, 0.0, 1.0)


def bilinear_apply(field: np.ndarray, j: np.ndarray, wy: np.ndarray, i: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``field[..., lat, lon]`` at points given by indices and weights.

    ``j, wy`` (latitude) and ``i, wx`` (longitude) have the target shape (e.g. ``(ny, nx)``); the
    result has shape ``field.shape[:-2] + target shape``.
    """
    f00 = field[..., j, i]
    f01 = field[..., j, i + 1]
    f10 = field[..., j + 1, i]
    f11 = field[..., j + 1, i + 1]
    return (f00 * (1 - wy) * (1 - wx) + f01 * (1 - wy) * wx + f10 * wy * (1 - wx) + f11 * wy * wx)


def lapse_rate_correction(t_coarse: np.ndarray, z_coarse: np.ndarray, z_fine: np.ndarray, lapse_rate: float) -> np.ndarray:
    """Temperature moved from elevation ``z_coarse`` to ``z_fine`` with ``lapse_rate`` (K m-1)."""
    return t_coarse + lapse_rate * (z_fine - z_coarse)


def solid_fraction(temp_c: np.ndarray, snow_threshold: float, rain_threshold: float) -> np.ndarray:
    """Share of precipitation falling as snow: 1 below ``snow_threshold``, 0 above ``rain_threshold``
    (degC), linear in between."""
    return np.clip((rain_threshold - temp_c) / (rain_threshold - snow_threshold), 0.0, 1.0)
