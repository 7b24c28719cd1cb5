"""Outputs for people: the glacier-year table (CSV + Parquet, units recorded), a validation table, PNG
figures (drawn in :mod:`glacgrid.figures`) and a text summary.

The glacier-year table has one row per glacier, year (and ensemble member when the results store has a
``member`` dimension). Its columns and units are :data:`TABLE_COLUMNS`; the units are written

- into the Parquet file: every field's metadata holds ``units`` and ``long_name``, and the schema
  metadata key ``glacgrid`` holds the same as JSON for the whole table;
- next to the CSV, as a CSV on the Web (W3C CSVW) sidecar ``<name>.csv-metadata.json``: one entry per
  column with ``name``, ``datatype``, ``dc:description`` (long name) and ``schema:unitText`` (units).

The CSV keeps plain column headers (no comment lines) so any CSV reader opens it; its floats are written
with full (round-trip) precision, so :func:`read_glacier_years` gives the same numbers from either file.

Ensemble members: validation, summary figures and the summary's single numbers use the *reference
member* (``thickness_factor == deltah_factor == 1``), the run with the unperturbed initial thickness and
delta-h curves; a store whose members include no such run falls back to the mean over members.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .atomic import atomic_path
from .config import RunConfig
from .exceptions import UnitsError
from .observations import read_observations

__all__ = ["TABLE_COLUMNS", "glacier_years", "reference_member", "central", "unit_smb", "validation_table", "region_totals",
           "write_glacier_years", "read_glacier_years", "write_outputs", "plot_results", "summary_lines"]

#: table column -> (store variable or None, units, long name, CSVW datatype)
TABLE_COLUMNS: dict[str, tuple[str | None, str, str, str]] = {
    "glacier": (None, "1", "Glacier index (1..N, the results store's glacier coordinate)", "long"),
    "rgi_id": (None, "1", "Glacier outline id (e.g. RGI id)", "string"),
    "name": (None, "1", "Glacier name (empty when the outlines have none)", "string"),
    "member": (None, "1", "Ensemble member index", "long"),
    "thickness_factor": (None, "1", "Factor on the initial ice thickness of this member", "double"),
    "deltah_factor": (None, "1", "Factor on the exponent gamma of the delta-h curves of this member", "double"),
    "year": (None, "hydrological year", "Hydrological year, labelled by its end year", "long"),
    "smb_mwe": ("smb_glacier", "m w.e.", "Glacier-wide annual surface mass balance", "double"),
    "smb_spread_mwe": ("smb_glacier_spread", "m w.e.",
                       "Standard deviation of the glacier-wide SMB across the members of an ensemble model", "double"),
    "area_km2": ("glacier_area", "km2", "Glacier area (pixels with ice)", "double"),
    "volume_km3": ("volume", "km3", "Glacier ice volume", "double"),
    "mean_elevation_m": ("mean_elevation", "m", "Area-weighted mean surface elevation of the glacier", "double"),
    "disappeared": ("disappeared", "1", "1 from the year the glacier has no ice left", "byte"),
    "failed": ("failed", "1", "1 where the glacier was isolated that year (bad geometry, NaN features); "
                              "its values are NaN then (see glacier_log.csv)", "byte"),
}
# units the store must carry for the table's columns to be right (the store says m for m w.e.)
_STORE_UNITS = {"smb_glacier": "m", "smb_glacier_spread": "m", "glacier_area": "km2", "volume": "km3",
                "mean_elevation": "m", "disappeared": "1", "failed": "1"}
_DTYPES = {"long": "int64", "double": "float64", "byte": "int8", "string": "str"}
_MEMBER_COLS = ["member", "thickness_factor", "deltah_factor"]


def glacier_years(results: xr.Dataset, table: pd.DataFrame) -> pd.DataFrame:
    """One row per glacier, year (and member): the columns of :data:`TABLE_COLUMNS` that apply.

    ``member``, ``thickness_factor`` and ``deltah_factor`` appear when ``results`` has a ``member``
    dimension, ``smb_spread_mwe`` when it has ``smb_glacier_spread``. A store without ``mean_elevation``
    (written before that variable existed) gives NaN there; one without ``failed`` gives 0 (no glacier
    was isolated). Raises :class:`UnitsError` when a store variable's units differ from the table's.
    """
    present = {col: spec[0] for col, spec in TABLE_COLUMNS.items() if spec[0] and spec[0] in results}
    for var in present.values():
        got = results[var].attrs.get("units")
        if got is not None and str(got) != _STORE_UNITS[var]:
            raise UnitsError(f"Results variable {var!r} has units {got!r}; the glacier-year table expects "
                             f"{_STORE_UNITS[var]!r}. Convert the store (or its producer) to {_STORE_UNITS[var]!r}.")
    has_member = "member" in results.dims
    dims = ["glacier", *(["member"] if has_member else []), "year"]
    ds = results[list(present.values())].reset_coords(drop=True)
    if has_member:
        for c in ("thickness_factor", "deltah_factor"):
            fallback = ("member", np.full(results.sizes["member"], np.nan))
            ds = ds.assign_coords({c: results[c].variable if c in results.variables else fallback})
    df = ds.compute().to_dataframe(dim_order=dims).reset_index()
    df = df.rename(columns={v: c for c, v in present.items()})
    if "mean_elevation_m" not in df:
        df["mean_elevation_m"] = np.nan
    if "failed" not in df:
        df["failed"] = 0
    g = df["glacier"].to_numpy()
    df["rgi_id"] = table.loc[g, "rgi_id"].astype(str).to_numpy()
    df["name"] = table.loc[g, "name"].fillna("").astype(str).to_numpy() if "name" in table else ""
    cols = [c for c in TABLE_COLUMNS if c in df.columns]
    df = df[cols].sort_values([c for c in ("glacier", "member", "year") if c in cols]).reset_index(drop=True)
    return df.astype({c: _DTYPES[TABLE_COLUMNS[c][3]] for c in cols})


def _column_meta(columns) -> dict[str, dict[str, str]]:
    return {c: {"units": TABLE_COLUMNS[c][1], "long_name": TABLE_COLUMNS[c][2], "datatype": TABLE_COLUMNS[c][3]}
            for c in columns}


def write_glacier_years(gy: pd.DataFrame, out: Path, stem: str = "glacier_years") -> dict[str, Path]:
    """Write ``gy`` as ``<stem>.csv`` (+ CSVW sidecar ``<stem>.csv-metadata.json``) and ``<stem>.parquet``.

    Returns the three paths under the keys ``glacier_years_csv``, ``glacier_years_csv_metadata`` and
    ``glacier_years_parquet``.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    out = Path(out)
    meta = _column_meta(gy.columns)
    tab = pa.Table.from_pandas(gy, preserve_index=False)  # NaN -> null: an empty CSV field
    csv = out / f"{stem}.csv"
    # Arrow writes the shortest text that round-trips each float64 exactly, ~10x faster than pandas
    with atomic_path(csv) as tmp:  # a crash leaves the old file or the new one, never half of one
        pa_csv.write_csv(tab, tmp, write_options=pa_csv.WriteOptions(quoting_style="needed"))
    sidecar = out / f"{stem}.csv-metadata.json"
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps({
            "@context": "http://www.w3.org/ns/csvw", "url": csv.name,
            "dc:title": "glacgrid glacier-year table",
            "tableSchema": {"columns": [{"name": c, "titles": c, "datatype": m["datatype"],
                                         "dc:description": m["long_name"], "schema:unitText": m["units"]}
                                        for c, m in meta.items()]},
        }, indent=1), encoding="utf-8")
    fields = [f.with_metadata({"units": meta[f.name]["units"], "long_name": meta[f.name]["long_name"]})
              for f in tab.schema]
    schema = pa.schema(fields, metadata={**(tab.schema.metadata or {}), b"glacgrid": json.dumps({"columns": meta})})
    parquet = out / f"{stem}.parquet"
    with atomic_path(parquet) as tmp:
        pq.write_table(tab.cast(schema), tmp)
    return {"glacier_years_csv": csv, "glacier_years_csv_metadata": sidecar, "glacier_years_parquet": parquet}


