"""PNG figures of a run, drawn on matplotlib ``Figure`` objects (no pyplot: the session's backend, e.g.
inline plots in a notebook, is left alone). Each ``figure_*`` function returns the Figure so that its
artists (line data, band limits, image arrays) can be inspected; :func:`save` writes it.

The glacier-year table helpers that the figures and :mod:`glacgrid.outputs` share live here too:
:func:`reference_member` and :func:`central` (which run of an ensemble stands for the region),
:func:`unit_smb` (modelled SMB of each observation unit) and :func:`region_totals`.

What a paper figure needs is built in: maps on geographic axes whose labels name the CRS (EPSG code),
pixels without glacier in grey (:data:`NO_GLACIER_COLOUR`) apart from SMB 0 (near-white on a diverging
map centred on 0), rates in m w.e. a-1, cumulative curves that start at 0, glaciers named
``"Name (RGI id)"``, legends outside the data, and area / volume y-ranges of at least ±5 % of the value
(:func:`floor_ylim`) so that a constant is not drawn as a trend.

Artists carry labels that tests and users can look up: lines ``observed``, ``modelled``,
``region total`` and the glacier's :func:`glacier_label`; bands (``fill_between``) ``ensemble min-max``
(members of an evolution ensemble) or ``ensemble spread`` (± the cumulated std of an ensemble model); the
band of a highlighted glacier is ``_<label> ensemble min-max`` (leading ``_``: not in the legend).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .atomic import atomic_path

__all__ = ["figure_cumulative_smb", "figure_area_volume", "figure_mean_smb", "figure_summary",
           "highlight_glaciers", "mean_smb_map", "save", "reference_member", "central", "region_totals",
           "unit_smb", "map_crs", "crs_label", "glacier_label", "smb_colormap", "floor_ylim",
           "NO_GLACIER_COLOUR", "Y_FLOOR", "BAND_MEMBERS", "BAND_SPREAD"]

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
    found = gy.loc[ref, "member"].unique()
    return found[0] if len(found) == 1 else None  # forcing members: several with factors 1 -> their mean


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
#: Colour of pixels without glacier (NaN SMB) on the maps: a grey that no SMB colour takes (SMB 0 is
#: near-white on the diverging map).
NO_GLACIER_COLOUR = "0.78"
#: Colours of pixels beyond the colour limits (darker than both ends of ``RdBu``).
UNDER_COLOUR, OVER_COLOUR = "#3d0010", "#021836"
#: The smallest y-range of an area or volume panel, as a fraction of the largest value on each side
#: (``±5 %``): a constant (or nearly constant) area does not fill the panel like a trend.
Y_FLOOR = 0.05
SMB_RATE = "m w.e. a$^{-1}$"
XLABEL_CUMULATIVE = "end of hydrological year"


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _integer_years(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` and return the path.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or Path
        Target PNG (written to a temporary name and renamed).
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def _band(ax, x, lo, hi, color, label: str, alpha: float = 0.25):
    return ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0, label=label)


def _member_band(ax, wide: pd.DataFrame, color, label: str = BAND_MEMBERS, alpha: float = 0.25):
    """Shade min..max across the columns (members) of ``wide`` (index: year)."""
    if wide.shape[1] < 2:
        return None
    return _band(ax, wide.index.to_numpy(), wide.min(axis=1).to_numpy(), wide.max(axis=1).to_numpy(), color,
                 label, alpha)


def _grid_of_axes(fig, n: int):
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    return np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())


def _from_zero(x: np.ndarray, cum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A cumulative series (along axis 0) with its start prepended: 0 at the end of the year before."""
    x = np.asarray(x)
    if x.size == 0:
        return x, cum
    start = np.zeros((1,) + np.shape(cum)[1:])
    return np.r_[x[0] - 1, x], np.concatenate([start, np.asarray(cum, dtype="float64")], axis=0)


def floor_ylim(ax, frac: float = Y_FLOOR) -> tuple[float, float]:
    """Widen the y-range of ``ax`` to at least ``± frac`` of its largest absolute data value, around the
    middle of the data, so that a (nearly) constant series stays a flat line in the panel.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes with lines or bands drawn (their data limits are read).
    frac : float
        The half-range floor as a fraction of the largest absolute value (0.05: ``±5 %``).

    Returns
    -------
    tuple of float
        The y-limits set.
    """
    ax.autoscale_view()  # the data limits are those of the artists added (no relim: it skips bands)
    lo, hi = ax.get_ylim()
    d0, d1 = ax.dataLim.intervaly
    if not (np.isfinite(d0) and np.isfinite(d1)):
        return lo, hi
    mid, half = (d0 + d1) / 2.0, frac * max(abs(d0), abs(d1))
    if half > 0 and (hi - lo) < 2.0 * half:
        lo, hi = mid - half, mid + half
        ax.set_ylim(lo, hi)
    return lo, hi


