"""Cross-validation folds on a glacier-year table (numpy only).

Every scheme returns a list of :class:`Fold`: boolean masks over the rows of the table. In every
scheme but ``random`` the test masks partition the rows (each row is predicted exactly once).

``logo``   leave-one-glacier-out: one fold per glacier.
``loyo``   leave-one-year-out: one fold per year.
``lsygo``  leave-some-years-and-glaciers-out: glaciers and years are shuffled (seeded) into groups
           of ``k``; each (glacier group, year group) pair is a fold whose test rows are those
           glaciers in those years, and whose training rows are every row of *other* glaciers in
           *other* years (so neither the glacier nor the year of a test row is ever seen).
``kfold``  grouped k-fold: glaciers shuffled (seeded) into ``n_splits`` groups, one fold each.
``random`` one seeded random split of the rows: 70 % training, 15 % validation, 15 % test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import ModelError

SCHEMES = ("logo", "loyo", "lsygo", "kfold", "random")
RANDOM_FRACTIONS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class Fold:
    """One split: ``name`` (the held-out glacier, year or a description) and row masks."""

    name: object
    train: np.ndarray
    test: np.ndarray
    validation: np.ndarray | None = None


def _sorted_unique(values: np.ndarray) -> list:
    u = list(dict.fromkeys(values.tolist()))
    try:
        return sorted(u)
    except TypeError:  # mixed id types: keep order of appearance
        return u


def _groups(values: list, size: int | None, n_groups: int | None, rng) -> list[list]:
    order = [values[i] for i in rng.permutation(len(values))]
    n = n_groups if n_groups is not None else -(-len(values) // size)
    return [sorted(g.tolist()) if len(g) else [] for g in np.array_split(np.array(order, dtype=object), n)]


def make_folds(scheme: str, glaciers: np.ndarray, years: np.ndarray, *, k: int = 2, n_splits: int = 5,
               seed: int = 0) -> list[Fold]:
    """Folds of ``scheme`` for rows with glacier ids ``glaciers`` and years ``years`` (1-D, same length).

    ``k`` is the group size of ``lsygo`` (k glaciers x k years); ``n_splits`` the number of folds of
    ``kfold``; ``seed`` seeds the shuffles of ``lsygo``, ``kfold`` and ``random``.
    Raises :class:`ModelError` when the table has too few glaciers, years or rows for the scheme.
    """
    if scheme not in SCHEMES:
        raise ModelError(f"Unknown cross-validation scheme {scheme!r}; valid schemes: {', '.join(SCHEMES)}.")
    glaciers, years = np.asarray(glaciers, dtype=object), np.asarray(years, dtype=object)
    gl, yr = _sorted_unique(glaciers), _sorted_unique(years)
    rng = np.random.default_rng(seed)
    n = len(glaciers)

    def need(count, what, minimum, hint):
        if count < minimum:
            raise ModelError(f"Scheme {scheme!r} needs at least {minimum} distinct {what}; found {count}. {hint}")

    if scheme in ("logo", "loyo"):
        col, values, what = (glaciers, gl, "glaciers") if scheme == "logo" else (years, yr, "years")
        need(len(values), what, 2, "Add data or use another scheme.")
        return [Fold(v, col != v, col == v) for v in values]
    if scheme == "kfold":
        if int(n_splits) < 2:
            raise ModelError(f"kfold needs n_splits >= 2; got {n_splits}.")
        need(len(gl), "glaciers", int(n_splits), "Lower n_splits or use 'loyo'.")
        folds = []
        for group in _groups(gl, None, int(n_splits), rng):
            test = np.isin(glaciers, group)
            folds.append(Fold(f"glaciers={group}", ~test, test))
        return folds
    if scheme == "lsygo":
        if int(k) < 1:
            raise ModelError(f"lsygo needs k >= 1; got {k}.")
        need(len(gl), "glaciers", int(k) + 1, f"With k={k} no glacier would be left to train on; lower k.")
        need(len(yr), "years", int(k) + 1, f"With k={k} no year would be left to train on; lower k.")
        folds = []
        for g in _groups(gl, int(k), None, rng):
            in_g = np.isin(glaciers, g)
            for y in _groups(yr, int(k), None, rng):
                in_y = np.isin(years, y)
                test = in_g & in_y
                if test.any():
                    folds.append(Fold(f"glaciers={g} years={y}", ~in_g & ~in_y, test))
        return folds
    if n < 20:
        raise ModelError(f"Scheme 'random' needs at least 20 rows (15 % test); found {n}. Use 'logo' or 'loyo'.")
    perm = rng.permutation(n)
    n_tr = int(round(RANDOM_FRACTIONS[0] * n))
    n_va = int(round(RANDOM_FRACTIONS[1] * n))
    masks = [np.zeros(n, bool) for _ in range(3)]
    for m, idx in zip(masks, (perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:])):
        m[idx] = True
    return [Fold("random", masks[0], masks[2], masks[1])]
