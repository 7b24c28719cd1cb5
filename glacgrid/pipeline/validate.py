"""The validation runner (``glacgrid validate``): prepare a run, cross-validate its reconstruction through
the gridded path, compare elevation bands and (evolve) area and volume with the observations.

The reconstruction cross-validation computes the pixel features of the observed glaciers once (cropped to
their bounding box, held in memory) and, for every fold, fits the configured model on the other folds'
(glacier, year) rows of the training table and reconstructs the held-out glacier-years through the
gridded path: pixel SMB from :func:`glacgrid.inference.predict_pixels`, aggregated area-weighted over the
glacier (or its linked divides) with flox. For a linear model this equals the model's own
cross-validation on glacier features (every glacier feature is the area-weighted mean of its pixel
feature). The science (skill scores, bands, evolution) is :mod:`glacgrid.validation`.

Typical use::

    report = validate(load_config("examples/hef_evolve.toml"), "validation-output")
    print(report.markdown())
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .. import features as feat
from ..config import RunConfig
from ..cube import open_store
from ..exceptions import InputDataError, ModelError
from ..inference import glacier_mean, predict_pixels
from ..models import SMBModel
from ..models.folds import SCHEMES, make_folds
from ..observations import ObservedUnits, profile_files, read_areas, read_profiles, unit_raster
from ..validation import (
    BandComparison,
    EvolutionComparison,
    ReconstructionCV,
    ValidationReport,
    band_means,
    compare_bands,
    compare_evolution,
    reconstruction_metrics,
)
from .model import build_model
from .outdir import purpose_of, run_lock
from .prepare import Prepared, prepare
from .run import run
from .training import read_observed, training_table

__all__ = ["ObservedPixels", "observed_pixels", "reconstruction_cv", "validate"]


# --------------------------------------------------------------------------------------------- pixels
@dataclass(frozen=True)
class ObservedPixels:
    """Pixel features of the observed glaciers, computed once and reused by every fold.

    Attributes
    ----------
    features : xarray.Dataset
        The model's pixel features (year, y, x), numpy-backed, cropped to the bounding box of the
        observed glaciers.
    unit : xarray.DataArray
        The observation unit (1-based position in ``units``, 0 = none) of each pixel: a glacier linked
        to several outlines (divides) is one unit.
    pixel_area : xarray.DataArray
        Pixel areas (m2) of the crop.
    surface : xarray.DataArray
        Surface elevation (m) of the crop.
    units : tuple of str
        The observation ids, in unit order.
    names : dict of str to str
        Glacier names by observation id.
    """

    features: xr.Dataset
    unit: xr.DataArray
    pixel_area: xr.DataArray
    surface: xr.DataArray
    units: tuple[str, ...]
    names: dict[str, str] = field(default_factory=dict)

    @property
    def index(self) -> np.ndarray:
        """The unit indices ``1..len(units)``."""
        return np.arange(1, len(self.units) + 1)


def _crop_window(unit: xr.DataArray, units: Sequence[str]) -> dict[str, slice]:
    """The (y, x) bounding box of the pixels of any unit."""
    rows = (unit > 0).any("x").values
    cols = (unit > 0).any("y").values
    if not rows.any():
        raise InputDataError(f"None of the observed glaciers {list(units)} has a pixel on the grid; check the "
                             "outlines, [observations] links and the grid extent.")
    ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
    return {"y": slice(int(ys[0]), int(ys[-1]) + 1), "x": slice(int(xs[0]), int(xs[-1]) + 1)}


def _unit_names(table: pd.DataFrame, observed: ObservedUnits) -> dict[str, str]:
    """Each unit's name: the first non-empty outline name among its outlines, else its id."""
    out = {}
    uoo = np.asarray(observed.unit_of_outline)
    for pos, oid in enumerate(observed.units, start=1):
        members = table.index[uoo[table.index.to_numpy()] == pos]
        out[oid] = next((str(n).strip() for n in table.loc[members, "name"] if str(n).strip()), oid)
    return out


