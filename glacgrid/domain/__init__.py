"""The glacier domain: every glacier pixel of a region packed along one ``pixel`` dimension.

Glaciers are packed glacier-contiguously, in fixed-size groups of whole glaciers (next-fit, in their
given order): group ``k`` owns pixels ``[k*C, (k+1)*C)`` and glacier slots ``[k*G, (k+1)*G)``, exactly
one Zarr chunk of each, so tasks that own groups read and write disjoint chunks. Each glacier keeps
its own window (affine, shape, CRS), so glaciers of several UTM zones form one domain.

Modules:

- ``build``: :func:`domain_from_tiles` (per-glacier Farinotti tiles), :func:`domain_from_rasters`
  (the dense prepare's rasters on a grid) and :func:`domain_from_windows` (per-glacier windows in memory)
- ``store``: :class:`Domain` (lazy, opened with :func:`open_domain`) and :class:`GroupArrays` (numpy, one group)
- ``export``: :func:`rasterise` (one glacier's window, a CRS zone, any grid) and :func:`export` (GeoTIFFs)
- ``_kernels``: numpy kernels (group layout, lattice neighbours); :func:`group_layout` is public
"""

from __future__ import annotations

from ._kernels import SIDES, group_layout
from .build import DEFAULT_GROUP_PIXELS, domain_from_rasters, domain_from_tiles, domain_from_windows
from .export import export, rasterise
from .store import Domain, GroupArrays, open_domain

__all__ = ["Domain", "GroupArrays", "open_domain", "domain_from_tiles", "domain_from_rasters", "domain_from_windows",
           "rasterise", "export", "group_layout", "SIDES", "DEFAULT_GROUP_PIXELS"]
