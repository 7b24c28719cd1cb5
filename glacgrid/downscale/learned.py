"""Learned (ML) downscaling: a coarse forcing plus topography mapped to a reference's fine fields.

:class:`LearnedDownscaling` learns, per variable, what bilinear interpolation of the coarse field misses
at a fine point: ``t2m_fine - (t2m_bilinear + lapse_rate * dz)`` (K; ``lapse_rate`` -0.0065 K m-1 by default,
so that temperature follows it beyond the elevations seen in fitting) and ``log((tp_fine + 1) / (tp_bilinear + 1))``, from the
predictors (:data:`FEATURES`) the coarse field interpolated to the point, the point's elevation, its
difference to the interpolated coarse orography, latitude, longitude and the calendar month (on the unit
circle). It is fitted on the cells of a fine reference (e.g. ERA5 0.25 deg -> ERA5-Land 0.1 deg) over one
period and applied to any grid and any period with :meth:`LearnedDownscaling.downscale`, blockwise
(``xr.apply_ufunc(dask="parallelized")``) like :func:`glacgrid.downscale.downscale`, whose output it mirrors.

The regressor is scikit-learn's squared-error gradient boosting. As the SMB models of
:mod:`glacgrid.models` (the same artifact conventions, without importing them: downscale lies below
models), the fitted trees are copied into plain numeric arrays and every prediction -- right after
``fit`` as after loading -- is computed by the numpy/numba kernel
:func:`glacgrid.downscale._kernels.tree_sum`, never by the estimator. The artifact is a directory:

``model.json``
    kind ``learned_downscaling``, features, variables, hyperparameters, the fitting period and the
    training summary (rows, in-sample RMSE, seconds), software versions and the sha256 of the arrays.
``arrays.npz``
    numeric arrays only (``numpy.load(allow_pickle=False)``): per variable the concatenated trees
    ``<var>_roots``, ``_left``, ``_right``, ``_feature`` (int64), ``_threshold``, ``_value`` (float64, the
    leaf values already multiplied by the learning rate) and ``_init`` (the initial constant).

Trees do not extrapolate: at elevations or coarse values outside those seen in fitting the correction
is that of the nearest seen case. Train on a reference covering the elevations you apply to.
"""

from __future__ import annotations

import hashlib
import io
import json
import time as _time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from ..atomic import atomic_path, verified_bytes
from ..exceptions import GridMismatchError, InputDataError, MissingVariableError, ModelError
from ..grid import TargetGrid
from ..metadata import provenance, software_versions, stamp
from ..units import T0
from . import _kernels
from .biascorrect import _months, _overlap
from .regrid import regrid

__all__ = ["LearnedDownscaling", "FEATURES", "cell_grid", "learned_downscale"]

#: Predictors, in column order.
FEATURES = _kernels.LEARNED_FEATURES
#: Per variable: additive target (``+``: temperature) or log-ratio target (``*``: precipitation).
TARGET_KINDS = {"t2m": "+", "tp": "*"}
KIND = "learned_downscaling"
FORMAT_VERSION = 1
MODEL_JSON, ARRAYS_FILE = "model.json", "arrays.npz"
_TREE = ("roots", "left", "right", "feature", "threshold", "value", "init")


def cell_grid(lat: np.ndarray, lon: np.ndarray, *, chunks: tuple[int, int] | None = None) -> TargetGrid:
    """The geographic :class:`~glacgrid.grid.TargetGrid` whose pixel centres are the cell centres ``lat`` x ``lon``.

    Parameters
    ----------
    lat, lon : array
        Regularly spaced cell centres (degrees, any order).
    chunks : (int, int), optional
        Default: the whole grid in one chunk.

    Returns
    -------
    TargetGrid
        North-up (``y`` = ``lat`` descending), EPSG:4326.
    """
    lat, lon = np.sort(np.asarray(lat, "float64"))[::-1], np.sort(np.asarray(lon, "float64"))
    if lat.size < 1 or lon.size < 1:
        raise GridMismatchError(f"cell_grid needs at least one cell; got {lat.size} latitudes and {lon.size} longitudes.")
    dlat = float(np.abs(np.diff(lat)).mean()) if lat.size > 1 else 0.1
    dlon = float(np.diff(lon).mean()) if lon.size > 1 else 0.1
    transform = (dlon, 0.0, float(lon[0]) - dlon / 2, 0.0, -dlat, float(lat[0]) + dlat / 2)
    return TargetGrid("EPSG:4326", transform, (lat.size, lon.size), chunks=chunks or (lat.size, lon.size))