def observed_pixels(cfg: RunConfig, prep: Prepared, observed: ObservedUnits, years: Sequence[int]) -> ObservedPixels:
    """Pixel features of every outline that belongs to an observed unit, on the run's geometry.

    The features are those of a reconstruction run on the grid DEM (static geometry; glacier constants
    per outline, all glacier pixels active), for hydrological years ``min(years)..max(years)``; computed
    once and held in memory.

    Parameters
    ----------
    cfg : RunConfig
        The run (``[model] features``, ``[downscale]``, hemisphere).
    prep : Prepared
        The prepared grid, masks and downscaled climate.
    observed : ObservedUnits
        The observations linked to the outlines.
    years : sequence of int
        The observed hydrological years.

    Returns
    -------
    ObservedPixels
    """
    s = prep.static
    gid = s["glacier_id"]
    unit = unit_raster(gid, observed.unit_of_outline)
    window = _crop_window(unit, observed.units)
    const = feat.glacier_constants(gid, s["surface"], gid > 0, s["pixel_area"], prep.index).compute()
    climate = feat.climate_pixel_features(prep.down, s["surface"], cfg.downscale, start=int(min(years)),
                                          end=int(max(years)), hemisphere=cfg.period.hemisphere)
    topo = feat.topo_pixel_features(s["surface"], prep.grid)
    pix = feat.pixel_features(climate, topo, const, gid, unit > 0)
    names = [n for n in cfg.model.features if n in pix]
    missing = sorted(set(cfg.model.features) - set(names))
    if missing:
        raise ModelError(f"[model] features {missing} are not pixel features; available: {list(pix.data_vars)}.")
    crop = xr.Dataset({"unit": unit, "pixel_area": s["pixel_area"], "surface": s["surface"]}).isel(window)
    crop = crop.compute()
    pix = pix[names].isel(window).compute()
    return ObservedPixels(pix, crop["unit"], crop["pixel_area"], crop["surface"], tuple(observed.units),
                          _unit_names(prep.table, observed))


# ------------------------------------------------------------------------------------ reconstruction
def _fit(cfg: RunConfig, X: np.ndarray, y: np.ndarray) -> SMBModel:
    model, schema = build_model(cfg)  # an ensemble model predicts its member mean
    return model.fit(X, y, schema)


def _reconstruct(model: SMBModel, px: ObservedPixels, features: Sequence[str], years: Sequence[int]):
    """Gridded SMB (year, y, x) of the observed pixels and its area-weighted mean per unit (year, glacier)."""
    smb = predict_pixels(model, px.features.sel(year=list(years)), features)
    gl = glacier_mean(smb, px.unit, px.unit > 0, px.pixel_area, px.index)
    return smb, gl


def _paint_held_out(field_oos: np.ndarray, smb: np.ndarray, unit: np.ndarray, years_all: np.ndarray,
                    tab: pd.DataFrame, years: list[int], pos: dict[str, int]) -> None:
    """Copy the fold's gridded SMB of its held-out unit-years into the out-of-fold field (in place)."""
    for j, yr in enumerate(years):
        held = [pos[u] for u in tab.loc[tab["year"] == yr, "obs_id"]]
        mask = np.isin(unit, held)
        i = int(np.searchsorted(years_all, yr))
        field_oos[i][mask] = smb[j][mask]


