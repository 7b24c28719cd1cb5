"""Validation of a run against observations: reconstruction cross-validation (LOGO, LOYO, ... on the
gridded path), elevation-band profiles, and area and volume change of an evolution run.

Works for any run config with ``[observations]``. The reconstruction cross-validation computes the pixel
features of the observed glaciers once (cropped to their bounding box, held in memory) and, for every
fold, fits the configured model on the other folds' (glacier, year) rows of the training table and
reconstructs the held-out glacier-years through the gridded path: pixel SMB from
:func:`glacgrid.inference.predict_pixels`, aggregated area-weighted over the glacier (or its linked
divides) with flox. For a linear model this equals the model's own cross-validation on glacier features
(every glacier feature is the area-weighted mean of its pixel feature).

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

from . import features as feat
from .exceptions import InputDataError, ModelError
from .inference import glacier_mean, predict_pixels
from .observations import profile_files, read_areas, read_observations, read_profiles, unit_raster

__all__ = ["ObservedPixels", "ReconstructionCV", "BandComparison", "EvolutionComparison", "ValidationReport",
           "metrics", "vertical_gradient", "observed_pixels", "reconstruction_cv", "band_means",
           "compare_bands", "compare_evolution", "validate"]

#: Elevation bands of the WGMS profiles: 50 m wide, edges on multiples of 50 m (mid-elevations ..25, ..75).
BAND_WIDTH = 50.0
BAND_BASE = 0.0


def metrics(observed, modelled) -> dict[str, float]:
    """``n``, ``r`` (NaN for fewer than 3 pairs or a constant series), ``rmse``, ``mae`` and ``bias``
    (mean of modelled - observed) over the pairs where both are finite."""
    from .models._kernels import regression_metrics

    o, m = np.asarray(observed, "float64"), np.asarray(modelled, "float64")
    ok = np.isfinite(o) & np.isfinite(m)
    scores = regression_metrics(o[ok], m[ok])
    n = int(ok.sum())
    return {"n": n, "r": scores["r"] if n > 2 else np.nan,
            **{k: scores[k] for k in ("rmse", "mae", "bias")}}


def vertical_gradient(elevation, smb) -> float:
    """Least-squares slope of ``smb`` (m w.e.) against ``elevation`` (m), in m w.e. per 100 m."""
    z, v = np.asarray(elevation, "float64"), np.asarray(smb, "float64")
    ok = np.isfinite(z) & np.isfinite(v)
    if ok.sum() < 2 or np.ptp(z[ok]) == 0:
        return np.nan
    return float(np.polyfit(z[ok], v[ok], 1)[0] * 100.0)


def _table(rows: dict[str, dict], label: str = "obs_id") -> pd.DataFrame:
    return pd.DataFrame([{label: k, **v} for k, v in rows.items()])


# --------------------------------------------------------------------------------------------- pixels
@dataclass
class ObservedPixels:
    """Pixel features of the observed glaciers, computed once and reused by every fold.

    ``features`` (year, y, x) and the other arrays are numpy-backed, cropped to the bounding box of the
    observed glaciers; ``unit`` is the observation unit (1-based position in ``units``, 0 = none) of each
    pixel: a glacier linked to several outlines (divides) is one unit.
    """

    features: xr.Dataset
    unit: xr.DataArray
    pixel_area: xr.DataArray
    surface: xr.DataArray
    units: list[str]
    names: dict[str, str] = field(default_factory=dict)

    @property
    def index(self) -> np.ndarray:
        return np.arange(1, len(self.units) + 1)


def observed_pixels(cfg, prep, units: Sequence[str], unit_of_outline: np.ndarray, years: Sequence[int]) -> ObservedPixels:
    """Pixel features of every outline that belongs to an observed unit, on the run's geometry.

    The features are those of a reconstruction run on the grid DEM (static geometry; glacier constants
    per outline, all glacier pixels active), for hydrological years ``min(years)..max(years)``; computed
    once and held in memory.
    """
    s = prep.static
    gid = s["glacier_id"]
    unit = unit_raster(gid, unit_of_outline)
    rows = (unit > 0).any("x").values
    cols = (unit > 0).any("y").values
    if not rows.any():
        raise InputDataError(f"None of the observed glaciers {list(units)} has a pixel on the grid; check the "
                             "outlines, [observations] links and the grid extent.")
    ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
    window = {"y": slice(int(ys[0]), int(ys[-1]) + 1), "x": slice(int(xs[0]), int(xs[-1]) + 1)}
    active = gid > 0
    index = prep.index
    const = feat.glacier_constants(gid, s["surface"], active, s["pixel_area"], index).compute()
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
    tab = prep.table
    outline_names = {}
    for pos, oid in enumerate(units, start=1):
        members = tab.index[np.asarray(unit_of_outline)[tab.index.to_numpy()] == pos]
        outline_names[oid] = next((str(n).strip() for n in tab.loc[members, "name"] if str(n).strip()), oid)
    return ObservedPixels(pix, crop["unit"], crop["pixel_area"], crop["surface"], list(units), outline_names)


def _reconstruct(model, px: ObservedPixels, features: Sequence[str], years: Sequence[int]):
    """Gridded SMB (year, y, x) of the observed pixels and its area-weighted mean per unit (year, glacier)."""
    smb = predict_pixels(model, px.features.sel(year=list(years)), features)
    gl = glacier_mean(smb, px.unit, px.unit > 0, px.pixel_area, px.index)
    return smb, gl


# ------------------------------------------------------------------------------------ reconstruction
@dataclass
class ReconstructionCV:
    """Out-of-fold reconstruction skill.

    ``predictions``: one row per observed (glacier, year): ``obs_id``, ``name``, ``year``, ``fold``,
    ``observed``, ``reconstructed`` (gridded path) and ``direct`` (the same fold model on the glacier
    features of the training table). ``metrics``: per glacier and ``pooled``: ``n``, ``r``, ``rmse``,
    ``mae``, ``bias`` of the reconstruction and ``direct_r``, ``direct_rmse``, ``direct_bias``.
    ``smb``: the out-of-fold gridded SMB (year, y, x) of the observed pixels (each glacier-year from the
    model that did not see it; NaN where not observed).
    """

    scheme: str
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    smb: xr.DataArray


def _fit(cfg, X: np.ndarray, y: np.ndarray):
    from .pipeline import build_model

    model, schema = build_model(cfg)  # an ensemble model predicts its member mean
    return model.fit(X, y, schema)


def reconstruction_cv(cfg, train: pd.DataFrame, px: ObservedPixels, scheme: str = "logo", *, k: int = 2,
                      n_splits: int = 5) -> ReconstructionCV:
    """Cross-validate the reconstruction of the observed glacier-years through the gridded path.

    ``train`` is the training table of :func:`glacgrid.pipeline.training_table` (``obs_id``, ``year``,
    ``smb`` and the model features). Folds are those of :func:`glacgrid.models.folds.make_folds`
    (``logo``, ``loyo``, ``lsygo``, ``kfold``; each row is held out exactly once).
    """
    from .models.folds import make_folds

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
    unit_np = px.unit.values
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
        values = smb.values
        for j, yr in enumerate(years):
            held = [pos[u] for u in tab.loc[tab["year"] == yr, "obs_id"]]
            mask = np.isin(unit_np, held)
            i = int(np.searchsorted(years_all, yr))
            field_oos[i][mask] = values[j][mask]
    pred = pd.DataFrame({"obs_id": train["obs_id"].to_numpy(), "year": train["year"].to_numpy(), "fold": fold_of,
                         "observed": y, "reconstructed": rec, "direct": direct})
    pred.insert(1, "name", pred["obs_id"].map(px.names))
    rows = {}
    for oid, g in [*pred.groupby("obs_id", sort=True), ("pooled", pred)]:
        one = metrics(g["observed"], g["reconstructed"])
        d = metrics(g["observed"], g["direct"])
        rows[oid] = {"name": px.names.get(oid, ""), **one, "direct_r": d["r"], "direct_rmse": d["rmse"],
                     "direct_bias": d["bias"]}
    smb_oos = xr.DataArray(field_oos, dims=("year", "y", "x"),
                           coords={"year": years_all, "y": px.unit["y"], "x": px.unit["x"]}, name="smb")
    return ReconstructionCV(scheme, pred, _table(rows), smb_oos)


# ---------------------------------------------------------------------------------------------- bands
def band_means(smb: xr.DataArray, surface: xr.DataArray, unit: xr.DataArray, pixel_area: xr.DataArray,
               index: np.ndarray, *, width: float = BAND_WIDTH, base: float = BAND_BASE) -> xr.DataArray:
    """Area-weighted mean of ``smb`` per glacier (``unit`` raster, ``index``) and elevation band.

    A pixel belongs to band ``floor((surface - base) / width)``; the result has dims (..., ``glacier``,
    ``band_mid``) with ``band_mid = base + (k + 0.5) * width`` over every band that holds a glacier pixel
    (NaN where a glacier has no pixel in a band). One flox reduction over a combined (glacier, band) label.
    """
    if width <= 0:
        raise InputDataError(f"Band width must be positive (m); got {width}.")
    index = np.asarray(index)
    on = (unit > 0) & surface.notnull()
    kb = np.floor((surface - base) / width)
    kmin, kmax = (int(v) for v in xr.Dataset({"a": kb.where(on).min(), "b": kb.where(on).max()}).compute()
                  .to_array().values)
    nb = kmax - kmin + 1
    label = (unit.astype("int64") * nb + (kb.where(on, kmin) - kmin).astype("int64")).where(on, -1)
    labels = (index[:, None] * nb + np.arange(nb)[None, :]).ravel()
    mean = feat.area_weighted_mean(smb, label, on, pixel_area, labels)
    out = mean.data.reshape(*mean.shape[:-1], index.size, nb)
    dims = (*mean.dims[:-1], "glacier", "band_mid")
    coords = {d: mean[d] for d in mean.dims[:-1] if d in mean.coords}
    coords.update(glacier=index, band_mid=base + (np.arange(kmin, kmax + 1) + 0.5) * width)
    return xr.DataArray(out, dims=dims, coords=coords, name="smb_band", attrs={"units": "m w.e.",
                        "long_name": "area-weighted mean surface mass balance of the elevation band"})


@dataclass
class BandComparison:
    """Modelled vs observed elevation-band SMB.

    ``pairs``: ``obs_id``, ``year``, ``band_mid``, ``observed``, ``modelled`` (m w.e.) where both exist.
    ``per_band``: mean over years per glacier and band. ``metrics``: per glacier and ``pooled`` over the
    band-years: ``n``, ``r``, ``rmse``, ``mae``, ``bias``, and the mean vertical gradient (least squares
    over the band-years, m w.e. per 100 m) ``gradient_observed`` and ``gradient_modelled``.
    ``skipped``: observed values on bands that are not ``width`` wide on the ``base`` lattice.
    """

    pairs: pd.DataFrame
    per_band: pd.DataFrame
    metrics: pd.DataFrame
    skipped: int


def compare_bands(modelled: xr.DataArray, profiles: pd.DataFrame, units: Sequence[str], *,
                  names: dict[str, str] | None = None, width: float = BAND_WIDTH,
                  base: float = BAND_BASE) -> BandComparison:
    """Compare :func:`band_means` (year, glacier, band_mid) with observed profiles (:func:`read_profiles`)."""
    names = names or {}
    on_lattice = np.isclose(np.mod(profiles["band_mid"] - base, width), width / 2)
    obs = profiles[on_lattice & profiles["obs_id"].isin(list(units))]
    mod = modelled.to_dataframe(name="modelled").reset_index()
    mod["obs_id"] = np.asarray(list(units), dtype=object)[mod["glacier"].to_numpy() - 1]
    pairs = obs.rename(columns={"smb": "observed"}).merge(mod[["obs_id", "year", "band_mid", "modelled"]],
                                                          on=["obs_id", "year", "band_mid"], how="inner")
    pairs = pairs.dropna(subset=["observed", "modelled"])[["obs_id", "year", "band_mid", "observed", "modelled"]]
    per_band = (pairs.groupby(["obs_id", "band_mid"]).agg(n=("year", "size"), observed=("observed", "mean"),
                                                          modelled=("modelled", "mean")).reset_index())
    rows = {}
    for oid, g in [*pairs.groupby("obs_id", sort=True), ("pooled", pairs)]:
        if oid == "pooled":
            # the pooled gradient is the mean of the glaciers' gradients (each glacier its own fit)
            go = np.nanmean([rows[k]["gradient_observed"] for k in rows]) if rows else np.nan
            gm = np.nanmean([rows[k]["gradient_modelled"] for k in rows]) if rows else np.nan
        else:
            go, gm = vertical_gradient(g["band_mid"], g["observed"]), vertical_gradient(g["band_mid"], g["modelled"])
        rows[oid] = {"name": names.get(oid, ""), **metrics(g["observed"], g["modelled"]),
                     "gradient_observed": go, "gradient_modelled": gm}
    return BandComparison(pairs.reset_index(drop=True), per_band, _table(rows), int((~on_lattice).sum()))


# ------------------------------------------------------------------------------------------ evolution
@dataclass
class EvolutionComparison:
    """Area and volume of an evolution run against the WGMS record of the observed glaciers.

    ``yearly``: per glacier (and ``member`` when the run has several) and year: modelled area at the
    end of the year and WGMS AREA (km2); cumulative volume change since the start of the run, modelled
    (store volume minus the initial volume) and WGMS glaciological (sum of annual balance x AREA x
    rho_w / rho_i), in km3 of ice; modelled and WGMS glacier-wide SMB (m w.e.).
    ``summary``: per glacier the initial and final areas, their change (km2 and %), and the volume change
    over the whole period, modelled vs WGMS.
    """

    yearly: pd.DataFrame
    summary: pd.DataFrame


def _unit_sums(ds: xr.Dataset, unit: xr.DataArray, index: np.ndarray) -> xr.Dataset:
    from flox.xarray import xarray_reduce

    return xarray_reduce(ds.fillna(0.0), unit.rename("glacier"), func="sum", expected_groups=(np.asarray(index),),
                         fill_value=0.0, engine="flox")


def compare_evolution(results: xr.Dataset, prep, units: Sequence[str], unit_of_outline: np.ndarray,
                      observed: pd.DataFrame, areas: pd.DataFrame, *, rho_ice: float = 900.0,
                      rho_water: float = 1000.0, names: dict[str, str] | None = None) -> EvolutionComparison:
    """Compare an evolution results store (``glacier_area``, ``volume``, ``smb_glacier`` per outline and
    year) with WGMS annual balances (``observed``: ``obs_id``, ``year``, ``smb``) and areas (``areas``:
    ``obs_id``, ``year``, ``area_km2``). Outlines linked to one observation are summed; the initial area
    and volume come from ``prep.static`` (ice pixels of the initial thickness). WGMS years without AREA
    take the area interpolated linearly in time (held constant beyond the record)."""
    names = names or {}
    u_of = np.asarray(unit_of_outline)
    index = np.arange(1, len(units) + 1)
    s = prep.static
    unit = xr.apply_ufunc(lambda g: u_of[g], s["glacier_id"], dask="parallelized", output_dtypes=["int32"])
    ice = s["thickness"].fillna(0.0) > 0
    init = _unit_sums(xr.Dataset({"area": s["pixel_area"].where(ice, 0.0) / 1e6,
                                  "volume": (s["thickness"] * s["pixel_area"]).where(ice, 0.0) / 1e9}),
                      unit, index).compute()
    outline_unit = xr.DataArray(u_of[results["glacier"].values], dims="glacier")
    per = results[["glacier_area", "volume", "smb_glacier"]]
    per = per.assign(area_w=results["smb_glacier"] * results["glacier_area"]).compute()
    keep = outline_unit > 0
    grouped = per.isel(glacier=keep.values).assign_coords(glacier=outline_unit[keep].values)
    sums = grouped[["glacier_area", "volume", "area_w"]].groupby("glacier").sum(min_count=1)
    sums["smb_glacier"] = sums["area_w"] / sums["glacier_area"].where(sums["glacier_area"] > 0)
    ratio = rho_water / rho_ice
    rows, summary = [], []
    dims = [d for d in ("member",) if d in sums.dims]
    frame = sums.drop_vars("area_w").to_dataframe().reset_index()
    for pos, oid in enumerate(units, start=1):
        obs = observed[observed["obs_id"] == oid].set_index("year")["smb"]
        ar = areas[areas["obs_id"] == oid].set_index("year")["area_km2"].sort_index()
        years = np.arange(int(results["year"].min()), int(results["year"].max()) + 1)
        if ar.empty:
            a_obs = pd.Series(np.nan, index=years)
        else:
            a_obs = pd.Series(np.interp(years, ar.index.to_numpy(), ar.to_numpy()), index=years)
        b = obs.reindex(years)
        dv_obs = (b * a_obs * 1e-3 * ratio).cumsum(skipna=False)
        a0, v0 = float(init["area"].sel(glacier=pos)), float(init["volume"].sel(glacier=pos))
        mine = frame[frame["glacier"] == pos]
        for keys, g in (mine.groupby(dims) if dims else [((), mine)]):
            g = g.set_index("year").reindex(years)
            part = pd.DataFrame({"obs_id": oid, "name": names.get(oid, ""), "year": years,
                                 "area_model": g["glacier_area"].to_numpy(), "area_wgms": a_obs.to_numpy(),
                                 "dv_model": g["volume"].to_numpy() - v0, "dv_wgms": dv_obs.to_numpy(),
                                 "smb_model": g["smb_glacier"].to_numpy(), "smb_wgms": b.to_numpy()})
            for d, k in zip(dims, keys if isinstance(keys, tuple) else (keys,)):
                part.insert(1, d, k)
            rows.append(part)
            first = int(years[0])
            row = {"obs_id": oid, "name": names.get(oid, ""), **dict(zip(dims, keys if isinstance(keys, tuple) else (keys,))),
                   "start": first, "end": int(years[-1]),
                   "area_start_model": a0, "area_end_model": float(part["area_model"].iloc[-1]),
                   "area_start_wgms": float(ar.get(first, np.nan)) if not ar.empty else np.nan,
                   "area_end_wgms": float(ar.get(int(years[-1]), np.nan)) if not ar.empty else np.nan,
                   "volume_start_model": v0,
                   "dv_model": float(part["dv_model"].iloc[-1]), "dv_wgms": float(part["dv_wgms"].iloc[-1])}
            row["d_area_model"] = row["area_end_model"] - row["area_start_model"]
            row["d_area_wgms"] = row["area_end_wgms"] - row["area_start_wgms"]
            row["d_area_model_pct"] = 100 * row["d_area_model"] / a0 if a0 > 0 else np.nan
            row["d_area_wgms_pct"] = (100 * row["d_area_wgms"] / row["area_start_wgms"]
                                      if row["area_start_wgms"] > 0 else np.nan)
            summary.append(row)
    return EvolutionComparison(pd.concat(rows, ignore_index=True), pd.DataFrame(summary))


# --------------------------------------------------------------------------------------------- report
@dataclass
class ValidationReport:
    """Everything :func:`validate` measured; :meth:`write` saves CSVs and ``validation.md``."""

    name: str
    reconstruction: dict[str, ReconstructionCV]
    bands: BandComparison | None = None
    evolution: EvolutionComparison | None = None
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        def fmt(df: pd.DataFrame, cols: list[str]) -> str:
            head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
            body = ""
            for _, r in df.iterrows():
                cells = [f"{r[c]:.3f}" if isinstance(r[c], (float, np.floating)) else str(r[c]) for c in cols]
                body += "| " + " | ".join(cells) + " |\n"
            return head + body

        out = [f"## Validation of `{self.name}`\n"]
        for scheme, cv in self.reconstruction.items():
            out.append(f"### Reconstruction, {scheme.upper()} (gridded path) vs observed glacier-wide SMB (m w.e.)\n")
            out.append(fmt(cv.metrics, ["obs_id", "name", "n", "r", "rmse", "bias", "direct_r", "direct_rmse",
                                        "direct_bias"]))
        if self.bands is not None:
            out.append("### 50 m elevation bands, modelled (LOGO, out of sample) vs WGMS profiles\n")
            out.append(fmt(self.bands.metrics, ["obs_id", "name", "n", "r", "rmse", "bias", "gradient_observed",
                                                "gradient_modelled"]))
            out.append("Gradients in m w.e. per 100 m.\n")
        if self.evolution is not None:
            out.append("### Evolution run: area and volume change vs WGMS\n")
            out.append(fmt(self.evolution.summary, [c for c in ["obs_id", "name", "member", "area_start_model",
                       "area_end_model", "d_area_model_pct", "area_start_wgms", "area_end_wgms", "d_area_wgms_pct",
                       "dv_model", "dv_wgms"] if c in self.evolution.summary]))
            out.append("Areas in km2, volume changes in km3 of ice.\n")
        if self.notes:
            out.append("Notes:\n\n" + "".join(f"- {n}\n" for n in self.notes))
        return "\n".join(out)

    def write(self, directory: str | Path) -> dict[str, Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        files = {}
        for scheme, cv in self.reconstruction.items():
            files[f"{scheme}_metrics"] = d / f"reconstruction_{scheme}_metrics.csv"
            cv.metrics.to_csv(files[f"{scheme}_metrics"], index=False)
            files[f"{scheme}_predictions"] = d / f"reconstruction_{scheme}_predictions.csv"
            cv.predictions.to_csv(files[f"{scheme}_predictions"], index=False)
        if self.bands is not None:
            for part in ("metrics", "per_band", "pairs"):
                files[f"bands_{part}"] = d / f"bands_{part}.csv"
                getattr(self.bands, part).to_csv(files[f"bands_{part}"], index=False)
        if self.evolution is not None:
            for part in ("summary", "yearly"):
                files[f"evolution_{part}"] = d / f"evolution_{part}.csv"
                getattr(self.evolution, part).to_csv(files[f"evolution_{part}"], index=False)
        files["markdown"] = d / "validation.md"
        files["markdown"].write_text(self.markdown(), encoding="utf-8")
        return files


def validate(cfg, out: str | Path, *, schemes: Sequence[str] = ("logo", "loyo"),
             profiles: Sequence[str | Path] | None = None, evolve: bool | None = None, prep=None) -> ValidationReport:
    """Validate the run described by ``cfg`` against its observations; intermediate stores in ``out/work``.

    1. reconstruction cross-validation for each of ``schemes`` (:func:`reconstruction_cv`);
    2. the out-of-sample (first scheme) gridded SMB in 50 m bands against the WGMS profiles
       (``profiles``, default: the ``profile_WGMS-*.csv`` beside WGMS ``[observations] files``);
    3. when ``evolve`` (default: ``cfg.mode == "evolve"``), a full ``glacgrid run`` of ``cfg`` into
       ``out/run`` and its area and volume against the WGMS AREA and glaciological record.
    """
    from .pipeline import prepare, run, training_table
    from . import cube as cube_mod

    from .models.folds import SCHEMES

    bad = [s for s in schemes if s not in SCHEMES or s == "random"]
    if bad or not schemes:
        raise ModelError(f"Validation schemes {bad or list(schemes)} are not usable; give one or more of "
                         "logo, loyo, lsygo, kfold (random holds out only 15 % of the rows).")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prep = prep if prep is not None else prepare(cfg, out / "work")
    train, units, unit_of_outline = training_table(cfg, prep)
    years = sorted(train["year"].unique().tolist())
    px = observed_pixels(cfg, prep, units, unit_of_outline, years)
    fmt = cfg.observations.format
    names = dict(px.names)
    notes = list(prep.notes)
    if fmt == "wgms":
        meta = read_areas(cfg.observations.files, id_column=cfg.observations.id_column)
        names.update(meta.drop_duplicates("obs_id").set_index("obs_id")["name"].to_dict())
        px.names = names
    recon = {s: reconstruction_cv(cfg, train, px, s) for s in schemes}
    bands = None
    files = dict.fromkeys(profiles) if profiles is not None else (profile_files(cfg.observations.files) if fmt == "wgms" else {})
    if files:
        prof = read_profiles(files, id_column=cfg.observations.id_column)
        first = recon[schemes[0]]
        modelled = band_means(first.smb, px.surface, px.unit, px.pixel_area, px.index)
        bands = compare_bands(modelled, prof, units, names=names)
        if bands.skipped:
            notes.append(f"{bands.skipped} observed band values lie on bands other than 50 m wide with edges on "
                         "multiples of 50 m (e.g. 100 m bands) and were not compared.")
    else:
        notes.append("no elevation-band profiles found: band comparison skipped")
    evolution = None
    if (cfg.mode == "evolve") if evolve is None else evolve:
        if fmt != "wgms":
            raise InputDataError("The evolution comparison needs WGMS mbdata files (AREA per year) in [observations].")
        if not cfg.glaciers.thickness:
            raise InputDataError("The evolution comparison needs an initial ice thickness: set [glaciers] thickness "
                                 "(e.g. the Farinotti et al. 2019 rasters of the observed glaciers) or pass --no-evolve.")
        run_cfg = dataclasses.replace(cfg, mode="evolve",
                                      output=dataclasses.replace(cfg.output, directory=out / "run", plot=False))
        result = run(run_cfg, progress=False)
        results = cube_mod.open_store(result.output / "results.zarr")
        obs = read_observations(cfg.observations.files, fmt=fmt, id_column=cfg.observations.id_column)
        evolution = compare_evolution(results, prep, units, unit_of_outline, obs, meta, rho_ice=cfg.geometry.rho_ice,
                                      rho_water=cfg.geometry.rho_water, names=names)
    return ValidationReport(cfg.name, recon, bands, evolution, notes)
