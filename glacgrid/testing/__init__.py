"""Seeded synthetic data whose answers are known, for tests, benchmarks and ``glacgrid demo``, and the
test support the suite shares (real-data paths, dask laziness guards).

:func:`build_region` writes a synthetic region (DEM, outlines, thickness, ERA5-Land-like monthly files,
observations from a known temperature-index model); see :mod:`glacgrid.testing._region`.
"""

from ._alps import write_alps_climate
from ._domain import DOMAIN_FEATURES, climate_box, domain_cube, domain_model, synthetic_cube
from ._globe import RGI6_REGIONS, glacier_windows, global_cube, global_domain, global_inventory
from ._demo import SIZES as DEMO_SIZES
from ._demo import prepare_demo
from ._region import SyntheticRegion, TruthParams, build_region, truth_smb, write_config
from ._support import DATA, HEF, REPO, ComputeCounter, full_disk_after, raise_if_dask_computes, requires_data, store_files

__all__ = ["TruthParams", "SyntheticRegion", "build_region", "write_config", "truth_smb", "prepare_demo", "DEMO_SIZES",
           "REPO", "DATA", "HEF", "requires_data", "ComputeCounter", "raise_if_dask_computes", "store_files", "full_disk_after", "write_alps_climate",
           "DOMAIN_FEATURES", "climate_box", "synthetic_cube", "domain_cube", "domain_model", "RGI6_REGIONS", "glacier_windows", "global_cube",
           "global_domain", "global_inventory"]
