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
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import figures
from .atomic import atomic_path, write_csv
from .config import RunConfig
from .exceptions import InputDataError, UnitsError
from .figures import central, region_totals, unit_smb
from .metadata import SMB_RATE_UNITS, cf_dataset
from .models import regression_metrics
from .observations import ObservedUnits

# reference_member, central, unit_smb and region_totals live in glacgrid.figures (figures draw with them)
__all__ = ["TABLE_COLUMNS", "RunFiles", "WrittenOutputs", "glacier_years", "validation_table", "write_glacier_years",
           "read_glacier_years", "write_outputs", "plot_results", "summary_lines", "EXPORT_FORMATS", "export_netcdf",
           "export_geotiff", "export_store"]

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
# units the store must carry for the table's columns to be right: the SMB of one hydrological year in m w.e.,
# "m yr-1" in a CF store (glacgrid.metadata.SMB_RATE_UNITS), "m" in stores written before CF-1.10
_STORE_UNITS = {"smb_glacier": ("m", SMB_RATE_UNITS), "smb_glacier_spread": ("m", SMB_RATE_UNITS),
                "glacier_area": ("km2",), "volume": ("km3",), "mean_elevation": ("m",), "disappeared": ("1",),
                "failed": ("1",)}
_DTYPES = {"long": "int64", "double": "float64", "byte": "int8", "string": "str"}


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
        if got is not None and str(got) not in _STORE_UNITS[var]:
            raise UnitsError(f"Results variable {var!r} has units {got!r}; the glacier-year table expects "
                             f"{' or '.join(_STORE_UNITS[var])!r}. Convert the store (or its producer) to "
                             f"{_STORE_UNITS[var][0]!r}.")
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


def validation_table(gy: pd.DataFrame, obs: pd.DataFrame, units: list[str], unit_of_outline: np.ndarray) -> pd.DataFrame:
    """Modelled glacier-wide SMB of each observation unit (area-weighted over its outlines) vs observed.

    With ensemble members the modelled value is the reference member's (see :func:`glacgrid.figures.central`).
    Unit-years whose modelled value is missing (failed glacier-year) stay in the table with ``modelled`` NaN.
    """
    one, _ = central(gy)
    agg = unit_smb(one, units, unit_of_outline)
    val = agg.merge(obs.rename(columns={"smb": "observed"}), on=["obs_id", "year"], how="inner")
    return val[["obs_id", "year", "observed", "modelled"]].sort_values(["obs_id", "year"]).reset_index(drop=True)


def _metrics(val: pd.DataFrame) -> pd.DataFrame:
    """Per ``obs_id``: n (pairs with both values), r, RMSE, bias (modelled - observed)."""
    def one(g):
        g = g.dropna(subset=["observed", "modelled"])
        scores = regression_metrics(g["observed"].to_numpy(), g["modelled"].to_numpy())
        return pd.Series({"n": len(g), **{k: scores[k] for k in ("r", "rmse", "bias")}})

    return val.groupby("obs_id").apply(one, include_groups=False)


def plot_results(results: xr.Dataset, gy: pd.DataFrame, val: pd.DataFrame, cv, path: Path, title: str) -> Path:
    """The four-panel summary PNG (see :func:`glacgrid.figures.figure_summary`); returns ``path``."""
    return figures.save(figures.figure_summary(results, gy, val, cv, title), path)


