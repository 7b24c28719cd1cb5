"""Reconstruction and evolution runs (``glacgrid run``): one annual step, the run loop, the results store.

- :func:`annual_step`: one evolution year (topography from the current surface -> features -> SMB ->
  delta-h update), failing glaciers isolated.
- :func:`reconstruct_step`: one year of SMB on a given (static or interpolated) geometry; a
  :class:`CheckedGeometry` carries the checks of a static geometry from year to year.
- :func:`simulate`: the resumable run of ``cfg.mode`` into the results store (see :mod:`._run`).

The glaciers of a step are a :class:`glacgrid.glaciers.GlacierGeometry`; the per-glacier checks are
:func:`glacgrid.glaciers.glacier_checks` and the delta-h ensemble curves
:func:`glacgrid.geometry.perturbed_curves`.
"""

from ._run import (LOG_COLUMNS, ensemble_members, init_store, results_fingerprint, results_template, simulate,
                   surface_for_year)
from ._step import CheckedGeometry, annual_step, reconstruct_step

__all__ = ["simulate", "annual_step", "reconstruct_step", "CheckedGeometry", "results_fingerprint",
           "results_template", "ensemble_members", "surface_for_year", "init_store", "LOG_COLUMNS"]
