"""The training data of a run: the training table (glacier features of the observation units joined with the
observations), the pixel features of the observed glaciers, and their observations as footprints
(glacier-wide balances and elevation bands) for joint training (:mod:`glacgrid.models.footprint`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .. import features as feat
from ..atomic import write_csv
from ..config import RunConfig
from ..exceptions import InputDataError, ModelError
from ..observations import ObservedUnits, observed_units, unit_raster
from .prepare import Prepared

__all__ = ["BAND_WIDTH", "ObservedPixels", "fit_joint", "fit_joint_model", "kind_weights", "observed_pixels",
           "pixel_footprints", "read_band_profiles", "read_observed", "training_table", "with_profile_features",
           "write_training_table"]


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
    pix = feat.pixel_features(climate, topo, const, glacier_id, active)
    return with_profile_features(cfg, prep, pix, climate, surface, active, start, end)


def with_profile_features(cfg: RunConfig, prep: Prepared, pix: xr.Dataset, climate: xr.Dataset,
                          surface: xr.DataArray, active: xr.DataArray, start: int, end: int) -> xr.Dataset:
    """``pix`` with the profile features (:mod:`glacgrid.features.profile`) that ``[model] features`` names,
    on the active pixels (lazy); unchanged when it names none."""
    from ..features.profile import PROFILE_FEATURES, profile_pixel_features

    wanted = [n for n in cfg.model.features if n in PROFILE_FEATURES]
    if not wanted:
        return pix
    extra = profile_pixel_features(prep.down, surface, cfg.downscale, climate, start=start, end=end,
                                   hemisphere=cfg.period.hemisphere, names=wanted,
                                   elevation_norm=pix.get("elevation_norm"))
    return pix.assign({n: extra[n].where(active) for n in wanted})


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
    pix = with_profile_features(cfg, prep, pix, climate, s["surface"], unit > 0, int(min(years)), int(max(years)))
    names = [n for n in cfg.model.features if n in pix]
    missing = sorted(set(cfg.model.features) - set(names))
    if missing:
        raise ModelError(f"[model] features {missing} are not pixel features; available: {list(pix.data_vars)}.")
    crop = xr.Dataset({"unit": unit, "pixel_area": s["pixel_area"], "surface": s["surface"]}).isel(window)
    crop = crop.compute()
    pix = pix[names].isel(window).compute()
    return ObservedPixels(pix, crop["unit"], crop["pixel_area"], crop["surface"], tuple(observed.units),
                          _unit_names(prep.table, observed))


# ------------------------------------------------------------------------------------------ footprints
#: Width (m) of the WGMS elevation bands used as footprints; edges on multiples of the width.
BAND_WIDTH = 50.0


def _grouped_rows(key_pix: np.ndarray, key_obs: np.ndarray, year_obs: np.ndarray, n_pix: int,
                  area_pix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For observations ``(key, year index)``, the CSR rows (``year * n_pix + pixel``) of the pixels whose
    ``key_pix`` equals the key, with their areas; observations whose key has no pixel are dropped.

    Returns ``(kept, indptr, rows, weights)``."""
    order = np.argsort(key_pix, kind="stable")
    sorted_keys = key_pix[order]
    start = np.searchsorted(sorted_keys, key_obs, side="left")
    size = np.searchsorted(sorted_keys, key_obs, side="right") - start
    kept = np.flatnonzero(size > 0)
    start, size, yr = start[kept], size[kept], year_obs[kept]
    indptr = np.r_[0, np.cumsum(size)].astype("int64")
    within = np.arange(indptr[-1]) - np.repeat(indptr[:-1], size)
    pix = order[np.repeat(start, size) + within]
    return kept, indptr, np.repeat(yr, size).astype("int64") * n_pix + pix, area_pix[pix].astype("float64")


