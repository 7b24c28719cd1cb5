"""Physical consistency of an SMB model: which features it must be monotone in, and a sweep that checks it.

Signs
    :func:`monotone_sign` gives the physical sign of the SMB response to a feature: ``-1`` for
    temperature and degree-day features (more warmth, less mass), ``+1`` for snowfall and precipitation
    features (more snow, more mass), ``0`` for the others (topography, position, ...: no constraint).
    The table :data:`MONOTONE_RULES` is the one place that says so; the ``monotone`` option of the ANN
    and of gradient boosting and the sweep of :func:`check_physics` all read it.

Sweep
    :func:`check_physics` sweeps each constrained feature of a fitted model over a grid on probe rows
    (rows of a feature table, or the model's stored training means) and counts the rows on which the
    predicted SMB moves against the feature's sign; it also warms the probe rows by +1 .. +4 K and
    reports the SMB sensitivity per K of each step. A profile product (``cpdd_low``, ``snow_winter_dz``)
    whose base feature is in the model moves with its base (each row keeping its factor, and ``cpdd_low``
    also at the top and on the tongue of a glacier: factors 0 and 1), as it does on a pixel; it is not swept
    alone.

Linear models
    ``monotone=True`` fits non-negative coefficients in :func:`monotone_basis`: each signed feature's
    coefficient has its sign, and a pixel's response to a base with a product (``cpdd`` with ``cpdd_low``)
    keeps its sign over the factor's whole training range (every elevation of the glaciers).

Warming (how +dT reaches the features)
    Temperature features (``temp_<mon>``, ``t2m*``, ``temp``) are shifted by +dT. Degree days are
    recomputed exactly when all twelve monthly temperatures ``temp_<mon>`` are features:
    ``cpdd = sum_m max(T_m + dT, 0) * days_m`` (non-leap month lengths), as glacgrid computes them.
    Otherwise each row's ``cpdd`` is matched by a sinusoidal annual cycle of twelve monthly means,
    ``T_k = T0 + amplitude * cos(2 pi (k + 0.5) / 12)`` with 365.25 / 12 days each (``T0`` solved by
    bisection; ``amplitude`` 10 K by default, half the January-July difference of the ERA5-Land monthly
    means around Hintereisferner), and warmed: ``cpdd(+dT) = sum_k max(T_k + dT, 0) * days``. The
    positive season lengthens as it warms, so degree days grow faster than linearly, as they do in
    glacgrid's own features. ``cpdd_ablation``, ``cpdd_low``, ``cpdd_ice`` (and any ``*_anom`` degree-day
    feature) are scaled / shifted by the same change as ``cpdd`` of its row (exact for ``cpdd_low``; for
    ``cpdd_ice``, which grows faster as the snow melts earlier, an underestimate), or, without ``cpdd``,
    warmed by the sinusoid itself. Snowfall is kept fixed: the sensitivity is the response to the temperature features alone
    (the loss of solid precipitation under warming would need the precipitation, which a model's
    features do not hold).
"""

from __future__ import annotations

import calendar
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import InputDataError, ModelError
from ..glaciers import CLIMATE_PRODUCTS

__all__ = ["MONOTONE_RULES", "PhysicsReport", "FeatureViolations", "ProjectionWarning", "monotone_sign",
           "monotone_signs", "required_signs", "check_physics", "warm_features", "sine_warmed_cpdd", "training_moments",
           "is_monotone", "warn_unconstrained_projection", "products_of", "product_factor_ranges", "monotone_basis"]

