"""Figures a scientist would put in a paper (issue 19.5), asserted on the Figure objects: map axes that name
the CRS, a no-glacier colour apart from SMB 0, rates in m w.e. a-1, cumulative curves from 0, glaciers
named "Name (RGI id)", legends outside the data and y-range floors for area and volume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from pyproj import CRS

from glacgrid import figures
from glacgrid.models import CVResult
from glacgrid.outputs import glacier_years, validation_table
from glacgrid.testing._outputs import synthetic_results

MEMBERS = [(0.7, 0.9), (1.0, 1.0), (1.3, 1.1)]


def _cv():
    pred = pd.DataFrame({"observed": [0.1, -0.5, -1.0, 0.3], "predicted": [0.0, -0.4, -1.1, 0.2]})
    return CVResult("logo", {"r": 0.98, "r2": 0.95, "rmse": 0.1, "mae": 0.1, "bias": -0.05},
                    pd.DataFrame({"fold": ["a", "b"]}), pred)


def _with_crs(results, how: str):
    """The synthetic store (no CRS) with EPSG:32632 as the global attribute ``glacgrid run`` writes, or as a
    CF grid-mapping variable that ``smb`` points to (what rioxarray writes)."""
    if how == "attribute":
        return results.assign_attrs(crs=CRS.from_epsg(32632).to_wkt())
    ds = results.assign_coords(spatial_ref=((), 0, {"crs_wkt": CRS.from_epsg(32632).to_wkt()}))
    ds["smb"].attrs["grid_mapping"] = "spatial_ref"
    return ds


def _drawn(fig):
    FigureCanvasAgg(fig).draw()
    return fig.canvas.get_renderer()


def _legends(fig):
    return [*fig.legends, *[ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]]


def _assert_legends_outside_data(fig):
    """No legend overlaps the data area of a visible panel (colorbars and twins are panels here too)."""
    renderer = _drawn(fig)
    legends = _legends(fig)
    assert legends
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible():
                assert not box.overlaps(ax.bbox), (leg.get_texts()[0].get_text(), ax.get_title())


@pytest.mark.parametrize("how", ["attribute", "grid_mapping"])
def test_map_axes_are_easting_northing_in_km_naming_the_epsg(how):
    s = synthetic_results()
    res = _with_crs(s.results, how)
    assert figures.map_crs(res).to_epsg() == 32632 and figures.map_crs(s.results) is None
    fig = figures.figure_mean_smb(res)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "easting (km), EPSG:32632 (WGS 84 / UTM zone 32N)"
    assert ax.get_ylabel() == "northing (km), EPSG:32632"
    # the image stays in the store's metres (pixel edges); the ticks read in km
    x, y = s.results["x"].values, s.results["y"].values
    np.testing.assert_allclose(ax.images[0].get_extent(), [x[0] - 50, x[-1] + 50, y[-1] - 50, y[0] + 50])
    assert ax.xaxis.get_major_formatter()(620_500.0, 0) == "620.5"
    assert ax.yaxis.get_major_formatter()(5_200_000.0, 0) == "5200"
    assert ax.get_aspect() == 1.0  # one km east is one km north


def test_map_axes_longitude_latitude_for_a_geographic_crs():
    s = synthetic_results()
    res = s.results.assign_coords(x=("x", 10.0 + 0.01 * np.arange(10)), y=("y", 47.0 - 0.01 * np.arange(7)))
    res = res.assign_attrs(crs="EPSG:4326")
    ax = figures.figure_mean_smb(res).axes[0]
    assert ax.get_xlabel() == "longitude (°E), EPSG:4326" and ax.get_ylabel() == "latitude (°N), EPSG:4326"
    assert ax.get_aspect() == pytest.approx(1.0 / np.cos(np.deg2rad(np.mean(res["y"].values))))


def test_no_glacier_colour_differs_from_smb_zero():
    s = synthetic_results()
    fig = figures.figure_mean_smb(s.results)
    ax, cbar_ax = fig.axes[0], fig.axes[1]
    im = ax.images[0]
    cmap = im.get_cmap()
    grey, zero = np.array(cmap.get_bad()), np.array(im.to_rgba(0.0))
    assert tuple(grey) == to_rgba(figures.NO_GLACIER_COLOUR)
    assert np.abs(grey[:3] - zero[:3]).max() > 0.15  # SMB 0 is near-white; no glacier is a clear grey
    assert tuple(cmap.get_under()) == to_rgba(figures.UNDER_COLOUR) != tuple(cmap(0.0))
    assert tuple(cmap.get_over()) == to_rgba(figures.OVER_COLOUR) != tuple(cmap(1.0))
    # row 0 of the synthetic grid has no glacier: NaN, drawn in the grey; the map is centred on 0
    assert np.ma.getmaskarray(im.get_array())[0].all() and not np.ma.getmaskarray(im.get_array())[1:].any()
    np.testing.assert_allclose(im.to_rgba(np.ma.masked_invalid(np.array([np.nan])))[0], grey)
    lo, hi = im.get_clim()
    assert lo == -hi
    assert cbar_ax.get_ylabel() == "mean SMB (m w.e. a$^{-1}$)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no glacier"]
    _assert_legends_outside_data(fig)


@pytest.mark.parametrize("case", [dict(members=MEMBERS), dict(spread=True)])
def test_cumulative_curves_start_at_zero_and_panels_are_named(case):
    s = synthetic_results(**case)
    gy = glacier_years(s.results, s.table)
    fig = figures.figure_cumulative_smb(gy, s.obs, s.units, s.unit_of_outline)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    first_year = int(s.results["year"][0])
    for seg in axes[0].collections[0].get_segments():  # each glacier
        assert tuple(seg[0]) == (first_year - 1, 0.0)
    for ax in axes:
        for line in ax.get_lines():
            if line.get_label() in ("observed", "modelled", "mean of all glaciers"):
                x, y = line.get_xydata().T
                assert y[0] == 0.0 and x[0] == x[1] - 1, line.get_label()
        for band in ax.collections[1 if ax is axes[0] else 0:]:
            v = band.get_paths()[0].vertices
            assert np.all(v[v[:, 0] == v[:, 0].min(), 1] == 0.0)
        assert ax.get_xlabel() == "end of hydrological year" and ax.get_ylabel() == "cumulative SMB (m w.e.)"
    # unit 1 is glacier 1 alone, named: "Name (RGI id)", then the observation id; unit 2 is two outlines
    assert axes[1].get_title().split("\n")[:2] == ["Glacier 1 (RGI60-99.00001)", "obs. OBS-A"]
    assert axes[2].get_title().split("\n")[0] == "OBS-B (2 outlines)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    band = figures.BAND_MEMBERS if "members" in case else figures.BAND_SPREAD
    assert labels == ["each glacier", "mean of all glaciers", "observed", "modelled", band]
    assert not [ax for ax in axes if ax.get_legend() is not None]  # one legend, below the panels
    _assert_legends_outside_data(fig)


def test_glacier_labels_use_names_where_they_exist():
    assert figures.glacier_label("Hintereisferner", "RGI60-11.00897") == "Hintereisferner (RGI60-11.00897)"
    for none in ("", " ", None, np.nan, "À"):  # "À": RGI v5's placeholder for no name
        assert figures.glacier_label(none, "RGI60-11.00897") == "RGI60-11.00897"
    # RGI v5 pads names with spaces and a stray character
    assert figures.glacier_label("Kesselwandferner" + " " * 31 + "À", "RGI50-11.00787") == \
        "Kesselwandferner (RGI50-11.00787)"
    assert figures.glacier_label("Glacier de  Saint-Sorlin", "x") == "Glacier de Saint-Sorlin (x)"
    s = synthetic_results()
    gy = glacier_years(s.results, s.table)
    fig = figures.figure_area_volume(gy, [1, 2])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["region total", "Glacier 1 (RGI60-99.00001)", "RGI60-99.00002"]  # glacier 2 has no name


def test_area_volume_floor_keeps_a_constant_flat_and_legend_outside():
    s = synthetic_results(members=MEMBERS)
    gy = glacier_years(s.results, s.table)
    first = gy[gy["year"] == gy["year"].min()].set_index(["member", "glacier"])["area_km2"]
    gy["area_km2"] = first.reindex(pd.MultiIndex.from_frame(gy[["member", "glacier"]])).to_numpy()  # constant
    fig = figures.figure_area_volume(gy, figures.highlight_glaciers(gy, s.unit_of_outline, k=3))
    ax = np.array(fig.axes).reshape(2, 2)
    total = ax[0, 0].get_lines()[0].get_ydata()
    assert np.ptp(total) == 0
    lo, hi = ax[0, 0].get_ylim()
    assert hi - lo >= 2 * figures.Y_FLOOR * total.max() * (1 - 1e-12)
    assert lo < total.min() and hi > total.max()
    # a series with a real trend keeps its autoscaled range (the volume loses more than 10 %)
    vol = ax[0, 1].get_lines()[0].get_ydata()
    assert np.ptp(vol) > 2 * figures.Y_FLOOR * vol.max()
    lo, hi = ax[0, 1].get_ylim()
    assert lo <= ax[0, 1].dataLim.y0 and hi >= ax[0, 1].dataLim.y1 and hi - lo < 1.2 * ax[0, 1].dataLim.height
    for a in ax.ravel():
        assert a.get_legend() is None
    _assert_legends_outside_data(fig)


def test_floor_ylim_widens_only_narrow_ranges():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    ax.plot([2001, 2002, 2003], [20.0, 20.002, 20.0])  # nearly constant: autoscale would fill the panel
    lo, hi = figures.floor_ylim(ax)
    expect = (20.001 - 0.05 * 20.002, 20.001 + 0.05 * 20.002)
    assert (lo, hi) == pytest.approx(expect, rel=1e-12) and ax.get_ylim() == pytest.approx(expect, rel=1e-12)
    ax = Figure().subplots()
    ax.plot([2001, 2002, 2003], [10.0, 15.0, 20.0])
    before = ax.get_ylim()
    assert figures.floor_ylim(ax) == pytest.approx(before)


def test_summary_units_names_bands_and_legends():
    s = synthetic_results(members=MEMBERS)
    res = _with_crs(s.results, "attribute")
    gy = glacier_years(res, s.table)
    val = validation_table(gy, s.obs, s.units, s.unit_of_outline)
    fig = figures.figure_summary(res, gy, val, _cv(), "t")
    m, series, scatter, totals = fig.axes[:4]  # the 2 x 2 panels, then the colorbar and the twin
    assert "EPSG:32632" in m.get_xlabel() and "EPSG:32632" in m.get_ylabel()
    assert tuple(m.images[0].get_cmap().get_bad()) == to_rgba(figures.NO_GLACIER_COLOUR)
    assert series.get_ylabel() == "SMB (m w.e. a$^{-1}$)"
    assert scatter.get_xlabel() == "observed SMB (m w.e. a$^{-1}$)" and "m w.e. a$^{-1}$" in scatter.get_title()
    labels = [t.get_text() for t in series.get_legend().get_texts()]
    assert labels == ["each glacier", "mean of all glaciers", "OBS-A", "OBS-B"]  # unit ids are not RGI ids here
    # area and volume: reference-member lines with the min..max band over members, y-ranges floored
    twin = fig.axes[-1]
    for axis, what in ((totals, "area"), (twin, "volume")):
        assert [c.get_label() for c in axis.collections] == [f"{what} {figures.BAND_MEMBERS}"]
        lo, hi = axis.get_ylim()
        assert hi - lo >= 2 * figures.Y_FLOOR * axis.dataLim.y1 * (1 - 1e-12)
    _assert_legends_outside_data(fig)


def test_summary_names_units_from_their_outlines():
    s = synthetic_results()
    table = s.table.assign(name=["Glacier 1", "Twin", "Twin", "", ""])  # unit OBS-B: two outlines, one name
    gy = glacier_years(s.results, table)
    val = validation_table(gy, s.obs, s.units, s.unit_of_outline)
    fig = figures.figure_summary(s.results, gy, val, _cv(), "t", units=s.units, unit_of_outline=s.unit_of_outline)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["each glacier", "mean of all glaciers", "Glacier 1 (RGI60-99.00001)", "Twin (OBS-B, 2 outlines)"]
    fig = figures.figure_cumulative_smb(gy, s.obs, s.units, s.unit_of_outline)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[1:3]] == ["Glacier 1 (RGI60-99.00001)",
                                                                        "Twin (OBS-B, 2 outlines)"]
