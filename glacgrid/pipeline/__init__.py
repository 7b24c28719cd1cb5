"""The runners of glacgrid: the whole pipeline of one run and the entry points of its stages.

``prepare`` (ingest -> grid and masks -> downscale, :mod:`glacgrid.pipeline.prepare`), the training table
(:mod:`~glacgrid.pipeline.training`), the model stage (:mod:`~glacgrid.pipeline.model`), the run
(:mod:`~glacgrid.pipeline.run`), the features stage (:mod:`~glacgrid.pipeline.features`), a run split
into region tiles for a Slurm job array (:mod:`~glacgrid.pipeline.tiles`) and the validation of a run
against its observations (:mod:`~glacgrid.pipeline.validate`), and a run on a glacier domain
(:mod:`~glacgrid.pipeline.domain`) with its Slurm-array pieces (:mod:`~glacgrid.pipeline.domain_jobs`); the run lock
and the outputs of an older configuration (:mod:`~glacgrid.pipeline.outdir`). ``glacgrid run``, ``glacgrid demo``,
``glacgrid features``, ``glacgrid tiles`` and ``glacgrid validate`` call these.
"""

from .features import run_features
from .model import SEED_FREE_KINDS, build_model, ensemble_method, fit_model
from .outdir import begin_run, retire_stale_outputs, run_lock
from .prepare import Prepared, prepare
from .domain import build_domain, run_domain
from .domain_jobs import finish_domain, missing_groups, prepare_domain, run_domain_groups
from .result import RunResult
from .run import check_run_features, run
from .steps import Steps
from .tiles import finish_tiles, missing_tiles, prepare_tiles, read_layout, run_tile, tile_key
from .training import fit_joint_model, pixel_footprints, read_band_profiles, read_observed, training_table
from .validate import ObservedPixels, observed_pixels, reconstruction_cv, validate

__all__ = ["run_domain", "build_domain", "prepare_domain", "run_domain_groups", "missing_groups", "finish_domain",
           "Prepared", "RunResult", "Steps", "SEED_FREE_KINDS", "build_model", "ensemble_method", "fit_model",
           "prepare", "read_observed", "training_table", "run", "run_features", "prepare_tiles", "run_tile",
           "missing_tiles", "finish_tiles", "read_layout", "tile_key", "validate",
           "ObservedPixels", "observed_pixels", "reconstruction_cv", "run_lock", "begin_run", "retire_stale_outputs",
           "fit_joint_model", "pixel_footprints", "read_band_profiles", "check_run_features"]