_MONTHS = "|".join(calendar.month_abbr[m].lower() for m in range(1, 13))
#: ``(regex on the feature name without its "_anom" suffix, sign, type)``; first match wins. Types:
#: ``degree_days`` and ``temperature`` (sign -1), ``snowfall`` and ``precipitation`` (sign +1).
MONOTONE_RULES: tuple[tuple[str, int, str], ...] = (
    (r"cpdd|cpdd_ablation|cpdd_low|cpdd_ice", -1, "degree_days"),
    (rf"temp|temp_({_MONTHS})|t2m|t2m_(mean|max|min|{_MONTHS})", -1, "temperature"),
    (rf"snow_winter|snow_summer|snow_({_MONTHS})|sf|sf_(sum|mean|{_MONTHS})|prcp_solid", +1, "snowfall"),
    (rf"prcp|tp|tp_(sum|mean|{_MONTHS})", +1, "precipitation"),
)
#: Non-leap days of each calendar month (``temp_<mon>`` -> degree days).
_DAYS = {calendar.month_abbr[m].lower(): calendar.monthrange(2001, m)[1] for m in range(1, 13)}
#: Default amplitude (K) of the sinusoidal annual temperature cycle that approximates degree days under warming.
AMPLITUDE = 10.0
_PHASES = np.cos(2 * np.pi * (np.arange(12) + 0.5) / 12)
_MONTH_DAYS = 365.25 / 12
#: Grid points of each feature sweep, and its half-width in training standard deviations.
SWEEP_POINTS, SWEEP_STDS = 21, 2.5
#: A step against the sign smaller than this (target units, m w.e.) is rounding, not a violation.
TOLERANCE = 1e-6


def _rule(name: str) -> tuple[int, str]:
    base = name[:-5] if name.endswith("_anom") else name
    for pattern, sign, kind in MONOTONE_RULES:
        if re.fullmatch(pattern, base):
            return sign, kind
    return 0, ""


def monotone_sign(name: str) -> int:
    """The physical sign of d(SMB)/d(feature ``name``): -1 (warmth), +1 (snow, precipitation) or 0 (free)."""
    return _rule(name)[0]


def monotone_signs(names: Sequence[str]) -> tuple[int, ...]:
    """:func:`monotone_sign` of each name, in order."""
    return tuple(monotone_sign(n) for n in names)


def required_signs(names: Sequence[str]) -> tuple[int, ...]:
    """:func:`monotone_signs` for a model built with ``monotone=True``: a :class:`ModelError` when no feature
    has a physical sign (there would be nothing to constrain)."""
    signs = monotone_signs(names)
    if not any(signs):
        raise ModelError(f"monotone=True, but none of the features {list(names)} has a physical sign "
                         "(temperature / degree-day or snowfall / precipitation features, see "
                         "glacgrid.models.physics.MONOTONE_RULES); drop monotone or add such a feature.")
    return signs


def products_of(names: Sequence[str]) -> dict[str, str]:
    """The profile products among ``names`` whose base feature is there too, as ``{product: base}``
    (:data:`glacgrid.glaciers.CLIMATE_PRODUCTS`: ``cpdd_low`` = ``cpdd`` x (1 - elevation_norm),
    ``snow_winter_dz`` = ``snow_winter`` x height above 3,000 m). With its base in a model, a product is not
    a separate physical input: a pixel's response to the base is ``coef(base) + coef(product) * factor``."""
    return {p: b for p, b in CLIMATE_PRODUCTS if p in names and b in names}


#: The factor range every pixel can take, whatever the training rows: ``cpdd_low``'s 1 - elevation_norm.
FACTOR_BOUNDS = {"cpdd_low": (0.0, 1.0)}


