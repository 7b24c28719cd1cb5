"""Per-glacier checks of a glacier state: which glaciers cannot be computed, and why (one flox pass).

One implementation of the pixel checks for every stage: :func:`pixel_check_terms` gives the per-pixel
0/1 terms whose per-glacier sums count each glacier's bad pixels (:data:`PIXEL_CHECKS`, in the order
they are reported), :func:`glacier_problems` turns such counts into the glaciers failing each check.
:func:`glacier_checks` (simulate: isolate the failing glaciers with a reason) and the delta-h update
(:func:`glacgrid.geometry.deltah_update`: a :class:`~glacgrid.exceptions.GeometryError`) both use them;
the delta-h update sums the terms in its own single reduction (or in its compiled kernel, which counts
the same pixels).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import xarray as xr

from .names import STATE_VARS
from .reduce import glacier_sums

__all__ = ["glacier_checks", "check_reasons", "SURFACE_REASON", "PixelCheck", "PIXEL_CHECKS", "pixel_check_terms",
           "glacier_problems"]

#: The reason given for a glacier whose surface elevation is not finite on its pixels.
SURFACE_REASON = "surface elevation not finite on its pixels"


class PixelCheck(NamedTuple):
    """One per-glacier pixel check: the name of its count, the reason of an isolated glacier (simulate) and
    what the bad pixels have (the message of a :class:`~glacgrid.exceptions.GeometryError`)."""

    name: str
    reason: str
    detail: str


#: The pixel checks, in the order they are reported (a glacier failing several gets the first).
PIXEL_CHECKS = (
    PixelCheck("bad_thickness", "thickness NaN or negative on its pixels",
               "thickness NaN or negative (expected finite and >= 0)"),
    PixelCheck("bad_surface", SURFACE_REASON, "surface not finite on ice pixels"),
    PixelCheck("bad_area", "pixel area not finite and positive on its pixels",
               "pixel_area not finite and positive on ice pixels"),
)


def pixel_check_terms(glacier_id: xr.DataArray, thickness: xr.DataArray, surface: xr.DataArray,
                      pixel_area: xr.DataArray, *, need_thickness: bool = True,
                      on_ice: bool = False) -> dict[str, xr.DataArray]:
    """Per-pixel terms (float64, 0 or 1; lazy on dask) whose per-glacier sums are the check counts.

    ``pixels`` marks the glacier pixels (``glacier_id > 0``); ``bad_thickness`` those whose thickness is
    NaN or negative (only with ``need_thickness``); ``bad_surface`` and ``bad_area`` those with a
    non-finite surface or a pixel area that is not finite and positive, on every glacier pixel or, with
    ``on_ice``, on the ice pixels only (``thickness > 0``: the pixels a delta-h update changes).
    """
    ing = glacier_id > 0
    on = ing & (thickness > 0) if on_ice else ing
    terms = {"pixels": ing.astype("float64")}
    if need_thickness:
        terms["bad_thickness"] = (ing & ~(thickness >= 0)).astype("float64")
    terms["bad_surface"] = (on & ~np.isfinite(surface)).astype("float64")
    terms["bad_area"] = (on & ~(np.isfinite(pixel_area) & (pixel_area > 0))).astype("float64")
    return terms


def glacier_problems(counts: Mapping[str, np.ndarray]) -> list[tuple[PixelCheck, np.ndarray]]:
    """The glaciers failing each check of :data:`PIXEL_CHECKS` (in order) from the per-glacier sums of
    :func:`pixel_check_terms`: ``(check, bool vector)`` for every check present in ``counts``."""
    return [(check, np.asarray(counts[check.name]) > 0) for check in PIXEL_CHECKS if check.name in counts]


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
    terms = pixel_check_terms(gid, h, z, a, need_thickness=need_thickness)
    terms["ice_area"] = (a.where(ing & (h > 0), 0.0).astype("float64") if need_thickness
                         else a.where(ing, 0.0))
    red = glacier_sums(xr.Dataset(terms), gid, index).compute()  # (numpy-backed: no work)
    counts = {k: red[k].values for k in red.data_vars}
    return check_reasons(counts, need_thickness=need_thickness, has_thickness=has_thickness), \
        np.nan_to_num(counts["ice_area"])


def check_reasons(counts: Mapping[str, np.ndarray], *, need_thickness: bool,
                  has_thickness: np.ndarray | None = None) -> np.ndarray:
    """Per glacier the reason it cannot be computed ('' = fine) from the per-glacier sums of
    :func:`pixel_check_terms` (``pixels`` and the checks): the first failing check of "no pixel on the
    grid", "no initial ice thickness" (``need_thickness`` and ``has_thickness`` False) and
    :data:`PIXEL_CHECKS`. Shared by :func:`glacier_checks` and the packed pixels of a glacier domain."""
    reason = np.full(np.asarray(counts["pixels"]).size, "", dtype=object)

    def flag(mask, text):
        sel = mask & (reason == "")
        reason[sel] = text

    flag(~(np.asarray(counts["pixels"]) > 0), "no pixel on the grid")
    if need_thickness and has_thickness is not None:
        flag(~np.asarray(has_thickness, dtype=bool), "no initial ice thickness")
    for check, bad in glacier_problems(counts):
        flag(bad, check.reason)
    return reason
