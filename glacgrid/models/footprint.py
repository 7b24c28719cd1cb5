"""One pixel-level SMB model trained against many observation footprints at once.

Every observation is the area-weighted mean of the pixel SMB over its footprint: a glacier-wide annual
balance is the mean over the glacier's pixels in that year, a 50 m elevation band of a WGMS profile the
mean over the glacier's pixels of that band, a stake one pixel. :class:`Footprints` holds the observed
values and, for each, the rows of one pixel feature matrix ``X`` (one row per pixel and year) with their
weights (pixel areas) and a ``kind`` label.

- Linear models (lasso, ols, ridge) are fitted **exactly**: the model is linear, so the mean of the pixel
  predictions over a footprint is the prediction on the footprint's area-weighted mean features
  (:meth:`Footprints.aggregate`); a weighted least-squares fit on those aggregated rows is the pixel
  model. The artifact is an ordinary :class:`~glacgrid.models.LinearModel`.
- The ANN is fitted by an aggregation loss (the MassBalanceMachine idea, on a grid): the network predicts
  every pixel row, a sparse (footprint x row) averaging matrix turns those into footprint means, and the
  weighted squared error of the means is minimised. The artifact is an ordinary
  :class:`~glacgrid.models.ANNModel`.

Either way the trained model is applied blockwise to pixels exactly as a model fitted on glacier rows.

Band fit: with ``band_fit="level"`` (default) every band footprint constrains the modelled band value
itself; with ``band_fit="shape"`` each glacier-year's mean band value is removed from the observed and
from the modelled bands (:func:`shape_matrix`), so the bands constrain only the shape of the profile and
the glacier-wide balances its level (e.g. when the bands, averaged with the model DEM's hypsometry, do not
average to the glacier-wide balance).

Seasons: a footprint also has a period of the hydrological year (:data:`PERIODS`): ``annual``, or the
``winter`` / ``summer`` months of a seasonal balance. Its rows are then the pixel features *of that period*
(every climate sum taken over the period's months only, every static feature and the intercept times the
period's share of the year, ``fraction``), so that the annual model is the sum of its seasonal parts. A
linear model is additive in exactly that way, so seasonal footprints are fitted exactly too (each row is
divided by its ``fraction``, its weight multiplied by ``fraction**2``: the same least-squares objective
with one free intercept). The ANN is a *period model*: its value over a season is the network on the
season's rows, averaged over the footprint, as its annual value is the network on the year's rows (a
temperature-index model applies to any period the same way); its winter and summer values need not add up
to its annual one (:func:`footprint_predictions` gives both kinds' values).

Weighting: each footprint ``i`` of weight group ``k`` (its kind, ``<kind>_<period>`` for a seasonal one)
gets the sample weight ``kind_weights[k] / n_k`` (``n_k`` the number of footprints of that group in the
fit), scaled so the weights average 1: every group contributes the share of the loss given by
``kind_weights`` however many footprints it has (by default every group counts equally,
:data:`DEFAULT_KIND_WEIGHTS`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..exceptions import InputDataError, ModelError
from ..features import FeatureSchema
from . import _kernels
from .ann import VALIDATION_FRACTION, ANNModel, torch_threads
from .linear import LinearModel
from .physics import monotone_signs, product_factor_ranges

__all__ = ["BAND_FITS", "DEFAULT_KIND_WEIGHTS", "FOOTPRINT_KINDS", "LINEAR_KINDS", "PERIODS", "SEASON_OFFSET",
           "Footprints", "footprint_weights", "fit_footprints", "footprint_predictions", "season_offset_column",
           "shape_matrix", "weight_group"]

#: The footprint kinds glacgrid builds: glacier-wide balances, elevation bands, stakes (one pixel).
FOOTPRINT_KINDS = ("glacier", "band", "stake")
#: The model kinds fitted exactly on aggregated features (additive over footprints and over seasons).
LINEAR_KINDS = ("lasso", "ols", "ridge")
#: The periods of a footprint: the hydrological year, or the winter / summer months of a seasonal balance.
PERIODS = ("annual", "winter", "summer")
#: Share of the loss of each weight group (:func:`weight_group`; normalised over the groups present in a fit).
DEFAULT_KIND_WEIGHTS = {"glacier": 1.0, "band": 1.0, "stake": 1.0, "glacier_winter": 1.0, "glacier_summer": 1.0,
                        "stake_winter": 1.0, "stake_summer": 1.0}
#: What the band footprints constrain: their values (``level``) or their profile only (``shape``).
BAND_FITS = ("level", "shape")


@dataclass(frozen=True, eq=False)
class Footprints:
    """Observed values, each the area-weighted mean of the pixel SMB over some rows of one feature matrix.

    Footprint ``i`` covers the rows ``rows[indptr[i]:indptr[i + 1]]`` of ``X`` with the weights
    ``weights[indptr[i]:indptr[i + 1]]`` (e.g. pixel areas, m2).

    Attributes
    ----------
    value : numpy.ndarray
        Observed SMB of each footprint (m w.e.), shape (n,).
    indptr : numpy.ndarray
        CSR row pointer, shape (n + 1,), int64.
    rows : numpy.ndarray
        Row indices into ``X`` (int64).
    weights : numpy.ndarray
        Positive weight of each row within its footprint (float64).
    kind : numpy.ndarray
        Kind of each footprint (``"glacier"``, ``"band"``, ``"stake"``), shape (n,).
    obs_id : numpy.ndarray
        Observation unit (glacier id) of each footprint, shape (n,).
    year : numpy.ndarray
        Year of each footprint, shape (n,).
    band_mid : numpy.ndarray
        Band mid-elevation (m) of band footprints, NaN for the others.
    period : numpy.ndarray
        Period of each footprint (:data:`PERIODS`; default ``annual``).
    fraction : numpy.ndarray
        Share of the year's months that each footprint's period covers (1 for ``annual``; e.g. 7/12 for an
        October-April winter): the share of the intercept and of the static features its rows carry.
    """

    value: np.ndarray
    indptr: np.ndarray
    rows: np.ndarray
    weights: np.ndarray
    kind: np.ndarray
    obs_id: np.ndarray
    year: np.ndarray
    band_mid: np.ndarray = field(default=None)
    period: np.ndarray = field(default=None)
    fraction: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        n = len(self.value)
        if self.period is None:
            object.__setattr__(self, "period", np.full(n, "annual"))
        if self.fraction is None:
            object.__setattr__(self, "fraction", np.ones(n))
        for name in ("kind", "obs_id", "year", "period", "fraction"):
            if len(getattr(self, name)) != n:
                raise InputDataError(f"Footprints: {name} has {len(getattr(self, name))} entries, value has {n}; "
                                     "give one per footprint.")
        if self.band_mid is None:
            object.__setattr__(self, "band_mid", np.full(n, np.nan))
        if len(self.indptr) != n + 1 or self.indptr[0] != 0 or self.indptr[-1] != len(self.rows) \
                or np.any(np.diff(self.indptr) <= 0) or len(self.weights) != len(self.rows):
            raise InputDataError("Footprints: indptr must start at 0, end at len(rows), and give every footprint at "
                                 f"least one row (got indptr of length {len(self.indptr)} for {n} values, "
                                 f"{len(self.rows)} rows, {len(self.weights)} weights).")
        if not (np.isfinite(self.weights).all() and (self.weights > 0).all()):
            raise InputDataError("Footprints: row weights must be finite and positive (pixel areas).")
        bad = sorted(set(np.asarray(self.period).tolist()) - set(PERIODS))
        if bad:
            raise InputDataError(f"Footprints: unknown period(s) {bad}; use {list(PERIODS)}.")
        f = np.asarray(self.fraction, dtype=np.float64)
        if not (np.isfinite(f).all() and (f > 0).all() and (f <= 1).all()) \
                or not np.all(f[np.asarray(self.period) == "annual"] == 1):
            raise InputDataError("Footprints: fraction must be in (0, 1], and 1 for annual footprints (the share "
                                 "of the year's months a footprint's period covers).")
        if not np.isfinite(self.value).all():
            raise InputDataError(f"Footprints: {int((~np.isfinite(self.value)).sum())} observed values are NaN or "
                                 "inf; leave unobserved footprints out.")

    def __len__(self) -> int:
        return len(self.value)

    @property
    def sizes(self) -> np.ndarray:
        """Number of rows of each footprint."""
        return np.diff(self.indptr)

    def counts(self) -> dict[str, int]:
        """Number of footprints of each weight group (:func:`weight_group`)."""
        kinds, n = np.unique(self.groups, return_counts=True)
        return {str(k): int(c) for k, c in zip(kinds, n)}

    @property
    def groups(self) -> np.ndarray:
        """The weight group of each footprint (:func:`weight_group`)."""
        return weight_group(self.kind, self.period)

    def matrix(self, n_rows: int):
        """The (footprint x row) averaging matrix (scipy CSR): each row's weights sum to 1."""
        from scipy.sparse import csr_matrix

        norm = np.repeat(np.add.reduceat(self.weights, self.indptr[:-1]), self.sizes)
        return csr_matrix((self.weights / norm, self.rows, self.indptr), shape=(len(self), int(n_rows)))

    def aggregate(self, X: np.ndarray) -> np.ndarray:
        """Weighted mean of the rows of ``X`` (n_rows, n_features) over each footprint: (n, n_features)."""
        X = np.asarray(X, dtype=np.float64)
        if self.rows.size and self.rows.max() >= X.shape[0]:
            raise InputDataError(f"Footprints address row {int(self.rows.max())} but X has {X.shape[0]} rows.")
        return np.asarray(self.matrix(X.shape[0]) @ X)

    def compact(self) -> tuple[np.ndarray, Footprints]:
        """The rows the footprints use (sorted) and the footprints renumbered onto them: ``X[used]`` is
        then the whole feature matrix of the returned footprints."""
        used = np.unique(self.rows)
        return used, dataclasses.replace(self, rows=np.searchsorted(used, self.rows))

    def select(self, mask: np.ndarray) -> Footprints:
        """The footprints where ``mask`` (bool, one per footprint) is True."""
        mask = np.asarray(mask, dtype=bool)
        idx = np.flatnonzero(mask)
        sizes = self.sizes[idx]
        starts = self.indptr[:-1][idx]
        take = np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(sizes.sum())
        return Footprints(self.value[idx], np.r_[0, np.cumsum(sizes)].astype("int64"), self.rows[take],
                          self.weights[take], self.kind[idx], self.obs_id[idx], self.year[idx], self.band_mid[idx],
                          self.period[idx], self.fraction[idx])

    @staticmethod
    def concat(parts: Sequence[Footprints]) -> Footprints:
        """All footprints of ``parts`` (on the same feature matrix), in order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            raise InputDataError("No footprints to concatenate.")
        offsets = np.cumsum([0] + [len(p.rows) for p in parts[:-1]])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + o for p, o in zip(parts, offsets)]).astype("int64")

        def cat(name):
            return np.concatenate([getattr(p, name) for p in parts])
        return Footprints(cat("value"), indptr, cat("rows"), cat("weights"), cat("kind"), cat("obs_id"), cat("year"),
                          cat("band_mid"), cat("period"), cat("fraction"))


def weight_group(kind, period) -> np.ndarray:
    """The weight group of footprints: their ``kind`` for annual ones, ``<kind>_<period>`` for seasonal ones
    (e.g. ``glacier_winter``)."""
    kind, period = np.asarray(kind).astype(str), np.asarray(period).astype(str)
    return np.where(period == "annual", kind, np.char.add(np.char.add(kind, "_"), period))


def footprint_weights(footprints: Footprints, kind_weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Sample weight of each footprint: ``kind_weights[group] / n_group``, normalised to a mean of 1.

    Parameters
    ----------
    footprints : Footprints
        The footprints of the fit.
    kind_weights : mapping of str to float, optional
        Share of the loss of each weight group (:func:`weight_group`; default :data:`DEFAULT_KIND_WEIGHTS`);
        a group absent from the mapping is an error, a weight of 0 leaves that group out of the fit.

    Returns
    -------
    numpy.ndarray
        One non-negative weight per footprint.
    """
    kw = dict(DEFAULT_KIND_WEIGHTS if kind_weights is None else kind_weights)
    counts = footprints.counts()
    missing = sorted(set(counts) - set(kw))
    if missing:
        raise ModelError(f"No weight for footprint group(s) {missing}; kind_weights has {sorted(kw)}. Give one "
                         "non-negative number per group (kind, or <kind>_<period> for seasonal balances).")
    if any(not (math.isfinite(kw[k]) and kw[k] >= 0) for k in counts) or sum(kw[k] for k in counts) <= 0:
        raise ModelError(f"kind_weights must be finite, non-negative and not all zero; got {kw}.")
    w = np.array([kw[k] / counts[k] for k in footprints.groups], dtype=np.float64)
    return w * (len(w) / w.sum())


