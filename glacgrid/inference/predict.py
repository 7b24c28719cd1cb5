"""A fitted model applied to a built pixel-feature Dataset, and per-glacier means of any pixel field.

:func:`predict_pixels` is the xarray path (every feature a lazy array, then the model block by block);
:func:`glacgrid.inference.infer` builds the features inside its blocks instead and reduces its result
with :func:`glacier_mean`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from ..exceptions import MissingVariableError
from ..glaciers import area_weighted_mean
from ..metadata import provenance, stamp

__all__ = ["predict_pixels", "glacier_mean"]


def _predict_block(x: np.ndarray, model) -> np.ndarray:
    """Apply ``model.predict`` to a block whose last axis is the feature axis (NaN rows stay NaN)."""
    flat = x.reshape(-1, x.shape[-1]).astype("float64", copy=False)
    out = np.full(flat.shape[0], np.nan, dtype="float64")
    ok = np.isfinite(flat).all(axis=1)
    if ok.any():
        out[ok] = model.predict(flat[ok])
    return out.reshape(x.shape[:-1]).astype("float32")


def predict_pixels(model, pix: xr.Dataset, features: Sequence[str]) -> xr.DataArray:
    """Gridded SMB (m w.e.) from pixel features, block by block (lazy with dask inputs).

    ``features`` gives the model's column order; pixels with any NaN feature (outside glaciers) get NaN.
    """
    missing = [f for f in features if f not in pix]
    if missing:
        raise MissingVariableError(f"Pixel features {missing} are missing; available: {list(pix.data_vars)}.")
    stacked = xr.concat([pix[f].astype("float32") for f in features], dim="feature", coords="minimal",
                        compat="override", join="override")
    stacked = stacked.chunk({"feature": -1}) if stacked.chunks else stacked
    smb = xr.apply_ufunc(_predict_block, stacked, kwargs={"model": model}, input_core_dims=[["feature"]],
                         dask="parallelized", output_dtypes=["float32"])
    return stamp(smb.rename("smb"), "smb", history=provenance("predict_pixels", features=list(features)))


def glacier_mean(field: xr.DataArray, glacier_id: xr.DataArray, active: xr.DataArray,
                 pixel_area: xr.DataArray, index: np.ndarray, name: str = "smb_glacier") -> xr.DataArray:
    """Area-weighted mean of ``field`` over each glacier's active pixels (flox), dim ``glacier``."""
    mean = area_weighted_mean(field, glacier_id, active, pixel_area, index)
    return stamp(mean.rename(name), name)
