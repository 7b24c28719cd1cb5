"""Cross-validation of SMB models on a glacier-year table.

Schemes (see :mod:`glacgrid.models.folds`): ``logo``, ``loyo``, ``lsygo``, ``kfold`` (grouped by
glacier) and ``random`` (70/15/15). Each held-out row is predicted by a model fitted on that fold's
training rows only; sample weights, when asked for, are computed from the training rows' target
only. An optional nested search picks hyperparameters inside each outer fold: by an inner grouped
k-fold on the training rows (groups = the outer scheme's unit: glaciers, or years for ``loyo``),
or, for ``random``, on the 15 % validation rows. Metrics: r, r², RMSE, MAE and bias overall and per fold.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InputDataError, MissingVariableError, ModelError
from ._kernels import regression_metrics
from .ann import ANNModel
from .factory import make_model
from .folds import SCHEMES, Fold, make_folds
from .schema import FeatureSchema, write_json_atomic
from .weights import sample_weights

PER_FOLD_COLUMNS = ["fold", "n", "r", "r2", "rmse", "mae", "bias"]
#: Inner folds of the nested hyperparameter search.
INNER_SPLITS = 3


@dataclass
class CVResult:
    """Out-of-fold skill of a model kind.

    Attributes
    ----------
    scheme : str
        One of :data:`SCHEMES`.
    metrics : dict of str to float
        ``r``, ``r2`` (1 - SS_res/SS_tot), ``rmse``, ``mae`` and ``bias`` (mean of predicted -
        observed) over all out-of-fold predictions; errors in target units (e.g. m w.e.).
    per_fold : DataFrame
        Columns ``fold`` (held-out glacier, year or a description), ``n``, ``r`` (NaN with fewer
        than 2 rows or a constant series), ``r2``, ``rmse``, ``mae``, ``bias``; plus ``params``
        (the hyperparameters chosen) when a nested search ran.
    predictions : DataFrame
        Columns ``glacier``, ``year``, ``observed``, ``predicted``, ``fold``; one row per held-out
        row, with the input table's index, in table order (every row except for ``random``, whose
        only held-out rows are its 15 % test rows).
    kind, target, features, seed, weighting, options
        What was cross-validated, for the record.
    """

    scheme: str
    metrics: dict[str, float]
    per_fold: pd.DataFrame
    predictions: pd.DataFrame
    kind: str = ""
    target: str = ""
    features: tuple[str, ...] = ()
    seed: int = 0
    weighting: str | None = None
    options: dict = field(default_factory=dict)

    def to_json(self, path: str | Path) -> None:
        """Write the result as JSON (NaN written as null) to ``path``."""
        write_json_atomic(Path(path), {
            "scheme": self.scheme, "kind": self.kind, "target": self.target,
            "features": list(self.features), "seed": self.seed, "weighting": self.weighting,
            "options": {k: v for k, v in self.options.items()}, "metrics": self.metrics,
            "per_fold": self.per_fold.to_dict(orient="records"),
            "predictions": self.predictions.to_dict(orient="records"),
        })


def _numeric_column(table: pd.DataFrame, col: str, glacier_col: str, year_col: str) -> np.ndarray:
    try:
        values = table[col].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputDataError(f"Column {col!r} is not numeric (dtype {table[col].dtype}); convert it first.") from err
    bad = ~np.isfinite(values)
    if bad.any():
        first = table.loc[bad, [glacier_col, year_col]].head(3).to_dict(orient="records")
        raise InputDataError(
            f"Column {col!r} holds {int(bad.sum())} NaN/inf value(s) (e.g. {first}). glacgrid never drops "
            f"rows silently: drop them (table.dropna(subset=[{col!r}])) or fill them before cross-validating."
        )
    return values


def _grid(search: Mapping[str, Sequence] | None) -> list[dict]:
    if not search:
        return []
    if not isinstance(search, Mapping) or any(isinstance(v, str) or not len(v) for v in search.values()):
        raise ModelError(f"search must map option names to non-empty lists of values; got {search!r}.")
    keys = list(search)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(search[k] for k in keys))]


def _fit(kind, seed, options, X, y, schema, weighting, validation=None):
    model = make_model(kind, seed=seed, **options)
    w = sample_weights(y, weighting)
    if validation is not None and isinstance(model, ANNModel):
        return model.fit(X, y, schema, sample_weight=w, validation=validation)
    return model.fit(X, y, schema, sample_weight=w)


def _select(kind, seed, options, grid, X, y, groups, schema, weighting, fold: Fold):
    """The grid point with the lowest inner RMSE (ties: the first)."""
    if fold.validation is not None:
        Xv, yv = X[fold.validation], y[fold.validation]
        scores = [np.sqrt(np.mean((_fit(kind, seed, {**options, **p}, X[fold.train], y[fold.train], schema,
                                        weighting).predict(Xv) - yv) ** 2)) for p in grid]
        return grid[int(np.argmin(scores))]
    tr = np.flatnonzero(fold.train)
    uniq = list(dict.fromkeys(groups[tr].tolist()))
    n_inner = min(INNER_SPLITS, len(uniq))
    if n_inner < 2:
        raise ModelError(f"Fold {fold.name!r}: the nested search needs at least 2 groups in the training rows; "
                         f"found {len(uniq)}. Drop search= or use a scheme that leaves more groups.")
    order = np.random.default_rng(seed).permutation(len(uniq))
    assign = {uniq[i]: j % n_inner for j, i in enumerate(order)}
    inner = np.array([assign[g] for g in groups[tr].tolist()])
    scores = []
    for p in grid:
        sq = 0.0
        for j in range(n_inner):
            te, fi = tr[inner == j], tr[inner != j]
            pred = _fit(kind, seed, {**options, **p}, X[fi], y[fi], schema, weighting).predict(X[te])
            sq += float(np.sum((pred - y[te]) ** 2))
        scores.append(sq)
    return grid[int(np.argmin(scores))]


def cross_validate(
    table: pd.DataFrame,
    *,
    target: str,
    features: Sequence[str],
    glacier_col: str = "glacier",
    year_col: str = "year",
    kind: str = "lasso",
    scheme: str = "logo",
    seed: int = 0,
    units: Sequence[str] | None = None,
    weighting: str | None = None,
    k: int = 2,
    n_splits: int = 5,
    search: Mapping[str, Sequence] | None = None,
    **model_options,
) -> CVResult:
    """Cross-validate a model kind on a glacier-year table.

    Parameters
    ----------
    table : DataFrame
        One row per observation: ``glacier_col``, ``year_col``, ``target`` and ``features``.
    target : str
        Column to predict (e.g. annual SMB in m w.e.).
    features : sequence of str
        Feature columns, in the order the model uses them.
    glacier_col, year_col : str
        Columns holding the glacier id and the (hydrological) year.
    kind : str
        Model kind, see :func:`glacgrid.models.make_model`.
    scheme : {"logo", "loyo", "lsygo", "kfold", "random"}
        See :mod:`glacgrid.models.folds`.
    seed : int
        Seed of every fold's model and of the shuffled schemes.
    units : sequence of str, optional
        Units of the features (recorded in each fold model's schema); empty strings if omitted.
    weighting : {None, "kde", "frequency"}
        Sample weights (:func:`glacgrid.models.sample_weights`), from each fold's training target.
    k : int
        ``lsygo`` group size (k glaciers x k years per test fold).
    n_splits : int
        Number of ``kfold`` folds.
    search : dict of str to list, optional
        Hyperparameter grid (e.g. ``{"C": [0.3, 1, 3]}``) chosen inside every outer fold.
    **model_options
        Passed to :func:`make_model` (e.g. ``preset``, ``epochs``, ``ensemble``).

    Returns
    -------
    CVResult
    """
    grid = _checked_grid(kind, scheme, seed, weighting, search, model_options)
    data = _design(table, target, features, glacier_col, year_col, units)
    folds = make_folds(scheme, data.glaciers, data.years, k=k, n_splits=n_splits, seed=seed)
    inner_groups = np.asarray(data.years if scheme == "loyo" else data.glaciers, dtype=object)
    predicted, fold_of, rows = _out_of_fold(data, folds, scheme, kind, seed, model_options, grid, inner_groups,
                                            weighting)
    held = np.zeros(data.y.shape, bool)
    for fold in folds:
        held |= fold.test
    predictions = pd.DataFrame(
        {"glacier": data.glaciers, "year": data.years, "observed": data.y, "predicted": predicted,
         "fold": fold_of},
        index=table.index,
    )[held]
    cols = PER_FOLD_COLUMNS + (["params"] if grid else [])
    return CVResult(
        scheme=scheme, metrics=regression_metrics(data.y[held], predicted[held]),
        per_fold=pd.DataFrame(rows, columns=cols), predictions=predictions,
        kind=kind, target=target, features=data.features, seed=seed, weighting=weighting,
        options={**model_options, **({"search": {k_: list(v) for k_, v in search.items()}} if grid else {})},
    )


def _checked_grid(kind: str, scheme: str, seed: int, weighting: str | None,
                  search: Mapping[str, Sequence] | None, model_options: dict) -> list[dict]:
    """The search grid; fails on a bad scheme, kind, option or weighting name before any work."""
    if scheme not in SCHEMES:
        raise ModelError(f"Unknown cross-validation scheme {scheme!r}; valid schemes: {', '.join(SCHEMES)}.")
    grid = _grid(search)
    for p in grid or [{}]:
        make_model(kind, seed=seed, **{**model_options, **p})
    sample_weights(np.zeros(1), weighting)
    return grid


@dataclass(frozen=True)
class _Design:
    """The checked arrays of a cross-validation: features ``X`` (rows, features), target ``y``, row ids."""

    X: np.ndarray
    y: np.ndarray
    glaciers: np.ndarray
    years: np.ndarray
    schema: FeatureSchema
    features: tuple


def _design(table: pd.DataFrame, target: str, features: Sequence[str], glacier_col: str, year_col: str,
            units: Sequence[str] | None) -> _Design:
    """Check the table's columns and values and take out the arrays (nothing is dropped silently)."""
    if not isinstance(table, pd.DataFrame):
        raise InputDataError(f"table must be a pandas DataFrame; got {type(table).__name__}.")
    if len(table) == 0:
        source = table.attrs.get("source")
        raise InputDataError(
            f"The cross-validation table{f' {source}' if source else ''} has no rows (columns: {list(table.columns)}): "
            "there is nothing to cross-validate. Check that the feature table was written completely and that "
            "its observations were matched to glaciers."
        )
    if isinstance(features, str):
        raise ModelError(f"features must be a sequence of column names, not one string; use [{features!r}].")
    features = list(features)
    if not features:
        raise ModelError("features is empty: name at least one feature column.")
    if target in features:
        raise ModelError(f"The target {target!r} is also listed as a feature; remove it from features.")
    schema = FeatureSchema(tuple(features), tuple(units) if units is not None else ("",) * len(features))
    missing = [c for c in dict.fromkeys([glacier_col, year_col, target, *features]) if c not in table.columns]
    if missing:
        raise MissingVariableError(
            f"Column(s) {missing} not found in the table; it has {list(table.columns)}. "
            "Rename the columns or pass glacier_col=/year_col=/target=/features= to match."
        )
    for col in (glacier_col, year_col):
        if table[col].isna().any():
            raise InputDataError(f"Column {col!r} holds {int(table[col].isna().sum())} missing value(s); "
                                 "every row needs a glacier id and a year.")
    X = np.column_stack([_numeric_column(table, c, glacier_col, year_col) for c in features])
    y = _numeric_column(table, target, glacier_col, year_col)
    if np.ptp(y) == 0:
        raise ModelError(f"Target {target!r} is constant ({float(y[0]):g}) over the table: there is nothing to learn "
                         "or score. Check the observations.")
    return _Design(X, y, table[glacier_col].to_numpy(), table[year_col].to_numpy(), schema, tuple(features))


def _out_of_fold(data: _Design, folds: list[Fold], scheme: str, kind: str, seed: int, model_options: dict,
                 grid: list[dict], inner_groups: np.ndarray, weighting: str | None):
    """Fit a model per fold and predict its test rows: ``(predicted, fold_of, per-fold rows)``."""
    X, y, schema = data.X, data.y, data.schema
    predicted = np.full(y.shape, np.nan)
    fold_of = np.full(y.shape, None, dtype=object)
    rows = []
    for fold in folds:
        try:
            if fold.train.sum() == 0:
                raise ModelError("no training rows are left")
            params = _select(kind, seed, model_options, grid, X, y, inner_groups, schema, weighting,
                             fold) if grid else {}
            val = (X[fold.validation], y[fold.validation]) if fold.validation is not None else None
            model = _fit(kind, seed, {**model_options, **params}, X[fold.train], y[fold.train], schema,
                         weighting, validation=val)
        except ModelError as err:
            raise ModelError(f"Fold {fold.name!r} ({scheme}): {err}") from err
        predicted[fold.test] = model.predict(X[fold.test])
        fold_of[fold.test] = fold.name
        row = {"fold": fold.name, "n": int(fold.test.sum()),
               **regression_metrics(y[fold.test], predicted[fold.test])}
        if grid:
            row["params"] = params
        rows.append(row)
    return predicted, fold_of, rows