def shape_matrix(footprints: Footprints):
    """The (footprint x footprint) matrix that removes each glacier-year's mean band value (scipy CSR).

    Row ``i`` of a band footprint is ``e_i - mean over the bands of the same (obs_id, year)``; the rows of
    the other kinds are those of the identity. Applied to the observed values, or to the footprint means of
    a model, it leaves the bands' shape (their deviations from the glacier-year's mean band value).

    Parameters
    ----------
    footprints : Footprints
        The footprints of a fit; bands are grouped by ``(obs_id, year)``.

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(n, n)``.
    """
    from scipy.sparse import csr_matrix, identity

    n = len(footprints)
    band = np.flatnonzero(footprints.kind == "band")
    if band.size == 0:
        return identity(n, format="csr")
    keys = np.char.add(np.char.add(footprints.obs_id[band].astype(str), "|"), footprints.year[band].astype(str))
    _, group, size = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(group, kind="stable")
    members = band[order]  # the bands, grouped by glacier-year
    g = group[order]
    starts = np.r_[0, np.cumsum(size)][g]  # each member's group start in ``members``
    k = size[g]  # each member's group size
    # every pair (i, j) of bands of one glacier-year: -1 / size
    first = np.repeat(np.arange(members.size), k)
    within = np.arange(k.sum()) - np.repeat(np.r_[0, np.cumsum(k)[:-1]], k)
    rows = np.r_[members[first], np.arange(n)]
    cols = np.r_[members[starts[first] + within], np.arange(n)]
    vals = np.r_[-1.0 / k[first], np.ones(n)]
    m = csr_matrix((vals, (rows, cols)), shape=(n, n))
    m.sum_duplicates()
    return m