def read_glacier_years(path: str | Path) -> pd.DataFrame:
    """Read a glacier-year table written by :func:`write_glacier_years` (``.parquet`` or ``.csv``).

    For the CSV, column types come from the CSVW sidecar (empty text stays ``""``, an empty number is
    NaN) and floats are parsed round-trip, so both files give identical frames.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    side = json.loads(path.with_name(path.name + "-metadata.json").read_text(encoding="utf-8"))
    types = {c["name"]: _DTYPES[c["datatype"]] for c in side["tableSchema"]["columns"]}
    text = [c for c, t in types.items() if t == "str"]
    df = pd.read_csv(path, keep_default_na=False,  # pandas >= 3 parses floats round-trip by default
                     na_values={c: [""] for c in types if c not in text}, dtype={c: "str" for c in text})
    return df.astype(types)


def reference_member(gy: pd.DataFrame):
    """The ``member`` whose thickness and delta-h factors are 1, or None (no members / no such member)."""
    if "member" not in gy:
        return None
    ref = np.isclose(gy["thickness_factor"], 1.0) & np.isclose(gy["deltah_factor"], 1.0)
    return gy.loc[ref, "member"].iloc[0] if ref.any() else None


def central(gy: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of one run per glacier and year, and a description of which.

    No ``member`` column: ``gy`` itself. Otherwise the reference member (thickness and delta-h
    factors 1), or the mean over members (flags: max) when no member is the reference.
    """
    if "member" not in gy:
        return gy, ""
    m = reference_member(gy)
    if m is not None:
        return (gy[gy["member"] == m].drop(columns=_MEMBER_COLS).reset_index(drop=True),
                "reference member (thickness and delta-h factors 1)")
    keys = ["glacier", "rgi_id", "name", "year"]
    flags = {c: "max" for c in ("disappeared", "failed")}
    values = {c: "mean" for c in gy.columns if c not in keys + _MEMBER_COLS + list(flags)}
    agg = gy.groupby(keys, as_index=False, sort=True).agg({**values, **flags})
    return agg[[c for c in gy.columns if c in agg.columns]], f"mean of {gy['member'].nunique()} members"