def reconstruction_cv(cfg: RunConfig, train: pd.DataFrame, px: ObservedPixels, scheme: str = "logo", *,
                      k: int = 2, n_splits: int = 5) -> ReconstructionCV:
    """Cross-validate the reconstruction of the observed glacier-years through the gridded path.

    Parameters
    ----------
    cfg : RunConfig
        The run (``[model]``: kind, features, seed).
    train : pandas.DataFrame
        The training table of :func:`glacgrid.pipeline.training_table` (``obs_id``, ``year``, ``smb`` and
        the model features).
    px : ObservedPixels
        The pixel features of the observed glaciers (:func:`observed_pixels`).
    scheme : {"logo", "loyo", "lsygo", "kfold"}
        Folds of :func:`glacgrid.models.folds.make_folds` (each row is held out exactly once).
    k, n_splits : int
        ``lsygo`` group size and number of ``kfold`` folds.

    Returns
    -------
    ReconstructionCV
    """
    if scheme == "random":
        raise ModelError("scheme 'random' holds out only 15 % of the rows; use logo, loyo, lsygo or kfold.")
    names = list(cfg.model.features)
    X = train[names].to_numpy("float64")
    y = train["smb"].to_numpy("float64")
    folds = make_folds(scheme, train["obs_id"].to_numpy(), train["year"].to_numpy(), k=k, n_splits=n_splits,
                       seed=cfg.model.seed)
    pos = {u: i + 1 for i, u in enumerate(px.units)}
    rec = np.full(len(train), np.nan)
    direct = np.full(len(train), np.nan)
    fold_of = np.full(len(train), None, dtype=object)
    years_all = px.features["year"].values
    field_oos = np.full((years_all.size, *px.unit.shape), np.nan, dtype="float32")
    for fold in folds:
        model = _fit(cfg, X[fold.train], y[fold.train])
        test = np.flatnonzero(fold.test)
        direct[test] = model.predict(X[test])
        years = sorted(set(train["year"].to_numpy()[test].tolist()))
        smb, gl = _reconstruct(model, px, names, years)
        gl = gl.sel(year=years)
        tab = train.iloc[test]
        rec[test] = gl.values[[years.index(v) for v in tab["year"]], [pos[u] - 1 for u in tab["obs_id"]]]
        fold_of[test] = fold.name
        _paint_held_out(field_oos, smb.values, px.unit.values, years_all, tab, years, pos)
    pred = pd.DataFrame({"obs_id": train["obs_id"].to_numpy(), "year": train["year"].to_numpy(), "fold": fold_of,
                         "observed": y, "reconstructed": rec, "direct": direct})
    pred.insert(1, "name", pred["obs_id"].map(px.names))
    smb_oos = xr.DataArray(field_oos, dims=("year", "y", "x"),
                           coords={"year": years_all, "y": px.unit["y"], "x": px.unit["x"]}, name="smb")
    return ReconstructionCV(scheme, pred, reconstruction_metrics(pred, px.names), smb_oos)


# --------------------------------------------------------------------------------------------- runner
def _check_schemes(schemes: Sequence[str]) -> None:
    bad = [s for s in schemes if s not in SCHEMES or s == "random"]
    if bad or not schemes:
        raise ModelError(f"Validation schemes {bad or list(schemes)} are not usable; give one or more of "
                         "logo, loyo, lsygo, kfold (random holds out only 15 % of the rows).")


def _bands(cfg: RunConfig, first: ReconstructionCV, px: ObservedPixels, profiles, notes: list[str]
           ) -> BandComparison | None:
    """The out-of-sample band SMB against the profiles (default: those beside WGMS mbdata files)."""
    if profiles is not None:
        files = dict.fromkeys(profiles)
    else:
        files = profile_files(cfg.observations.files) if cfg.observations.format == "wgms" else {}
    if not files:
        notes.append("no elevation-band profiles found: band comparison skipped")
        return None
    prof = read_profiles(files, id_column=cfg.observations.id_column)
    modelled = band_means(first.smb, px.surface, px.unit, px.pixel_area, px.index)
    bands = compare_bands(modelled, prof, px.units, names=px.names)
    if bands.skipped:
        notes.append(f"{bands.skipped} observed band values lie on bands other than 50 m wide with edges on "
                     "multiples of 50 m (e.g. 100 m bands) and were not compared.")
    return bands


