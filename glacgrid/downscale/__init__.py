"""Downscaling of the coarse climate cube to the fine glacier grid: regridding + lapse rate.

Modules:

- ``core``: :func:`downscale` (temperature moved to the DEM with a lapse rate, corrected precipitation) and
  :func:`solid_precipitation`
- ``regrid``: coarse fields onto a :class:`~glacgrid.grid.TargetGrid` (bilinear or conservative, three
  engines)
- ``pixels``: the same downscaling at the packed pixels of a glacier domain (weights once per pixel)
- ``lapse``: monthly lapse rates fitted on the ERA5-Land cells around a grid
- ``biascorrect``: bias adjustment of a forcing into the reference per calendar month with xsdba
  (:func:`bias_adjust`, :class:`BiasAdjustment`: delta method, empirical quantile mapping, quantile delta
  mapping) and the hand-written empirical quantile mapping of the HISTALP validation
- ``learned``: learned (ML) downscaling, a coarse forcing plus topography mapped to a fine reference
  (:class:`LearnedDownscaling`: boosted trees stored as numeric arrays, applied blockwise to any grid)
- ``validation``: downscaled ERA5-Land against HISTALP, before and after bias correction; ERA5 downscaled
  three ways (learned, bilinear + lapse rate, quantile mapping) against ERA5-Land and HISTALP; adjusted
  CERA-20C against HISTALP

The result keeps the DEM it refers to as ``reference_elevation`` so that later stages can move
temperature to an evolving surface with the same lapse rate.
"""

from ..config import DownscaleParams
from ._kernels import bilinear_at, solid_fraction
from .biascorrect import METHODS, BiasAdjustment, bias_adjust, to_reference_grid
from .core import downscale, solid_precipitation
from .learned import FEATURES, LearnedDownscaling, cell_grid, learned_downscale
from .pixels import PixelClimate, PixelWeights, downscale_pixels, pixel_climate, pixel_weights
from .regrid import regrid

__all__ = [
    "downscale", "DownscaleParams", "solid_precipitation", "regrid",
    # the packed pixels of a glacier domain: weights once per pixel, applied to every month
    "PixelWeights", "PixelClimate", "pixel_weights", "pixel_climate", "downscale_pixels",
    # a forcing adjusted into the reference (xsdba)
    "BiasAdjustment", "bias_adjust", "to_reference_grid", "METHODS",
    # learned (ML) downscaling
    "LearnedDownscaling", "learned_downscale", "cell_grid", "FEATURES",
    # numpy kernels for blockwise callers (the features stage's climate kernels)
    "solid_fraction", "bilinear_at",
]