def region_totals(gy: pd.DataFrame, col: str) -> tuple[pd.DataFrame, pd.Series, int]:
    """Region total of ``col`` per year: ``(per_member, central_series, n_glaciers_summed)``.

    Sums the glaciers with a value in every year (and member) only, so that totals of different years
    and members are comparable (a glacier without thickness has no volume; a failed glacier-year has no
    value). ``per_member`` has one column per member (one column ``0`` without members); the central
    series is the reference member's (see :func:`central`), or the member mean. All NaN when no glacier
    is complete.
    """
    complete = gy[col].notna().groupby(gy["glacier"]).all()
    keep = gy[gy["glacier"].isin(complete.index[complete])]
    years = np.sort(gy["year"].unique())
    if "member" in gy:
        wide = keep.groupby(["year", "member"])[col].sum().unstack("member")
        wide = wide.reindex(index=years, columns=np.sort(gy["member"].unique()))
        ref = reference_member(gy)
        line = wide[ref] if ref is not None else wide.mean(axis=1)
    else:
        wide = keep.groupby("year")[col].sum().reindex(years).to_frame(0)
        line = wide[0]
    wide.index.name = line.index.name = "year"
    return wide, line.rename(col), int(complete.sum())


def unit_smb(gy: pd.DataFrame, units, unit_of_outline: np.ndarray) -> pd.DataFrame:
    """Modelled glacier-wide SMB of each observation unit: area-weighted over its outlines.

    One row per (member,) unit and year with ``obs_id``, ``modelled`` (and ``modelled_spread`` when
    ``gy`` has ``smb_spread_mwe``: the area-weighted spread, i.e. members taken as perfectly correlated
    across the outlines). ``modelled`` is NaN where an outline of the unit with ice has no value (a
    failed glacier-year, or no SMB where the area is not 0): a partial mean would be biased.
    """
    keys = [c for c in ("member",) if c in gy] + ["unit", "year"]
    gy = gy.assign(unit=np.asarray(unit_of_outline)[gy["glacier"].to_numpy()])
    gy = gy[gy["unit"] > 0]
    area = gy["area_km2"].where(gy["area_km2"] > 0, 0.0).fillna(0.0)
    smb = gy["smb_mwe"]
    w = area.where(smb.notna(), 0.0)
    # no value although the glacier may have ice (area not 0: a failed glacier-year has NaN area)
    parts = {"wsmb": smb.fillna(0.0) * w, "w": w, "bad": smb.isna() & (gy["area_km2"] != 0)}
    if "smb_spread_mwe" in gy:
        parts["wspread"] = gy["smb_spread_mwe"].fillna(0.0) * w
    agg = gy[keys].assign(**parts).groupby(keys, as_index=False).agg(
        {**{k: "sum" for k in parts if k != "bad"}, "bad": "any"})
    ok = (agg["w"] > 0) & ~agg["bad"]
    agg["modelled"] = (agg["wsmb"] / agg["w"].where(ok)).astype("float64")
    if "wspread" in agg:
        agg["modelled_spread"] = (agg["wspread"] / agg["w"].where(ok)).astype("float64")
    agg["obs_id"] = np.asarray(units, dtype=object)[agg["unit"].to_numpy() - 1].astype(str)
    return agg.drop(columns=[k for k in parts])


