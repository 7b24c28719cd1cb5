"""The training table of a run: glacier features of the observation units joined with the observations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import features as feat
from ..atomic import write_csv
from ..config import RunConfig
from ..exceptions import ModelError
from ..observations import ObservedUnits, observed_units, unit_raster
from .prepare import Prepared

__all__ = ["read_observed", "training_table", "write_training_table"]


def read_observed(cfg: RunConfig, table: pd.DataFrame) -> ObservedUnits:
    """The observations of ``[observations]`` read and linked to the outlines of ``table`` (once per run).

    Parameters
    ----------
    cfg : RunConfig
        The run (``[observations]`` files, format, id column and links).
    table : pandas.DataFrame
        The glacier table (column ``rgi_id``, index 1..N) of :class:`Prepared`.

    Returns
    -------
    ObservedUnits
        Handed to :func:`training_table`, :func:`glacgrid.outputs.write_outputs` and the runners.
    """
    o = cfg.observations
    return observed_units(o.files, table["rgi_id"].tolist(), fmt=o.format, id_column=o.id_column, links=o.links)


def training_table(cfg: RunConfig, prep: Prepared, observed: ObservedUnits) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Glacier features of the observation units joined with the observations.

    Parameters
    ----------
    cfg : RunConfig
        The run.
    prep : Prepared
        The prepared grid, masks and downscaled climate.
    observed : ObservedUnits
        The observations linked to the outlines (:func:`read_observed`); no file is read here.

    Returns
    -------
    table : pandas.DataFrame
        One row per observed (unit, year) with all features, ``obs_id``, ``year`` and ``smb``.
    notes : tuple of str
        The observation ids that match no outline, as a note (empty when all match).
    """
    notes, units, obs, years = observed_years(cfg, observed)
    s = prep.static
    units_raster = unit_raster(s["glacier_id"], observed.unit_of_outline)
    uidx = observed.unit_index
    active = units_raster > 0
    pix = _pixel_features(cfg, prep, s["surface"], units_raster, active, uidx, years[0], years[-1])
    gf = feat.glacier_features(pix, units_raster, active, s["pixel_area"], uidx).compute()
    df = gf.to_dataframe().reset_index()
    df["obs_id"] = np.asarray(units)[df["glacier"].to_numpy() - 1]
    return df.merge(obs, on=["obs_id", "year"], how="inner"), notes


def write_training_table(train: pd.DataFrame, out: Path) -> Path:
    """Write the training table as ``out/training_features.csv``, atomically (a kill leaves the old file or the
    new one, never a truncated one that parses)."""
    return write_csv(train, Path(out) / "training_features.csv", index=False)


def observed_years(cfg: RunConfig, observed: ObservedUnits) -> tuple[tuple[str, ...], list, pd.DataFrame, list]:
    """What every training table starts from: the note on unmatched observations, the observation units
    (at least 2), the observations and the observed years of the run's period."""
    notes = ()
    if observed.unmatched:
        notes = (f"observations without a matching outline (not used): {list(observed.unmatched)}",)
    units = list(observed.units)
    if len(units) < 2:
        raise ModelError(f"Only {len(units)} observed glacier(s) match the outlines; training needs at least 2. "
                         "Check [observations] id_column and links.")
    obs = observed.observations
    years = sorted(set(obs["year"]) & set(range(cfg.period.start, cfg.period.end + 1)))
    if not years:
        raise ModelError(f"No observation falls in [period] {cfg.period.start}-{cfg.period.end}.")
    return notes, units, obs, years


def _pixel_features(cfg: RunConfig, prep: Prepared, surface: xr.DataArray, glacier_id: xr.DataArray,
                    active: xr.DataArray, index: np.ndarray, start: int, end: int) -> xr.Dataset:
    """All pixel features for hydrological years ``start..end`` on the current geometry."""
    climate = feat.climate_pixel_features(prep.down, surface, cfg.downscale, start=start, end=end,
                                          hemisphere=cfg.period.hemisphere)
    topo = feat.topo_pixel_features(surface, prep.grid)
    const = feat.glacier_constants(glacier_id, surface, active, prep.static["pixel_area"], index).compute()
    return feat.pixel_features(climate, topo, const, glacier_id, active)