def pixel_footprints(features: xr.Dataset, unit: xr.DataArray, surface: xr.DataArray, pixel_area: xr.DataArray,
                     units: tuple[str, ...], observations: pd.DataFrame, profiles: pd.DataFrame | None = None, *,
                     names: tuple[str, ...] | None = None, band_width: float = BAND_WIDTH):
    """The pixel feature matrix of the observed glaciers and their observations as footprints.

    Parameters
    ----------
    features : xarray.Dataset
        Pixel features (year, y, x), computed (e.g. :attr:`glacgrid.pipeline.ObservedPixels.features`).
    unit : xarray.DataArray
        Observation unit of every pixel (1-based position in ``units``; 0 = none).
    surface, pixel_area : xarray.DataArray
        Surface elevation (m) and pixel area (m2) on the same (y, x) grid.
    units : tuple of str
        The observation ids in unit order.
    observations : pandas.DataFrame
        Glacier-wide balances: ``obs_id``, ``year``, ``smb`` (m w.e.); each becomes a ``"glacier"``
        footprint over the unit's pixels in that year.
    profiles : pandas.DataFrame, optional
        Band balances (:func:`glacgrid.observations.read_profiles`): ``obs_id``, ``year``, ``band_mid``,
        ``smb``; each band on the ``band_width`` lattice that holds pixels of the unit becomes a ``"band"``
        footprint (other bands, e.g. 100 m bands, and bands without pixels on the DEM are left out).
    names : tuple of str, optional
        The feature columns of the matrix (default: every variable of ``features``).
    band_width : float
        Band width (m).

    Returns
    -------
    X : numpy.ndarray
        Shape (n_years * n_pixels, n_features): row ``i * n_pixels + p`` is pixel ``p`` (the unit pixels in
        (y, x) order) in year ``features.year[i]``.
    footprints : glacgrid.models.footprint.Footprints
        The glacier-wide and band footprints (observations outside the feature years are left out).
    """
    from ..models.footprint import Footprints

    names = tuple(names or features.data_vars)
    u = np.asarray(unit.values).ravel()
    on = u > 0
    n_pix = int(on.sum())
    years = np.asarray(features["year"].values)
    X = np.empty((years.size, n_pix, len(names)), dtype="float64")
    for j, n in enumerate(names):  # a handful of features; static ones (y, x) repeat every year
        da = features[n]
        X[:, :, j] = np.asarray(da.transpose(*[d for d in ("year", "y", "x") if d in da.dims]).values).reshape(
            -1, u.size)[:, on]
    X = X.reshape(years.size * n_pix, len(names))
    area = np.asarray(pixel_area.values).ravel()[on]
    upix = u[on].astype("int64")
    pos = {oid: i + 1 for i, oid in enumerate(units)}
    parts = []

    def add(frame, key_pix, key_obs, kind, band_mid):
        yi = np.searchsorted(years, frame["year"].to_numpy())
        kept, indptr, rows, w = _grouped_rows(key_pix, key_obs, yi, n_pix, area)
        if kept.size:
            f = frame.iloc[kept]
            parts.append(Footprints(f["smb"].to_numpy("float64"), indptr, rows, w, np.full(kept.size, kind),
                                    f["obs_id"].to_numpy(str), f["year"].to_numpy("int64"), band_mid[kept]))

    obs = observations[observations["obs_id"].isin(list(units)) & observations["year"].isin(years)]
    add(obs, upix, obs["obs_id"].map(pos).to_numpy("int64"), "glacier", np.full(len(obs), np.nan))
    if profiles is not None and len(profiles):
        z = np.asarray(surface.values).ravel()[on]
        kb = np.floor(z / band_width).astype("int64")
        kmin, nb = int(kb.min()), int(kb.max() - kb.min() + 1)
        lattice = np.isclose(np.mod(profiles["band_mid"], band_width), band_width / 2)
        prof = profiles[lattice & profiles["obs_id"].isin(list(units)) & profiles["year"].isin(years)]
        kobs = np.floor(prof["band_mid"].to_numpy() / band_width).astype("int64") - kmin
        inside = (kobs >= 0) & (kobs < nb)
        prof, kobs = prof[inside], kobs[inside]
        add(prof, upix * nb + (kb - kmin), prof["obs_id"].map(pos).to_numpy("int64") * nb + kobs, "band",
            prof["band_mid"].to_numpy("float64"))
    if not parts:
        raise ModelError(f"No observation of the units {list(units)} falls in the feature years "
                         f"{int(years[0])}-{int(years[-1])} on pixels of the grid.")
    return X, Footprints.concat(parts)


def read_band_profiles(cfg: RunConfig) -> pd.DataFrame | None:
    """The elevation-band profiles of ``[observations] profiles`` (default: the ``profile_WGMS-*.csv`` beside
    WGMS ``mbdata`` files), read with :func:`glacgrid.observations.read_profiles`; None when there are none."""
    from ..observations import profile_files, read_profiles

    o = cfg.observations
    files = dict.fromkeys(o.profiles) if o.profiles else (profile_files(o.files) if o.format == "wgms" else {})
    return read_profiles(files, id_column=o.id_column) if files else None


def kind_weights(cfg: RunConfig) -> dict[str, float]:
    """Loss share of each footprint kind: glacier-wide 1, bands ``[model] band_weight``, stakes 1."""
    return {"glacier": 1.0, "band": float(cfg.model.band_weight), "stake": 1.0}


def fit_joint(cfg: RunConfig, X: np.ndarray, footprints, *, keep: np.ndarray | None = None):
    """A fresh model of ``[model]`` fitted on ``footprints`` (those where ``keep``) of the pixel matrix ``X``
    (:func:`glacgrid.models.footprint.fit_footprints`, weights :func:`kind_weights`, ``[model] band_fit``)."""
    from ..models.footprint import fit_footprints
    from .model import build_model

    model, schema = build_model(cfg)
    fp = footprints if keep is None else footprints.select(keep)
    return fit_footprints(model, X, fp, schema, kind_weights=kind_weights(cfg), band_fit=cfg.model.band_fit)


def fit_joint_model(cfg: RunConfig, prep: Prepared, observed: ObservedUnits, train: pd.DataFrame, out: Path):
    """The model stage of joint training (``[model] training = "joint"``): fit one pixel model against the
    glacier-wide balances of ``train`` and the band profiles, write ``out/model`` and ``out/footprints.json``.

    Parameters
    ----------
    cfg : RunConfig
        The run.
    prep : Prepared
        The prepared grid, masks and downscaled climate.
    observed : ObservedUnits
        The observations linked to the outlines.
    train : pandas.DataFrame
        The training table (:func:`training_table`): its (``obs_id``, ``year``, ``smb``) rows are the
        glacier-wide footprints.
    out : Path
        Output directory.

    Returns
    -------
    SMBModel
        The fitted model (an ordinary artifact of its kind, applied blockwise as any other).
    """
    from ..models.schema import write_json_atomic

    names = tuple(cfg.model.features)
    px = observed_pixels(cfg, prep, observed, sorted(train["year"].unique().tolist()))
    X, fp = pixel_footprints(px.features, px.unit, px.surface, px.pixel_area, px.units,
                             train[["obs_id", "year", "smb"]], read_band_profiles(cfg), names=names)
    model = fit_joint(cfg, X, fp)
    model.to_artifact(Path(out) / "model")
    write_json_atomic(Path(out) / "footprints.json", {"training": "joint", "kind_weights": kind_weights(cfg),
                                                      "band_fit": cfg.model.band_fit,
                                                      "footprints": model.training_.get("footprints", {})})
    return model
