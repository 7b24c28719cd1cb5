"""PNG figures of a run, drawn on matplotlib ``Figure`` objects (no pyplot: the session's backend, e.g.
inline plots in a notebook, is left alone). Each ``figure_*`` function returns the Figure so that its
artists (line data, band limits, image arrays) can be inspected; :func:`save` writes it.

The glacier-year table helpers that the figures and :mod:`glacgrid.outputs` share live here too:
:func:`reference_member` and :func:`central` (which run of an ensemble stands for the region),
:func:`unit_smb` (modelled SMB of each observation unit) and :func:`region_totals`.

Artists carry labels that tests and users can look up: lines ``observed``, ``modelled``,
``region total`` and the glacier's ``rgi_id``; bands (``fill_between``) ``ensemble min-max`` (members
of an evolution ensemble) or ``ensemble spread`` (± the cumulated std of an ensemble model); the band of
a highlighted glacier is ``_<rgi_id> ensemble min-max`` (leading ``_``: not in the legend).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .atomic import atomic_path

__all__ = ["figure_cumulative_smb", "figure_area_volume", "figure_mean_smb", "figure_summary",
           "highlight_glaciers", "mean_smb_map", "save", "reference_member", "central", "region_totals",
           "unit_smb"]

BAND_MEMBERS = "ensemble min-max"
BAND_SPREAD = "ensemble spread"
#: Columns of the glacier-year table that describe an ensemble member.
MEMBER_COLUMNS = ["member", "thickness_factor", "deltah_factor"]


# ------------------------------------------------------------ glacier-year table: which run, unit SMB, totals
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
        return (gy[gy["member"] == m].drop(columns=MEMBER_COLUMNS).reset_index(drop=True),
                "reference member (thickness and delta-h factors 1)")
    keys = ["glacier", "rgi_id", "name", "year"]
    flags = {c: "max" for c in ("disappeared", "failed")}
    values = {c: "mean" for c in gy.columns if c not in keys + MEMBER_COLUMNS + list(flags)}
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


# ------------------------------------------------------------------------------------------------ figures


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, constrained_layout=True)


def _integer_years(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _member_band(ax, wide: pd.DataFrame, color, label: str = BAND_MEMBERS, alpha: float = 0.25):
    """Shade min..max across the columns (members) of ``wide`` (index: year)."""
    if wide.shape[1] < 2:
        return None
    return ax.fill_between(wide.index.to_numpy(), wide.min(axis=1).to_numpy(), wide.max(axis=1).to_numpy(),
                           color=color, alpha=alpha, lw=0, label=label)


def _grid_of_axes(fig, n: int):
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    return np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())


def figure_cumulative_smb(gy: pd.DataFrame, obs: pd.DataFrame, units, unit_of_outline: np.ndarray, *,
                          max_panels: int = 11, title: str = ""):
    """Cumulative glacier-wide SMB (m w.e.) per observed glacier against its observations.

    First panel: the modelled cumulative SMB of every glacier (the reference member; a year without a
    value, after disappearance or when failed, adds nothing) and their mean. Then one panel per
    observation unit with observations in the modelled period (the ``max_panels`` with most years):
    on the years that have both an observation and a modelled value, the cumulative sum of the
    observations (``observed``), of the modelled unit SMB (``modelled``, area-weighted over the unit's
    outlines, reference member) and a band: min..max over members of each member's cumulative sum, or
    ± the cumulative sum of the ensemble model's spread (members taken as perfectly correlated in time).
    """
    from matplotlib.collections import LineCollection

    one, which = central(gy)
    per_unit = unit_smb(gy, units, unit_of_outline)
    years = np.sort(gy["year"].unique())
    obs = obs[obs["year"].between(years[0], years[-1]) & obs["obs_id"].isin(set(per_unit["obs_id"]))]
    order = obs.groupby("obs_id").size().sort_values(ascending=False, kind="stable")
    shown = sorted(order.index[:max_panels])
    fig = _figure((4.2 * min(len(shown) + 1, 4), 3.4 * int(np.ceil((len(shown) + 1) / 4))))
    axes = _grid_of_axes(fig, len(shown) + 1)
    for ax in axes[len(shown) + 1:]:
        ax.set_visible(False)
    ax = axes[0]
    wide = one.pivot(index="year", columns="glacier", values="smb_mwe").reindex(years)
    cum = np.nancumsum(wide.to_numpy(), axis=0)
    ax.add_collection(LineCollection([np.c_[years, c] for c in cum.T], colors="0.65", lw=0.5, label="each glacier"))
    ax.plot(years, cum.mean(axis=1), color="k", lw=2, label="mean of all glaciers")
    ax.autoscale_view()
    ax.set(title=f"All {wide.shape[1]} glaciers (modelled)", xlabel="hydrological year",
           ylabel="cumulative SMB (m w.e.)")
    ax.legend(fontsize=7)
    ref = reference_member(gy)
    for ax, oid in zip(axes[1:], shown):
        o = obs[obs["obs_id"] == oid].set_index("year")["smb"].sort_index()
        mine = per_unit[per_unit["obs_id"] == oid]
        if "member" in mine:
            members = mine.pivot(index="year", columns="member", values="modelled")
            line = members[ref] if ref is not None else members.mean(axis=1)
            ok = members.reindex(o.index).notna().all(axis=1).to_numpy()
        else:
            line = mine.set_index("year")["modelled"]
            ok = line.reindex(o.index).notna().to_numpy()
        y = o.index.to_numpy()[ok]
        o_cum = o.to_numpy()[ok].cumsum()
        m_cum = line.reindex(y).to_numpy().cumsum()
        ax.plot(y, o_cum, "o-", color="k", ms=3, lw=1, label="observed")
        ln = ax.plot(y, m_cum, "-", color="C3", lw=1.5, label="modelled")[0]
        if "member" in mine:
            _member_band(ax, members.reindex(y).cumsum(), ln.get_color())
        elif "modelled_spread" in mine:
            s = mine.set_index("year")["modelled_spread"].reindex(y).to_numpy().cumsum()
            ax.fill_between(y, m_cum - s, m_cum + s, color=ln.get_color(), alpha=0.25, lw=0, label=BAND_SPREAD)
        left = int((~ok).sum())
        ax.set(title=f"{oid}" + (f" ({left} observed year(s) without a modelled value left out)" if left else ""),
               xlabel="hydrological year", ylabel="cumulative SMB (m w.e.)")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    for ax in axes:
        _integer_years(ax)
    if len(order) > len(shown):
        fig.text(0.01, 0.0, f"{len(order) - len(shown)} more observed glaciers not shown (see validation.csv)", fontsize=7)
    fig.suptitle(" ".join(s for s in (title, "cumulative SMB", f"[{which}]" if which else "") if s))
    return fig


def highlight_glaciers(gy: pd.DataFrame, unit_of_outline: np.ndarray, k: int = 5) -> list[int]:
    """Up to ``k`` glacier indices: the observed outlines first, filled up with the largest glaciers
    (by first-year area of the reference member), each group largest first."""
    one, _ = central(gy)
    first = one[one["year"] == one["year"].min()].set_index("glacier")["area_km2"].fillna(0.0)
    by_area = first.sort_values(ascending=False, kind="stable").index.to_numpy()
    observed = np.asarray(unit_of_outline)[by_area] > 0
    picked = list(by_area[observed][:k])
    picked += list(by_area[~observed][: k - len(picked)])
    return [int(g) for g in picked]


def figure_area_volume(gy: pd.DataFrame, highlight: list[int], *, title: str = ""):
    """Area (km2) and volume (km3) trajectories: region total (top) and ``highlight`` glaciers (bottom).

    Lines are the reference member (the run itself without members), bands min..max across members.
    Region totals sum the glaciers with a value in every year and member (a glacier without thickness
    has no volume; a failed glacier-year has none), so totals of different years and members are
    comparable; the panel title gives the number of glaciers summed.
    """
    _, which = central(gy)
    fig = _figure((11, 7.5))
    ax = fig.subplots(2, 2)
    ref = reference_member(gy)
    for j, (col, unit) in enumerate((("area_km2", "km$^2$"), ("volume_km3", "km$^3$"))):
        tot, line, n = region_totals(gy, col)
        a = ax[0, j]
        ln = a.plot(line.index, line.to_numpy(), color="C0", lw=2, label="region total")[0]
        if "member" in gy:
            _member_band(a, tot, ln.get_color())
        a.set(title=f"{'Area' if j == 0 else 'Volume'}: region total of {n} of {gy['glacier'].nunique()} glaciers",
              xlabel="hydrological year", ylabel=f"{'area' if j == 0 else 'volume'} ({unit})")
        a.legend(fontsize=7)
        b = ax[1, j]
        for k, g in enumerate(highlight):
            rows = gy[gy["glacier"] == g]
            label = str(rows["rgi_id"].iloc[0])
            if "member" in gy:
                wide = rows.pivot(index="year", columns="member", values=col)
                series = wide[ref] if ref is not None else wide.mean(axis=1)
            else:
                wide, series = None, rows.set_index("year")[col]
            ln = b.plot(series.index, series.to_numpy(), color=f"C{k + 1}", lw=1.5, label=label)[0]
            if wide is not None:
                # a leading "_" keeps the band out of the legend (the title says what bands are)
                _member_band(b, wide, ln.get_color(), label=f"_{label} {BAND_MEMBERS}", alpha=0.12)
        bands = f" (bands: {BAND_MEMBERS})" if "member" in gy else ""
        b.set(title=f"Observed / largest glaciers{bands}", xlabel="hydrological year",
              ylabel=f"{'area' if j == 0 else 'volume'} ({unit})")
        if highlight:
            b.legend(fontsize=7)
        for a_ in (a, b):
            _integer_years(a_)
    fig.suptitle(" ".join(s for s in (title, "area and volume", f"[{which}]" if which else "") if s))
    return fig


def _mean_map(results: xr.Dataset) -> xr.DataArray:
    smb = results["smb"]
    return smb.mean([d for d in smb.dims if d not in ("y", "x")]).transpose("y", "x").compute()


def _extent(da: xr.DataArray) -> tuple[list[float], str]:
    """imshow extent (pixel edges) and origin for a (y, x) array with 1-D coordinates."""
    x, y = da["x"].to_numpy().astype("float64"), da["y"].to_numpy().astype("float64")
    dx = abs(x[1] - x[0]) if x.size > 1 else 1.0
    dy = abs(y[1] - y[0]) if y.size > 1 else 1.0
    ext = [x.min() - dx / 2, x.max() + dx / 2, y.min() - dy / 2, y.max() + dy / 2]
    return ext, ("upper" if y.size > 1 and y[1] < y[0] else "lower")


def _draw_map(fig, ax, mean_smb: xr.DataArray):
    vals = mean_smb.to_numpy()
    finite = np.abs(vals[np.isfinite(vals)])
    lim = float(np.percentile(finite, 98)) if finite.size else 1.0  # robust to a few extreme edge pixels
    lim = lim if lim > 0 else 1.0
    ext, origin = _extent(mean_smb)
    im = ax.imshow(vals, cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest", extent=ext, origin=origin)
    fig.colorbar(im, ax=ax, label="mean SMB (m w.e. a$^{-1}$)")
    return im


def mean_smb_map(results: xr.Dataset) -> xr.DataArray:
    """Gridded ``smb`` averaged over years and members (NaN skipped), computed: (y, x) m w.e. a-1."""
    return _mean_map(results)


def figure_mean_smb(results: xr.Dataset, *, title: str = "", mean_smb: xr.DataArray | None = None):
    """Map of the gridded ``smb`` averaged over years (and members), m w.e. a-1, on the grid's x/y extent.

    Colours are symmetric around 0, limited at the 98th percentile of ``|SMB|``. ``mean_smb``: the map if
    already computed (:func:`mean_smb_map`), so that a large store is read once for several figures.
    """
    mean_smb = _mean_map(results) if mean_smb is None else mean_smb
    fig = _figure((8, 6.5))
    ax = fig.subplots()
    _draw_map(fig, ax, mean_smb)
    years = results["year"].to_numpy()
    extra = f", mean of {results.sizes['member']} members" if "member" in results.dims else ""
    ax.set_title(f"Mean annual SMB {years.min()}-{years.max()}{extra}")
    ux, uy = results["x"].attrs.get("units", ""), results["y"].attrs.get("units", "")
    ax.set(xlabel=f"x ({ux})" if ux else "x", ylabel=f"y ({uy})" if uy else "y")
    ax.ticklabel_format(useOffset=False, style="plain")
    if title:
        fig.suptitle(title)
    return fig


def figure_summary(results: xr.Dataset, gy: pd.DataFrame, val: pd.DataFrame, cv, title: str, *,
                   mean_smb: xr.DataArray | None = None):
    """Four panels: mean gridded SMB map, glacier-wide SMB series, CV scatter, total area and volume
    (the reference member when the run has members; totals as :func:`region_totals`)."""
    from matplotlib.collections import LineCollection

    one, which = central(gy)
    fig = _figure((12, 9))
    ax = fig.subplots(2, 2)
    _draw_map(fig, ax[0, 0], _mean_map(results) if mean_smb is None else mean_smb)
    ax[0, 0].set_title("Mean gridded SMB")
    ax[0, 0].set_axis_off()
    wide = one.pivot(index="year", columns="glacier", values="smb_mwe")
    yrs = wide.index.to_numpy()
    ax[0, 1].add_collection(LineCollection([np.c_[yrs, c] for c in wide.to_numpy().T], colors="0.7", lw=0.6))
    ax[0, 1].plot(yrs, wide.mean(axis=1).to_numpy(), color="k", lw=2, label="mean of all glaciers")
    for oid, g in list(val.groupby("obs_id"))[:5]:
        line = ax[0, 1].plot(g["year"], g["modelled"], lw=1.2, label=f"{oid} modelled")[0]
        ax[0, 1].plot(g["year"], g["observed"], "o", ms=3, color=line.get_color(), label=f"{oid} observed")
    ax[0, 1].autoscale_view()
    ax[0, 1].set(title="Glacier-wide annual SMB", xlabel="hydrological year", ylabel="m w.e.")
    ax[0, 1].legend(fontsize=7, ncol=2)
    pred = cv.predictions
    ax[1, 0].scatter(pred["observed"], pred["predicted"], s=8, alpha=0.6)
    lo, hi = np.nanmin(pred[["observed", "predicted"]].values), np.nanmax(pred[["observed", "predicted"]].values)
    ax[1, 0].plot([lo, hi], [lo, hi], "k--", lw=1)
    m = cv.metrics
    ax[1, 0].set(title=f"Cross-validation ({cv.scheme.upper()}): r={m['r']:.2f}, RMSE={m['rmse']:.2f} m w.e.",
                 xlabel="observed (m w.e.)", ylabel="predicted (m w.e.)")
    _, area, _ = region_totals(gy, "area_km2")
    _, volume, _ = region_totals(gy, "volume_km3")
    ax[1, 1].plot(area.index, area.to_numpy(), "b-", label="area")
    ax[1, 1].set(title="Total glacier area and volume (glaciers with values in every year)", xlabel="hydrological year")
    twin = ax[1, 1].twinx()
    twin.plot(volume.index, volume.to_numpy(), "r-", label="volume")
    twin.set_ylabel("volume (km$^3$)", color="r")
    ax[1, 1].set_ylabel("area (km$^2$)", color="b")
    for a in (ax[0, 1], ax[1, 1]):
        _integer_years(a)
    fig.suptitle(title + (f" [{which}]" if which else ""))
    return fig
