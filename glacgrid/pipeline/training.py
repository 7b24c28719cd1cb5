"""The training data of a run: the training table (glacier features of the observation units joined with the
observations), the pixel features of the observed glaciers, and their observations as footprints
(glacier-wide balances and elevation bands) for joint training (:mod:`glacgrid.models.footprint`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .. import features as feat
from ..atomic import write_csv
from ..config import RunConfig
from ..exceptions import InputDataError, ModelError
from ..observations import (ObservedUnits, observed_units, profile_files, read_profiles, read_stakes, stake_pixels,
                            unit_raster)
from .prepare import Prepared

__all__ = ["BAND_WIDTH", "TABLE_ORDER", "ObservedPixels", "fit_joint", "fit_joint_model", "footprints_from_pixels",
           "kind_weights", "observed_pixels", "pixel_footprints", "pixel_matrix", "save_joint_model", "balance_columns",
           "seasons_of", "read_run_stakes", "place_stakes", "stake_summary", "read_band_profiles", "read_observed",
           "training_table", "with_profile_features", "write_training_table"]


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
    df = gf.to_dataframe(dim_order=TABLE_ORDER).reset_index()
    df["obs_id"] = np.asarray(units)[df["glacier"].to_numpy() - 1]
    return df.merge(obs, on=["obs_id", "year"], how="inner"), notes


#: Row order of every training table (dense and domain): year by year, the units in order within a year.
#: Fits whose inner cross-validation splits by row position (lasso) then agree between the two paths.
TABLE_ORDER = ["year", "glacier"]


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
                          surface: xr.DataArray, active: xr.DataArray, start: int, end: int,
                          period: str = "annual") -> xr.Dataset:
    """``pix`` with the profile features (:mod:`glacgrid.features.profile`) that ``[model] features`` names,
    on the active pixels (lazy); unchanged when it names none. ``period``: the months they are summed over
    (pass the ``climate`` of the same period)."""
    from ..features.profile import PROFILE_FEATURES, profile_pixel_features

    wanted = [n for n in cfg.model.features if n in PROFILE_FEATURES]
    if not wanted:
        return pix
    extra = profile_pixel_features(prep.down, surface, cfg.downscale, climate, start=start, end=end,
                                   hemisphere=cfg.period.hemisphere, names=wanted,
                                   elevation_norm=pix.get("elevation_norm"), period=period)
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
    seasonal : dict of str to (xarray.Dataset, float)
        Per season (``winter``, ``summer``) asked for: the pixel features summed over the season's months
        (:func:`glacgrid.features.season_features`) and the season's share of the year.
    lon, lat : xarray.DataArray
        Pixel-centre longitude and latitude (degrees) of the crop (to place stakes).
    """

    features: xr.Dataset
    unit: xr.DataArray
    pixel_area: xr.DataArray
    surface: xr.DataArray
    units: tuple[str, ...]
    names: dict[str, str] = field(default_factory=dict)
    seasonal: dict[str, tuple[xr.Dataset, float]] = field(default_factory=dict)
    lon: xr.DataArray | None = None
    lat: xr.DataArray | None = None

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