def _outside_legend(fig, handles_from, *, ncol: int = 4, **kw):
    """One legend for the figure, below the panels (outside every axes), from the artists of the axes
    ``handles_from`` (a label appears once)."""
    seen: dict[str, object] = {}
    for ax in handles_from:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if not seen:
        return None
    return fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=min(ncol, len(seen)),
                      fontsize=8, frameon=False, **kw)


def _side_legend(ax, **kw):
    """The legend of ``ax`` to its right, outside the data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7, frameon=False, **kw)


# ------------------------------------------------------------------------------------------ names and ids
def _clean_name(name) -> str:
    """A glacier name as it should be printed: what comes before a run of 3+ spaces (RGI v5 pads names
    with spaces and a stray character, ``"Kesselwandferner      À"``) with single spaces, none with fewer
    than 2 letters (RGI v5's ``"À"`` placeholder), none for None / NaN."""
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return ""
    text = " ".join(re.split(r"\s{3,}", str(name).strip())[0].split())
    return text if sum(c.isalpha() for c in text) >= 2 else ""


def glacier_label(name, rgi_id) -> str:
    """``"Name (RGI id)"``, or the RGI id alone when the glacier has no name.

    Parameters
    ----------
    name : str or None
        The glacier's name. Empty, None, NaN or fewer than 2 letters (RGI v5's ``"À"`` placeholder): no
        name; what follows a run of 3 or more spaces (RGI v5 padding) is dropped.
    rgi_id : str
        Its RGI id.

    Returns
    -------
    str
    """
    name = _clean_name(name)
    return f"{name} ({rgi_id})" if name else str(rgi_id)


def _glacier_labels(gy: pd.DataFrame) -> pd.Series:
    """``glacier_label`` of every glacier of ``gy`` (index: glacier)."""
    first = gy.drop_duplicates("glacier").set_index("glacier")
    names = first["name"] if "name" in first else pd.Series("", index=first.index)
    return pd.Series([glacier_label(n, r) for n, r in zip(names, first["rgi_id"])], index=first.index)


def _unit_labels(gy: pd.DataFrame, units, unit_of_outline: np.ndarray) -> dict[str, str]:
    """Label of each observation unit: ``"Name (RGI id)"`` when the unit is one outline (with a second
    line ``"obs. <id>"`` where the observation id is not the outline's RGI id), ``"Name (<id>, n outlines)"``
    for several outlines of one name, ``"<id> (n outlines)"`` otherwise."""
    first = gy.drop_duplicates("glacier").set_index("glacier")
    rgi = first["rgi_id"].astype(str)
    names = (first["name"] if "name" in first else pd.Series("", index=first.index)).map(_clean_name)
    uoo = np.asarray(unit_of_outline)
    out = {}
    for u, oid in enumerate(units, start=1):
        oid = str(oid)
        outlines = [g for g in np.flatnonzero(uoo == u) if g in first.index]
        common = set(names[outlines])
        if len(outlines) == 1:
            g = outlines[0]
            out[oid] = glacier_label(names[g], rgi[g]) + ("" if rgi[g] == oid else f"\nobs. {oid}")
        elif outlines and len(common) == 1 and "" not in common:
            out[oid] = f"{common.pop()} ({oid}, {len(outlines)} outlines)"
        elif outlines:
            out[oid] = f"{oid} ({len(outlines)} outlines)"
        else:
            out[oid] = oid
    return out


def _by_rgi_id(gy: pd.DataFrame) -> dict[str, str]:
    """``glacier_label`` by RGI id (observation ids that are RGI ids are shown with the name)."""
    first = gy.drop_duplicates("glacier")
    names = first["name"] if "name" in first else [""] * len(first)
    return {str(r): glacier_label(n, r) for n, r in zip(names, first["rgi_id"])}


# ------------------------------------------------------------------------------------------- map axes
def map_crs(ds: xr.Dataset):
    """The coordinate reference system of a gridded store, or None when it names none.

    Read from the CF grid-mapping variable of ``smb`` (its ``grid_mapping`` attribute or encoding, else a
    ``spatial_ref`` variable: attribute ``crs_wkt`` or ``spatial_ref``), else from the store's global
    ``crs`` attribute (WKT or ``"EPSG:n"``, as ``glacgrid run`` writes it).

    Parameters
    ----------
    ds : xarray.Dataset
        A results (or static, downscaled) store.

    Returns
    -------
    pyproj.CRS or None
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    names = []
    if "smb" in ds.variables:
        names += [ds["smb"].attrs.get("grid_mapping"), ds["smb"].encoding.get("grid_mapping")]
    found = []
    for name in [n for n in names if n] + ["spatial_ref", "crs"]:
        if name in ds.variables:
            a = ds[name].attrs
            found += [a.get("crs_wkt"), a.get("spatial_ref")]
    found.append(ds.attrs.get("crs"))
    for text in found:
        if text:
            try:
                return CRS.from_user_input(text)
            except CRSError:
                continue
    return None


def crs_label(crs) -> str:
    """``"EPSG:<code>"`` of ``crs`` when it has one, else its name; ``"CRS unknown"`` for None.

    Parameters
    ----------
    crs : pyproj.CRS or None

    Returns
    -------
    str
    """
    if crs is None:
        return "CRS unknown"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.name


def _geo_axes(ax, mean_smb: xr.DataArray, crs) -> None:
    """Easting / northing in km (projected CRS in metres) or longitude / latitude (geographic), each label
    naming the CRS; equal scale on both axes."""
    from matplotlib.ticker import FuncFormatter

    label = crs_label(crs)
    if crs is not None and crs.is_geographic:
        lat = float(np.nanmean(mean_smb["y"].to_numpy()))
        ax.set_xlabel(f"longitude (°E), {label}")
        ax.set_ylabel(f"latitude (°N), {label}")
        ax.set_aspect(1.0 / max(np.cos(np.deg2rad(lat)), 1e-3))
        return
    unit = mean_smb["x"].attrs.get("units", "m" if crs is not None else "")
    if crs is not None and crs.axis_info:
        factor = crs.axis_info[0].unit_conversion_factor
        unit = "m" if factor == 1.0 else crs.axis_info[0].unit_name
    if unit in ("m", "metre", "meter"):
        km = FuncFormatter(lambda v, _: f"{v / 1000.0:g}")  # the data stay in metres: ticks read in km
        ax.xaxis.set_major_formatter(km)
        ax.yaxis.set_major_formatter(km)
        unit = "km"
    if crs is None:
        ax.set_xlabel(f"x ({unit}), {label}" if unit else f"x, {label}")
        ax.set_ylabel(f"y ({unit})" if unit else "y")
    else:
        ax.set_xlabel(f"easting ({unit}), {label} ({crs.name})")
        ax.set_ylabel(f"northing ({unit}), {label}")
    ax.set_aspect("equal")


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


def smb_colormap():
    """The diverging SMB colormap: ``RdBu`` (red: loss, blue: gain, near-white: 0), no-glacier (NaN)
    pixels :data:`NO_GLACIER_COLOUR`, values beyond the limits darker than either end.

    Returns
    -------
    matplotlib.colors.Colormap
    """
    import matplotlib

    return matplotlib.colormaps["RdBu"].with_extremes(bad=NO_GLACIER_COLOUR, under=UNDER_COLOUR,
                                                      over=OVER_COLOUR)


def _draw_map(fig, ax, mean_smb: xr.DataArray, crs):
    from matplotlib.patches import Patch

    vals = mean_smb.to_numpy()
    finite = vals[np.isfinite(vals)]
    lim = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0  # robust to a few extreme pixels
    lim = lim if lim > 0 else 1.0
    ext, origin = _extent(mean_smb)
    im = ax.imshow(np.ma.masked_invalid(vals), cmap=smb_colormap(), vmin=-lim, vmax=lim, interpolation="nearest",
                   extent=ext, origin=origin)
    low, high = bool((finite < -lim).any()), bool((finite > lim).any())
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get((low, high), "neither")
    fig.colorbar(im, ax=ax, label=f"mean SMB ({SMB_RATE})", extend=extend, shrink=0.9)
    _geo_axes(ax, mean_smb, crs)
    ax.legend(handles=[Patch(facecolor=NO_GLACIER_COLOUR, edgecolor="0.4", lw=0.5, label="no glacier")],
              loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2, fontsize=7, frameon=False)
    return im


def mean_smb_map(results: xr.Dataset) -> xr.DataArray:
    """Gridded ``smb`` averaged over years and members (NaN skipped), computed.

    Parameters
    ----------
    results : xarray.Dataset
        A results store with ``smb`` (m w.e. a-1) on ``(..., y, x)``.

    Returns
    -------
    xarray.DataArray
        ``(y, x)``, m w.e. a-1; NaN where no pixel has a value (no glacier).
    """
    return _mean_map(results)


def figure_mean_smb(results: xr.Dataset, *, title: str = "", mean_smb: xr.DataArray | None = None):
    """Map of the gridded ``smb`` averaged over years (and members), m w.e. a-1, on geographic axes.

    Axes: easting / northing in km (projected CRS in metres; the image extent stays in the store's
    metres, the ticks read in km) or longitude / latitude, each label naming the CRS (EPSG code, see
    :func:`map_crs`). Colours: :func:`smb_colormap`, symmetric around 0 and limited at the 98th
    percentile of ``|SMB|`` (beyond: the darker extension colours); pixels without glacier in grey.

    Parameters
    ----------
    results : xarray.Dataset
        A results store.
    title : str
        Figure title (suptitle).
    mean_smb : xarray.DataArray, optional
        The map if already computed (:func:`mean_smb_map`), so that a large store is read once for
        several figures.

    Returns
    -------
    matplotlib.figure.Figure
    """
    mean_smb = _mean_map(results) if mean_smb is None else mean_smb
    fig = _figure((8, 6.5))
    ax = fig.subplots()
    _draw_map(fig, ax, mean_smb, map_crs(results))
    years = results["year"].to_numpy()
    extra = f", mean of {results.sizes['member']} members" if "member" in results.dims else ""
    ax.set_title(f"Mean annual SMB {years.min()}-{years.max()}{extra}")
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------------------- time series
def figure_cumulative_smb(gy: pd.DataFrame, obs: pd.DataFrame, units, unit_of_outline: np.ndarray, *,
                          max_panels: int = 11, title: str = ""):
    """Cumulative glacier-wide SMB (m w.e.) per observed glacier against its observations.

    Every curve starts at 0 at the end of the year before its first year (x: end of hydrological year).
    First panel: the modelled cumulative SMB of every glacier (the reference member; a year without a
    value, after disappearance or when failed, adds nothing) and their mean. Then one panel per
    observation unit with observations in the modelled period (the ``max_panels`` with most years),
    titled ``"Name (RGI id)"`` when the unit is one named outline: on the years that have both an
    observation and a modelled value, the cumulative sum of the observations (``observed``), of the
    modelled unit SMB (``modelled``, area-weighted over the unit's outlines, reference member) and a
    band: min..max over members of each member's cumulative sum, or ± the cumulative sum of the ensemble
    model's spread (members taken as perfectly correlated in time). One legend below the panels.

    Parameters
    ----------
    gy : pandas.DataFrame
        The glacier-year table (:func:`glacgrid.outputs.glacier_years`).
    obs : pandas.DataFrame
        Observations: ``obs_id``, ``year``, ``smb`` (m w.e. a-1).
    units : sequence of str
        Observation unit ids, in unit order.
    unit_of_outline : numpy.ndarray
        1-based unit of each glacier index (0: not observed).
    max_panels : int
        Most unit panels drawn.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.collections import LineCollection

    one, which = central(gy)
    per_unit = unit_smb(gy, units, unit_of_outline)
    names = _unit_labels(gy, units, unit_of_outline)
    years = np.sort(gy["year"].unique())
    obs = obs[obs["year"].between(years[0], years[-1]) & obs["obs_id"].isin(set(per_unit["obs_id"]))]
    order = obs.groupby("obs_id").size().sort_values(ascending=False, kind="stable")
    shown = sorted(order.index[:max_panels])
    fig = _figure((4.2 * min(len(shown) + 1, 4), 3.3 * int(np.ceil((len(shown) + 1) / 4)) + 0.6))
    axes = _grid_of_axes(fig, len(shown) + 1)
    for ax in axes[len(shown) + 1:]:
        ax.set_visible(False)
    ax = axes[0]
    wide = one.pivot(index="year", columns="glacier", values="smb_mwe").reindex(years)
    x, cum = _from_zero(years, np.nancumsum(wide.to_numpy(), axis=0))
    ax.add_collection(LineCollection([np.c_[x, c] for c in cum.T], colors="0.65", lw=0.5, label="each glacier"))
    ax.plot(x, cum.mean(axis=1), color="k", lw=2, label="mean of all glaciers")
    ax.autoscale_view()
    ax.set(title=f"All {wide.shape[1]} glaciers (modelled)", xlabel=XLABEL_CUMULATIVE,
           ylabel="cumulative SMB (m w.e.)")
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
        x, o_cum = _from_zero(y, o.to_numpy()[ok].cumsum())
        _, m_cum = _from_zero(y, line.reindex(y).to_numpy().cumsum())
        ax.plot(x, o_cum, "o-", color="k", ms=3, lw=1, label="observed")
        ln = ax.plot(x, m_cum, "-", color="C3", lw=1.5, label="modelled")[0]
        if "member" in mine and members.shape[1] > 1:
            _, cm = _from_zero(y, members.reindex(y).cumsum().to_numpy())
            _band(ax, x, cm.min(axis=1), cm.max(axis=1), ln.get_color(), BAND_MEMBERS)
        elif "modelled_spread" in mine:
            _, s = _from_zero(y, mine.set_index("year")["modelled_spread"].reindex(y).to_numpy().cumsum())
            _band(ax, x, m_cum - s, m_cum + s, ln.get_color(), BAND_SPREAD)
        ax.axhline(0.0, color="0.5", lw=0.5, zorder=0)
        left = int((~ok).sum())
        ax.set(title=names.get(oid, oid) + (f"\n{left} observed year(s) without a modelled value left out"
                                            if left else ""),
               xlabel=XLABEL_CUMULATIVE, ylabel="cumulative SMB (m w.e.)")
        ax.title.set_fontsize(9)
    for ax in axes:
        _integer_years(ax)
    _outside_legend(fig, axes[: len(shown) + 1], ncol=6)
    more = (f"\n{len(order) - len(shown)} more observed glaciers not shown (see validation.csv)"
            if len(order) > len(shown) else "")
    fig.suptitle(" ".join(s for s in (title, "cumulative SMB", f"[{which}]" if which else "") if s) + more)
    return fig


def highlight_glaciers(gy: pd.DataFrame, unit_of_outline: np.ndarray, k: int = 5) -> list[int]:
    """Up to ``k`` glacier indices: the observed outlines first, filled up with the largest glaciers
    (by first-year area of the reference member), each group largest first.

    Parameters
    ----------
    gy : pandas.DataFrame
        The glacier-year table.
    unit_of_outline : numpy.ndarray
        1-based observation unit of each glacier index (0: not observed).
    k : int
        Most glaciers picked.

    Returns
    -------
    list of int
    """
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
    comparable; the panel title gives the number of glaciers summed. Glacier lines are labelled
    ``"Name (RGI id)"`` (:func:`glacier_label`); each y-range is at least ``±5 %`` of the panel's largest
    value (:func:`floor_ylim`), so a constant area is drawn flat. One legend below the panels.

    Parameters
    ----------
    gy : pandas.DataFrame
        The glacier-year table.
    highlight : list of int
        Glacier indices of the bottom panels (:func:`highlight_glaciers`).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _, which = central(gy)
    labels = _glacier_labels(gy)
    fig = _figure((11, 8))
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
        b = ax[1, j]
        for k, g in enumerate(highlight):
            rows = gy[gy["glacier"] == g]
            label = labels[g]
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
        for a_ in (a, b):
            _integer_years(a_)
            floor_ylim(a_)
    _outside_legend(fig, [ax[0, 0], ax[1, 0]], ncol=3)
    fig.suptitle(" ".join(s for s in (title, "area and volume", f"[{which}]" if which else "") if s))
    return fig


def figure_summary(results: xr.Dataset, gy: pd.DataFrame, val: pd.DataFrame, cv, title: str, *,
                   mean_smb: xr.DataArray | None = None, units=None, unit_of_outline: np.ndarray | None = None):
    """Four panels: mean gridded SMB map (geographic axes, as :func:`figure_mean_smb`), glacier-wide SMB
    series (m w.e. a-1) with the observations of up to 5 units, CV scatter, total area and volume
    (the reference member when the run has members, with the min..max band over members; totals as
    :func:`region_totals`; y-ranges floored as :func:`floor_ylim`). Legends sit beside the panels.

    Parameters
    ----------
    results : xarray.Dataset
        The results store.
    gy : pandas.DataFrame
        The glacier-year table.
    val : pandas.DataFrame
        The validation table (``obs_id``, ``year``, ``observed``, ``modelled``).
    cv : glacgrid.models.CVResult
        Cross-validation result (``predictions``, ``metrics``, ``scheme``).
    title : str
        Figure title.
    mean_smb : xarray.DataArray, optional
        The map if already computed (:func:`mean_smb_map`).
    units, unit_of_outline : optional
        The observation units and the 1-based unit of each glacier index (as for
        :func:`figure_cumulative_smb`): the SMB series legend then names each unit's glacier(s). Without
        them an observation id that is an RGI id of ``gy`` is named, any other shown as it is.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.collections import LineCollection
    from matplotlib.legend_handler import HandlerTuple

    one, which = central(gy)
    names = _by_rgi_id(gy)
    if units is not None and unit_of_outline is not None:
        names |= {k: v.split("\n")[0] for k, v in _unit_labels(gy, units, unit_of_outline).items()}
    fig = _figure((13, 9.5))
    ax = fig.subplots(2, 2)
    _draw_map(fig, ax[0, 0], _mean_map(results) if mean_smb is None else mean_smb, map_crs(results))
    ax[0, 0].set_title("Mean gridded SMB")
    wide = one.pivot(index="year", columns="glacier", values="smb_mwe")
    yrs = wide.index.to_numpy()
    ax[0, 1].add_collection(LineCollection([np.c_[yrs, c] for c in wide.to_numpy().T], colors="0.7", lw=0.6,
                                           label="each glacier"))
    ax[0, 1].plot(yrs, wide.mean(axis=1).to_numpy(), color="k", lw=2, label="mean of all glaciers")
    handles, labels = [], []
    for oid, g in list(val.groupby("obs_id"))[:5]:
        name = names.get(str(oid), str(oid))
        line = ax[0, 1].plot(g["year"], g["modelled"], lw=1.2, label=f"_{name} modelled")[0]
        dots = ax[0, 1].plot(g["year"], g["observed"], "o", ms=3, color=line.get_color(), label=f"_{name} observed")[0]
        handles.append((line, dots))
        labels.append(name)
    ax[0, 1].axhline(0.0, color="0.5", lw=0.5, zorder=0)
    ax[0, 1].autoscale_view()
    ax[0, 1].set(title="Glacier-wide annual SMB (lines: modelled, dots: observed)", xlabel="hydrological year",
                 ylabel=f"SMB ({SMB_RATE})")
    own, own_labels = ax[0, 1].get_legend_handles_labels()
    _side_legend(ax[0, 1], handles=own + handles, labels=own_labels + labels, handler_map={tuple: HandlerTuple()})
    pred = cv.predictions
    ax[1, 0].scatter(pred["observed"], pred["predicted"], s=8, alpha=0.6)
    lo, hi = np.nanmin(pred[["observed", "predicted"]].values), np.nanmax(pred[["observed", "predicted"]].values)
    ax[1, 0].plot([lo, hi], [lo, hi], "k--", lw=1, label="1:1")
    ax[1, 0].set_aspect("equal", adjustable="datalim")
    m = cv.metrics
    ax[1, 0].set(title=f"Cross-validation ({cv.scheme.upper()}): r={m['r']:.2f}, RMSE={m['rmse']:.2f} {SMB_RATE}",
                 xlabel=f"observed SMB ({SMB_RATE})", ylabel=f"predicted SMB ({SMB_RATE})")
    a = ax[1, 1]
    twin = a.twinx()
    for axis, col, colour, style in ((a, "area_km2", "C0", "-"), (twin, "volume_km3", "C3", "--")):
        tot, line, _ = region_totals(gy, col)
        what, unit = ("area", "km$^2$") if col == "area_km2" else ("volume", "km$^3$")
        # dashed volume: both stay visible where the floored ranges put them on the same height
        axis.plot(line.index, line.to_numpy(), style, color=colour, lw=2, label=what)
        if "member" in gy:
            _member_band(axis, tot, colour, label=f"{what} {BAND_MEMBERS}", alpha=0.2)
        axis.set_ylabel(f"{what} ({unit})", color=colour)
        axis.tick_params(axis="y", colors=colour)
        floor_ylim(axis)
    a.set(title="Total glacier area and volume (glaciers with values in every year)", xlabel="hydrological year")
    for axis in (ax[0, 1], a):
        _integer_years(axis)
    fig.suptitle(title + (f" [{which}]" if which else ""))
    return fig
