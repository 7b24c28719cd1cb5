"""Numpy kernels of the features stage. No xarray here."""

from __future__ import annotations

import numpy as np

__all__ = ["climate_features", "slope_aspect", "solid_fraction"]


def solid_fraction(temp_c: np.ndarray, snow_threshold: float, rain_threshold: float) -> np.ndarray:
    """Share of precipitation falling as snow (1 below ``snow_threshold``, 0 above ``rain_threshold``)."""
    return np.clip((rain_threshold - temp_c) / (rain_threshold - snow_threshold), 0.0, 1.0)


def climate_features(temp_c: np.ndarray, prcp: np.ndarray, days: np.ndarray, winter: np.ndarray,
                     snow_threshold: float, rain_threshold: float) -> np.ndarray:
    """Annual climate predictors from the 12 months of a hydrological year (last axis = month).

    Parameters
    ----------
    temp_c : (..., 12) monthly mean temperature, degC
    prcp : (..., 12) monthly precipitation, kg m-2
    days : (..., 12) or (12,) days in each month
    winter : (12,) bool, True for months of the winter (accumulation) season

    Returns
    -------
    (..., 3) array: cumulative positive degree-days (K d), winter and summer solid precipitation (kg m-2).
    """
    cpdd = np.sum(np.maximum(temp_c, 0.0) * days, axis=-1)
    snow = prcp * solid_fraction(temp_c, snow_threshold, rain_threshold)
    snow_w = np.sum(np.where(winter, snow, 0.0), axis=-1)
    snow_s = np.sum(np.where(winter, 0.0, snow), axis=-1)
    return np.stack([cpdd, snow_w, snow_s], axis=-1).astype("float32")


def slope_aspect(z: np.ndarray, dx: np.ndarray | float, dy: np.ndarray | float) -> np.ndarray:
    """Slope (degrees) and aspect cosine/sine of a north-up surface ``z`` (rows go south).

    ``dx``/``dy`` are pixel sizes in metres (scalars or arrays broadcastable to ``z``). Aspect is the
    direction the slope faces, clockwise from north: a surface falling towards the north has
    ``aspect_cos = 1``, towards the east ``aspect_sin = 1``. Flat pixels get cos = sin = 0.
    Returns an array of shape ``z.shape + (3,)``.
    """
    dz_drow, dz_dcol = np.gradient(z.astype("float64"))
    dz_dx = dz_dcol / dx  # eastward derivative
    dz_dy = -dz_drow / dy  # northward derivative (rows increase southward)
    grad = np.hypot(dz_dx, dz_dy)
    slope = np.degrees(np.arctan(grad))
    with np.errstate(invalid="ignore", divide="ignore"):
        # the downslope direction is -grad: its north component is -dz_dy, east component -dz_dx
        cos = np.where(grad > 0, -dz_dy / grad, 0.0)
        sin = np.where(grad > 0, -dz_dx / grad, 0.0)
    return np.stack([slope, cos, sin], axis=-1).astype("float32")