def observed_pixels(cfg: RunConfig, prep: Prepared, observed: ObservedUnits, years: Sequence[int],
                    seasons: Sequence[str] = ()) -> ObservedPixels:
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
    seasons : sequence of {"winter", "summer"}
        Also the features of these seasons (:attr:`ObservedPixels.seasonal`), for seasonal balances.

    Returns
    -------
    ObservedPixels
    """
    s = prep.static
    gid = s["glacier_id"]
    unit = unit_raster(gid, observed.unit_of_outline)
    window = _crop_window(unit, observed.units)
    const = feat.glacier_constants(gid, s["surface"], gid > 0, s["pixel_area"], prep.index).compute()
    topo = feat.topo_pixel_features(s["surface"], prep.grid)
    start, end = int(min(years)), int(max(years))

    def period_features(period: str) -> tuple[xr.Dataset, float]:
        params = feat.ClimateFeatureParams(feat.HydroYear(cfg.period.hemisphere), period=period)
        climate = feat.climate_pixel_features(prep.down, s["surface"], cfg.downscale, start=start, end=end,
                                              features=params)
        pix = feat.pixel_features(climate, topo, const, gid, unit > 0)
        pix = with_profile_features(cfg, prep, pix, climate, s["surface"], unit > 0, start, end, period)
        names = [n for n in cfg.model.features if n in pix]
        missing = sorted(set(cfg.model.features) - set(names))
        if missing:
            raise ModelError(f"[model] features {missing} are not pixel features; available: "
                             f"{list(pix.data_vars)}.")
        pix = pix[names].isel(window)
        return (pix if period == "annual" else feat.season_features(pix, params.fraction)).compute(), params.fraction

    crop = xr.Dataset({"unit": unit, "pixel_area": s["pixel_area"], "surface": s["surface"], "lon": topo["lon"],
                       "lat": topo["lat"]}).isel(window).compute()
    seasonal = {p: period_features(p) for p in seasons}
    return ObservedPixels(period_features("annual")[0], crop["unit"], crop["pixel_area"], crop["surface"],
                          tuple(observed.units), _unit_names(prep.table, observed), seasonal, crop["lon"], crop["lat"])


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


def pixel_matrix(features: xr.Dataset, on: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """The pixel feature matrix ``(n_years * n_on, n_features)`` of the pixels ``on`` (a bool mask of the
    flattened (y, x) grid): row ``i * n_on + p`` is pixel ``p`` (in (y, x) order) in ``features.year[i]``."""
    years = np.asarray(features["year"].values)
    n_pix = int(on.sum())
    X = np.empty((years.size, n_pix, len(names)), dtype="float64")
    for j, n in enumerate(names):  # a handful of features; static ones (y, x) repeat every year
        da = features[n]
        X[:, :, j] = np.asarray(da.transpose(*[d for d in ("year", "y", "x") if d in da.dims]).values).reshape(
            -1, on.size)[:, on]
    return X.reshape(years.size * n_pix, len(names))


def pixel_footprints(features: xr.Dataset, unit: xr.DataArray, surface: xr.DataArray, pixel_area: xr.DataArray,
                     units: tuple[str, ...], observations: pd.DataFrame, profiles: pd.DataFrame | None = None, *,
                     names: tuple[str, ...] | None = None, band_width: float = BAND_WIDTH,
                     seasonal: Mapping[str, tuple[xr.Dataset, float]] | None = None,
                     stakes: pd.DataFrame | None = None):
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
        Glacier-wide balances: ``obs_id``, ``year``, ``smb`` (m w.e.), optionally ``winter`` and
        ``summer`` (m w.e., NaN where not observed); see :func:`footprints_from_pixels`.
    profiles : pandas.DataFrame, optional
        Band balances (:func:`glacgrid.observations.read_profiles`): ``obs_id``, ``year``, ``band_mid``,
        ``smb``.
    names : tuple of str, optional
        The feature columns of the matrix (default: every variable of ``features``).
    band_width : float
        Band width (m).
    seasonal : mapping of str to (xarray.Dataset, float), optional
        ``{"winter": (features, fraction), "summer": ...}``: the pixel features of each season
        (:attr:`ObservedPixels.seasonal`) and the season's share of the year; their rows follow the
        annual ones in ``X``, and the seasonal balances become footprints on them.
    stakes : pandas.DataFrame, optional
        Stake balances with the ``pixel`` they fall on (:func:`glacgrid.observations.stake_pixels`,
        positions among the unit pixels in (y, x) order); see :func:`footprints_from_pixels`.

    Returns
    -------
    X : numpy.ndarray
        Shape (n_periods * n_years * n_pixels, n_features): row ``i * n_pixels + p`` is pixel ``p`` (the
        unit pixels in (y, x) order) in year ``features.year[i]``; the seasons' blocks follow, in the
        order of ``seasonal``.
    footprints : glacgrid.models.footprint.Footprints
        The glacier-wide, band, seasonal and stake footprints (observations outside the feature years are
        left out).
    """
    names = tuple(names or features.data_vars)
    u = np.asarray(unit.values).ravel()
    on = u > 0
    blocks = [pixel_matrix(features, on, names)]
    periods = {}
    for period, (ds, fraction) in (seasonal or {}).items():
        periods[period] = (sum(len(b) for b in blocks), float(fraction))
        blocks.append(pixel_matrix(ds, on, names))
    fp = footprints_from_pixels(np.asarray(features["year"].values), u[on].astype("int64"),
                                np.asarray(surface.values).ravel()[on], np.asarray(pixel_area.values).ravel()[on],
                                units, observations, profiles, band_width=band_width, periods=periods, stakes=stakes)
    return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)), fp