def _check_cube(ds: xr.Dataset, what: str, variables: Sequence[str], orog: bool = True) -> None:
    need = [*variables, *(["orog"] if orog else [])]
    missing = [v for v in need if v not in ds.data_vars]
    if missing:
        raise MissingVariableError(f"The {what} has no {missing} (variables: {sorted(map(str, ds.data_vars))}); "
                                   "read it with glacgrid.ingest (open_era5land / read_forcing with the invariant file).")
    for dim in ("lat", "lon"):
        if dim not in ds.dims:
            raise GridMismatchError(f"The {what} has no {dim!r} dimension (dims {dict(ds.sizes)}); expected a lat/lon cube.")
    if "member" in ds.dims:
        raise InputDataError(f"The {what} has a 'member' dimension; downscale one member (or the member mean) at a time.")


def _on_grid(ds: xr.Dataset, name: str, grid: TargetGrid) -> np.ndarray:
    """A reference field ``(..., lat, lon)`` on the grid's ``(y, x)`` order (lat descending), as float64."""
    da = ds[name].sortby("lat", ascending=False).sortby("lon")
    return np.asarray(da.transpose(..., "lat", "lon").values, dtype="float64")


def _flatten(gbr) -> dict[str, np.ndarray]:
    """A fitted ``GradientBoostingRegressor`` as concatenated tree arrays (leaf values times the learning rate)."""
    roots, left, right, feat, thr, val = [], [], [], [], [], []
    offset = 0
    lr = float(gbr.learning_rate)
    for est in gbr.estimators_[:, 0]:
        t = est.tree_
        n = t.node_count
        leaf = t.children_left < 0
        roots.append(offset)
        left.append(np.where(leaf, -1, t.children_left + offset))
        right.append(np.where(leaf, -1, t.children_right + offset))
        feat.append(np.where(leaf, 0, t.feature))
        thr.append(np.where(leaf, 0.0, t.threshold))
        val.append(lr * t.value.reshape(n))
        offset += n
    init = float(np.asarray(gbr.init_.constant_).ravel()[0])
    return {"roots": np.asarray(roots, "int64"), "left": np.concatenate(left).astype("int64"),
            "right": np.concatenate(right).astype("int64"), "feature": np.concatenate(feat).astype("int64"),
            "threshold": np.concatenate(thr).astype("float64"), "value": np.concatenate(val).astype("float64"),
            "init": np.asarray([init], "float64")}


