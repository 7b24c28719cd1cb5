"""Glacier-specific delta-h curves calibrated from observed elevation change (fit once, apply many).

:func:`calibrate_deltah` takes an elevation-change raster (or two DEMs), the reference DEM and a
glacier-index raster, filters outliers by the documented rules of
:mod:`glacgrid.geometry._calibration`, bins the change by normalised elevation
``h_r = (z_max - z) / (z_max - z_min)``, normalises it by the largest binned loss and fits the
Huss et al. (2010) form ``Δh = (h_r + a)**gamma + b (h_r + a) + c`` per glacier, for all glaciers at
once. The result (a Dataset with dim ``glacier``) is what :func:`glacgrid.geometry.deltah_update`
takes as ``curves``; :func:`write_curves` stores it as Zarr (everything, with the binned
observations) or CSV (one row per glacier), :func:`read_curves` reads either back and
:func:`plot_curves` draws them.

:func:`read_dh_pairs` reads per-glacier rasters named ``dh_<name>.tif`` / ``DEM_<name>.tif`` (the
French 1979-2011 data set) into flat pixel arrays, optionally restricted to outlines matched by name.

The calibration is eager: its inputs are observation rasters (a few million pixels at most) and its
result is a small table; dask inputs are computed once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from ..atomic import atomic_path
from ..exceptions import GridMismatchError, InputDataError, StoreError
from ..glaciers import lookup
from ..metadata import provenance, stamp
from . import _calibration as _cal
from ._calibration import STATUS, CalibrationRules

__all__ = ["CalibrationRules", "STATUS", "calibrate_deltah", "read_dh_pairs", "write_curves",
           "read_curves", "plot_curves"]

_CSV_COLUMNS = ("gamma", "a", "b", "c", "calibrated", "status", "rmse", "n_pixels", "n_valid",
                "n_implausible", "n_outliers", "dh_reference", "zmax", "zmin")


def calibrate_deltah(glacier_id: xr.DataArray, dem: xr.DataArray, dh: xr.DataArray | None = None, *,
                     dem_later: xr.DataArray | None = None, names: xr.DataArray | None = None,
                     rules: CalibrationRules = CalibrationRules()) -> xr.Dataset:
    """Fit a delta-h curve per glacier to observed elevation change.

    Parameters
    ----------
    glacier_id : xr.DataArray
        Integer glacier index per pixel (0 = no glacier), any dims (a 2-D raster or a flat ``pixel``).
    dem : xr.DataArray
        Surface elevation (m) on the same dims: the DEM that ``h_r`` is computed from (the start or
        the mean of the period). NaN marks nodata.
    dh : xr.DataArray, optional
        Surface elevation change over the period (m), same dims. NaN marks nodata.
    dem_later : xr.DataArray, optional
        Instead of ``dh``: the DEM at the end of the period (m); ``dh = dem_later - dem``.
    names : xr.DataArray, optional
        Glacier names, dim ``glacier`` indexed by glacier index, carried into the result.
    rules : CalibrationRules
        Outlier rules and fit settings.

    Returns
    -------
    xr.Dataset
        Dim ``glacier`` (the indices present in ``glacier_id``) and ``h_r_bin``: coefficients
        ``gamma, a, b, c`` (NaN where not calibrated), ``calibrated`` (int8), ``status`` (int8, see
        :data:`STATUS`), ``rmse`` (of the normalised fit), pixel counts per rule, ``dh_reference``
        (m, the largest binned loss), ``zmax``, ``zmin`` (m), and per bin ``bin_dh`` (m, median),
        ``bin_dh_norm`` and ``bin_count``.
    """
    if (dh is None) == (dem_later is None):
        raise InputDataError("Give exactly one of dh= (elevation change raster, m) or dem_later= (DEM at "
                             "the end of the period, m); got "
                             f"{'both' if dh is not None else 'neither'}.")
    change = dh if dh is not None else dem_later - dem
    arrays = {"glacier_id": glacier_id, "dem": dem, "dh" if dh is not None else "dem_later": change}
    for name, da in arrays.items():
        if not isinstance(da, xr.DataArray):
            raise InputDataError(f"{name} must be an xarray.DataArray; got {type(da).__name__}.")
        if da.dims != glacier_id.dims or da.shape != glacier_id.shape:
            raise GridMismatchError(f"{name} has dims {da.dims} and shape {da.shape}; expected those of "
                                    f"glacier_id, {glacier_id.dims} {glacier_id.shape}. Reproject or "
                                    "align the rasters onto one grid first.")
    if not np.issubdtype(glacier_id.dtype, np.integer):
        raise InputDataError(f"glacier_id has dtype {glacier_id.dtype}; expected integers (0 = no glacier). "
                             "Fill NaN with 0 and cast with .astype('int32').")
    gid, z, d = (np.asarray(a.values) for a in (glacier_id, dem, change))
    glaciers = np.unique(gid[gid > 0]).astype("int64")
    pos = lookup(gid, glaciers).astype("int64")  # -1 off the glaciers
    out = _cal.calibrate_arrays(pos, z.astype("float64"), d.astype("float64"), glaciers.size, rules)
    return _to_dataset(out, glaciers, names, rules)


def _to_dataset(out: dict, glaciers: np.ndarray, names, rules: CalibrationRules) -> xr.Dataset:
    history = provenance("calibrate_deltah", **{k: getattr(rules, k) for k in rules.__dataclass_fields__})
    vec = lambda key, name: stamp(xr.DataArray(out[key], dims="glacier"), name)  # noqa: E731
    tab = lambda key, name: stamp(xr.DataArray(out[key], dims=("glacier", "h_r_bin")), name)  # noqa: E731
    ds = xr.Dataset(
        {
            "gamma": vec("gamma", "deltah_gamma"), "a": vec("a", "deltah_a"),
            "b": vec("b", "deltah_b"), "c": vec("c", "deltah_c"),
            "calibrated": vec("calibrated", "deltah_calibrated").astype("int8"),
            "status": vec("status", "deltah_status"),
            "rmse": vec("rmse", "deltah_rmse"),
            "n_pixels": vec("n_pixels", "deltah_n_pixels"), "n_valid": vec("n_valid", "deltah_n_valid"),
            "n_implausible": vec("n_implausible", "deltah_n_implausible"),
            "n_outliers": vec("n_outliers", "deltah_n_outliers"),
            "dh_reference": vec("dh_reference", "deltah_dh_reference"),
            "zmax": vec("zmax", "deltah_zmax"), "zmin": vec("zmin", "deltah_zmin"),
            "bin_dh": tab("bin_dh", "deltah_bin_dh"), "bin_dh_norm": tab("bin_dh_norm", "deltah_bin_dh_norm"),
            "bin_count": tab("bin_count", "deltah_bin_count"),
        },
        coords={"glacier": glaciers, "h_r_bin": out["bin_centre"]},
    )
    for k in ds.data_vars:  # (keep the registry's attrs but not the renamed DataArray names)
        ds[k].attrs["history"] = history
    ds["status"].attrs.update(flag_values=list(STATUS), flag_meanings=" ".join(
        v.replace(" ", "_") for v in STATUS.values()))
    ds["h_r_bin"].attrs.update(units="1", long_name="Centre of the normalised-elevation bin")
    ds["glacier"].attrs.update(long_name="Glacier index (as in the glacier_id raster)")
    if names is not None:
        ds = ds.assign_coords(name=("glacier", np.asarray(names.sel(glacier=glaciers).values).astype(str)))
    ds.attrs.update(history=history, curve="dh = clip((h_r + a)**gamma + b*(h_r + a) + c, 0, 1)",
                    rules=repr(rules))
    return ds


# --------------------------------------------------------------------------- reading dh / DEM pairs
def _read_tif(path: Path, nodata_also: tuple[float, ...] = ()):
    import rasterio

    with rasterio.open(path) as src:
        data = src.read(1).astype("float64")
        bad = ~np.isfinite(data)
        if src.nodata is not None:
            bad |= data == src.nodata
        for v in nodata_also:
            bad |= data == v
        data[bad | (data < -1e30)] = np.nan
        return data, src.transform, src.crs


def read_dh_pairs(dh_dir: str | os.PathLike, dem_dir: str | os.PathLike,
                  outlines: str | os.PathLike | None = None, *, name_field: str = "Glacier",
                  encoding: str = "latin-1", dh_prefix: str = "dh_", dem_prefix: str = "DEM_",
                  name_prefix: str = "Glacier_") -> xr.Dataset:
    """Read per-glacier ``dh_<stem>.tif`` / ``DEM_<stem>.tif`` pairs into flat pixel arrays.

    Parameters
    ----------
    dh_dir, dem_dir : path
        Folders of the elevation-change (m) and DEM (m) rasters; a pair shares its stem and grid.
        DEM value 0 is nodata (the French files use it).
    outlines : path, optional
        Outlines (any vector format, any CRS). Only the pairs whose stem is ``name_prefix`` +
        the outline's ``name_field`` are read, and only pixels inside that outline are used.
        Without outlines every pair is read and the glacier is the raster's valid pixels.
    name_field, encoding : str
        Outline attribute holding the glacier name, and the attribute table's encoding.

    Returns
    -------
    xr.Dataset
        Dim ``pixel``: ``glacier_id`` (1..N in sorted name order), ``dem``, ``dh``; coordinate
        ``name`` (dim ``glacier``) of the glacier names; attrs with the file count.
    """
    dh_dir, dem_dir = Path(dh_dir), Path(dem_dir)
    stems = sorted(p.name[len(dh_prefix):-4] for p in dh_dir.glob(f"{dh_prefix}*.tif"))
    if not stems:
        raise InputDataError(f"No '{dh_prefix}*.tif' rasters in {dh_dir}; expected files such as "
                             f"'{dh_prefix}{name_prefix}Saint Sorlin.tif'.")
    shapes = None
    if outlines is not None:
        import geopandas as gpd

        gdf = gpd.read_file(outlines, encoding=encoding)
        if name_field not in gdf.columns:
            raise InputDataError(f"Outlines {outlines} have no attribute {name_field!r}; they have "
                                 f"{[c for c in gdf.columns if c != 'geometry']}. Pass name_field=.")
        shapes = {f"{name_prefix}{n}": geom for n, geom in zip(gdf[name_field], gdf.geometry)}
        shapes = {k: v for k, v in shapes.items() if k in set(stems)}
        if not shapes:
            raise InputDataError(f"No outline of {outlines} matches a raster stem of {dh_dir} "
                                 f"(e.g. {stems[:3]}); check name_field and name_prefix.")
        stems, crs = sorted(shapes), gdf.crs
    parts = {"glacier_id": [], "dem": [], "dh": []}
    names = []
    for i, stem in enumerate(stems, start=1):  # file reading, one pair per glacier
        dem_path = dem_dir / f"{dem_prefix}{stem}.tif"
        if not dem_path.exists():
            raise InputDataError(f"No DEM {dem_path} for {dh_dir / (dh_prefix + stem + '.tif')}; each "
                                 "elevation-change raster needs the DEM of the same stem and grid.")
        dh, transform, dh_crs = _read_tif(dh_dir / f"{dh_prefix}{stem}.tif")
        z, z_transform, _ = _read_tif(dem_path, nodata_also=(0.0,))
        if z.shape != dh.shape or not np.allclose(tuple(z_transform), tuple(transform)):
            raise GridMismatchError(f"{dem_path} ({z.shape}) is not on the grid of the dh raster of "
                                    f"{stem!r} ({dh.shape}); resample one onto the other.")
        inside = np.ones(dh.shape, dtype=bool)
        if shapes is not None:
            from rasterio.features import rasterize

            geom = gpd.GeoSeries([shapes[stem]], crs=crs).to_crs(dh_crs).iloc[0]
            inside = rasterize([(geom, 1)], out_shape=dh.shape, transform=transform, fill=0).astype(bool)
        use = inside & (np.isfinite(dh) | np.isfinite(z))
        parts["glacier_id"].append(np.full(use.sum(), i, dtype="int32"))
        parts["dem"].append(z[use])
        parts["dh"].append(dh[use])
        names.append(stem[len(name_prefix):] if stem.startswith(name_prefix) else stem)
    ds = xr.Dataset({k: ("pixel", np.concatenate(v)) for k, v in parts.items()},
                    coords={"name": ("glacier", np.array(names, dtype=str)),
                            "glacier": np.arange(1, len(names) + 1)})
    ds["dem"].attrs.update(units="m", long_name="Surface elevation (reference DEM of the period)")
    ds["dh"].attrs.update(units="m", long_name="Surface elevation change over the period")
    ds.attrs.update(source=f"{dh_dir} + {dem_dir}" + (f" within {outlines}" if outlines else ""))
    return ds


# --------------------------------------------------------------------------- storage and plot
def write_curves(curves: xr.Dataset, path: str | os.PathLike) -> Path:
    """Store curves: ``*.zarr`` (the whole Dataset) or ``*.csv`` (one row per glacier). Atomic/idempotent."""
    from ..cube import write_dataset

    path = Path(path)
    if path.suffix == ".csv":
        cols = [c for c in _CSV_COLUMNS if c in curves]
        df = curves[cols].to_dataframe()[cols]
        if "name" in curves.coords:
            df.insert(0, "name", curves["name"].values)
        with atomic_path(path) as tmp:
            df.to_csv(tmp, float_format="%.10g")
        return path
    if path.suffix == ".zarr":
        ds = curves.chunk({"glacier": -1, "h_r_bin": -1})
        if "name" in ds.coords:  # numpy's variable-length strings: a Zarr 3 data type with a spec
            ds = ds.assign_coords(name=("glacier", ds["name"].values.astype(np.dtypes.StringDType())))
        return write_dataset(ds, path, region_dim="glacier", overwrite=True)
    raise InputDataError(f"Curves path {path} must end in .zarr or .csv.")


def read_curves(path: str | os.PathLike) -> xr.Dataset:
    """Read curves written by :func:`write_curves` (Zarr or CSV) for ``deltah_update(curves=...)``."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"No delta-h curves at {path}; create them with `glacgrid calibrate-deltah`.")
    if path.suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(path)
        missing = [c for c in ("glacier", "gamma", "a", "b", "c") if c not in df.columns]
        if missing:
            raise InputDataError(f"Curves CSV {path} lacks column(s) {missing}; it has {list(df.columns)}.")
        ds = xr.Dataset.from_dataframe(df.set_index("glacier"))
        if "name" in ds:
            ds = ds.set_coords("name")
        return ds
    from ..cube import open_store

    ds = open_store(path, chunks=None, require_complete=True).load()
    if "name" in ds.coords:
        ds = ds.assign_coords(name=("glacier", np.array(ds["name"].values.tolist(), dtype=str)))
    return ds