def footprints_from_pixels(years: np.ndarray, unit_pix: np.ndarray, z_pix: np.ndarray, area_pix: np.ndarray,
                           units: Sequence[str], observations: pd.DataFrame, profiles: pd.DataFrame | None = None, *,
                           band_width: float = BAND_WIDTH, periods: Mapping[str, tuple[int, float]] | None = None,
                           stakes: pd.DataFrame | None = None):
    """The observations of the units as footprints on a pixel feature matrix (any pixel layout: a grid's
    unit pixels, a glacier domain's packed pixels).

    Row ``offset + i * n_pix + p`` of the matrix is pixel ``p`` in year ``years[i]`` of the period whose
    block starts at ``offset`` (0 for the annual block).

    Parameters
    ----------
    years : numpy.ndarray
        The feature years, sorted.
    unit_pix, z_pix, area_pix : numpy.ndarray
        Per pixel: observation unit (1-based position in ``units``), surface elevation (m), area (m2).
    units : sequence of str
        The observation ids in unit order.
    observations : pandas.DataFrame
        ``obs_id``, ``year``, ``smb`` (m w.e.): a ``"glacier"`` footprint over the unit's pixels per row;
        with ``periods``, the ``winter`` / ``summer`` columns (m w.e., NaN: not observed) give seasonal
        ``"glacier"`` footprints on that period's block.
    profiles : pandas.DataFrame, optional
        ``obs_id``, ``year``, ``band_mid``, ``smb``: each band on the ``band_width`` lattice that holds
        pixels of the unit becomes an annual ``"band"`` footprint (other bands, e.g. 100 m bands, and bands
        without pixels are left out).
    band_width : float
        Band width (m).
    periods : mapping of str to (int, float), optional
        ``{"winter": (row offset, fraction), ...}``: where each season's block starts and its share of the
        year.
    stakes : pandas.DataFrame, optional
        ``obs_id``, ``year``, ``pixel`` (index into the pixel arrays, -1: off the glacier, left out),
        ``smb`` and optionally ``winter``, ``summer`` (m w.e., NaN: not observed): one-pixel ``"stake"``
        footprints.

    Returns
    -------
    glacgrid.models.footprint.Footprints
    """
    from ..models.footprint import Footprints

    n_pix = unit_pix.size
    years = np.asarray(years)
    periods = dict(periods or {})
    pos = {oid: i + 1 for i, oid in enumerate(units)}
    parts = []

    def add(frame, values, key_pix, key_obs, kind, band_mid, period="annual"):
        offset, fraction = (0, 1.0) if period == "annual" else periods[period]
        has = np.isfinite(values)
        frame, values, key_obs, band_mid = frame[has], values[has], key_obs[has], band_mid[has]
        yi = np.searchsorted(years, frame["year"].to_numpy())
        kept, indptr, rows, w = _grouped_rows(key_pix, key_obs, yi, n_pix, area_pix)
        if kept.size:
            f = frame.iloc[kept]
            parts.append(Footprints(values[kept], indptr, rows + offset, w, np.full(kept.size, kind),
                                    f["obs_id"].to_numpy(str), f["year"].to_numpy("int64"), band_mid[kept],
                                    np.full(kept.size, period), np.full(kept.size, fraction)))

    def each_period(frame, key_pix, key_obs, kind):
        nan = np.full(len(frame), np.nan)
        add(frame, frame["smb"].to_numpy("float64"), key_pix, key_obs, kind, nan)
        for period in periods:
            if period in frame:
                add(frame, frame[period].to_numpy("float64"), key_pix, key_obs, kind, nan, period)

    obs = observations[observations["obs_id"].isin(list(units)) & observations["year"].isin(years)]
    each_period(obs, unit_pix, obs["obs_id"].map(pos).to_numpy("int64"), "glacier")
    if profiles is not None and len(profiles):
        kb = np.floor(z_pix / band_width).astype("int64")
        kmin, nb = int(kb.min()), int(kb.max() - kb.min() + 1)
        lattice = np.isclose(np.mod(profiles["band_mid"], band_width), band_width / 2)
        prof = profiles[lattice & profiles["obs_id"].isin(list(units)) & profiles["year"].isin(years)]
        kobs = np.floor(prof["band_mid"].to_numpy() / band_width).astype("int64") - kmin
        inside = (kobs >= 0) & (kobs < nb)
        prof, kobs = prof[inside], kobs[inside]
        add(prof, prof["smb"].to_numpy("float64"), unit_pix * nb + (kb - kmin),
            prof["obs_id"].map(pos).to_numpy("int64") * nb + kobs, "band", prof["band_mid"].to_numpy("float64"))
    if stakes is not None and len(stakes):
        st = stakes[(stakes["pixel"] >= 0) & stakes["year"].isin(years)]
        each_period(st, np.arange(n_pix), st["pixel"].to_numpy("int64"), "stake")
    if not parts:
        raise ModelError(f"No observation of the units {list(units)} falls in the feature years "
                         f"{int(years[0])}-{int(years[-1])} on pixels of the grid.")
    return Footprints.concat(parts)