def validation_table(gy: pd.DataFrame, obs: pd.DataFrame, units: list[str], unit_of_outline: np.ndarray) -> pd.DataFrame:
    """Modelled glacier-wide SMB of each observation unit (area-weighted over its outlines) vs observed.

    With ensemble members the modelled value is the reference member's (see :func:`central`). Unit-years
    whose modelled value is missing (failed glacier-year) stay in the table with ``modelled`` NaN.
    """
    one, _ = central(gy)
    agg = unit_smb(one, units, unit_of_outline)
    val = agg.merge(obs.rename(columns={"smb": "observed"}), on=["obs_id", "year"], how="inner")
    return val[["obs_id", "year", "observed", "modelled"]].sort_values(["obs_id", "year"]).reset_index(drop=True)


def _metrics(val: pd.DataFrame) -> pd.DataFrame:
    """Per ``obs_id``: n (pairs with both values), r, RMSE, bias (modelled - observed)."""
    def one(g):
        g = g.dropna(subset=["observed", "modelled"])
        o, m = g["observed"].to_numpy(), g["modelled"].to_numpy()
        r = float(np.corrcoef(o, m)[0, 1]) if len(g) > 1 else np.nan
        rmse = float(np.sqrt(np.mean((m - o) ** 2))) if len(g) else np.nan
        return pd.Series({"n": len(g), "r": r, "rmse": rmse, "bias": float(np.mean(m - o)) if len(g) else np.nan})

    return val.groupby("obs_id").apply(one, include_groups=False)


def plot_results(results: xr.Dataset, gy: pd.DataFrame, val: pd.DataFrame, cv, path: Path, title: str) -> Path:
    """The four-panel summary PNG (see :func:`glacgrid.figures.figure_summary`); returns ``path``."""
    from .figures import figure_summary, save

    return save(figure_summary(results, gy, val, cv, title), path)


