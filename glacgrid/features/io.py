"""Feature schema and storage: the feature Dataset in Zarr and as a flat (glacier, year) table.

The :class:`~glacgrid.features.FeatureSchema` (names, units, order) is stored with the features:
in the Zarr attributes (``feature_schema``, JSON) and beside the table (``<table>.schema.json``), so a
model trained on the table can check the data it is later applied to.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import xarray as xr

from ..exceptions import InputDataError, StoreError
from .schema import FeatureSchema

__all__ = ["feature_schema", "to_feature_array", "features_table", "write_features", "read_features",
           "schema_path", "observed_table", "write_table"]


def feature_schema(ds: xr.Dataset, names=None) -> FeatureSchema:
    """FeatureSchema of ``ds``: its data variables (or ``names``) in order, units from their attributes."""
    names = list(names) if names is not None else [str(n) for n in ds.data_vars]
    missing = [n for n in names if n not in ds]
    if missing:
        raise InputDataError(f"Features {missing} are not in the dataset (has {list(ds.data_vars)}).")
    no_units = [n for n in names if "units" not in ds[n].attrs]
    if no_units:
        raise InputDataError(f"Features {no_units} carry no units attribute; stamp them from variables.toml.")
    return FeatureSchema(tuple(names), tuple(str(ds[n].attrs["units"]) for n in names))


def to_feature_array(ds: xr.Dataset, schema=None) -> xr.DataArray:
    """The features as one DataArray ``(..., feature)`` in schema order, with a ``units`` coordinate."""
    schema = schema or feature_schema(ds)
    arr = xr.concat([ds[n].astype("float32") for n in schema.names], dim="feature", coords="minimal",
                    compat="override", join="override")
    arr = arr.assign_coords(feature=list(schema.names), units=("feature", list(schema.units)))
    dims = [d for d in arr.dims if d != "feature"] + ["feature"]
    return arr.transpose(*dims).rename("features")


def features_table(gf: xr.Dataset, table: pd.DataFrame) -> pd.DataFrame:
    """Flat (glacier, year) table with ``glacier``, ``rgi_id``, ``year`` and one column per feature.

    ``table`` maps the glacier index to ``rgi_id`` (see :func:`glacgrid.masks.glacier_table`). Glaciers
    without active pixels keep their rows (features NaN).
    """
    if "rgi_id" not in table.columns:
        raise InputDataError(f"The glacier table needs an 'rgi_id' column; it has {list(table.columns)}.")
    names = [str(n) for n in gf.data_vars]
    df = gf[names].to_dataframe().reset_index()
    unknown = sorted(int(v) for v in set(df["glacier"]) - set(table.index))
    if unknown:
        raise InputDataError(f"Glacier indices {unknown[:10]} are not in the glacier table.")
    df["rgi_id"] = table.loc[df["glacier"].to_numpy(), "rgi_id"].to_numpy()
    cols = ["glacier", "rgi_id", "year", *names]
    return df[cols]


def schema_path(table_path: str | Path) -> Path:
    """Where the schema of a feature table is stored: ``<table>.schema.json``."""
    p = Path(table_path)
    return p.with_name(p.name + ".schema.json")


def write_features(gf: xr.Dataset, directory: str | Path, table: pd.DataFrame, *, fmt: str = "csv",
                   overwrite: bool = True) -> dict[str, Path]:
    """Write glacier features to ``directory/features.zarr`` and ``features.csv`` (or ``.parquet``).

    The Zarr store is written template-then-region along ``glacier`` (resumable, idempotent) and
    carries the schema in ``attrs['feature_schema']``; the table gets ``features.<fmt>.schema.json``.
    Returns the paths written.
    """
    from ..cube import write_dataset
    from ..metadata import provenance

    if fmt not in ("csv", "parquet"):
        raise InputDataError(f"fmt must be 'csv' or 'parquet', got {fmt!r}.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    schema = feature_schema(gf)
    ds = gf.copy()
    ds.attrs["feature_schema"] = json.dumps(schema.to_dict())
    ds.attrs["history"] = "\n".join(filter(None, [gf.attrs.get("history"), provenance("write_features")]))
    chunks = {"glacier": min(max(ds.sizes["glacier"], 1), 4096)}
    if "year" in ds.dims:
        chunks["year"] = -1
    zarr_path = write_dataset(ds.chunk(chunks), directory / "features.zarr", region_dim="glacier",
                              overwrite=overwrite)
    tab, sp = write_table(features_table(gf, table), directory / f"features.{fmt}", schema)
    return {"zarr": zarr_path, "table": tab, "schema": sp}


def write_table(df: pd.DataFrame, path: str | Path, schema) -> tuple[Path, Path]:
    """Write ``df`` as CSV or Parquet (by suffix) through a temporary file, and its schema beside it."""
    from ..atomic import atomic_path

    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise InputDataError(f"A feature table must end in .csv or .parquet, got {path.name!r}.")
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    sp = schema_path(path)
    with atomic_path(sp) as tmp:
        tmp.write_text(json.dumps(schema.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path, sp


def read_features(store: str | Path):
    """Open a feature store written by :func:`write_features`; returns ``(dataset, FeatureSchema)``."""
    from ..cube import open_store

    ds = open_store(store, require_complete=True)
    raw = ds.attrs.get("feature_schema")
    if raw is None:
        raise StoreError(f"{store} has no 'feature_schema' attribute: write it with glacgrid features.")
    schema = FeatureSchema.from_dict(json.loads(raw))
    schema.check(feature_schema(ds, schema.names))
    return ds, schema


def observed_table(gf_units: xr.Dataset, units, obs: pd.DataFrame) -> pd.DataFrame:
    """Features of observation units joined with their observations: one row per observed (unit, year).

    ``gf_units`` has dim ``glacier`` = unit index 1..len(units) (features over all outlines of a unit);
    ``obs`` has ``obs_id``, ``year``, ``smb``. Columns: ``glacier``, ``rgi_id`` (the observation id),
    ``year``, ``smb`` and the features, ready for ``glacgrid cv --glacier-col rgi_id --year-col year``.
    """
    table = pd.DataFrame({"rgi_id": list(units)}, index=pd.RangeIndex(1, len(units) + 1, name="glacier"))
    df = features_table(gf_units, table)
    out = df.merge(obs.rename(columns={"obs_id": "rgi_id"})[["rgi_id", "year", "smb"]], on=["rgi_id", "year"],
                   how="inner")
    names = [c for c in df.columns if c not in ("glacier", "rgi_id", "year")]
    return out[["glacier", "rgi_id", "year", "smb", *names]]