def _evolution(cfg: RunConfig, out: Path, prep: Prepared, observed: ObservedUnits, areas: pd.DataFrame | None,
               names: dict[str, str]) -> EvolutionComparison:
    """A full evolution run of ``cfg`` into ``out/run``, compared with the WGMS areas and balances."""
    if cfg.observations.format != "wgms" or areas is None:
        raise InputDataError("The evolution comparison needs WGMS mbdata files (AREA per year) in [observations].")
    if not cfg.glaciers.thickness:
        raise InputDataError("The evolution comparison needs an initial ice thickness: set [glaciers] thickness "
                             "(e.g. the Farinotti et al. 2019 rasters of the observed glaciers) or pass --no-evolve.")
    run_cfg = dataclasses.replace(cfg, mode="evolve",
                                  output=dataclasses.replace(cfg.output, directory=out / "run", plot=False))
    result = run(run_cfg, progress=False)
    results = open_store(result.files.results_zarr, require_complete=True)
    return compare_evolution(results, prep.static, observed, areas, rho_ice=cfg.geometry.rho_ice,
                             rho_water=cfg.geometry.rho_water, names=names)


def validate(cfg: RunConfig, out: str | Path, *, schemes: Sequence[str] = ("logo", "loyo"),
             profiles: Sequence[str | Path] | None = None, evolve: bool | None = None,
             prep: Prepared | None = None) -> ValidationReport:
    """Validate the run described by ``cfg`` against its observations; intermediate stores in ``out/work``.

    1. reconstruction cross-validation for each of ``schemes`` (:func:`reconstruction_cv`);
    2. the out-of-sample (first scheme) gridded SMB in 50 m bands against the WGMS profiles
       (``profiles``, default: the ``profile_WGMS-*.csv`` beside WGMS ``[observations] files``);
    3. when ``evolve`` (default: ``cfg.mode == "evolve"``), a full ``glacgrid run`` of ``cfg`` into
       ``out/run`` and its area and volume against the WGMS AREA and glaciological record.

    The observations are read and linked once (:func:`glacgrid.pipeline.read_observed`) and handed on.

    Parameters
    ----------
    cfg : RunConfig
        The run, with ``[observations]``.
    out : str or Path
        Output directory.
    schemes : sequence of str
        Cross-validation schemes (``logo``, ``loyo``, ``lsygo``, ``kfold``).
    profiles : sequence of str or Path, optional
        Elevation-band profile files.
    evolve : bool, optional
        Whether to run and compare the evolution.
    prep : Prepared, optional
        An already prepared run (else :func:`glacgrid.pipeline.prepare` into ``out/work``).

    Returns
    -------
    ValidationReport
    """
    _check_schemes(schemes)
    out = Path(out)
    with run_lock(out, purpose=purpose_of(cfg, "validate")):  # one writer of out/work at a time
        return _validate(cfg, out, schemes, profiles, evolve, prep)


def _validate(cfg: RunConfig, out: Path, schemes: Sequence[str], profiles, evolve: bool | None,
              prep: Prepared | None) -> ValidationReport:
    prep = prep if prep is not None else prepare(cfg, out / "work")
    observed = read_observed(cfg, prep.table)
    train, train_notes = training_table(cfg, prep, observed)
    notes = [*prep.notes, *train_notes]
    px = observed_pixels(cfg, prep, observed, sorted(train["year"].unique().tolist()))
    areas = None
    if cfg.observations.format == "wgms":
        areas = read_areas(cfg.observations.files, id_column=cfg.observations.id_column)
        names = areas.drop_duplicates("obs_id").set_index("obs_id")["name"].to_dict()
        px = dataclasses.replace(px, names={**px.names, **names})
    recon = {s: reconstruction_cv(cfg, train, px, s) for s in schemes}
    bands = _bands(cfg, recon[schemes[0]], px, profiles, notes)
    evolution = None
    if (cfg.mode == "evolve") if evolve is None else evolve:
        evolution = _evolution(cfg, out, prep, observed, areas, px.names)
    return ValidationReport(cfg.name, recon, bands, evolution, notes)
