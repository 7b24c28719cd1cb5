"""Outputs for people: the glacier-year table (CSV), a validation table, a PNG figure and a summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .config import RunConfig
from .observations import read_observations

__all__ = ["glacier_years", "validation_table", "write_outputs", "plot_results", "summary_lines"]


def glacier_years(results: xr.Dataset, table: pd.DataFrame) -> pd.DataFrame:
    """One row per glacier and year: SMB (m w.e.), area (km2), volume (km3), disappeared flag."""
    ds = results[["smb_glacier", "glacier_area", "volume", "disappeared"]].compute()
    df = ds.to_dataframe().reset_index()
    df = df.rename(columns={"smb_glacier": "smb_mwe", "glacier_area": "area_km2", "volume": "volume_km3"})
    df.insert(1, "rgi_id", table.loc[df["glacier"].to_numpy(), "rgi_id"].to_numpy())
    df.insert(2, "name", table.loc[df["glacier"].to_numpy(), "name"].to_numpy())
    return df.sort_values(["glacier", "year"]).reset_index(drop=True)


def validation_table(gy: pd.DataFrame, obs: pd.DataFrame, units: list[str], unit_of_outline: np.ndarray) -> pd.DataFrame:
    """Modelled glacier-wide SMB of each observation unit (area-weighted over its outlines) vs observed."""
    gy = gy.assign(unit=unit_of_outline[gy["glacier"].to_numpy()])
    gy = gy[gy["unit"] > 0]
    w = gy["area_km2"].fillna(0.0)
    agg = (gy.assign(wsmb=gy["smb_mwe"] * w, w=w).groupby(["unit", "year"], as_index=False)[["wsmb", "w"]].sum())
    agg["modelled"] = agg["wsmb"] / agg["w"].where(agg["w"] > 0)
    agg["obs_id"] = np.asarray(units)[agg["unit"].to_numpy() - 1]
    val = agg.merge(obs.rename(columns={"smb": "observed"}), on=["obs_id", "year"], how="inner")
    return val[["obs_id", "year", "observed", "modelled"]].sort_values(["obs_id", "year"]).reset_index(drop=True)


def _metrics(val: pd.DataFrame) -> pd.DataFrame:
    def one(g):
        o, m = g["observed"].to_numpy(), g["modelled"].to_numpy()
        r = float(np.corrcoef(o, m)[0, 1]) if len(g) > 1 else np.nan
        return pd.Series({"n": len(g), "r": r, "rmse": float(np.sqrt(np.mean((m - o) ** 2))), "bias": float(np.mean(m - o))})

    return val.groupby("obs_id").apply(one, include_groups=False)


def plot_results(results: xr.Dataset, gy: pd.DataFrame, val: pd.DataFrame, cv, path: Path, title: str) -> Path:
    """A four-panel PNG: mean gridded SMB map, glacier-wide SMB series, CV scatter, area and volume."""
    from matplotlib.figure import Figure  # no pyplot: leaves the session's backend (e.g. inline) alone

    fig = Figure(figsize=(12, 9), constrained_layout=True)
    ax = fig.subplots(2, 2)
    mean_smb = results["smb"].mean("year").compute()
    finite = np.abs(mean_smb.values[np.isfinite(mean_smb.values)])
    lim = float(np.percentile(finite, 98)) if finite.size else 1.0  # robust to a few extreme edge pixels
    im = ax[0, 0].imshow(mean_smb.values, cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax[0, 0], label="mean SMB (m w.e. a$^{-1}$)")
    ax[0, 0].set_title("Mean gridded SMB")
    ax[0, 0].set_axis_off()
    for _, g in gy.groupby("glacier"):
        ax[0, 1].plot(g["year"], g["smb_mwe"], color="0.7", lw=0.6)
    mean = gy.groupby("year")["smb_mwe"].mean()
    ax[0, 1].plot(mean.index, mean.values, color="k", lw=2, label="mean of all glaciers")
    for oid, g in val.groupby("obs_id"):
        line = ax[0, 1].plot(g["year"], g["modelled"], lw=1.2, label=f"{oid} modelled")[0]
        ax[0, 1].plot(g["year"], g["observed"], "o", ms=3, color=line.get_color(), label=f"{oid} observed")
        if val["obs_id"].nunique() > 4:
            break
    ax[0, 1].set(title="Glacier-wide annual SMB", xlabel="hydrological year", ylabel="m w.e.")
    ax[0, 1].legend(fontsize=7, ncol=2)
    pred = cv.predictions
    ax[1, 0].scatter(pred["observed"], pred["predicted"], s=8, alpha=0.6)
    lo, hi = np.nanmin(pred[["observed", "predicted"]].values), np.nanmax(pred[["observed", "predicted"]].values)
    ax[1, 0].plot([lo, hi], [lo, hi], "k--", lw=1)
    m = cv.metrics
    ax[1, 0].set(title=f"Cross-validation ({cv.scheme.upper()}): r={m['r']:.2f}, RMSE={m['rmse']:.2f} m w.e.",
                 xlabel="observed (m w.e.)", ylabel="predicted (m w.e.)")
    tot = gy.groupby("year")[["area_km2", "volume_km3"]].sum(min_count=1)
    ax[1, 1].plot(tot.index, tot["area_km2"], "b-", label="area")
    ax[1, 1].set(title="Total glacier area and volume", xlabel="hydrological year", ylabel="area (km$^2$)")
    twin = ax[1, 1].twinx()
    twin.plot(tot.index, tot["volume_km3"], "r-", label="volume")
    twin.set_ylabel("volume (km$^3$)", color="r")
    ax[1, 1].set_ylabel("area (km$^2$)", color="b")
    from matplotlib.ticker import MaxNLocator

    for a in (ax[0, 1], ax[1, 1]):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def write_outputs(cfg: RunConfig, prep, results: xr.Dataset, cv, units, unit_of_outline, out: Path) -> dict:
    """Write the CSV tables and the PNG; return their paths and the frames."""
    gy = glacier_years(results, prep.table)
    csv = out / "glacier_years.csv"
    gy.to_csv(csv, index=False, float_format="%.6g")
    obs = read_observations(cfg.observations.files, fmt=cfg.observations.format, id_column=cfg.observations.id_column)
    val = validation_table(gy, obs, units, unit_of_outline)
    val_csv = out / "validation.csv"
    val.to_csv(val_csv, index=False, float_format="%.6g")
    files = {"glacier_years_csv": csv, "validation_csv": val_csv, "results_zarr": out / "results.zarr",
             "model": out / "model", "cv_json": out / "cv.json", "glacier_years_df": gy, "validation_df": val}
    if cfg.output.plot:
        files["plot_png"] = plot_results(results, gy, val, cv, out / "summary.png", f"glacgrid: {cfg.name} ({cfg.mode})")
    return files


def summary_lines(result) -> list[str]:
    """Human-readable summary of a run (printed by the CLI)."""
    gy, cv = result.glacier_years, result.cv
    m = cv.metrics
    years = gy["year"].agg(["min", "max"])
    lines = [
        f"run '{result.config.name}' ({result.config.mode}): {gy['glacier'].nunique()} glaciers, "
        f"hydrological years {years['min']}-{years['max']}",
        f"cross-validation {cv.scheme.upper()} ({len(cv.per_fold)} folds, {len(cv.predictions)} samples): "
        f"r={m['r']:.3f}  r2={m['r2']:.3f}  RMSE={m['rmse']:.3f}  MAE={m['mae']:.3f}  bias={m['bias']:+.3f} m w.e.",
        f"mean glacier-wide SMB {gy['smb_mwe'].mean():+.3f} m w.e. a-1",
    ]
    tot = gy.groupby("year")[["area_km2", "volume_km3"]].sum(min_count=1)
    if tot["volume_km3"].notna().any():
        first, last = tot.iloc[0], tot.iloc[-1]
        lines.append(f"area {first['area_km2']:.2f} -> {last['area_km2']:.2f} km2; "
                     f"volume {first['volume_km3']:.4f} -> {last['volume_km3']:.4f} km3 (end of first / last year)")
    gone = gy.groupby("glacier")["disappeared"].max()
    if gone.sum():
        lines.append(f"glaciers that disappeared: {int(gone.sum())}")
    if len(result.validation):
        val = result.validation
        pooled = _metrics(val.assign(obs_id="all observed glaciers")).iloc[0]
        lines.append(f"modelled vs observed (model trained on all observations): n={int(pooled['n'])} "
                     f"r={pooled['r']:.3f} RMSE={pooled['rmse']:.3f} bias={pooled['bias']:+.3f} m w.e.")
        per = _metrics(val).sort_values("rmse", ascending=False)
        shown = per if len(per) <= 6 else per.head(3)
        for oid, row in shown.iterrows():
            lines.append(f"  {oid}: n={int(row['n'])} r={row['r']:.3f} RMSE={row['rmse']:.3f} bias={row['bias']:+.3f} m w.e.")
        if len(per) > len(shown):
            lines.append(f"  ... {len(per) - len(shown)} more glaciers in validation.csv (the {len(shown)} largest RMSE shown)")
    lines.append("stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    for note in result.notes:
        lines.append(f"note: {note}")
    lines.append(f"outputs in {result.output}")
    return lines
