"""Batched inference: a fitted SMB model applied blockwise to every glacier pixel, then aggregated per glacier.

Modules:

- ``blockwise``: :func:`infer`, the engine of reconstruction and evolution runs: each (y, x) block computes
  the features of its active pixels and the model's prediction in one task (the feature cube is never
  materialised); :func:`block_spec`, the small block-independent part of a task
- ``predict``: :func:`predict_pixels` applies a model to an already built feature Dataset and
  :func:`glacier_mean` reduces any pixel field per glacier (area-weighted, flox)

Glacier-wide SMB is the area-weighted mean of the gridded SMB. The model of a run may be passed as an
artifact directory: each worker process then loads it once (a per-process cache).
"""

from ._kernels import BlockSpec, assemble_climate, assemble_rows, block_features, buildable, infer_pixels, static_at
from .blockwise import block_spec, infer, pixel_smb, spec_of
from .predict import glacier_mean, predict_pixels

__all__ = [
    "predict_pixels", "glacier_mean", "infer", "block_spec", "buildable",
    # numpy kernels for blockwise callers (the features of one block, as infer builds them)
    "BlockSpec", "block_features",
    # the packed pixels of a glacier domain: the same features and predictions, pixel by pixel
    "spec_of", "pixel_smb", "infer_pixels", "static_at", "assemble_rows", "assemble_climate",
]
