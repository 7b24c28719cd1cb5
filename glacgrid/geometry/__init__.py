"""Glacier geometry update by the delta-h parameterisation of Huss et al. (2010), mass conserving.

Each glacier's volume change ``ΔV = SMB · A · ρ_w / ρ_i`` is spread over its ice-covered pixels with
its delta-h curve (glacier-specific from :mod:`glacgrid.geometry.calibrate`, else the Huss curve of its
size class); pixels that run out of ice are clipped and the unmet loss is redistributed (see
:mod:`glacgrid.geometry._kernels` for the algorithm). The bed is fixed: the surface moves with the
thickness. :func:`deltah_update` updates one year (:mod:`glacgrid.geometry.deltah`), :func:`evolve`
runs several years (:mod:`glacgrid.geometry.evolve`), :func:`pack_state` compacts sparse mosaics
(:mod:`glacgrid.geometry.packing`) and :func:`perturbed_curves` changes the shape of the curves of a
delta-h ensemble (:mod:`glacgrid.geometry.curves`).

Every update goes through one fused, compiled kernel (:mod:`glacgrid.geometry._fused`, numba): each
glacier's pixels are handled at once while they sit in the CPU cache (geometry, weights, every
redistribution round, outputs), so an update costs about two passes over memory.

Dask-backed states (e.g. a UTM zone of the Alps at 25 m: 270 million pixels, 1 % glacier) are not
held in memory: one pass over the blocks gathers the pixels of the updated glaciers into compact
numpy vectors (:mod:`glacgrid.geometry._scatter`), the fused kernel updates them, and the new
thickness and surface are lazy rasters whose blocks are the input blocks with the new values of
their glacier pixels written in. The results are the numpy path's to the last bit (the kernel visits
each glacier's pixels in the same order). Computing them reads the input blocks a second time; the
gather pass is the only eager computation. :func:`evolve` gathers once and scatters once for all
its years.

``engine="flox"`` keeps the earlier fully distributed path for dask states whose glacier pixels do
not fit in one process (:mod:`glacgrid.geometry.grouped`): per-glacier sums are flox reductions grouped
by each pixel's glacier *position*, with one eager pass for the glacier geometry and the input checks,
one for the curve weight sums and one per redistribution step (``report.attrs["solver_passes"]``); the
four input pixel arrays are persisted (held in memory, or in the cluster's memory) for these passes.
Same science, same numbers to rounding.
"""

from ._kernels import HUSS_LARGE, HUSS_MEDIUM, HUSS_SMALL, deltah_curve
from .curves import perturbed_curves
from .deltah import deltah_update
from .evolve import evolve
from .packing import pack_state, pack_tiles, unpack_field

__all__ = ["HUSS_LARGE", "HUSS_MEDIUM", "HUSS_SMALL", "deltah_curve", "deltah_update", "evolve", "pack_state",
           "unpack_field", "pack_tiles", "perturbed_curves"]