@dataclass(frozen=True)
class RunFiles:
    """The files a run wrote into its output directory.

    Attributes
    ----------
    glacier_years_csv, glacier_years_csv_metadata, glacier_years_parquet : Path
        The glacier-year table as CSV, its CSVW sidecar and as Parquet (:func:`write_glacier_years`).
    validation_csv : Path
        Modelled vs observed glacier-wide SMB (:func:`validation_table`).
    results_zarr, model, cv_json : Path
        The results store, the model artifact directory and the cross-validation JSON.
    glacier_log_csv : Path or None
        The isolated glacier-years, when any glacier was isolated.
    plot_png, cumulative_smb_png, area_volume_png, mean_smb_map_png : Path or None
        The PNG figures; None when the run does not plot (``[output] plot = false``).
    """

    glacier_years_csv: Path
    glacier_years_csv_metadata: Path
    glacier_years_parquet: Path
    validation_csv: Path
    results_zarr: Path
    model: Path
    cv_json: Path
    glacier_log_csv: Path | None = None
    plot_png: Path | None = None
    cumulative_smb_png: Path | None = None
    area_volume_png: Path | None = None
    mean_smb_map_png: Path | None = None

    def as_dict(self) -> dict[str, Path]:
        """Name -> path of every file written (the fields that are not None), in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class WrittenOutputs:
    """What :func:`write_outputs` hands on: the files written and the two tables.

    Attributes
    ----------
    files : RunFiles
        The files of the run.
    glacier_years : pandas.DataFrame
        The glacier-year table (:func:`glacier_years`).
    validation : pandas.DataFrame
        Modelled vs observed glacier-wide SMB per observation unit and year (:func:`validation_table`).
    """

    files: RunFiles
    glacier_years: pd.DataFrame
    validation: pd.DataFrame


def _write_figures(results: xr.Dataset, gy: pd.DataFrame, val: pd.DataFrame, cv, observed: ObservedUnits,
                   out: Path, title: str) -> dict[str, Path]:
    """The four PNG figures of a run, under their :class:`RunFiles` names."""
    mean_smb = figures.mean_smb_map(results)  # one pass over the gridded store for both maps
    uoo = observed.unit_of_outline
    return {
        "plot_png": figures.save(figures.figure_summary(results, gy, val, cv, title, mean_smb=mean_smb,
                                                        units=observed.units, unit_of_outline=uoo),
                                 out / "summary.png"),
        "cumulative_smb_png": figures.save(
            figures.figure_cumulative_smb(gy, observed.observations, observed.units, uoo, title=title),
            out / "cumulative_smb.png"),
        "area_volume_png": figures.save(
            figures.figure_area_volume(gy, figures.highlight_glaciers(gy, uoo), title=title), out / "area_volume.png"),
        "mean_smb_map_png": figures.save(figures.figure_mean_smb(results, title=title, mean_smb=mean_smb),
                                         out / "mean_smb_map.png"),
    }


def write_outputs(cfg: RunConfig, prep, results: xr.Dataset, cv, observed: ObservedUnits,
                  out: Path) -> WrittenOutputs:
    """Write the tables and (``cfg.output.plot``) the PNG figures of a run.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration (name, mode, ``[output] plot``).
    prep : Prepared
        The prepared run; its ``table`` (glacier index -> ``rgi_id``, ``name``) names the glaciers.
    results : xarray.Dataset
        The results store (per-glacier variables and the gridded ``smb``).
    cv : CVResult
        The model's cross-validation (summary figure).
    observed : ObservedUnits
        The run's observations, read and linked to the outlines once
        (:func:`glacgrid.observations.observed_units`).
    out : Path
        The run's output directory.

    Returns
    -------
    WrittenOutputs
    """
    out = Path(out)
    gy = glacier_years(results, prep.table)
    table_files = write_glacier_years(gy, out)
    val = validation_table(gy, observed.observations, list(observed.units), observed.unit_of_outline)
    val_csv = out / "validation.csv"
    write_csv(val, val_csv, index=False, float_format="%.6g")
    log = out / "glacier_log.csv"
    plots = {}
    if cfg.output.plot:
        plots = _write_figures(results, gy, val, cv, observed, out, f"glacgrid: {cfg.name} ({cfg.mode})")
    files = RunFiles(**table_files, validation_csv=val_csv, results_zarr=out / "results.zarr", model=out / "model",
                     cv_json=out / "cv.json", glacier_log_csv=log if log.exists() else None, **plots)
    return WrittenOutputs(files, gy, val)


def _values(values) -> str:
    """The distinct numbers of ``values``, sorted, as Python floats: ``[0.8, 1.0, 1.2]`` (not ``np.float64(0.8)``)."""
    return str(sorted({float(v) for v in values}))


def summary_lines(result) -> list[str]:
    """Human-readable summary of a run (printed by the CLI)."""
    gy, cv = result.glacier_years, result.cv
    one, which = central(gy)
    m = cv.metrics
    years = gy["year"].agg(["min", "max"])
    joint = "; the glacier-wide fit, not the joint one: see glacgrid validate" \
        if result.config.model.training == "joint" else ""
    lines = [
        f"run '{result.config.name}' ({result.config.mode}): {gy['glacier'].nunique()} glaciers, "
        f"hydrological years {years['min']}-{years['max']}",
        f"cross-validation {cv.scheme.upper()} ({len(cv.per_fold)} folds, {len(cv.predictions)} samples{joint}): "
        f"r={m['r']:.3f}  r2={m['r2']:.3f}  RMSE={m['rmse']:.3f}  MAE={m['mae']:.3f}  bias={m['bias']:+.3f} m w.e.",
    ]
    if "member" in gy:
        fac = gy.drop_duplicates("member")
        lines.append(f"ensemble: {len(fac)} members (thickness factors {_values(fac['thickness_factor'])}, "
                     f"delta-h factors {_values(fac['deltah_factor'])}); single numbers below: {which}")
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


# --------------------------------------------------------------------------- exports for other tools
#: What ``glacgrid export --to`` writes: a CF-1.10 netCDF file, or Cloud-Optimised GeoTIFFs.
EXPORT_FORMATS = ("netcdf", "geotiff")
# coordinates and bounds carry no fill value in CF (xarray adds NaN to float ones by default)
_NO_FILL = ("time", "time_bnds", "x", "y", "lat", "lon", "year", "glacier", "member", "thickness_factor",
            "deltah_factor", "spatial_ref")


def _open_results(store):
    """A finished store (refused while regions are missing), lazily, on its own chunks (``"auto"`` cannot size
    the text variables of a glacier domain store)."""
    from .cube import open_store

    return open_store(store, chunks={}, require_complete=True)


def _title(ds: xr.Dataset, store: Path) -> str:
    return str(ds.attrs.get("title") or f"glacgrid store {Path(store).name}")


def export_netcdf(store: str | Path, out: str | Path | None = None) -> Path:
    """Write a glacgrid Zarr store as one CF-1.10 netCDF-4 file (what any CF reader, GDAL and QGIS open).

    The store's variables, coordinates (``spatial_ref`` grid mapping, ``time``/``time_bnds``, ``rgi_id``)
    and attributes are kept (:func:`glacgrid.metadata.cf_dataset` is applied again, so a store written
    before CF-1.10 gets them too); coordinates carry no fill value; data variables are zlib-compressed.

    Parameters
    ----------
    store : path
        A finished glacgrid store (``results.zarr``, ``static.zarr``, ``downscaled.zarr``, a cube).
    out : path, optional
        The netCDF file (default: the store path with suffix ``.nc``). Written atomically.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    store = Path(store)
    out = Path(out) if out is not None else store.with_suffix(".nc")
    ds = _open_results(store)
    ds = cf_dataset(ds, title=_title(ds, store), history=None)
    for name, var in ds.variables.items():
        keep = {k: v for k, v in var.encoding.items() if k in ("units", "calendar", "dtype")}
        if name in _NO_FILL or name in ds.coords:
            keep["_FillValue"] = None
        elif var.dtype.kind in "fiu":
            keep.update(zlib=True, complevel=4)
        var.encoding = keep
    ds.attrs = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in ds.attrs.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
    return out


