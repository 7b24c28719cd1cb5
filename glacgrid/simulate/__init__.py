"""Reconstruction and evolution runs (``glacgrid run``): one annual step, the run loop, the results store.

- :func:`annual_step`: one evolution year (topography from the current surface -> features -> SMB ->
  delta-h update), failing glaciers isolated.
- :func:`reconstruct_step`: one year of SMB on a given (static or interpolated) geometry.
- :func:`simulate`: the resumable run of ``cfg.mode`` into the results store (see :mod:`._run`).
"""

from ._run import (LOG_COLUMNS, ensemble_members, init_store, results_fingerprint, results_template, simulate,
                   surface_for_year)
from ._step import annual_step, glacier_checks, perturbed_curves, reconstruct_step

__all__ = ["simulate", "annual_step", "reconstruct_step", "results_fingerprint", "results_template",
           "ensemble_members", "surface_for_year", "perturbed_curves", "glacier_checks", "init_store",
           "LOG_COLUMNS"]
