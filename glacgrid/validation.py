"""Validation science: skill scores, elevation-band profiles, and area and volume change of an evolution
run against observations.

The results are frames held by dataclasses (:class:`ReconstructionCV`, :class:`BandComparison`,
:class:`EvolutionComparison`), collected in a :class:`ValidationReport` that writes CSVs and
``validation.md``. The runner that prepares a run, cross-validates the reconstruction
through the gridded path and fills the report is :func:`glacgrid.pipeline.validate`
(``glacgrid validate``).

Typical use::

    from glacgrid.pipeline import validate

    report = validate(load_config("examples/hef_evolve.toml"), "validation-output")
    print(report.markdown())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .atomic import atomic_path, write_csv
from .exceptions import InputDataError
from .glaciers import area_weighted_mean, glacier_sums
from .models import regression_metrics
from .observations import ObservedUnits, unit_raster
from .units import factor, m2_to_km2, m3_to_km3

__all__ = ["ReconstructionCV", "BandComparison", "EvolutionComparison", "ValidationReport", "metrics",
           "vertical_gradient", "reconstruction_metrics", "band_means", "compare_bands", "compare_evolution",
           "equilibrium_line", "profile_gradients", "seasonal_metrics", "side_by_side"]

#: Elevation bands of the WGMS profiles: 50 m wide, edges on multiples of 50 m (mid-elevations ..25, ..75).
BAND_WIDTH = 50.0
BAND_BASE = 0.0


def metrics(observed, modelled) -> dict[str, float]:
    """``n``, ``r`` (NaN for fewer than 3 pairs or a constant series), ``rmse``, ``mae`` and ``bias``
    (mean of modelled - observed) over the pairs where both are finite."""
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


# ------------------------------------------------------------------------------------ reconstruction
@dataclass
class ReconstructionCV:
    """Out-of-fold reconstruction skill (:func:`glacgrid.pipeline.reconstruction_cv`).

    ``predictions``: one row per observed (glacier, year): ``obs_id``, ``name``, ``year``, ``fold``,
    ``observed``, ``reconstructed`` (gridded path) and ``direct`` (the same fold model on the glacier
    features of the training table). ``metrics``: per glacier and ``pooled``
    (:func:`reconstruction_metrics`). ``smb``: the out-of-fold gridded SMB (year, y, x) of the observed
    pixels (each glacier-year from the model that did not see it; NaN where not observed).
    ``training``: ``glacier`` (fitted on glacier-wide rows) or ``joint`` (glacier-wide and band footprints).
    ``seasonal``: held-out winter and summer balances (``obs_id``, ``year``, ``period``, ``fold``,
    ``observed``, ``reconstructed``: :func:`glacgrid.models.footprint.footprint_predictions`) when they were
    asked for, else None.
    """

    scheme: str
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    smb: xr.DataArray
    training: str = "glacier"
    seasonal: pd.DataFrame | None = None


def reconstruction_metrics(predictions: pd.DataFrame, names: dict[str, str] | None = None) -> pd.DataFrame:
    """Skill of the reconstruction per glacier and ``pooled`` over all of them.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Columns ``obs_id``, ``observed``, ``reconstructed`` and ``direct`` (m w.e.).
    names : dict of str to str, optional
        Glacier names by ``obs_id`` (``""`` where missing).

    Returns
    -------
    pandas.DataFrame
        One row per ``obs_id`` (sorted) and a last row ``pooled``: ``name``, ``n``, ``r``, ``rmse``,
        ``mae``, ``bias`` of the reconstruction (:func:`metrics`) and ``direct_r``, ``direct_rmse``,
        ``direct_bias`` of the direct predictions.
    """
    names = names or {}
    rows = {}
    for oid, g in [*predictions.groupby("obs_id", sort=True), ("pooled", predictions)]:
        one = metrics(g["observed"], g["reconstructed"])
        d = metrics(g["observed"], g["direct"])
        rows[oid] = {"name": names.get(oid, ""), **one, "direct_r": d["r"], "direct_rmse": d["rmse"],
                     "direct_bias": d["bias"]}
    return _table(rows)


# ---------------------------------------------------------------------------------------------- bands
def band_means(smb: xr.DataArray, surface: xr.DataArray, unit: xr.DataArray, pixel_area: xr.DataArray,
               index: np.ndarray, *, width: float = BAND_WIDTH, base: float = BAND_BASE) -> xr.DataArray:
    """Area-weighted mean of ``smb`` per glacier (``unit`` raster, ``index``) and elevation band.

    A pixel belongs to band ``floor((surface - base) / width)``; the result has dims (..., ``glacier``,
    ``band_mid``) with ``band_mid = base + (k + 0.5) * width`` over every band that holds a glacier pixel
    (NaN where a glacier has no pixel in a band). One flox reduction over a combined (glacier, band) label.
    """
    if width <= 0:
        raise InputDataError(f"Band width must be positive (m); got {float(width):g}.")
    index = np.asarray(index)
    on = (unit > 0) & surface.notnull()
    kb = np.floor((surface - base) / width)
    kmin, kmax = (int(v) for v in xr.Dataset({"a": kb.where(on).min(), "b": kb.where(on).max()}).compute()
                  .to_array().values)
    nb = kmax - kmin + 1
    label = (unit.astype("int64") * nb + (kb.where(on, kmin) - kmin).astype("int64")).where(on, -1)
    labels = (index[:, None] * nb + np.arange(nb)[None, :]).ravel()
    mean = area_weighted_mean(smb, label, on, pixel_area, labels)
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
    """Compare :func:`band_means` (year, glacier, band_mid) with observed profiles
    (:func:`glacgrid.observations.read_profiles`)."""
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


def equilibrium_line(band_mid, smb) -> float:
    """Equilibrium-line altitude (m) of a mean profile: the lowest band whose mean balance is >= 0,
    interpolated linearly with the band below it; NaN when no band is >= 0 or the lowest one already is."""
    z, v = np.asarray(band_mid, "float64"), np.asarray(smb, "float64")
    order = np.argsort(z)
    z, v = z[order], v[order]
    k = np.flatnonzero(v >= 0)
    if k.size == 0 or k[0] == 0:
        return np.nan
    i = k[0]
    return float(z[i - 1] + (0.0 - v[i - 1]) * (z[i] - z[i - 1]) / (v[i] - v[i - 1]))


def profile_gradients(pairs: pd.DataFrame) -> pd.DataFrame:
    """Band gradients of each glacier below and above its equilibrium line.

    Parameters
    ----------
    pairs : pandas.DataFrame
        ``obs_id``, ``year``, ``band_mid``, ``observed``, ``modelled`` (:attr:`BandComparison.pairs`).

    Returns
    -------
    pandas.DataFrame
        One row per ``obs_id``: ``ela`` (m, :func:`equilibrium_line` of the observed mean profile) and, for
        the band-years below (``below``) and at or above (``above``) it, the least-squares gradients
        (m w.e. per 100 m, :func:`vertical_gradient`) ``gradient_observed_<part>``,
        ``gradient_modelled_<part>`` and their ratio ``gradient_ratio_<part>`` (modelled / observed).
        Without an ELA every band counts as below.
    """
    rows = {}
    for oid, g in pairs.groupby("obs_id", sort=True):
        mean = g.groupby("band_mid")["observed"].mean()
        ela = equilibrium_line(mean.index.to_numpy(), mean.to_numpy())
        row = {"ela": ela}
        below = g["band_mid"] < ela if np.isfinite(ela) else np.ones(len(g), dtype=bool)
        for part, sel in (("below", below), ("above", ~below)):
            part_g = g[np.asarray(sel)]
            go = vertical_gradient(part_g["band_mid"], part_g["observed"])
            gm = vertical_gradient(part_g["band_mid"], part_g["modelled"])
            row.update({f"gradient_observed_{part}": go, f"gradient_modelled_{part}": gm,
                        f"gradient_ratio_{part}": gm / go if np.isfinite(go) and go != 0 else np.nan})
        rows[oid] = row
    return _table(rows)


def seasonal_metrics(seasonal: pd.DataFrame) -> pd.DataFrame:
    """Skill on the seasonal balances per glacier and ``pooled``: ``<period>_n``, ``<period>_r``,
    ``<period>_rmse``, ``<period>_bias`` for each period of ``seasonal`` (:attr:`ReconstructionCV.seasonal`)."""
    out = None
    for period, g in seasonal.groupby("period", sort=True):
        t = _table({oid: {f"{period}_{k}": v for k, v in metrics(h["observed"], h["reconstructed"]).items()
                          if k != "mae"} for oid, h in [*g.groupby("obs_id", sort=True), ("pooled", g)]})
        out = t if out is None else out.merge(t, on="obs_id", how="outer")
    return out


def side_by_side(reconstruction: dict[str, ReconstructionCV], bands: dict[str, BandComparison]) -> pd.DataFrame:
    """Glacier-wide skill, band skill and band gradients below/above the ELA of every (training, scheme).

    Returns
    -------
    pandas.DataFrame
        One row per reconstruction key and glacier (and ``pooled``): ``key``, ``training``, ``scheme``,
        ``obs_id``, ``name``, glacier-wide ``r``, ``rmse``, ``bias``, band ``band_n``, ``band_rmse``,
        ``band_bias`` and the columns of :func:`profile_gradients` (pooled: their mean over the glaciers).
    """
    frames = []
    for key, cv in reconstruction.items():
        gl = cv.metrics[["obs_id", "name", "r", "rmse", "bias"]].copy()
        gl.insert(0, "scheme", cv.scheme)
        gl.insert(0, "training", cv.training)
        gl.insert(0, "key", key)
        b = bands.get(key)
        if b is not None:
            bm = b.metrics[["obs_id", "n", "rmse", "bias"]].rename(columns={"n": "band_n", "rmse": "band_rmse",
                                                                            "bias": "band_bias"})
            grads = profile_gradients(b.pairs)
            if len(grads):
                pooled = grads.drop(columns="obs_id").mean().to_dict()
                grads = pd.concat([grads, pd.DataFrame([{"obs_id": "pooled", **pooled}])], ignore_index=True)
            gl = gl.merge(bm, on="obs_id", how="left").merge(grads, on="obs_id", how="left")
        if cv.seasonal is not None and len(cv.seasonal):
            gl = gl.merge(seasonal_metrics(cv.seasonal), on="obs_id", how="left")
        frames.append(gl)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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


def _initial_state(static: xr.Dataset, unit: xr.DataArray, index: np.ndarray) -> xr.Dataset:
    """Area (km2) and volume (km3) of the initial ice (pixels with a thickness > 0) of each unit, computed."""
    ice = static["thickness"].fillna(0.0) > 0
    ds = xr.Dataset({"area": m2_to_km2(static["pixel_area"].where(ice, 0.0)),
                     "volume": m3_to_km3((static["thickness"] * static["pixel_area"]).where(ice, 0.0))})
    return glacier_sums(ds.fillna(0.0), unit, index).compute()


def _unit_series(results: xr.Dataset, unit_of_outline: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    """Per unit (its outlines summed), year (and member): ``glacier_area``, ``volume`` and the
    area-weighted ``smb_glacier``; and the extra dims (``member``) of the frame."""
    outline_unit = xr.DataArray(np.asarray(unit_of_outline)[results["glacier"].values], dims="glacier")
    per = results[["glacier_area", "volume", "smb_glacier"]]
    per = per.assign(area_w=results["smb_glacier"] * results["glacier_area"]).compute()
    keep = outline_unit > 0
    grouped = per.isel(glacier=keep.values).assign_coords(glacier=outline_unit[keep].values)
    sums = grouped[["glacier_area", "volume", "area_w"]].groupby("glacier").sum(min_count=1)
    sums["smb_glacier"] = sums["area_w"] / sums["glacier_area"].where(sums["glacier_area"] > 0)
    dims = [d for d in ("member",) if d in sums.dims]
    return sums.drop_vars("area_w").to_dataframe().reset_index(), dims


def _wgms_series(smb: pd.Series, area: pd.Series, years: np.ndarray, ratio: float):
    """WGMS balance (m w.e.), area (km2, interpolated in time, held beyond the record) and cumulative
    glaciological volume change (km3 of ice) on ``years``."""
    if area.empty:
        a_obs = pd.Series(np.nan, index=years)
    else:
        a_obs = pd.Series(np.interp(years, area.index.to_numpy(), area.to_numpy()), index=years)
    b = smb.reindex(years)
    dv_obs = (b * a_obs * factor("m", "km") * ratio).cumsum(skipna=False)  # m w.e. x km2 -> km3 of ice
    return b, a_obs, dv_obs


def _summary_row(head: dict, years: np.ndarray, part: pd.DataFrame, area: pd.Series, a0: float,
                 v0: float) -> dict:
    """Initial and final areas, their change (km2 and %) and the period's volume change of one glacier."""
    first, last = int(years[0]), int(years[-1])
    row = {**head, "start": first, "end": last,
           "area_start_model": a0, "area_end_model": float(part["area_model"].iloc[-1]),
           "area_start_wgms": float(area.get(first, np.nan)) if not area.empty else np.nan,
           "area_end_wgms": float(area.get(last, np.nan)) if not area.empty else np.nan,
           "volume_start_model": v0,
           "dv_model": float(part["dv_model"].iloc[-1]), "dv_wgms": float(part["dv_wgms"].iloc[-1])}
    row["d_area_model"] = row["area_end_model"] - row["area_start_model"]
    row["d_area_wgms"] = row["area_end_wgms"] - row["area_start_wgms"]
    row["d_area_model_pct"] = 100 * row["d_area_model"] / a0 if a0 > 0 else np.nan
    row["d_area_wgms_pct"] = (100 * row["d_area_wgms"] / row["area_start_wgms"]
                              if row["area_start_wgms"] > 0 else np.nan)
    return row