def fit_footprints(model, X: np.ndarray, footprints: Footprints, schema: FeatureSchema, *,
                   kind_weights: Mapping[str, float] | None = None, band_fit: str = "level"):
    """Fit ``model`` so that its mean over every footprint matches the footprint's observed value.

    Parameters
    ----------
    model : LinearModel or ANNModel
        An unfitted (or refitted) model; linear kinds are fitted exactly on the aggregated features,
        the ANN by the aggregation loss.
    X : numpy.ndarray
        Pixel features, shape (n_rows, n_features), schema order; only the rows the footprints use need
        to be finite.
    footprints : Footprints
        The observations.
    schema : FeatureSchema
        Names and units of the columns of ``X``.
    kind_weights : mapping of str to float, optional
        Share of the loss per footprint kind (:func:`footprint_weights`).
    band_fit : {"level", "shape"}
        ``shape``: the bands constrain only their deviations from each glacier-year's mean band value
        (:func:`shape_matrix`), the other footprints the level. Linear kinds: the intercept, which the
        shape rows cannot see, is profiled out (the other kinds' rows are centred on their weighted mean,
        the model fitted, the intercept set from that mean); this needs glacier-wide (or stake) footprints.

    Returns
    -------
    LinearModel or ANNModel
        ``model``, fitted; ``model.training_["footprints"]`` records the number and the total weight of
        each kind.
    """
    if band_fit not in BAND_FITS:
        raise ModelError(f"band_fit must be one of {list(BAND_FITS)}; got {band_fit!r}.")
    w = footprint_weights(footprints, kind_weights)
    keep = w > 0
    fp = footprints.select(keep) if not keep.all() else footprints
    w = w[keep]
    groups = fp.groups
    summary = {k: {"n": int(n), "weight_share": float(w[groups == k].sum() / w.sum())}
               for k, n in fp.counts().items()}
    shape = band_fit == "shape" and bool((fp.kind == "band").any())
    if shape and not (fp.kind != "band").any():
        raise ModelError("band_fit='shape' leaves the level of the model to the glacier-wide (or stake) "
                         "footprints, and there are none; give glacier-wide balances or use band_fit='level'.")
    if isinstance(model, LinearModel):
        # a seasonal row carries ``fraction`` of the intercept: divided by it, every row has the full
        # intercept, and the weight times fraction**2 keeps the least-squares objective the same
        m = fp.fraction
        A, y, w = fp.aggregate(X) / m[:, None], fp.value / m, w * m ** 2
        offset = season_offset_column(fp)
        fit_schema = schema
        if offset is not None:  # the winter share of the intercept is fitted, not fixed by the month count
            A = np.column_stack([A, offset])
            fit_schema = FeatureSchema(tuple(schema.names) + (SEASON_OFFSET,), tuple(schema.units) + ("m",))
        # monotone: the profile products' factors range over the pixels, not over the footprint means
        ranges = product_factor_ranges(X[np.unique(fp.rows)], schema.names) if model.monotone else None
        if shape:
            _fit_linear_shape(model, A, y, fp, fit_schema, w, ranges)
        else:
            model.fit(A, y, fit_schema, sample_weight=w, factor_ranges=ranges)
        if offset is not None:
            _drop_season_offset(model, schema)
    elif isinstance(model, ANNModel):
        _fit_ann(model, np.asarray(X, dtype=np.float64), fp, schema, w, shape_matrix(fp) if shape else None)
    else:
        raise ModelError(f"fit_footprints fits linear models (lasso, ols, ridge) and the ANN; got "
                         f"{type(model).__name__}. Use one of those kinds for footprint training.")
    model.training_["footprints"] = summary
    model.training_["band_fit"] = band_fit
    return model


