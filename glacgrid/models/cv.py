"""Grouped cross-validation of SMB models on a glacier-wide table.

``logo`` (leave-one-glacier-out) holds out every row of one glacier per fold; ``loyo``
(leave-one-year-out) every row of one year. Each held-out row is predicted by a model fitted on
the other folds only, and every row of the table is predicted exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InputDataError, MissingVariableError, ModelError
from . import _kernels, make_model
from .schema import FeatureSchema, write_json_atomic

#: Cross-validation schemes: name -> which argument of cross_validate names the group column.
SCHEMES = {"logo": "glacier_col", "loyo": "year_col"}
PER_FOLD_COLUMNS = ["fold", "n", "r", "r2", "rmse", "mae", "bias"]


@dataclass
class CVResult:
    """Out-of-fold skill of a model kind.

    Attributes
    ----------
    scheme : str
        ``"logo"`` or ``"loyo"``.
    metrics : dict of str to float
        ``r``, ``r2`` (1 - SS_res/SS_tot), ``rmse``, ``mae`` and ``bias`` (mean of predicted -
        observed) over all out-of-fold predictions; errors in target units (e.g. m w.e.).
    per_fold : DataFrame
        Columns ``fold`` (held-out glacier or year), ``n``, ``r`` (NaN with fewer than 2 rows or a
        constant series), ``r2``, ``rmse``, ``mae``, ``bias``.
    predictions : DataFrame
        Columns ``glacier``, ``year``, ``observed``, ``predicted``, ``fold``; one row per input
        row, with the input table's index and order.
    kind, target, features, seed
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

    def to_json(self, path: str | Path) -> None:
        """Write the result as JSON (NaN written as null) to ``path``."""
        write_json_atomic(Path(path), {
            "scheme": self.scheme, "kind": self.kind, "target": self.target,
            "features": list(self.features), "seed": self.seed, "metrics": self.metrics,
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
    **model_options,
) -> CVResult:
    """Cross-validate a model kind on a glacier-year table with grouped folds.

    Parameters
    ----------
    table : DataFrame
        One row per observation: ``glacier_col``, ``year_col``, ``target`` and ``features``.
    target : str
        Column to predict (e.g. annual glacier-wide SMB in m w.e.).
    features : sequence of str
        Feature columns, in the order the model uses them.
    glacier_col, year_col : str
        Columns holding the glacier id and the (hydrological) year.
    kind : {"lasso", "ols", "ridge", "ann"}
        Model kind, see :func:`glacgrid.models.make_model`.
    scheme : {"logo", "loyo"}
        Leave-one-glacier-out or leave-one-year-out.
    seed : int
        Seed of every fold's model.
    units : sequence of str, optional
        Units of the features (recorded in each fold model's schema); empty strings if omitted.
    **model_options
        Passed to :func:`make_model` (e.g. ``hidden``, ``epochs`` for the ANN).

    Returns
    -------
    CVResult
    """
    if scheme not in SCHEMES:
        raise ModelError(f"Unknown cross-validation scheme {scheme!r}; valid schemes: {', '.join(SCHEMES)}.")
    make_model(kind, seed=seed, **model_options)  # fail on a bad kind or option before any work
    if not isinstance(table, pd.DataFrame):
        raise InputDataError(f"table must be a pandas DataFrame; got {type(table).__name__}.")
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
        raise ModelError(f"Target {target!r} is constant ({y[0]}) over the table: there is nothing to learn "
                         "or score. Check the observations.")
    group_col = glacier_col if scheme == "logo" else year_col
    groups = table[group_col].to_numpy()
    folds = pd.unique(groups)
    try:
        folds = sorted(folds)
    except TypeError:  # mixed id types: keep order of appearance
        pass
    if len(folds) < 2:
        raise ModelError(
            f"Scheme {scheme!r} needs at least 2 distinct values in {group_col!r}; found {len(folds)} "
            f"({list(folds)}). Add data or use the other scheme."
        )
    predicted = np.full(y.shape, np.nan)
    rows = []
    for fold in folds:
        test = groups == fold
        try:
            model = make_model(kind, seed=seed, **model_options).fit(X[~test], y[~test], schema)
        except ModelError as err:
            raise ModelError(f"Fold {group_col}={fold!r} ({scheme}): {err}") from err
        predicted[test] = model.predict(X[test])
        rows.append({"fold": fold, "n": int(test.sum()), **_kernels.regression_metrics(y[test], predicted[test])})
    predictions = pd.DataFrame(
        {"glacier": table[glacier_col].to_numpy(), "year": table[year_col].to_numpy(),
         "observed": y, "predicted": predicted, "fold": groups},
        index=table.index,
    )
    return CVResult(
        scheme=scheme, metrics=_kernels.regression_metrics(y, predicted),
        per_fold=pd.DataFrame(rows, columns=PER_FOLD_COLUMNS), predictions=predictions,
        kind=kind, target=target, features=tuple(features), seed=seed,
    )