def read_band_profiles(cfg: RunConfig) -> pd.DataFrame | None:
    """The elevation-band profiles of ``[observations] profiles`` (default: the ``profile_WGMS-*.csv`` beside
    WGMS ``mbdata`` files), read with :func:`glacgrid.observations.read_profiles`; None when there are none."""
    o = cfg.observations
    files = dict.fromkeys(o.profiles) if o.profiles else (profile_files(o.files) if o.format == "wgms" else {})
    return read_profiles(files, id_column=o.id_column) if files else None


def kind_weights(cfg: RunConfig) -> dict[str, float]:
    """Loss share of each footprint group: glacier-wide annual 1, bands ``[model] band_weight``, annual
    stakes ``[model] stake_weight``, each seasonal group (glacier-wide or stake, winter or summer)
    ``[model] season_weight``."""
    m = cfg.model
    season = float(m.season_weight)
    return {"glacier": 1.0, "band": float(m.band_weight), "stake": float(m.stake_weight),
            "glacier_winter": season, "glacier_summer": season, "stake_winter": season, "stake_summer": season}


def balance_columns(table: pd.DataFrame) -> list[str]:
    """The key and balance columns of a training table or observation frame: ``obs_id``, ``year``, ``smb``
    and the seasonal ``winter`` / ``summer`` balances it has."""
    return ["obs_id", "year", "smb"] + [c for c in ("winter", "summer") if c in table]


def seasons_of(cfg: RunConfig, *frames: pd.DataFrame | None) -> tuple[str, ...]:
    """The seasons whose balances joint training fits: those with a ``[model] season_weight`` above 0 and at
    least one value in one of ``frames`` (observation or stake frames with ``winter`` / ``summer`` columns)."""
    if not cfg.model.season_weight > 0:
        return ()
    return tuple(p for p in ("winter", "summer")
                 if any(f is not None and p in f and f[p].notna().any() for f in frames))


def read_run_stakes(cfg: RunConfig) -> pd.DataFrame | None:
    """The stake balances of ``[observations] stakes`` (:func:`glacgrid.observations.read_stakes`); None
    without stakes."""
    o = cfg.observations
    return read_stakes(o.stakes, fmt=o.stake_format, id_column=o.id_column) if o.stakes else None