#: Name of the fitted seasonal offset of a linear model (``model.training_["season_offset"]``, m w.e.).
SEASON_OFFSET = "season_offset"


def season_offset_column(fp: Footprints) -> np.ndarray | None:
    """The column of the seasonal offset ``d`` on the rows of a linear footprint fit (each row divided by its
    ``fraction``): ``1 / fraction`` for winter footprints, ``-1 / fraction`` for summer ones, 0 for annual
    ones; None without seasonal footprints.

    A season's balance is then ``fraction * intercept + d`` (winter) or ``fraction * intercept - d``
    (summer) plus the features' part: how much of the annual intercept falls in winter is fitted, and the
    winter and summer values still add up to the annual one."""
    if not (fp.period != "annual").any():
        return None
    return _season_sign(fp) / fp.fraction


def _season_sign(fp: Footprints) -> np.ndarray:
    """+1 for winter footprints, -1 for summer ones, 0 for annual ones: how the seasonal offset enters."""
    return np.where(fp.period == "winter", 1.0, np.where(fp.period == "summer", -1.0, 0.0))


def _drop_season_offset(model: LinearModel, schema: FeatureSchema) -> None:
    """Move the fitted seasonal offset (the last column) out of a linear model's coefficients into
    ``training_["season_offset"]``: the artifact is the annual model of ``schema``."""
    model.training_[SEASON_OFFSET] = float(model.coef_[-1])
    model.coef_ = np.asarray(model.coef_[:-1])
    model.schema = schema
    for key in ("feature_means", "feature_stds"):
        if key in model.training_:
            model.training_[key] = list(model.training_[key])[:-1]


