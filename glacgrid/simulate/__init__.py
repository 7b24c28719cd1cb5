"""Reconstruction and evolution runs (``glacgrid run``): one annual step, the run loop, the results store.

- :func:`annual_step`: one evolution year (topography from the current surface -> features -> SMB ->
  delta-h update), failing glaciers isolated.
- :func:`reconstruct_step`: one year of SMB on a given (static or interpolated) geometry; a
  :class:`CheckedGeometry` carries the checks of a static geometry from year to year.
- :func:`simulate_domain`: the same science on a glacier domain (:mod:`glacgrid.domain`), one task per group
  of whole glaciers (see :mod:`.domain`).
- :func:`simulate`: the resumable run of ``cfg.mode`` into the results store (see :mod:`._run`).

The glaciers of a step are a :class:`glacgrid.glaciers.GlacierGeometry`; the per-glacier checks are
:func:`glacgrid.glaciers.glacier_checks` and the delta-h ensemble curves
:func:`glacgrid.geometry.perturbed_curves`.
"""

from ._run import (LOG_COLUMNS, ensemble_members, init_store, results_fingerprint, results_template, simulate,
                   surface_for_year)
from ._step import CheckedGeometry, annual_step, reconstruct_step
from .domain import (REASONS, DomainPixels, DomainRun, domain_glacier_features, domain_log, domain_pixel_features,
                     domain_results_template, simulate_domain, years_done)

__all__ = ["simulate", "annual_step", "reconstruct_step", "CheckedGeometry", "results_fingerprint",
           "results_template", "ensemble_members", "surface_for_year", "init_store", "LOG_COLUMNS",
           # every glacier of a region on a glacier domain, group by group
           "DomainRun", "simulate_domain", "domain_results_template", "domain_log", "domain_glacier_features",
           "domain_pixel_features", "DomainPixels", "REASONS", "years_done"]
