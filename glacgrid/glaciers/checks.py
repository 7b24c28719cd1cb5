"""Per-glacier checks of a glacier state: which glaciers cannot be computed, and why (one flox pass)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .names import STATE_VARS
from .reduce import glacier_sums

__all__ = ["glacier_checks", "SURFACE_REASON"]

#: The reason given for a glacier whose surface elevation is not finite on its pixels.
SURFACE_REASON = "surface elevation not finite on its pixels"


def _is_dask(ds: xr.Dataset) -> bool:
    return any(v.chunks is not None for v in ds.data_vars.values())


def glacier_checks(state: xr.Dataset, index: np.ndarray, *, need_thickness: bool,
                   has_thickness: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per glacier of ``index``: the reason it cannot be computed ('' = fine) and its ice area (m2).

    One flox reduction over the pixels of ``state`` (``glacier_id``, ``thickness``, ``surface``,
    ``pixel_area``). ``need_thickness``: thickness must be finite and >= 0 on every glacier pixel
    (evolution); ``has_thickness`` (bool aligned with ``index``) marks glaciers that have an initial
    thickness at all.
    """
    gid, h, z, a = (state[v] for v in STATE_VARS)
    ing = gid > 0
    terms = {
        "pixels": ing.astype("float64"),
        "bad_surface": (ing & ~np.isfinite(z)).astype("float64"),
        "bad_area": (ing & ~(np.isfinite(a) & (a > 0))).astype("float64"),
        "ice_area": a.where(ing & (h > 0), 0.0).astype("float64") if need_thickness else a.where(ing, 0.0),
    }
    if need_thickness:
        terms["bad_thickness"] = (ing & ~(h >= 0)).astype("float64")
    red = glacier_sums(xr.Dataset(terms), gid, index)
    red = red.compute() if _is_dask(red) else red
    reason = np.full(np.asarray(index).size, "", dtype=object)

    def flag(mask, text):
        sel = mask & (reason == "")
        reason[sel] = text

    flag(~(red["pixels"].values > 0), "no pixel on the grid")
    if need_thickness and has_thickness is not None:
        flag(~np.asarray(has_thickness, dtype=bool), "no initial ice thickness")
    if need_thickness:
        flag(red["bad_thickness"].values > 0, "thickness NaN or negative on its pixels")
    flag(red["bad_surface"].values > 0, SURFACE_REASON)
    flag(red["bad_area"].values > 0, "pixel area not finite and positive on its pixels")
    return reason, np.nan_to_num(red["ice_area"].values)