def footprint_predictions(model, X: np.ndarray, fp: Footprints) -> np.ndarray:
    """A model's value on every footprint, seasonal ones included.

    A linear model: the prediction on the footprint's mean features divided by its ``fraction``, times the
    fraction, plus or minus the fitted seasonal offset (:func:`season_offset_column`; 0 for a model fitted
    without seasonal balances). Any other model (the ANN, a period model): the mean of its predictions on the
    footprint's rows.
    """
    if not isinstance(model, LinearModel):
        used, local = fp.compact()
        return np.asarray(local.matrix(len(used)) @ np.asarray(model.predict(np.asarray(X)[used]), dtype="float64"))
    m = fp.fraction
    pred = np.asarray(model.predict(fp.aggregate(X) / m[:, None]), dtype="float64") * m
    d = float(getattr(model, "training_", {}).get(SEASON_OFFSET, 0.0))
    return pred + d * _season_sign(fp)


def _fit_linear_shape(model: LinearModel, A: np.ndarray, y: np.ndarray, fp: Footprints, schema: FeatureSchema,
                      w: np.ndarray, factor_ranges: dict | None = None) -> None:
    """The exact linear shape fit: band rows centred on their glacier-year's mean (the intercept cancels),
    the other rows on their weighted mean (the intercept profiled out), one weighted fit of the centred rows,
    then the intercept from the other rows' means."""
    C = shape_matrix(fp)
    level = fp.kind != "band"
    a_mean = np.average(A[level], axis=0, weights=w[level])
    y_mean = float(np.average(y[level], weights=w[level]))
    Ac, yc = np.asarray(C @ A), np.asarray(C @ y)
    Ac[level] = A[level] - a_mean
    yc[level] = y[level] - y_mean
    model.fit(Ac, yc, schema, sample_weight=w, factor_ranges=factor_ranges)
    model.intercept_ = float(model.intercept_ + y_mean - a_mean @ model.coef_)