def compare_evolution(results: xr.Dataset, static: xr.Dataset, observed: ObservedUnits, areas: pd.DataFrame, *,
                      rho_ice: float = 900.0, rho_water: float = 1000.0,
                      names: dict[str, str] | None = None) -> EvolutionComparison:
    """Compare an evolution run with the WGMS annual balances and areas of the observed glaciers.

    Outlines linked to one observation are summed. WGMS years without AREA take the area interpolated
    linearly in time (held constant beyond the record).

    Parameters
    ----------
    results : xarray.Dataset
        The evolution results store: ``glacier_area`` (km2), ``volume`` (km3), ``smb_glacier`` (m w.e.)
        per outline and year (and ``member``).
    static : xarray.Dataset
        ``glacier_id``, ``thickness`` (m) and ``pixel_area`` (m2) of the run's grid: the initial area and
        volume are those of its ice pixels.
    observed : ObservedUnits
        The observations (``obs_id``, ``year``, ``smb`` in m w.e.) linked to the outlines.
    areas : pandas.DataFrame
        WGMS areas: ``obs_id``, ``year``, ``area_km2``.
    rho_ice, rho_water : float
        Densities (kg m-3) that turn water equivalent into ice.
    names : dict of str to str, optional
        Glacier names by ``obs_id``.

    Returns
    -------
    EvolutionComparison
    """
    names = names or {}
    units, obs = observed.units, observed.observations
    unit = unit_raster(static["glacier_id"], observed.unit_of_outline)
    init = _initial_state(static, unit, observed.unit_index)
    frame, dims = _unit_series(results, observed.unit_of_outline)
    ratio = rho_water / rho_ice
    years = np.arange(int(results["year"].min()), int(results["year"].max()) + 1)
    rows, summary = [], []
    for pos, oid in enumerate(units, start=1):
        ar = areas[areas["obs_id"] == oid].set_index("year")["area_km2"].sort_index()
        b, a_obs, dv_obs = _wgms_series(obs[obs["obs_id"] == oid].set_index("year")["smb"], ar, years, ratio)
        a0, v0 = float(init["area"].sel(glacier=pos)), float(init["volume"].sel(glacier=pos))
        mine = frame[frame["glacier"] == pos]
        for keys, g in (mine.groupby(dims) if dims else [((), mine)]):
            keys = dict(zip(dims, keys if isinstance(keys, tuple) else (keys,)))
            g = g.set_index("year").reindex(years)
            part = pd.DataFrame({"obs_id": oid, "name": names.get(oid, ""), "year": years,
                                 "area_model": g["glacier_area"].to_numpy(), "area_wgms": a_obs.to_numpy(),
                                 "dv_model": g["volume"].to_numpy() - v0, "dv_wgms": dv_obs.to_numpy(),
                                 "smb_model": g["smb_glacier"].to_numpy(), "smb_wgms": b.to_numpy()})
            for d, k in keys.items():
                part.insert(1, d, k)
            rows.append(part)
            summary.append(_summary_row({"obs_id": oid, "name": names.get(oid, ""), **keys}, years, part, ar,
                                        a0, v0))
    return EvolutionComparison(pd.concat(rows, ignore_index=True), pd.DataFrame(summary))