def write_outputs(cfg: RunConfig, prep, results: xr.Dataset, cv, units, unit_of_outline, out: Path) -> dict:
    """Write the tables and (``cfg.output.plot``) the PNG figures; return their paths and the frames."""
    from . import figures

    out = Path(out)
    gy = glacier_years(results, prep.table)
    files: dict = write_glacier_years(gy, out)
    obs = read_observations(cfg.observations.files, fmt=cfg.observations.format, id_column=cfg.observations.id_column)
    val = validation_table(gy, obs, units, unit_of_outline)
    val_csv = out / "validation.csv"
    with atomic_path(val_csv) as tmp:
        val.to_csv(tmp, index=False, float_format="%.6g")
    files.update({"validation_csv": val_csv, "results_zarr": out / "results.zarr",
                  "model": out / "model", "cv_json": out / "cv.json"})
    log = out / "glacier_log.csv"
    if log.exists():
        files["glacier_log_csv"] = log
    if cfg.output.plot:
        title = f"glacgrid: {cfg.name} ({cfg.mode})"
        mean_smb = figures.mean_smb_map(results)  # one pass over the gridded store for both maps
        files["plot_png"] = figures.save(figures.figure_summary(results, gy, val, cv, title, mean_smb=mean_smb),
                                         out / "summary.png")
        files["cumulative_smb_png"] = figures.save(
            figures.figure_cumulative_smb(gy, obs, units, unit_of_outline, title=title), out / "cumulative_smb.png")
        files["area_volume_png"] = figures.save(
            figures.figure_area_volume(gy, figures.highlight_glaciers(gy, unit_of_outline), title=title),
            out / "area_volume.png")
        files["mean_smb_map_png"] = figures.save(figures.figure_mean_smb(results, title=title, mean_smb=mean_smb),
                                                 out / "mean_smb_map.png")
    files.update({"glacier_years_df": gy, "validation_df": val})
    return files


def summary_lines(result) -> list[str]:
    """Human-readable summary of a run (printed by the CLI)."""
    gy, cv = result.glacier_years, result.cv
    one, which = central(gy)
    m = cv.metrics
    years = gy["year"].agg(["min", "max"])
    lines = [
        f"run '{result.config.name}' ({result.config.mode}): {gy['glacier'].nunique()} glaciers, "
        f"hydrological years {years['min']}-{years['max']}",
        f"cross-validation {cv.scheme.upper()} ({len(cv.per_fold)} folds, {len(cv.predictions)} samples): "
        f"r={m['r']:.3f}  r2={m['r2']:.3f}  RMSE={m['rmse']:.3f}  MAE={m['mae']:.3f}  bias={m['bias']:+.3f} m w.e.",
    ]
    if "member" in gy:
        fac = gy.drop_duplicates("member")
        lines.append(f"ensemble: {len(fac)} members (thickness factors {sorted(set(fac['thickness_factor']))}, "
                     f"delta-h factors {sorted(set(fac['deltah_factor']))}); single numbers below: {which}")
    lines.append(f"mean glacier-wide SMB {one['smb_mwe'].mean():+.3f} m w.e. a-1"
                 + (f" (mean spread of the ensemble model {one['smb_spread_mwe'].mean():.3f})" if "smb_spread_mwe" in one else ""))
    (_, area, na), (vol_m, vol, nv) = region_totals(gy, "area_km2"), region_totals(gy, "volume_km3")
    if vol.notna().any():
        n = gy["glacier"].nunique()
        lines.append(f"area {area.iloc[0]:.2f} -> {area.iloc[-1]:.2f} km2; volume {vol.iloc[0]:.4f} -> "
                     f"{vol.iloc[-1]:.4f} km3 (end of first / last year"
                     + (f"; sums of the {na} / {nv} of {n} glaciers with values in every year" if min(na, nv) < n else "")
                     + ")")
        if "member" in gy:
            end = vol_m.iloc[-1]
            lines.append(f"  volume at the end of {years['max']} across members: {end.min():.4f} .. {end.max():.4f} km3")
    gone = one.groupby("glacier")["disappeared"].max()
    if gone.sum():
        lines.append(f"glaciers that disappeared: {int(gone.sum())}")
    if "member" in gy:
        any_gone = int(gy.groupby("glacier")["disappeared"].max().sum())
        if any_gone:
            lines.append(f"  glaciers that disappeared in at least one member: {any_gone}")
    failed = gy[gy["failed"] == 1]
    if len(failed):
        over = ", all members" if "member" in gy else ""
        lines.append(f"isolated (failed) glacier-years: {len(failed)} (of {failed['glacier'].nunique()} glaciers{over}); "
                     f"their values are NaN (reasons in glacier_log.csv)")
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