def _fit_ann(model: ANNModel, X: np.ndarray, fp: Footprints, schema: FeatureSchema, w: np.ndarray,
             shape=None) -> None:
    """The aggregation loss: full-batch Adam on the weighted squared error of the footprint means of the
    network's pixel predictions; early stopping on a seeded 15 % of the footprints. ``shape``
    (:func:`shape_matrix`): the errors are those of the footprint means and the observed values after it."""
    import torch

    used, fp_local = fp.compact()
    Xu = X[used]
    if not np.isfinite(Xu).all():
        raise InputDataError("Pixel features used by the footprints hold NaN or inf; drop or fill those pixels.")
    # the schema of the features (their names give the monotone signs below)
    model.schema = schema
    x_mean, x_std = _kernels.column_stats(Xu)
    y = fp.value
    y_mean, y_std = float(np.average(y, weights=w)), float(y.std()) or 1.0
    if shape is not None:  # the observed shape: C y (standardised below as C (y - y_mean) / y_std)
        y = np.asarray(shape @ y) + y_mean * np.asarray(1.0 - shape.sum(axis=1)).ravel()
    perm = np.random.default_rng(model.seed).permutation(len(fp))
    n_val = max(1, int(round(VALIDATION_FRACTION * len(fp))))
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    M = fp_local.matrix(len(used)).tocoo()
    signs = None
    if getattr(model, "monotone", False):  # the sign-constrained network of ANNModel(monotone=True)
        signs = monotone_signs(schema.names)
    threads = getattr(model, "threads", None)
    with torch.random.fork_rng(devices=[]), torch_threads(threads):
        torch.manual_seed(model.seed)
        net = model._build(X.shape[1], signs)
        Z = torch.from_numpy(_kernels.standardise(Xu, x_mean, x_std).astype(np.float32))
        Mt = torch.sparse_coo_tensor(torch.from_numpy(np.vstack([M.row, M.col]).astype(np.int64)),
                                     torch.from_numpy(M.data.astype(np.float32)), M.shape,
                                     check_invariants=True).coalesce()
        yt = torch.from_numpy(((y - y_mean) / y_std).astype(np.float32))
        wt = torch.from_numpy((w / w.mean()).astype(np.float32))
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(val)
        opt = torch.optim.Adam(net.parameters(), lr=model.lr)

        Ct = None
        if shape is not None:
            Cc = shape.tocoo()
            Ct = torch.sparse_coo_tensor(torch.from_numpy(np.vstack([Cc.row, Cc.col]).astype(np.int64)),
                                         torch.from_numpy(Cc.data.astype(np.float32)), Cc.shape,
                                         check_invariants=True).coalesce()

        def losses():
            pred = torch.sparse.mm(Mt, net(Z))
            pred = (pred if Ct is None else torch.sparse.mm(Ct, pred)).squeeze(1)
            err = (pred - yt) ** 2 * wt
            return err[tr_t].sum() / wt[tr_t].sum(), err[va_t].sum() / wt[va_t].sum()

        best, best_epoch, best_state, wait, epoch = math.inf, 0, None, 0, 0
        for epoch in range(1, model.epochs + 1):
            net.train()
            opt.zero_grad()
            loss, _ = losses()
            loss.backward()
            opt.step()
            net.eval()
            with torch.no_grad():
                v = float(losses()[1])
            if v < best:
                best, best_epoch, wait = v, epoch, 0
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            else:
                wait += 1
                if wait >= model.patience:
                    break
        if best_state is None:
            raise ModelError("ANN footprint training diverged (validation loss is NaN); lower lr or check the "
                             "features.")
        net.load_state_dict(best_state)
        net.eval()
    model.norm_ = {"x_mean": x_mean.tolist(), "x_std": x_std.tolist(), "y_mean": y_mean, "y_std": y_std}
    model.training_ = {"n_samples": int(len(fp)), "n_train": int(len(tr)), "n_val": int(len(val)),
                       "epochs_run": epoch, "best_epoch": best_epoch, "best_val_loss": best, "device": "cpu",
                       "target_mean": y_mean, "target_std": float(y.std()), "weighted": True,
                       "n_pixel_rows": int(len(used)),
                       **({"monotone_signs": list(signs)} if signs is not None else {})}
    model._set_net(net, "cpu")
