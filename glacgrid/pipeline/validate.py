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
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..config import TRAININGS, RunConfig
from ..cube import open_store
from ..exceptions import InputDataError, ModelError
from ..inference import glacier_mean, predict_pixels
from ..models import SMBModel
from ..models.footprint import footprint_predictions
from ..models.folds import SCHEMES, make_folds
from ..observations import ObservedUnits, read_areas, read_profiles
from ..validation import (
    BandComparison,
    EvolutionComparison,
    ReconstructionCV,
    ValidationReport,
    band_means,
    compare_bands,
    compare_evolution,
    reconstruction_metrics,
    side_by_side,
)
from .model import build_model
from .outdir import purpose_of, run_lock
from .prepare import Prepared, prepare
from .run import run
from .training import (ObservedPixels, balance_columns, fit_joint, observed_pixels, pixel_footprints,
                       read_band_profiles, read_observed, seasons_of, training_table)

__all__ = ["ObservedPixels", "observed_pixels", "reconstruction_cv", "validate"]


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
                      k: int = 2, n_splits: int = 5, training: str | None = None,
                      profiles: pd.DataFrame | None = None) -> ReconstructionCV:
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
    training : {"glacier", "joint"}, optional
        ``glacier``: each fold model is fitted on the glacier-wide rows of its training folds; ``joint``:
        on the glacier-wide and band footprints (``profiles``) of the glacier-years of its training folds
        (:func:`glacgrid.pipeline.training.fit_joint`), so held-out glacier-years are out of sample for both.
        Default: ``[model] training``.
    profiles : pandas.DataFrame, optional
        Band profiles (:func:`glacgrid.observations.read_profiles`) for joint training.

    Returns
    -------
    ReconstructionCV
    """
    training = training or cfg.model.training
    if training not in TRAININGS:
        raise ModelError(f"training must be 'glacier' or 'joint'; got {training!r}.")
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
    seasonal_rows = []
    if training == "joint" or px.seasonal:  # (seasonal balances are predicted by either training)
        X_pix, fp = pixel_footprints(px.features, px.unit, px.surface, px.pixel_area, px.units,
                                     train[balance_columns(train)], profiles if training == "joint" else None,
                                     names=tuple(names), seasonal=px.seasonal)
        if training == "glacier":
            fp = fp.select(fp.kind == "glacier")
        fp_keys = pd.MultiIndex.from_arrays([fp.obs_id, fp.year])
    for fold in folds:
        if training == "joint":
            seen = pd.MultiIndex.from_arrays([train["obs_id"].to_numpy()[fold.train],
                                              train["year"].to_numpy()[fold.train]])
            model = fit_joint(cfg, X_pix, fp, keep=fp_keys.isin(seen))
        else:
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
        if px.seasonal:
            held = pd.MultiIndex.from_arrays([tab["obs_id"].to_numpy(), tab["year"].to_numpy()])
            seasonal_rows.append(_seasonal_predictions(model, X_pix, fp.select((fp.period != "annual")
                                                                                & fp_keys.isin(held)), fold.name))
    pred = pd.DataFrame({"obs_id": train["obs_id"].to_numpy(), "year": train["year"].to_numpy(), "fold": fold_of,
                         "observed": y, "reconstructed": rec, "direct": direct})
    pred.insert(1, "name", pred["obs_id"].map(px.names))
    smb_oos = xr.DataArray(field_oos, dims=("year", "y", "x"),
                           coords={"year": years_all, "y": px.unit["y"], "x": px.unit["x"]}, name="smb")
    seasonal = pd.concat(seasonal_rows, ignore_index=True) if seasonal_rows else None
    return ReconstructionCV(scheme, pred, reconstruction_metrics(pred, px.names), smb_oos, training, seasonal)


def _seasonal_predictions(model: SMBModel, X_pix: np.ndarray, fp, fold: str) -> pd.DataFrame:
    """The held-out seasonal balances and the model's value for them
    (:func:`glacgrid.models.footprint.footprint_predictions`)."""
    return pd.DataFrame({"obs_id": fp.obs_id, "year": fp.year, "period": fp.period, "fold": fold,
                         "observed": fp.value, "reconstructed": footprint_predictions(model, X_pix, fp)})


# --------------------------------------------------------------------------------------------- runner
def _check_schemes(schemes: Sequence[str]) -> None:
    bad = [s for s in schemes if s not in SCHEMES or s == "random"]
    if bad or not schemes:
        raise ModelError(f"Validation schemes {bad or list(schemes)} are not usable; give one or more of "
                         "logo, loyo, lsygo, kfold (random holds out only 15 % of the rows).")


def _profiles(cfg: RunConfig, profiles, notes: list[str]) -> pd.DataFrame | None:
    """The band profiles: ``profiles`` files, else ``[observations] profiles`` or those beside WGMS mbdata."""
    if profiles is not None:
        prof = read_profiles(dict.fromkeys(profiles), id_column=cfg.observations.id_column) if profiles else None
    else:
        prof = read_band_profiles(cfg)
    if prof is None:
        notes.append("no elevation-band profiles found: band comparison skipped")
    return prof


def _bands(cv: ReconstructionCV, px: ObservedPixels, prof: pd.DataFrame, notes: list[str]) -> BandComparison:
    """The out-of-sample band SMB of one reconstruction against the profiles."""
    modelled = band_means(cv.smb, px.surface, px.unit, px.pixel_area, px.index)
    bands = compare_bands(modelled, prof, px.units, names=px.names)
    note = (f"{bands.skipped} observed band values lie on bands other than 50 m wide with edges on "
            "multiples of 50 m (e.g. 100 m bands) and were not compared.")
    if bands.skipped and note not in notes:
        notes.append(note)
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
             prep: Prepared | None = None, trainings: Sequence[str] | None = None) -> ValidationReport:
    """Validate the run described by ``cfg`` against its observations; intermediate stores in ``out/work``.

    1. reconstruction cross-validation for each of ``schemes`` and ``trainings`` (:func:`reconstruction_cv`;
       the reconstructions of joint training are keyed ``<scheme>_joint``);
    2. the out-of-sample gridded SMB of every reconstruction in 50 m bands against the WGMS profiles
       (``profiles``, default: ``[observations] profiles`` or the ``profile_WGMS-*.csv`` beside WGMS
       ``[observations] files``): :attr:`ValidationReport.bands` holds the first one, and
       :attr:`ValidationReport.comparison` the glacier-wide and band skill and the band gradients below and
       above the ELA of all of them side by side;
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
    trainings : sequence of {"glacier", "joint"}, optional
        How the fold models are trained (default: ``[model] training`` alone).

    Returns
    -------
    ValidationReport
    """
    _check_schemes(schemes)
    trainings = tuple(trainings or (cfg.model.training,))
    bad = [t for t in trainings if t not in TRAININGS]
    if bad:
        raise ModelError(f"Trainings {bad} are not known; give glacier and/or joint.")
    out = Path(out)
    with run_lock(out, purpose=purpose_of(cfg, "validate")):  # one writer of out/work at a time
        return _validate(cfg, out, schemes, profiles, evolve, prep, trainings)


def _validate(cfg: RunConfig, out: Path, schemes: Sequence[str], profiles, evolve: bool | None,
              prep: Prepared | None, trainings: tuple[str, ...]) -> ValidationReport:
    prep = prep if prep is not None else prepare(cfg, out / "work")
    observed = read_observed(cfg, prep.table)
    train, train_notes = training_table(cfg, prep, observed)
    notes = [*prep.notes, *train_notes]
    seasons = seasons_of(cfg, train) if "joint" in trainings else ()
    px = observed_pixels(cfg, prep, observed, sorted(train["year"].unique().tolist()), seasons)
    areas = None
    if cfg.observations.format == "wgms":
        areas = read_areas(cfg.observations.files, id_column=cfg.observations.id_column)
        names = areas.drop_duplicates("obs_id").set_index("obs_id")["name"].to_dict()
        px = dataclasses.replace(px, names={**px.names, **names})
    prof = _profiles(cfg, profiles, notes)
    if "joint" in trainings and prof is None:
        raise InputDataError("Joint training needs elevation-band profiles: set [observations] profiles, pass "
                             "--profiles, or put the WGMS profile_WGMS-*.csv beside the mbdata files.")
    recon = {(s if t == "glacier" else f"{s}_joint"): reconstruction_cv(cfg, train, px, s, training=t, profiles=prof)
             for t in trainings for s in schemes}
    band_sets = {key: _bands(cv, px, prof, notes) for key, cv in recon.items()} if prof is not None else {}
    evolution = None
    if (cfg.mode == "evolve") if evolve is None else evolve:
        evolution = _evolution(cfg, out, prep, observed, areas, px.names)
    return ValidationReport(cfg.name, recon, next(iter(band_sets.values()), None), evolution, notes,
                            side_by_side(recon, band_sets))