def place_stakes(stakes: pd.DataFrame, units: Sequence[str], unit_pix: np.ndarray, lon_pix: np.ndarray,
                 lat_pix: np.ndarray, area_pix: np.ndarray) -> pd.DataFrame:
    """``stakes`` with ``pixel``: the position, among the pixels given, of the nearest pixel of the stake's
    glacier within one pixel size (:func:`glacgrid.observations.stake_pixels`); -1 where there is none.

    Parameters
    ----------
    stakes : pandas.DataFrame
        :func:`glacgrid.observations.read_stakes`; a stake's glacier is the observation unit whose id equals
        its ``obs_id`` (stakes of other glaciers get -1).
    units : sequence of str
        The observation ids in unit order.
    unit_pix, lon_pix, lat_pix, area_pix : numpy.ndarray
        Per pixel of the footprints' matrix: unit (1-based), lon, lat (degrees), area (m2).

    Returns
    -------
    pandas.DataFrame
    """
    pos = {oid: i + 1 for i, oid in enumerate(units)}
    size = float(np.sqrt(np.median(area_pix)))
    st_unit = stakes["obs_id"].map(pos).fillna(0).to_numpy("int64")
    pixel = stake_pixels(stakes["lon"].to_numpy("float64"), stakes["lat"].to_numpy("float64"), st_unit,
                         np.asarray(lon_pix, "float64"), np.asarray(lat_pix, "float64"),
                         np.asarray(unit_pix).astype("int64"), size)
    return stakes.assign(pixel=pixel)


def stake_summary(stakes: pd.DataFrame | None) -> dict:
    """What ``footprints.json`` records of the stakes: how many were read and placed on a pixel."""
    if stakes is None:
        return {}
    return {"stakes": {"read": int(len(stakes)), "on_pixels": int((stakes["pixel"] >= 0).sum())}}


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
    glacier-wide balances of ``train`` (annual, and winter / summer with a ``[model] season_weight``), the band
    profiles and the stakes of ``[observations]``; write ``out/model`` and ``out/footprints.json``.

    Parameters
    ----------
    cfg : RunConfig
        The run.
    prep : Prepared
        The prepared grid, masks and downscaled climate.
    observed : ObservedUnits
        The observations linked to the outlines.
    train : pandas.DataFrame
        The training table (:func:`training_table`): its (``obs_id``, ``year``, ``smb``, ``winter``,
        ``summer``) rows are the glacier-wide footprints.
    out : Path
        Output directory.

    Returns
    -------
    SMBModel
        The fitted model (an ordinary artifact of its kind, applied blockwise as any other).
    """
    names = tuple(cfg.model.features)
    obs = train[balance_columns(train)]
    stakes = read_run_stakes(cfg)
    px = observed_pixels(cfg, prep, observed, sorted(train["year"].unique().tolist()), seasons_of(cfg, obs, stakes))
    if stakes is not None:
        on = np.asarray(px.unit.values).ravel() > 0
        stakes = place_stakes(stakes, px.units, *(np.asarray(v.values).ravel()[on]
                                                  for v in (px.unit, px.lon, px.lat, px.pixel_area)))
    X, fp = pixel_footprints(px.features, px.unit, px.surface, px.pixel_area, px.units, obs, read_band_profiles(cfg),
                             names=names, seasonal=px.seasonal, stakes=stakes)
    return save_joint_model(cfg, fit_joint(cfg, X, fp), out, stake_summary(stakes))


def save_joint_model(cfg: RunConfig, model, out: Path, extra: Mapping | None = None):
    """Write a jointly trained model: its artifact ``out/model`` and ``out/footprints.json`` (the training,
    the weights of each footprint group, the band fit, what each group held, and ``extra``, e.g. how many
    stakes were read and placed); returns ``model``."""
    from ..models.schema import write_json_atomic

    model.to_artifact(Path(out) / "model")
    write_json_atomic(Path(out) / "footprints.json", {"training": "joint", "kind_weights": kind_weights(cfg),
                                                      "band_fit": cfg.model.band_fit,
                                                      "footprints": model.training_.get("footprints", {}),
                                                      **dict(extra or {})})
    return model