@dataclass(frozen=True)
class LearnedDownscaling:
    """A fitted learned downscaling (one boosted-tree model per variable).

    Attributes
    ----------
    variables : tuple of str
        ``t2m`` and/or ``tp``.
    period : (str, str)
        First and last month of the fitting period (``YYYY-MM``).
    trees : mapping
        Per variable the flattened trees (see the module notes).
    hyperparameters : mapping
        Of the gradient boosting.
    training : mapping
        Per variable: rows, in-sample RMSE of the fine field before (bilinear) and after, seconds.
    """

    variables: tuple[str, ...]
    period: tuple[str, str]
    trees: Mapping[str, Mapping[str, np.ndarray]] = field(repr=False)
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, coarse: xr.Dataset, reference: xr.Dataset, *, period: tuple[str, str] | None = None,
            variables: Sequence[str] = ("t2m", "tp"), n_estimators: int = 200, max_depth: int = 4,
            learning_rate: float = 0.1, subsample: float = 0.8, min_samples_leaf: int = 20,
            seed: int = 0, position: bool = True, lapse_rate: float = -0.0065) -> "LearnedDownscaling":
        """Fit on the cells of ``reference`` over the months both cubes cover (within ``period``).

        Parameters
        ----------
        coarse : Dataset
            The coarse forcing: ``t2m`` (K), ``tp`` (kg m-2 per month) on ``(time, lat, lon)`` and ``orog`` (m),
            e.g. ERA5 0.25 deg from :func:`glacgrid.ingest.read_forcing` (kind ``era5``, with the invariant file).
        reference : Dataset
            The fine reference in the same units with its ``orog``, e.g. ERA5-Land 0.1 deg
            (:func:`glacgrid.ingest.open_era5land`). Its cells are the training points.
        period : (str, str), optional
            First and last month to fit on (``"1981-01"``, ``"2000-12"``); default all shared months.
        variables : sequence of str
            Variables to learn (``t2m``, ``tp``).
        n_estimators, max_depth, learning_rate, subsample, min_samples_leaf : number
            Of scikit-learn's ``GradientBoostingRegressor`` (squared error).
        seed : int
            Random state of the row subsampling.
        position : bool
            Use latitude and longitude as predictors. False sets both columns to 0 (in fitting and
            prediction): the correction then depends on elevation, the coarse field and the month only,
            and cannot memorise the training cells.
        lapse_rate : float
            Baseline lapse rate (K m-1) of temperature: the trees learn ``t2m_fine - (t2m_bilinear + lapse_rate *
            dz)``, so that beyond the elevations seen in fitting (where trees hold their last value) temperature
            still follows this lapse rate. 0 learns the plain residual of bilinear interpolation.

        Returns
        -------
        LearnedDownscaling
        """
        from sklearn.ensemble import GradientBoostingRegressor

        unknown = [v for v in variables if v not in TARGET_KINDS]
        if unknown or not variables:
            raise InputDataError(f"Cannot learn {list(variables)}: variables must be among {sorted(TARGET_KINDS)}.")
        _check_cube(coarse, "coarse forcing", variables)
        _check_cube(reference, "reference", variables)
        common = _overlap(coarse, reference, period,
                          "the learned downscaling needs every calendar month, ideally 10+ years")
        grid = cell_grid(reference["lat"].values, reference["lon"].values)
        sel_c = coarse.isel(time=np.searchsorted(_months(coarse), common))
        sel_r = reference.isel(time=np.searchsorted(_months(reference), common))
        z = _on_grid(reference, "orog", grid)
        ll = grid.lonlat()
        lat, lon = np.asarray(ll["lat"].values), np.asarray(ll["lon"].values)
        z_c = np.asarray(regrid(coarse["orog"], grid).values, dtype="float64")
        month = (common.astype("int64") % 12 + 1)
        params = {"n_estimators": int(n_estimators), "max_depth": int(max_depth), "learning_rate": float(learning_rate),
                  "subsample": float(subsample), "min_samples_leaf": int(min_samples_leaf), "seed": int(seed),
                  "position": bool(position), "lapse_rate": float(lapse_rate)}
        trees, training = {}, {}
        for v in variables:
            t0 = _time.perf_counter()
            c = np.asarray(regrid(sel_c[v], grid).values, dtype="float64")
            fine = _on_grid(sel_r, v, grid)
            X = _kernels.learned_features(c, z_c, z, lat, lon, month)
            if not position:
                X[:, 3:5] = 0.0
            base = _baseline(v, c.reshape(-1), X, float(lapse_rate))
            y = _kernels.learned_target(fine.reshape(-1), base, TARGET_KINDS[v])
            ok = np.isfinite(y) & np.isfinite(X).all(axis=1)
            if ok.sum() < 100:
                raise InputDataError(f"Only {int(ok.sum())} finite training rows for {v!r}; check the cubes' missing values.")
            gbr = GradientBoostingRegressor(loss="squared_error", n_estimators=params["n_estimators"],
                                            max_depth=params["max_depth"], learning_rate=params["learning_rate"],
                                            subsample=params["subsample"], min_samples_leaf=params["min_samples_leaf"],
                                            random_state=params["seed"])
            gbr.fit(X[ok], y[ok])
            trees[v] = _flatten(gbr)
            pred = _kernels.learned_inverse(_predict(trees[v], X), base, TARGET_KINDS[v])
            f = fine.reshape(-1)
            training[v] = {"rows": int(ok.sum()), "seconds": round(_time.perf_counter() - t0, 3),
                           "rmse_bilinear": float(np.sqrt(np.mean((c.reshape(-1) - f)[ok] ** 2))),
                           "rmse_fit": float(np.sqrt(np.mean((pred - f)[ok] ** 2)))}
        return cls(tuple(variables), (str(common[0]), str(common[-1])), trees, params, training)

    # ------------------------------------------------------------------ predict
    def predict(self, variable: str, X: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """The fine field (K or kg m-2 per month) from the predictor table ``X`` (:data:`FEATURES` columns) and
        the interpolated coarse values ``coarse`` (one per row). Rows with NaN give NaN. A model fitted with
        ``position=False`` ignores the ``lat``/``lon`` columns."""
        if variable not in self.trees:
            raise InputDataError(f"The learned downscaling was fitted for {list(self.variables)}, not {variable!r}.")
        X = np.asarray(X, dtype="float64")
        if X.ndim != 2 or X.shape[1] != len(FEATURES):
            raise InputDataError(f"X has shape {X.shape}; expected (n, {len(FEATURES)}) with columns {FEATURES}.")
        if not self.hyperparameters.get("position", True):
            X = X.copy()
            X[:, 3:5] = 0.0
        base = _baseline(variable, np.asarray(coarse, dtype="float64").reshape(-1), X,
                         float(self.hyperparameters.get("lapse_rate", 0.0)))
        return _kernels.learned_inverse(_predict(self.trees[variable], X), base, TARGET_KINDS[variable])

    def downscale(self, coarse: xr.Dataset, grid: TargetGrid, dem: xr.DataArray, *, time_chunk: int = 12) -> xr.Dataset:
        """The coarse forcing downscaled to ``grid`` with surface elevation ``dem``: lazy, blockwise.

        Parameters
        ----------
        coarse : Dataset
            ``t2m`` (K), ``tp`` (kg m-2 per month) on ``(time, lat, lon)`` and ``orog`` (m), any period.
        grid : TargetGrid
            Target grid (any CRS); output chunks ``(time_chunk, *grid.chunks)``.
        dem : DataArray
            Surface elevation (m) on the grid's ``(y, x)``; NaN pixels give NaN.
        time_chunk : int
            Output chunk along ``time``.

        Returns
        -------
        Dataset
            As :func:`glacgrid.downscale.downscale`: ``temp`` (degC) and/or ``prcp`` (kg m-2 per month) on
            ``(time, y, x)`` and ``reference_elevation`` (m).
        """
        _check_cube(coarse, "coarse forcing", self.variables)
        if dem.dims != ("y", "x") or dem.shape != grid.shape:
            raise GridMismatchError(f"The DEM has dims {dem.dims} and shape {dem.shape}; expected ('y', 'x') and {grid.shape}.")
        kw = {"time_chunk": time_chunk}
        z_c = regrid(coarse["orog"], grid, **kw)
        zd = dem.data if isinstance(dem.data, dsa.Array) else dsa.from_array(np.asarray(dem), chunks=grid.chunks)
        z = xr.DataArray(zd.astype("float64").rechunk(grid.chunks), dims=("y", "x"), coords=grid.coords())
        ll = grid.lonlat()
        month = coarse["time"].dt.month.astype("int64").chunk({"time": time_chunk})
        hist = provenance("learned_downscale", period=self.period, **dict(self.hyperparameters))
        out = {}
        for v, name in (("t2m", "temp"), ("tp", "prcp")):
            if v not in self.variables:
                continue
            c = regrid(coarse[v], grid, **kw)
            da = xr.apply_ufunc(_block, c, z_c, z, ll["lat"], ll["lon"], month,
                                kwargs={"model": self, "variable": v}, dask="parallelized", output_dtypes=["float32"])
            da = da.transpose("time", "y", "x").assign_coords({"time": coarse["time"], **grid.coords()})
            out[name] = stamp(da, name, history=hist)
        out["reference_elevation"] = stamp(z.astype("float32"), "reference_elevation")
        ds = xr.Dataset(out)
        ds.attrs.update({"downscaling": f"{KIND} fitted on {self.period[0]}..{self.period[1]}", "history": hist})
        return ds

    # ------------------------------------------------------------------ artifact
    def to_artifact(self, directory: str | Path) -> Path:
        """Write ``model.json`` and ``arrays.npz`` (numeric arrays only) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"{v}_{k}": a for v, t in self.trees.items() for k, a in t.items()}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        with atomic_path(directory / ARRAYS_FILE) as tmp:
            tmp.write_bytes(data)
        meta = {"format_version": FORMAT_VERSION, "kind": KIND, "features": list(FEATURES),
                "variables": list(self.variables), "target_kinds": {v: TARGET_KINDS[v] for v in self.variables},
                "period": list(self.period), "hyperparameters": dict(self.hyperparameters),
                "training": dict(self.training),
                "arrays": {"file": ARRAYS_FILE, "sha256": hashlib.sha256(data).hexdigest(),
                           "format": "numpy npz, numeric arrays only (allow_pickle=False)", "names": sorted(arrays)},
                "versions": software_versions("scikit-learn")}
        with atomic_path(directory / MODEL_JSON) as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def from_artifact(cls, directory: str | Path) -> "LearnedDownscaling":
        """Load a model written by :meth:`to_artifact` (no scikit-learn, no pickle); the arrays' sha256 is checked."""
        directory = Path(directory)
        path = directory / MODEL_JSON
        if not path.is_file():
            raise ModelError(f"{path} is missing; expected a learned-downscaling artifact written by "
                             "LearnedDownscaling.to_artifact.")
        try:
            meta = json.loads(path.read_text())
            if meta.get("kind") != KIND or int(meta.get("format_version", -1)) > FORMAT_VERSION:
                raise ModelError(f"{path} holds kind {meta.get('kind')!r}, format {meta.get('format_version')}; expected "
                                 f"{KIND!r}, format <= {FORMAT_VERSION}. Load it with the tool that wrote it.")
            if list(meta["features"]) != list(FEATURES):
                raise ModelError(f"{path} was fitted on features {meta['features']}; this glacgrid computes {list(FEATURES)}. "
                                 "Refit the model.")
            variables, arr = tuple(meta["variables"]), meta["arrays"]
            apath, digest = directory / str(arr["file"]), str(arr["sha256"])
        except (ValueError, KeyError, TypeError) as err:
            raise ModelError(f"{path} is not a valid learned-downscaling model.json ({err!r}); re-export the model.") from err
        data = verified_bytes(apath, digest, path)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except ValueError as err:
            raise ModelError(f"Refusing to load {apath}: it holds non-numeric arrays ({err}); glacgrid writes numeric "
                             "arrays only. Re-export the model with glacgrid.") from err
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise ModelError(f"{apath} is not a numpy npz archive ({err}); re-export the model with glacgrid.") from err
        missing = [f"{v}_{k}" for v in variables for k in _TREE if f"{v}_{k}" not in arrays]
        if missing:
            raise ModelError(f"{apath} lacks the arrays {missing}; re-export the model.")
        trees = {v: {k: arrays[f"{v}_{k}"] for k in _TREE} for v in variables}
        return cls(variables, tuple(meta["period"]), trees, dict(meta["hyperparameters"]), dict(meta.get("training", {})))


def _baseline(variable: str, coarse: np.ndarray, X: np.ndarray, lapse_rate: float) -> np.ndarray:
    """What the trees correct: temperature moved by ``lapse_rate`` over ``dz`` (column 2), precipitation as is."""
    return coarse + lapse_rate * X[:, 2] if variable == "t2m" else coarse


def _predict(trees: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """The predicted target for every row of ``X`` (NaN where a row holds NaN)."""
    out = np.full(X.shape[0], np.nan)
    ok = np.isfinite(X).all(axis=1)
    if ok.any():
        out[ok] = float(trees["init"][0]) + _kernels.tree_sum(
            X[ok], trees["roots"], trees["left"], trees["right"], trees["feature"], trees["threshold"], trees["value"])
    return out


def _block(c, z_c, z, lat, lon, month, *, model: LearnedDownscaling, variable: str) -> np.ndarray:
    """One ``(time, y, x)`` block: predictors, trees, inverse target (temperature in degC)."""
    c = np.asarray(c, dtype="float64")
    space = c.shape[1:]

    def sp(a):
        return np.broadcast_to(np.asarray(a, dtype="float64"), (1, *space))[0]

    m = np.broadcast_to(np.asarray(month), (c.shape[0], 1, 1))[:, 0, 0]
    X = _kernels.learned_features(c, sp(z_c), sp(z), sp(lat), sp(lon), m)
    fine = model.predict(variable, X, c.reshape(-1)).reshape(c.shape)
    if variable == "t2m":
        fine = fine - T0
    return fine.astype("float32")


def learned_downscale(coarse: xr.Dataset, reference: xr.Dataset, grid: TargetGrid, dem: xr.DataArray, *,
                      period: tuple[str, str] | None = None, **kwargs: Any) -> xr.Dataset:
    """Fit :class:`LearnedDownscaling` on ``reference`` over ``period`` and downscale all of ``coarse`` to ``grid``.

    Parameters
    ----------
    coarse, reference : Dataset
        As :meth:`LearnedDownscaling.fit`.
    grid : TargetGrid
        Target grid.
    dem : DataArray
        Surface elevation (m) on the grid.
    period : (str, str), optional
        Fitting period.
    **kwargs
        Hyperparameters of :meth:`LearnedDownscaling.fit`.

    Returns
    -------
    Dataset
        As :meth:`LearnedDownscaling.downscale`.
    """
    model = LearnedDownscaling.fit(coarse, reference, period=period, **kwargs)
    return model.downscale(coarse, grid, dem)
