"""Per-glacier reductions over pixels with flox: area-weighted means and sums, one engine choice."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["FLOX_ENGINE", "area_weighted_mean", "glacier_sums"]

#: flox engine of every per-glacier reduction: "flox" (numpy, no JIT); numbagg's default costs ~12 s of
#: JIT compilation in every new process.
FLOX_ENGINE = "flox"


def glacier_sums(obj: xr.DataArray | xr.Dataset, glacier_id: xr.DataArray, index: np.ndarray, *,
                 func: str = "sum", fill_value: float = 0.0):
    """``func`` (``sum``, ``nanmax``, ...) of ``obj`` over the pixels of each glacier of ``index``.

    Adds dim ``glacier`` (coordinate ``index``); glaciers without a pixel get ``fill_value``. Lazy on
    dask inputs: one flox reduction for every variable of a Dataset.
    """
    from flox.xarray import xarray_reduce

    return xarray_reduce(obj, glacier_id.rename("glacier"), func=func, expected_groups=(np.asarray(index),),
                         fill_value=fill_value, engine=FLOX_ENGINE)


def area_weighted_mean(obj: xr.DataArray | xr.Dataset, glacier_id: xr.DataArray, active: xr.DataArray,
                       pixel_area: xr.DataArray, index: np.ndarray):
    """Area-weighted mean of ``obj`` over each glacier's active pixels (flox); adds dim ``glacier``.

    Pixels where a value is NaN do not count for that value (their area is left out of its weights);
    glaciers in ``index`` without an active pixel with a value get NaN. One flox reduction computes
    the weighted sums and the weights of every variable together.
    """
    gid = glacier_id.where(active, 0)
    w = pixel_area.where(active, 0.0)
    single = isinstance(obj, xr.DataArray)
    ds = obj.to_dataset(name="__value") if single else obj
    parts = {}
    for k in ds.data_vars:
        parts[f"{k}"] = (ds[k].fillna(0.0) * w).astype("float64")
        parts[f"__weight_{k}"] = (ds[k].notnull() * w).astype("float64")
    red = glacier_sums(xr.Dataset(parts), gid, index)
    out = xr.Dataset({k: red[k] / red[f"__weight_{k}"].where(red[f"__weight_{k}"] > 0) for k in ds.data_vars})
    for k in ds.data_vars:
        out[k].attrs = dict(ds[k].attrs)
    return out["__value"].rename(obj.name) if single else out