def product_factor_ranges(X: np.ndarray, names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """The range of the per-row factor ``product / base`` of each product of :func:`products_of` over the
    rows of ``X`` (schema order ``names``) whose base is positive, widened to :data:`FACTOR_BOUNDS`;
    ``(0, 0)`` where no row has one and no bound is known."""
    X = np.asarray(X, dtype=np.float64)
    idx = {n: i for i, n in enumerate(names)}
    out = {}
    for p, b in products_of(names).items():
        base = X[:, idx[b]]
        ok = np.isfinite(base) & (base > 1e-9) & np.isfinite(X[:, idx[p]])
        f = np.r_[X[ok, idx[p]] / base[ok], FACTOR_BOUNDS.get(p, ())]
        out[p] = (float(f.min()), float(f.max())) if f.size else (0.0, 0.0)
    return out


def monotone_basis(names: Sequence[str], factor_ranges: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """The basis in which a linear model is monotone when all its coefficients are >= 0.

    Returns ``M`` (n_features x n_columns): fit non-negative coefficients ``c'`` on ``X @ M``, and the
    model's coefficients are ``M @ c'``. Columns:

    - a feature of sign ``s`` (:func:`monotone_sign`): ``s * x`` (its coefficient has sign ``s``);
    - a feature without a sign: ``x`` and ``-x`` (free);
    - a base of sign ``s`` with its product (:func:`products_of`), the factor ranging over
      ``[f_lo, f_hi]`` (``factor_ranges``): the two columns ``s * (f_hi x_base - x_prod) / (f_hi - f_lo)``
      and ``s * (x_prod - f_lo x_base) / (f_hi - f_lo)``, whose coefficients are the pixel's response to
      the base at ``f_lo`` and at ``f_hi`` (the response is linear in the factor, so it keeps its sign over
      the whole range). A product whose factor does not vary is free.

    Parameters
    ----------
    names : sequence of str
        The model's features.
    factor_ranges : dict, optional
        ``{product: (f_lo, f_hi)}`` (:func:`product_factor_ranges` of the training pixels).

    Returns
    -------
    numpy.ndarray
    """
    names = list(names)
    idx = {n: i for i, n in enumerate(names)}
    pairs = products_of(names)
    ranges = dict(factor_ranges or {})
    cols = []

    def col(entries):
        c = np.zeros(len(names))
        for j, v in entries:
            c[j] = v
        cols.append(c)

    paired = set()
    for p, b in pairs.items():
        s = monotone_sign(b)
        lo, hi = ranges.get(p, (0.0, 0.0))
        if s == 0 or not hi > lo:
            continue
        d = hi - lo
        col([(idx[b], s * hi / d), (idx[p], -s / d)])
        col([(idx[b], -s * lo / d), (idx[p], s / d)])
        paired |= {p, b}
    for n in names:
        if n in paired:
            continue
        s = 0 if n in pairs else monotone_sign(n)  # an unpaired product is free
        if s:
            col([(idx[n], float(s))])
        else:
            col([(idx[n], 1.0)])
            col([(idx[n], -1.0)])
    return np.column_stack(cols)


@dataclass(frozen=True)
class FeatureViolations:
    """The sweep of one constrained feature.

    Attributes
    ----------
    feature : str
    sign : int
        -1: SMB must not increase with the feature; +1: must not decrease.
    rows_violating : int
        Probe rows on which some step of the sweep moved SMB against ``sign`` by more than the tolerance.
    n_rows : int
        Probe rows swept.
    max_violation : float
        Largest step against the sign (target units, >= 0; 0 when none).
    grid : tuple of float
        The values swept (feature units).
    """

    feature: str
    sign: int
    rows_violating: int
    n_rows: int
    max_violation: float
    grid: tuple[float, ...]


@dataclass(frozen=True)
class PhysicsReport:
    """What :func:`check_physics` found.

    Attributes
    ----------
    kind : str
        Model kind.
    n_probe : int
        Probe rows.
    probe_source : str
        ``"table"`` or ``"training means"``.
    violations : tuple of FeatureViolations
        One per constrained feature, in schema order.
    warming : tuple of float
        The temperature steps (K), starting at 0.
    smb_mean : tuple of float
        Mean predicted SMB of the probe rows at each warming step (target units).
    sensitivity : tuple of float
        ``(smb_mean[k] - smb_mean[k-1]) / (warming[k] - warming[k-1])`` per step (target units per K).
    sensitivity_0_2, sensitivity_2_4 : float
        Mean sensitivity per K from 0 to +2 K and from +2 to +4 K (NaN when the steps do not include them).
    degree_days : str
        How warming reached the degree-day features: ``"recomputed"``, ``"approximated"`` or ``"none"``.
    monotone : bool
        Whether the model was built with ``monotone=True`` (constrained by construction).
    notes : tuple of str
        Caveats of this sweep (e.g. how degree days were warmed).
    """

    kind: str
    n_probe: int
    probe_source: str
    violations: tuple[FeatureViolations, ...]
    warming: tuple[float, ...]
    smb_mean: tuple[float, ...]
    sensitivity: tuple[float, ...]
    sensitivity_0_2: float
    sensitivity_2_4: float
    degree_days: str
    monotone: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_violations(self) -> int:
        """Sum over the constrained features of the probe rows violating."""
        return int(sum(v.rows_violating for v in self.violations))

    def to_dict(self) -> dict:
        """JSON-ready (NaN as None)."""
        def num(v):
            return None if isinstance(v, float) and not np.isfinite(v) else v

        return {
            "kind": self.kind, "monotone": self.monotone, "n_probe": self.n_probe,
            "probe_source": self.probe_source, "degree_days": self.degree_days,
            "total_violations": self.total_violations,
            "violations": [{"feature": v.feature, "sign": v.sign, "rows_violating": v.rows_violating,
                            "n_rows": v.n_rows, "max_violation": v.max_violation} for v in self.violations],
            "warming": list(self.warming), "smb_mean": [num(v) for v in self.smb_mean],
            "sensitivity_per_k": [num(v) for v in self.sensitivity],
            "sensitivity_0_2": num(self.sensitivity_0_2), "sensitivity_2_4": num(self.sensitivity_2_4),
            "notes": list(self.notes),
        }


class ProjectionWarning(UserWarning):
    """A model that is not monotone by construction is applied beyond its training climate."""


def is_monotone(model) -> bool:
    """Whether ``model`` was built with ``monotone=True`` (an ensemble: its members' option)."""
    return bool(getattr(model, "monotone", False) or (getattr(model, "options", None) or {}).get("monotone", False))


def warn_unconstrained_projection(model, *, last_training_year: int, last_year: int) -> bool:
    """Warn (:class:`ProjectionWarning`) when a non-monotone model runs past the last training year.

    Returns whether it warned.
    """
    if is_monotone(model) or last_year <= last_training_year:
        return False
    warnings.warn(
        f"The {getattr(model, 'kind', 'SMB')} model is not monotone by construction and is applied to "
        f"{last_training_year + 1}-{last_year}, beyond its training years (to {last_training_year}): in a warmer "
        "climate it may flatten or reverse its response to degree days. Check it with `glacgrid check-physics "
        "MODEL_DIR --table TABLE`, or train with monotone = true (any kind but svr).",
        ProjectionWarning, stacklevel=2)
    return True


def training_moments(model) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each training feature stored in a fitted model (schema order)."""
    for m in (model, *getattr(model, "members", ())[:1]):
        tr, nm = getattr(m, "training_", {}) or {}, getattr(m, "norm_", {}) or {}
        if "feature_means" in tr and "feature_stds" in tr:
            return np.asarray(tr["feature_means"], float), np.asarray(tr["feature_stds"], float)
        if "x_mean" in nm and "x_std" in nm:
            return np.asarray(nm["x_mean"], float), np.asarray(nm["x_std"], float)
    members = getattr(model, "members", ())
    if members:
        return training_moments(members[0])
    raise ModelError(f"The {getattr(model, 'kind', type(model).__name__)} model stores no training feature means; "
                     "give probe rows (a feature table with the model's feature columns).")


def _sine_cpdd(t0: np.ndarray, amplitude: float) -> np.ndarray:
    """Degree days (K d) of twelve monthly means ``t0 + amplitude * cos(phase)`` for each ``t0``."""
    return np.maximum(t0[:, None] + amplitude * _PHASES[None, :], 0.0).sum(axis=1) * _MONTH_DAYS


def sine_warmed_cpdd(cpdd: np.ndarray, dT: float, amplitude: float = AMPLITUDE) -> np.ndarray:
    """``cpdd`` (K d) after +``dT`` K, with each value matched by a sinusoidal annual cycle (module docstring).

    Zero degree days are taken as the cycle just touching 0 degC (``T0 = -amplitude``).
    """
    cpdd = np.maximum(np.asarray(cpdd, dtype=np.float64), 0.0)
    lo = np.full(cpdd.shape, -float(amplitude))
    hi = cpdd / 365.25 + amplitude
    for _ in range(60):  # bisection: degree days increase with T0
        mid = 0.5 * (lo + hi)
        below = _sine_cpdd(mid, amplitude) < cpdd
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return _sine_cpdd(0.5 * (lo + hi) + dT, amplitude)


def warm_features(X: np.ndarray, names: Sequence[str], dT: float, *,
                  amplitude: float = AMPLITUDE) -> tuple[np.ndarray, str]:
    """Rows ``X`` (schema order ``names``) under a uniform warming of ``dT`` K.

    Returns the warmed copy and how degree days were handled: ``"recomputed"`` (from the twelve
    ``temp_<mon>`` features), ``"approximated"`` (a sinusoidal annual cycle, see the module docstring) or
    ``"none"`` (no degree-day feature). ``*_anom`` features shift like their base feature.
    """
    X = np.array(X, dtype=np.float64, copy=True)
    names = list(names)
    idx = {n: i for i, n in enumerate(names)}
    months = {m: idx[f"temp_{m}"] for m in _DAYS if f"temp_{m}" in idx}
    how = "none"
    for i, n in enumerate(names):
        if _rule(n)[1] == "temperature":
            X[:, i] += dT
    if "cpdd" in idx:
        before = X[:, idx["cpdd"]].copy()
        if len(months) == 12:
            T = X[:, list(months.values())]  # already warmed
            after = np.maximum(T, 0.0) @ np.asarray([_DAYS[m] for m in months], float)
            how = "recomputed"
        else:
            after = sine_warmed_cpdd(before, dT, amplitude)
            how = "approximated"
        X[:, idx["cpdd"]] = after
    for i, n in enumerate(names):
        if _rule(n)[1] != "degree_days" or n == "cpdd":
            continue
        how = "approximated" if how == "none" else how
        if "cpdd" not in idx:
            X[:, i] = sine_warmed_cpdd(X[:, i], dT, amplitude) if not n.endswith("_anom") else X[:, i]
        elif n.endswith("_anom"):
            X[:, i] += after - before  # an anomaly moves by the change of its base
        else:  # cpdd_ablation: the same relative change as the row's cpdd
            X[:, i] *= np.divide(after, before, out=np.ones_like(after), where=before > 0)
    return X, how


def _factor_variants(X: np.ndarray, j: int, cols: list[int], products: list[str]) -> list[dict[int, np.ndarray]]:
    """The factors (product / base, per probe row) the products of base column ``j`` are swept with: each
    row's own and, for a product whose factor has known bounds (:data:`FACTOR_BOUNDS`: ``cpdd_low`` at a
    glacier's top and its tongue), each bound, so that a glacier-mean probe row also checks its extreme
    pixels."""
    n = len(X)
    own = {k: np.divide(X[:, k], X[:, j], out=np.zeros(n), where=X[:, j] != 0) for k in cols}
    variants = [own]
    for k, p in zip(cols, products):
        for bound in FACTOR_BOUNDS.get(p, ()):
            variants.append({**own, k: np.full(n, float(bound))})
    return variants


def _probe_rows(model, table, n_probe: int, seed: int) -> tuple[np.ndarray, str]:
    names = list(model.schema.names)
    if table is None:
        mean, _ = training_moments(model)
        return mean[None, :], "training means"
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise InputDataError(f"The probe table lacks the model's feature column(s) {missing}; it has "
                             f"{list(table.columns)}. Give the feature table the model was trained on.")
    X = table[names].to_numpy(np.float64)
    X = X[np.isfinite(X).all(axis=1)]
    if len(X) == 0:
        raise InputDataError("The probe table has no row with finite values of every model feature.")
    if len(X) > n_probe:
        X = X[np.sort(np.random.default_rng(seed).choice(len(X), n_probe, replace=False))]
    return X, "table"


def check_physics(model, table=None, *, n_probe: int = 50, warming: Sequence[float] = (0, 1, 2, 3, 4),
                  amplitude: float = AMPLITUDE, seed: int = 0) -> PhysicsReport:
    """Sweep each constrained feature of ``model`` and warm its probe rows.

    Parameters
    ----------
    model : SMBModel
        A fitted model (e.g. from :func:`glacgrid.models.load_model`).
    table : DataFrame, optional
        Probe rows: those holding the model's feature columns (finite); at most ``n_probe`` of them,
        a seeded sample. Without a table the model's stored training means are the one probe row.
    n_probe : int
        Maximum number of probe rows taken from ``table``.
    warming : sequence of float
        Increasing temperature steps in K, starting at 0.
    amplitude : float
        Amplitude (K) of the sinusoidal annual cycle that warms ``cpdd`` when degree days cannot be
        recomputed from monthly temperatures (module docstring).
    seed : int
        Seed of the probe-row sample.

    Returns
    -------
    PhysicsReport
        Violations per constrained feature (each swept over :data:`SWEEP_POINTS` values spanning the
        training mean +- :data:`SWEEP_STDS` standard deviations, clipped at 0 for degree-day and snow
        features, all other features held at the probe row's values) and the SMB sensitivity per K.
    """
    if getattr(model, "schema", None) is None:
        raise ModelError("check_physics needs a fitted model; call fit() or load an artifact first.")
    warming = tuple(float(w) for w in warming)
    if len(warming) < 2 or warming[0] != 0 or any(b <= a for a, b in zip(warming, warming[1:])):
        raise ModelError(f"warming must be increasing steps in K starting at 0, e.g. (0, 1, 2, 3, 4); got {warming}.")
    names = list(model.schema.names)
    X, source = _probe_rows(model, table, int(n_probe), seed)
    mean, std = training_moments(model)
    n = len(X)
    out = []
    pairs = products_of(names)
    idx = {m: i for i, m in enumerate(names)}
    for j, name in enumerate(names):
        sign, kind = _rule(name)
        if sign == 0 or name in pairs:  # a product moves with its base (swept there)
            continue
        lo, hi = mean[j] - SWEEP_STDS * std[j], mean[j] + SWEEP_STDS * std[j]
        if kind in ("degree_days", "snowfall", "precipitation") and not name.endswith("_anom"):
            lo = max(lo, 0.0)
        grid = np.linspace(lo, hi, SWEEP_POINTS) if hi > lo else np.array([lo])
        variants = _factor_variants(X, j, [idx[p] for p, b in pairs.items() if b == name],
                                    [p for p, b in pairs.items() if b == name])
        worst = np.zeros(n)
        for factors in variants:  # each row keeps its factor product / base (or a pixel's extreme one)
            rows = np.repeat(X, len(grid), axis=0)
            rows[:, j] = np.tile(grid, n)
            for k, f in factors.items():
                rows[:, k] = np.tile(grid, n) * np.repeat(f, len(grid))
            pred = model.predict(rows).reshape(n, len(grid))
            against = -sign * np.diff(pred, axis=1)  # > 0 where SMB moved against the sign
            worst = np.maximum(worst, against.max(axis=1) if against.shape[1] else 0.0)
        out.append(FeatureViolations(name, sign, int((worst > TOLERANCE).sum()), n,
                                     max(0.0, float(worst.max(initial=0.0))), tuple(float(g) for g in grid)))
    smb, how = [], "none"
    for dT in warming:
        Xw, h = warm_features(X, names, dT, amplitude=amplitude)
        how = h if h != "none" else how
        smb.append(float(np.mean(model.predict(Xw))))
    sens = tuple((b - a) / (wb - wa) for a, b, wa, wb in zip(smb, smb[1:], warming, warming[1:]))
    pos = {w: i for i, w in enumerate(warming)}

    def span(a, b):
        return (smb[pos[b]] - smb[pos[a]]) / (b - a) if a in pos and b in pos else float("nan")

    notes = []
    if not any(_rule(n)[1] in ("temperature", "degree_days") for n in names):
        notes.append("no temperature or degree-day feature: warming changes nothing")
    if how == "approximated":
        notes.append(f"degree days warmed through a sinusoidal annual cycle of amplitude {amplitude:g} K "
                     "(no monthly temperatures among the features)")
    return PhysicsReport(
        kind=str(getattr(model, "kind", type(model).__name__)), n_probe=n, probe_source=source,
        violations=tuple(out), warming=warming, smb_mean=tuple(smb), sensitivity=sens,
        sensitivity_0_2=span(0.0, 2.0), sensitivity_2_4=span(2.0, 4.0), degree_days=how,
        monotone=is_monotone(model),
        notes=tuple(notes),
    )