def _write_cog(da: xr.DataArray, path: Path, tags: dict[str, str]) -> Path:
    """One 2-D field as a float32 Cloud-Optimised GeoTIFF (nodata NaN, CRS of its grid mapping), atomically."""
    import rasterio
    from rasterio.io import MemoryFile

    arr = np.asarray(da.values, dtype="float32")
    profile = dict(driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype="float32",
                   crs=da.rio.crs, transform=da.rio.transform(), nodata=np.nan)
    with MemoryFile() as mem:
        with mem.open(**profile) as src:
            src.write(arr, 1)
            src.update_tags(**tags)
            src.update_tags(1, **tags)
            src.set_band_description(1, tags.get("long_name", str(da.name)))
        with mem.open() as src, atomic_path(path) as tmp:
            with rasterio.open(tmp, "w", driver="COG", height=arr.shape[0], width=arr.shape[1], count=1,
                               dtype="float32", crs=src.crs, transform=src.transform, nodata=np.nan,
                               compress="DEFLATE") as dst:
                dst.write(src.read(1), 1)
                dst.update_tags(**src.tags())
                dst.update_tags(1, **src.tags(1))
                dst.set_band_description(1, src.descriptions[0])
    return path


def export_geotiff(store: str | Path, out: str | Path | None = None, *, variables=None,
                   domain: str | Path | None = None, by: str = "glacier") -> list[Path]:
    """Write the gridded fields of a store as GeoTIFFs that GDAL and QGIS open with their CRS.

    A store on the ``(y, x)`` grid gives one Cloud-Optimised GeoTIFF per variable and year (and member):
    ``<out>/<var>_<year>[_m<member>].tif``, float32, nodata NaN, tags ``units``, ``long_name``,
    ``standard_name`` and ``year``. The packed store of a domain run is rasterised with
    :func:`glacgrid.domain.export` (one file per glacier window or CRS zone, bands = years).

    Parameters
    ----------
    store : path
        A finished store: ``results.zarr`` of a dense or a domain run, ``static.zarr``, ``downscaled.zarr``.
    out : path, optional
        Output folder (default: the store path with ``_tif`` instead of ``.zarr``).
    variables : sequence of str, optional
        Default: every data variable on the grid (a dense store), ``smb`` and ``thickness`` (a domain store).
    domain : path, optional
        The domain store of a domain run's results (default ``work/domain.zarr`` beside the store).
    by : {"glacier", "zone"}
        Domain results only: one file per glacier window, or per CRS zone.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    InputDataError
        For a store without a grid or a domain, or an unknown variable.
    """
    store = Path(store)
    out = Path(out) if out is not None else store.with_name(store.stem + "_tif")
    ds = _open_results(store)
    if "pixel" in ds.dims:
        from .domain import export as export_domain
        from .domain import open_domain

        dpath = Path(domain) if domain is not None else store.parent / "work" / "domain.zarr"
        if not dpath.exists():
            raise InputDataError(f"{store} holds a domain run's packed pixels; its domain store {dpath} does not "
                                 "exist. Pass the domain store (--domain PATH, usually <output>/work/domain.zarr).")
        variables = variables or [v for v in ("smb", "thickness") if v in ds]
        return export_domain(ds, open_domain(dpath), out, variables=tuple(variables), by=by)
    if not {"y", "x"} <= set(ds.dims):
        raise InputDataError(f"{store} has no (y, x) grid (dims {sorted(map(str, ds.dims))}); export it "
                             "--to netcdf instead.")
    ds = cf_dataset(ds, title=_title(ds, store))
    import rioxarray  # noqa: F401 - registers .rio

    gridded = [str(v) for v in ds.data_vars if {"y", "x"} <= set(ds[v].dims)]
    variables = list(variables) if variables else gridded
    bad = [v for v in variables if v not in gridded]
    if bad:
        raise InputDataError(f"{store} has no gridded variable(s) {bad}; it has {gridded}.")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for var in variables:  # a loop over the few variables, years and members: one file each
        da = ds[var]
        lead = [d for d in da.dims if d not in ("y", "x")]
        stack = da.stack(_one=lead) if lead else da.expand_dims(_one=[0])
        for i in range(stack.sizes["_one"]):
            one = stack.isel(_one=i).transpose("y", "x")
            labels = {d: one[d].values.item() for d in lead}
            if "time" in lead:
                labels["time"] = str(labels["time"])[:7]
            sfx = "".join(f"_{'m' if d == 'member' else ''}{labels[d]}" for d in lead)
            tags = {k: str(da.attrs[k]) for k in ("units", "long_name", "standard_name") if k in da.attrs}
            tags.update({d: str(v) for d, v in labels.items()})
            written.append(_write_cog(one.drop_vars(["_one", *lead], errors="ignore"), out / f"{var}{sfx}.tif", tags))
    return written


def export_store(store: str | Path, to: str, out: str | Path | None = None, **kwargs) -> list[Path]:
    """:func:`export_netcdf` (``to="netcdf"``) or :func:`export_geotiff` (``to="geotiff"``); the files written.

    Parameters
    ----------
    store : path
        A finished glacgrid store.
    to : {"netcdf", "geotiff"}
        The format.
    out : path, optional
        The netCDF file or the GeoTIFF folder (defaults: see the two functions).
    **kwargs
        Passed to :func:`export_geotiff` (``variables``, ``domain``, ``by``).

    Returns
    -------
    list of pathlib.Path
    """
    if to not in EXPORT_FORMATS:
        raise InputDataError(f"Export format {to!r} is not one of {', '.join(EXPORT_FORMATS)}; pick one (--to).")
    if to == "netcdf":
        return [export_netcdf(store, out)]
    return export_geotiff(store, out, **kwargs)
