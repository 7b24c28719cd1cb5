"""The features stage of a run (``glacgrid features``): glacier features of a config's glaciers and period,
written to Zarr and a flat table, plus the table of observed glacier-years that ``glacgrid cv`` reads."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .climate import ClimateFeatureParams
from .hydro import HydroYear
from .io import feature_schema, observed_table, write_features, write_table
from .sampling import compute_features

__all__ = ["run_features"]

log = logging.getLogger(__name__)


def run_features(cfg, out: str | Path, *, fmt: str = "csv", monthly: bool = False,
                 reference: tuple[int, int] | None = None, ablation: tuple[float, float] = (0.1, 0.9),
                 era5_variables=(), prep=None) -> dict[str, Path]:
    """Compute and write the glacier features of ``cfg`` (a :class:`~glacgrid.config.RunConfig`).

    Writes ``out/features.zarr``, ``out/features.<fmt>`` (+ ``.schema.json``) with one row per glacier
    and hydrological year, and, when the config names observations, ``out/observed.<fmt>``: the
    features of each observation unit (all its outlines together) joined with its balance (``smb``,
    m w.e.). ``prep`` (from :func:`glacgrid.pipeline.prepare`) is built in ``out/work`` when not given.
    """
    from ..pipeline import prepare

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prep = prep or prepare(cfg, out / "work")
    s = prep.static
    params = ClimateFeatureParams(HydroYear(cfg.period.hemisphere), ablation=tuple(ablation), monthly=monthly,
                                  reference=tuple(reference) if reference else None)
    cube = None
    if era5_variables:
        from ..cube import open_store

        cube = open_store(out / "work" / "cube.zarr")
    kw = dict(start=cfg.period.start, end=cfg.period.end, downscale=cfg.downscale, climate=params,
              cube=cube, era5_variables=tuple(era5_variables))
    gf = compute_features(prep.down, s["surface"], s["glacier_id"], s["pixel_area"], prep.grid, prep.index,
                          **kw).compute()
    paths = write_features(gf, out, prep.table, fmt=fmt)
    if cfg.observations.files:
        from ..observations import link_units, read_observations
        from ..observations import unit_raster as observed_units

        obs = read_observations(cfg.observations.files, fmt=cfg.observations.format,
                                id_column=cfg.observations.id_column)
        unit_of_outline, units, unmatched = link_units(obs["obs_id"].unique(), prep.table["rgi_id"].tolist(),
                                                       cfg.observations.links)
        if unmatched:
            log.warning("observations without a matching outline (not in %s): %s", f"observed.{fmt}", unmatched)
        if units:
            unit_raster = observed_units(s["glacier_id"], unit_of_outline)
            uf = compute_features(prep.down, s["surface"], unit_raster, s["pixel_area"], prep.grid,
                                  np.arange(1, len(units) + 1), **kw).compute()
            df = observed_table(uf, units, obs)
            paths["observed"], _ = write_table(df, out / f"observed.{fmt}", feature_schema(uf))
    return paths