def plot_curves(curves: xr.Dataset, path: str | os.PathLike, *, max_panels: int = 95) -> Path:
    """PNG of the calibrated curves: binned observations (dots) and the fit, one panel per glacier."""
    from matplotlib.figure import Figure  # no pyplot: leaves the session's backend (e.g. inline) alone

    from ._kernels import HUSS_LARGE, HUSS_MEDIUM, HUSS_SMALL, deltah_curve, huss_deltah

    ok = curves.where(curves["calibrated"] == 1, drop=True)
    n = min(int(ok.sizes["glacier"]), max_panels)
    if n == 0:
        raise InputDataError("No calibrated glacier to plot (all have status != 0).")
    ncol = 8
    nrow = int(np.ceil((n + 1) / ncol))
    fig = Figure(figsize=(2.2 * ncol, 2.0 * nrow))
    axes = fig.subplots(nrow, ncol, sharex=True, sharey=True)
    axes = np.atleast_1d(axes).ravel()
    h = np.linspace(0, 1, 101)
    for ax, (label, p) in zip(axes[:1], [("generic", None)]):
        for params, name in ((HUSS_LARGE, "> 20 km2"), (HUSS_MEDIUM, "5-20 km2"), (HUSS_SMALL, "< 5 km2")):
            ax.plot(h, huss_deltah(h, params), label=name)
        ax.set_title("Huss et al. 2010", fontsize=8)
        ax.legend(fontsize=6)
    for ax, i in zip(axes[1:], range(n)):
        g = ok.isel(glacier=i)
        ax.plot(g["h_r_bin"], g["bin_dh_norm"], "k.", ms=3)
        ax.plot(h, deltah_curve(h, *(float(g[k]) for k in ("gamma", "a", "b", "c"))), "r-")
        title = str(g["name"].values) if "name" in g.coords else f"glacier {int(g['glacier'])}"
        ax.set_title(f"{title[:22]} (rmse {float(g['rmse']):.2f})", fontsize=7)
    for ax in axes[n + 1:]:
        ax.set_visible(False)
    for ax in axes:
        ax.set_ylim(-0.3, 1.2)
    fig.supxlabel("normalised elevation h_r (0 = top, 1 = terminus)")
    fig.supylabel("normalised thickness change")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path