# --------------------------------------------------------------------------------------------- report
@dataclass
class ValidationReport:
    """Everything :func:`glacgrid.pipeline.validate` measured; :meth:`write` saves CSVs and ``validation.md``.

    Attributes
    ----------
    name : str
        The run's name.
    reconstruction : dict of str to ReconstructionCV
        The reconstruction cross-validation of each scheme.
    bands : BandComparison or None
        Elevation bands against the observed profiles (None when there are none).
    evolution : EvolutionComparison or None
        Area and volume of an evolution run against WGMS (None when not run).
    notes : list of str
        What the validation reported.
    comparison : pandas.DataFrame or None
        Glacier-wide and band skill with the band gradients below / above the ELA for every reconstruction
        (glacier-wide-only and joint training side by side, :func:`side_by_side`).
    """

    name: str
    reconstruction: dict[str, ReconstructionCV]
    bands: BandComparison | None = None
    evolution: EvolutionComparison | None = None
    notes: list[str] = field(default_factory=list)
    comparison: pd.DataFrame | None = None

    def markdown(self) -> str:
        """The report as Markdown tables (the text of ``validation.md``)."""
        def fmt(df: pd.DataFrame, cols: list[str]) -> str:
            head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
            body = ""
            for _, r in df.iterrows():
                cells = [(f"{r[c]:.0f}" if c.endswith("_n") else f"{r[c]:.3f}")
                         if isinstance(r[c], (float, np.floating)) else str(r[c]) for c in cols]
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
        if self.comparison is not None and len(self.comparison):
            out.append("### Glacier-wide and band skill by training (out of sample)\n")
            out.append(fmt(self.comparison, [c for c in ["key", "obs_id", "r", "rmse", "bias", "band_rmse", "band_bias",
                       "ela", "gradient_observed_below", "gradient_modelled_below", "gradient_ratio_below",
                       "gradient_observed_above", "gradient_modelled_above", "gradient_ratio_above"]
                       if c in self.comparison]))
            out.append("Glacier-wide r, rmse, bias and band rmse, bias in m w.e.; ELA in m (observed mean profile); "
                       "gradients in m w.e. per 100 m, ratio = modelled / observed.\n")
            seasons = [c for c in ["winter_n", "winter_r", "winter_rmse", "winter_bias", "summer_n", "summer_r",
                                   "summer_rmse", "summer_bias"] if c in self.comparison]
            if seasons:
                out.append("### Seasonal balances by training (out of sample, m w.e.)\n")
                out.append(fmt(self.comparison.dropna(subset=seasons, how="all"), ["key", "obs_id", *seasons]))
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
        """Write the tables as CSV and ``validation.md`` into ``directory``; return name -> path.

        Each file is written atomically (beside, then renamed), with the permissions of the umask.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tables: dict[str, tuple[Path, pd.DataFrame]] = {}
        for scheme, cv in self.reconstruction.items():
            tables[f"{scheme}_metrics"] = (d / f"reconstruction_{scheme}_metrics.csv", cv.metrics)
            tables[f"{scheme}_predictions"] = (d / f"reconstruction_{scheme}_predictions.csv", cv.predictions)
            if cv.seasonal is not None:
                tables[f"{scheme}_seasonal"] = (d / f"reconstruction_{scheme}_seasonal.csv", cv.seasonal)
        if self.bands is not None:
            for part in ("metrics", "per_band", "pairs"):
                tables[f"bands_{part}"] = (d / f"bands_{part}.csv", getattr(self.bands, part))
        if self.comparison is not None:
            tables["comparison"] = (d / "training_comparison.csv", self.comparison)
        if self.evolution is not None:
            for part in ("summary", "yearly"):
                tables[f"evolution_{part}"] = (d / f"evolution_{part}.csv", getattr(self.evolution, part))
        files = {key: write_csv(df, path, index=False) for key, (path, df) in tables.items()}
        files["markdown"] = d / "validation.md"
        with atomic_path(files["markdown"]) as tmp:
            tmp.write_text(self.markdown(), encoding="utf-8")
        return files
