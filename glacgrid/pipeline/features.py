"""The features stage of a run (``glacgrid features``): glacier features of a config's glaciers and period,
written to Zarr and a flat table, plus the table of observed glacier-years that ``glacgrid cv`` reads."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import RunConfig
from ..cube import open_store
from ..features import ClimateFeatureParams, HydroYear, compute_features
from ..features.io import feature_schema, observed_table, write_features, write_table
from ..glaciers import GlacierGeometry
from ..observations import unit_raster
from .outdir import purpose_of, run_lock
from .prepare import Prepared, prepare
from .training import read_observed

__all__ = ["run_features"]

log = logging.getLogger(__name__)


def run_features(cfg: RunConfig, out: str | Path, *, fmt: str = "csv", monthly: bool = False,
                 reference: tuple[int, int] | None = None, ablation: tuple[float, float] = (0.1, 0.9),
                 era5_variables=(), prep: Prepared | None = None) -> dict[str, Path]:
    """Compute and write the glacier features of ``cfg`` (a :class:`~glacgrid.config.RunConfig`).

    Writes ``out/features.zarr``, ``out/features.<fmt>`` (+ ``.schema.json``) with one row per glacier
    and hydrological year, and, when the config names observations, ``out/observed.<fmt>``: the
    features of each observation unit (all its outlines together) joined with its balance (``smb``,
    m w.e.). ``prep`` (from :func:`glacgrid.pipeline.prepare`) is built in ``out/work`` when not given.
    """
    out = Path(out)
    with run_lock(out, purpose=purpose_of(cfg, "features")):  # one writer of out/work at a time
        return _run_features(cfg, out, fmt, monthly, reference, ablation, era5_variables, prep)


def _run_features(cfg: RunConfig, out: Path, fmt: str, monthly: bool, reference, ablation, era5_variables,
                  prep: Prepared | None) -> dict[str, Path]:
    prep = prep or prepare(cfg, out / "work")
    s = prep.static
    params = ClimateFeatureParams(HydroYear(cfg.period.hemisphere), ablation=tuple(ablation), monthly=monthly,
                                  reference=tuple(reference) if reference else None)
    cube = open_store(out / "work" / "cube.zarr", require_complete=True) if era5_variables else None
    kw = dict(start=cfg.period.start, end=cfg.period.end, downscale=cfg.downscale, climate=params,
              cube=cube, era5_variables=tuple(era5_variables))
    outlined = prep.glaciers.with_thickness(None)  # the features of the whole outlines, ice or not
    gf = compute_features(prep.down, outlined, **kw).compute()
    paths = write_features(gf, out, prep.table, fmt=fmt)
    if cfg.observations.files:
        observed = read_observed(cfg, prep.table)
        if observed.unmatched:
            log.warning("observations without a matching outline (not in %s): %s", f"observed.{fmt}",
                        list(observed.unmatched))
        if observed.units:
            units_raster = unit_raster(s["glacier_id"], observed.unit_of_outline)
            unit_glaciers = GlacierGeometry(units_raster, s["surface"], s["pixel_area"], observed.unit_index,
                                            prep.grid)
            uf = compute_features(prep.down, unit_glaciers, **kw).compute()
            df = observed_table(uf, list(observed.units), observed.observations)
            paths["observed"], _ = write_table(df, out / f"observed.{fmt}", feature_schema(uf))
    return paths
