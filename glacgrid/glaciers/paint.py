"""Per-glacier values painted onto each glacier's pixels (lazy, blockwise, no loop over glaciers)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import _kernels

__all__ = ["paint", "paint_flags", "glacier_vector"]


def _paint_kernel(ids: np.ndarray, values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """apply_ufunc's argument order (the values arrive as (1, 1, n)) for :func:`_kernels.paint_lookup`."""
    return _kernels.paint_lookup(ids, index, values)


def paint(values: xr.DataArray, glacier_id: xr.DataArray, active: xr.DataArray | None = None) -> xr.DataArray:
    """Per-glacier ``values`` (dim ``glacier``) painted onto each glacier's pixels; lazy, no loop.

    ``values`` may be lazy (it is passed as one chunk); pixels of glaciers not in ``values`` and, when
    ``active`` is given, inactive pixels get NaN.
    """
    index = np.asarray(values["glacier"].values)
    order = np.argsort(index, kind="stable")
    vals = values.isel(glacier=order)
    idx_sorted = index[order]
    if vals.chunks is not None:
        vals = vals.chunk({"glacier": -1})
    out = xr.apply_ufunc(_paint_kernel, glacier_id, vals.drop_vars("glacier"), kwargs={"index": idx_sorted},
                         input_core_dims=[[], ["glacier"]], dask="parallelized",
                         output_dtypes=[np.result_type(vals.dtype, np.float32)])
    return out.where(active) if active is not None else out


def paint_flags(glacier_id: xr.DataArray, index: np.ndarray, flags: np.ndarray) -> xr.DataArray:
    """A boolean pixel mask: ``flags`` (aligned with the sorted ``index``) of each pixel's glacier."""
    return xr.apply_ufunc(_kernels.paint_flags, glacier_id, kwargs={"index": np.asarray(index),
                                                                     "flags": np.asarray(flags, dtype=bool)},
                          dask="parallelized", output_dtypes=[bool])


def glacier_vector(values, index: np.ndarray, dtype=None) -> xr.DataArray:
    """``values`` aligned with ``index`` as a DataArray on dim ``glacier``."""
    return xr.DataArray(np.asarray(values, dtype=dtype), dims="glacier", coords={"glacier": np.asarray(index)})
