"""The fully distributed delta-h update (``engine="flox"``) for dask states whose glacier pixels do not fit
in one process.

Per-glacier sums are flox reductions grouped by each pixel's glacier *position* (in the sorted vector of
updated glaciers), the pixel work runs blockwise (:func:`apply_kernel`): one eager pass for the glacier
geometry and the input checks, one for the curve weight sums and one per redistribution step of
:func:`glacgrid.geometry._kernels.solve_scaling`. Same science as the fused kernel, same numbers to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr
from flox.xarray import xarray_reduce

from ..glaciers import FLOX_ENGINE, lookup, pixel_check_terms
from . import _kernels
from .inputs import DIMS, REQUIRED, check_pixels, is_dask

__all__ = ["GroupedUpdate", "update_grouped", "group_sums", "glacier_geometry", "apply_kernel"]

_TABLE_DIMS = ("vector_", "glacier_")


@dataclass(frozen=True)
class GroupedUpdate:
    """The result of :func:`update_grouped` (per-glacier vectors aligned with the updated glaciers)."""

    thickness: xr.DataArray  #: new thickness (m; lazy on dask)
    surface: xr.DataArray    #: new surface (m; lazy on dask)
    target: np.ndarray       #: volume change asked for (m3 of ice)
    volume: np.ndarray       #: ice volume before the update (m3)
    solution: _kernels.Solution
    curve_code: np.ndarray   #: curve used (int8: 0 uniform, 1 small, 2 medium, 3 large, 4 glacier-specific)


def update_grouped(fields: xr.Dataset, glaciers: np.ndarray, smb_values: np.ndarray, calibrated: np.ndarray,
                   coefficients: dict[str, np.ndarray], *, rho_ice: float, rho_water: float, max_iter: int,
                   rtol: float) -> GroupedUpdate:
    """The delta-h update of ``glaciers`` on the pixel ``fields`` by per-glacier flox reductions.

    ``fields``: the pixel variables of :func:`glacgrid.geometry.inputs.pixel_fields`; ``smb_values``,
    ``calibrated``, ``coefficients``: aligned with the sorted ``glaciers``. The four input arrays are
    persisted (dask) for the passes. Raises :class:`~glacgrid.exceptions.GeometryError` on bad pixels.
    """
    # each pixel's position in `glaciers` (-1: not updated), computed once and used by every pass
    fields = fields.assign(pos=apply_kernel(lookup, fields["glacier_id"], glaciers=glaciers, dtype=np.int32))
    if is_dask(fields):
        fields = fields.persist()
    pos, n = fields["pos"], glaciers.size

    sums, zmax, zmin, negative = glacier_geometry(fields, n)
    check_pixels(glaciers, sums, negative)
    stats, volume = _kernels.glacier_stats(sums["area"], zmax, zmin), sums["volume"]
    target = smb_values * stats["area"] * rho_water / rho_ice
    vectors = _kernels.curve_vectors(stats["size_cls"], calibrated, coefficients)
    geo = {"zmax": stats["zmax"], "zmin": stats["zmin"],
           **{k: vectors[k] for k in ("gamma", "a", "b", "c")}}
    huss = apply_kernel(_kernels.pixel_weights, pos, fields["thickness"], fields["surface"], **geo,
                        uniform=vectors["uniform"])
    (huss_sum,) = group_sums([(fields["pixel_area"] * huss).where(huss > 0, 0.0)], pos, n)
    uniform, weight_sum = _kernels.uniform_fallback(vectors["uniform"], stats["area"], huss_sum)
    # glaciers whose curve weights are all 0 change uniformly: weight 1 on their ice pixels
    weight = apply_kernel(_kernels.fallback_weights, pos.where(fields["thickness"] > 0, -1), huss,
                          uniform=uniform & ~vectors["uniform"])
    curve_code = np.where(calibrated, 4, stats["size_cls"]).astype("int8")

    def reduce_step(scale, lower, gone):
        terms = apply_kernel(_kernels.step_terms, pos, fields["thickness"], fields["pixel_area"], weight,
                             n_out=3, scale=scale, lower=lower, gone=gone)
        return _kernels.StepSums(*group_sums(terms, pos, n))

    # (stacklevel: the not-converged warning points at the caller of deltah_update)
    sol = _kernels.solve_scaling(target, volume, weight_sum, reduce_step, max_iter=max_iter, rtol=rtol,
                                 stacklevel=5)
    thickness = apply_kernel(_kernels.new_thickness, pos, fields["thickness"], weight, scale=sol.scale,
                             lower=sol.lower, gone=sol.gone)
    # (fillna: a NaN thickness off the updated glaciers leaves the surface alone)
    surface = fields["surface"] + (thickness - fields["thickness"]).fillna(0.0)
    return GroupedUpdate(thickness, surface, target, volume, sol, curve_code)


def group_sums(terms, pos: xr.DataArray, n: int, *, compute: bool = True, checked: bool = True):
    """Per-glacier sums of pixel fields by glacier position ``pos`` (0..n-1; one flox reduction for all).

    ``checked``: every glacier has pixels and the terms are finite on them (true once the input checks
    passed), so the plain sum applies (no NaN skipping nor empty-group fill: 3-5x faster).
    """
    kw = {"skipna": False} if checked else {"fill_value": 0.0}
    out = xarray_reduce(_stack(terms), pos, func="sum", expected_groups=(pd.RangeIndex(n),),
                        engine=FLOX_ENGINE, dim=DIMS, **kw)
    if not compute:
        return out
    return list(dask.compute(out)[0].values)


def _stack(terms: list[xr.DataArray]) -> xr.DataArray:
    """Pixel fields stacked along ``term_`` in one chunk, so that flox factorizes each block once."""
    stacked = xr.concat(terms, dim="term_")
    return stacked.chunk({"term_": -1}) if stacked.chunks is not None else stacked


def glacier_geometry(fields: xr.Dataset, n: int):
    """One pass: ice area, zmax, zmin, volume per glacier, and the pixel checks' counts
    (:func:`glacgrid.glaciers.pixel_check_terms` on the ice pixels)."""
    gid, h, z, area = (fields[v] for v in REQUIRED)
    pos = fields["pos"]
    ice = h > 0
    checks = pixel_check_terms(gid, h, z, area, on_ice=True)
    counts = {"pixels": checks.pop("pixels"), "area": area.where(ice, 0.0), "volume": (area * h).where(ice, 0.0),
              **checks}
    # (the terms are finite wherever the checks pass, so plain sums; a glacier failing a check is
    # reported from the finite check terms, whatever its other sums are)
    sums = group_sums(list(counts.values()), pos, n, compute=False)
    # max and min in one reduction: max(z) and max(-z), -inf off the ice (no NaN skipping needed)
    zext = xarray_reduce(_stack([z.where(ice, -np.inf), (-z).where(ice, -np.inf)]), pos, func="max",
                         dim=DIMS, expected_groups=(pd.RangeIndex(n),), engine=FLOX_ENGINE, skipna=False)
    negative = (h < 0).sum()
    sums, zext, negative = dask.compute(sums, zext, negative)
    sums = dict(zip(counts, sums.values))
    zext = np.where(np.isfinite(zext.values), zext.values, np.nan)  # no ice: NaN
    zmax, zmin = zext * [[1.0], [-1.0]]
    return sums, zmax, zmin, int(negative)


def apply_kernel(func, *args: xr.DataArray, n_out: int = 1, dtype=np.float64, **vectors: np.ndarray):
    """Run a pixel kernel blockwise with per-glacier ``vectors`` (numpy, O(N glaciers)) as keywords.

    The vectors travel as one table: with dask, a single-chunk array that every block depends on,
    so a distributed scheduler ships it once per worker instead of once per task.
    """
    names = list(vectors)
    table = np.stack([np.asarray(vectors[k], dtype="float64") for k in names])
    if any(a.chunks is not None for a in args):
        table = dsa.from_array(table, chunks=-1)

    def run(*blocks):
        *pixels, tab = blocks
        return func(*pixels, **_unpack(tab.reshape(tab.shape[-2:]), names))

    run.__name__ = func.__name__  # names the dask tasks after the kernel

    return xr.apply_ufunc(
        run, *args, xr.DataArray(table, dims=_TABLE_DIMS), dask="parallelized",
        input_core_dims=[()] * len(args) + [_TABLE_DIMS],
        output_dtypes=[dtype] * n_out, output_core_dims=[()] * n_out,
    )


def _unpack(table: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The per-glacier vectors of a table, in the dtypes the kernels expect."""
    out = {}
    for name, row in zip(names, table):
        if name == "glaciers":
            row = row.astype("int64")  # exact: indices are far below 2**53
        elif name in ("uniform", "gone"):
            row = row > 0
        out[name] = row
    return out
