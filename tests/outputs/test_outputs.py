"""Outputs for people: the glacier-year table (CSV and Parquet with units), validation with ensemble members,
the PNG figures (their plotted arrays read back) and the text summary, on synthetic results stores."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from glacgrid import figures
from glacgrid.config import (ClimateConfig, GlaciersConfig, GridConfig, ObservationsConfig, OutputConfig, PeriodConfig,
                             RunConfig)
from glacgrid.exceptions import UnitsError
from glacgrid.models import CVResult
from glacgrid.observations import ObservedUnits
from glacgrid.figures import central
from glacgrid.outputs import (glacier_years, read_glacier_years, summary_lines, validation_table, write_glacier_years,
                              write_outputs)
from glacgrid.testing._outputs import band_limits, synthetic_results

from glacgrid.testing import raise_if_dask_computes

MEMBERS = [(0.7, 0.9), (1.0, 1.0), (1.3, 1.1)]
CASES = {
    "single": dict(),
    "members": dict(members=MEMBERS, disappear={4: 2006}, failed=[(1, 2004, 1), (5, 2003)]),
    "spread": dict(spread=True, failed=[(2, 2005)]),
}


@pytest.fixture(params=list(CASES))
def case(request):
    return request.param, synthetic_results(**CASES[request.param])


def _label(ax, label):
    found = [a for a in [*ax.lines, *ax.collections] if a.get_label() == label]
    assert len(found) == 1, f"{label!r} in {[a.get_label() for a in [*ax.lines, *ax.collections]]}"
    return found[0]


def _unit_ref(s, gl, year_idx=slice(None)):
    """Area-weighted SMB of the glaciers ``gl`` (1-based) for the reference member, by hand."""
    res = s.results.sel(member=1) if "member" in s.results.dims else s.results
    smb = res["smb_glacier"].sel(glacier=gl).values[year_idx]
    area = res["glacier_area"].sel(glacier=gl).values[year_idx]
    w = np.where(np.isfinite(smb), np.nan_to_num(area), 0.0)
    with np.errstate(invalid="ignore"):
        out = (np.nan_to_num(smb) * w).sum(-1) / w.sum(-1)
    out[(np.isnan(smb) & (area != 0)).any(-1)] = np.nan
    return out


def test_table_holds_the_store_values_and_round_trips_exactly(case, tmp_path):
    name, s = case
    res = s.results.chunk({"year": 3})
    with raise_if_dask_computes(max_computes=1):  # one compute for all per-glacier variables
        gy = glacier_years(res, s.table)
    n, k = res.sizes["glacier"], res.sizes["year"]
    m = res.sizes.get("member", 1)
    assert len(gy) == n * k * m
    base = ["glacier", "rgi_id", "name", "year", "smb_mwe", "area_km2", "volume_km3", "mean_elevation_m",
            "disappeared", "failed"]
    assert set(gy.columns) == set(base) | ({"member", "thickness_factor", "deltah_factor"} if m > 1 else set()) \
        | ({"smb_spread_mwe"} if name == "spread" else set())
    # values: the store's, row by row
    for col, var in (("smb_mwe", "smb_glacier"), ("area_km2", "glacier_area"), ("volume_km3", "volume"),
                     ("mean_elevation_m", "mean_elevation"), ("failed", "failed"), ("disappeared", "disappeared")):
        idx = ["year", "member", "glacier"] if m > 1 else ["year", "glacier"]
        got = gy.set_index(idx)[col].to_xarray().transpose(*s.results[var].dims)
        np.testing.assert_array_equal(got.values, s.results[var].values)
    assert gy.loc[gy["glacier"] == 3, "rgi_id"].unique().tolist() == ["RGI60-99.00003"]
    assert gy.loc[gy["glacier"] == 2, "name"].unique().tolist() == [""]
    # CSV and Parquet: same numbers, exactly; units recorded in both
    files = write_glacier_years(gy, tmp_path)
    pd.testing.assert_frame_equal(read_glacier_years(files["glacier_years_parquet"]), gy)
    pd.testing.assert_frame_equal(read_glacier_years(files["glacier_years_csv"]), gy)
    plain = pd.read_csv(files["glacier_years_csv"])  # any reader, no comment lines
    np.testing.assert_array_equal(plain["smb_mwe"].to_numpy(), gy["smb_mwe"].to_numpy())
    schema = pq.read_schema(files["glacier_years_parquet"])
    assert schema.field("area_km2").metadata[b"units"] == b"km2"
    assert schema.field("smb_mwe").metadata[b"units"] == b"m w.e."
    assert json.loads(schema.metadata[b"glacgrid"])["columns"]["volume_km3"]["units"] == "km3"
    side = json.loads(files["glacier_years_csv_metadata"].read_text())
    cols = {c["name"]: c for c in side["tableSchema"]["columns"]}
    assert list(cols) == list(gy.columns) and side["url"] == "glacier_years.csv"
    assert cols["mean_elevation_m"]["schema:unitText"] == "m" and cols["disappeared"]["datatype"] == "byte"


def test_members_flags_and_factors():
    s = synthetic_results(**CASES["members"])
    gy = glacier_years(s.results, s.table)
    f = gy.drop_duplicates("member").set_index("member")
    assert f["thickness_factor"].tolist() == [0.7, 1.0, 1.3] and f["deltah_factor"].tolist() == [0.9, 1.0, 1.1]
    # the factors may come back from a store as data variables instead of coordinates
    as_vars = glacier_years(s.results.reset_coords(["thickness_factor", "deltah_factor"]), s.table)
    pd.testing.assert_frame_equal(as_vars, gy)
    g4 = gy[gy["glacier"] == 4]
    assert (g4["disappeared"] == (g4["year"] >= 2006)).all()
    assert (g4.loc[g4["year"] >= 2006, "volume_km3"] == 0).all() and g4.loc[g4["year"] >= 2006, "smb_mwe"].isna().all()
    failed = gy[gy["failed"] == 1]
    assert sorted(map(tuple, failed[["glacier", "year", "member"]].values.tolist())) == \
        [(1, 2004, 1), (5, 2003, 0), (5, 2003, 1), (5, 2003, 2)]
    assert failed[["smb_mwe", "area_km2", "volume_km3", "mean_elevation_m"]].isna().all().all()
    one, which = central(gy)
    assert "member" not in one and "reference" in which
    np.testing.assert_array_equal(one.pivot(index="year", columns="glacier", values="smb_mwe").values,
                                  s.results["smb_glacier"].sel(member=1).values)
    # no reference member among the factors: the member mean
    gy2 = gy[gy["member"] != 1]
    mean, which = central(gy2)
    assert which == "mean of 2 members"
    expect = s.results["volume"].sel(member=[0, 2]).mean("member").values
    np.testing.assert_allclose(mean.pivot(index="year", columns="glacier", values="volume_km3").values, expect)


def test_store_checks_and_older_stores():
    s = synthetic_results()
    bad = s.results.copy()
    bad["glacier_area"] = bad["glacier_area"].assign_attrs(units="m2")
    with pytest.raises(UnitsError, match="glacier_area.*m2.*km2"):
        glacier_years(bad, s.table)
    old = glacier_years(s.results.drop_vars(["mean_elevation", "failed"]), s.table)
    assert old["mean_elevation_m"].isna().all() and (old["failed"] == 0).all() and old["failed"].dtype == "int8"


def test_validation_uses_the_reference_member_and_keeps_failed_years():
    s = synthetic_results(members=MEMBERS, failed=[(3, 2005, 1), (1, 2007, 0)])
    gy = glacier_years(s.results, s.table)
    obs = pd.concat([s.obs, pd.DataFrame({"obs_id": ["OBS-B"], "year": [2003], "smb": [0.1]})])
    obs = obs.drop_duplicates(["obs_id", "year"], keep="last")
    val = validation_table(gy, obs, s.units, s.unit_of_outline)
    years = s.results["year"].values
    a = val[val["obs_id"] == "OBS-A"].set_index("year")["modelled"]
    np.testing.assert_allclose(a.values, s.results["smb_glacier"].sel(member=1, glacier=1, year=a.index).values)
    b = val[val["obs_id"] == "OBS-B"].set_index("year")["modelled"]
    expect = pd.Series(_unit_ref(s, [2, 3]), index=years).reindex(b.index)
    np.testing.assert_allclose(b.values, expect.values)
    # glacier 3 failed in 2005 in the reference member: the unit-year stays, with NaN
    assert 2005 in b.index and np.isnan(b.loc[2005]) and b.drop(2005).notna().all()
    assert val["year"].min() == years[0]  # observations before the modelled period are not matched


@pytest.mark.parametrize("name", ["members", "spread", "single"])
def test_cumulative_smb_figure_plots_the_cumulated_numbers(name):
    s = synthetic_results(**CASES[name])
    gy = glacier_years(s.results, s.table)
    fig = figures.figure_cumulative_smb(gy, s.obs, s.units, s.unit_of_outline)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    titles = [ax.get_title().split("\n")[0] for ax in axes[1:]]  # unit panels: "Name (RGI id)" where one outline
    assert titles == ["Glacier 1 (RGI60-99.00001)", "OBS-B (2 outlines)"]
    assert len(axes) == 3
    years = s.results["year"].values
    ref = s.results.sel(member=1) if "member" in s.results.dims else s.results
    for ax, oid, gl in ((axes[1], "OBS-A", [1]), (axes[2], "OBS-B", [2, 3])):
        o = s.obs[(s.obs["obs_id"] == oid) & (s.obs["year"] >= years[0])].set_index("year")["smb"]
        if "member" in s.results.dims:
            mod_all = np.stack([_unit_ref(SimpleNamespace(results=s.results.isel(member=[i]).squeeze("member")), gl)
                                for i in range(len(MEMBERS))], axis=1)
            ok_years = years[np.isfinite(mod_all).all(axis=1)]
        else:
            mod = _unit_ref(SimpleNamespace(results=ref), gl)
            ok_years = years[np.isfinite(mod)]
        common = np.intersect1d(o.index, ok_years)
        # every cumulative curve starts at 0 at the end of the year before its first year
        xo, yo = _label(ax, "observed").get_xydata().T
        np.testing.assert_array_equal(xo, np.r_[common[0] - 1, common])
        np.testing.assert_allclose(yo, np.r_[0.0, np.cumsum(o.loc[common].values)], rtol=1e-12)
        xm, ym = _label(ax, "modelled").get_xydata().T
        assert xm[0] == common[0] - 1 and ym[0] == 0.0
        xm, ym = xm[1:], ym[1:]
        sel = np.isin(years, common)
        mref = _unit_ref(SimpleNamespace(results=ref), gl)[sel]
        np.testing.assert_allclose(ym, np.cumsum(mref), rtol=1e-12)
        if name == "members":
            cum = np.cumsum(mod_all[sel], axis=0)
            bx, lo, hi = band_limits(_label(ax, figures.BAND_MEMBERS))
            np.testing.assert_array_equal(bx, np.r_[common[0] - 1, common])
            assert lo[0] == hi[0] == 0.0
            bx, lo, hi = bx[1:], lo[1:], hi[1:]
            np.testing.assert_allclose(lo, cum.min(axis=1))
            np.testing.assert_allclose(hi, cum.max(axis=1))
            mean = cum.mean(axis=1)
            assert np.all(lo <= mean) and np.all(mean <= hi) and np.all(lo < hi)
        elif name == "spread":
            sp = s.results["smb_glacier_spread"].sel(glacier=gl).values
            area = s.results["glacier_area"].sel(glacier=gl).values
            w = np.where(np.isfinite(s.results["smb_glacier"].sel(glacier=gl).values), area, 0.0)
            unit_sp = (sp * w).sum(1) / w.sum(1)
            bx, lo, hi = band_limits(_label(ax, figures.BAND_SPREAD))
            assert lo[0] == hi[0] == 0.0
            lo, hi = lo[1:], hi[1:]
            np.testing.assert_allclose(hi - ym, np.cumsum(unit_sp[sel]), rtol=1e-10)
            np.testing.assert_allclose(ym - lo, np.cumsum(unit_sp[sel]), rtol=1e-10)
        else:
            assert not [c for c in ax.collections if "ensemble" in c.get_label()]
    # first panel: every glacier's modelled cumulative SMB (years without a value add nothing)
    lines = [c for c in axes[0].collections if c.get_label() == "each glacier"][0].get_segments()
    cum = np.stack([seg[:, 1] for seg in lines], axis=1)
    np.testing.assert_array_equal(lines[0][:, 0], np.r_[years[0] - 1, years])
    np.testing.assert_array_equal(cum[0], 0.0)
    np.testing.assert_allclose(cum[1:], np.nancumsum(ref["smb_glacier"].values, axis=0))


def test_area_volume_figure_totals_and_bands():
    s = synthetic_results(**CASES["members"])
    gy = glacier_years(s.results, s.table)
    hl = figures.highlight_glaciers(gy, s.unit_of_outline, k=4)
    area0 = s.results["glacier_area"].sel(member=1).isel(year=0).values
    observed = sorted([1, 2, 3], key=lambda g: -area0[g - 1])
    assert hl == observed + [max([4, 5], key=lambda g: area0[g - 1])]
    fig = figures.figure_area_volume(gy, hl)
    ax = np.array(fig.axes).reshape(2, 2)
    years = s.results["year"].values
    for j, var in enumerate(("glacier_area", "volume")):
        # glaciers 1 and 5 have failed years: left out of the region totals (2 of 5 ... the other 3 summed)
        assert "3 of 5 glaciers" in ax[0, j].get_title()
        keep = s.results[var].sel(glacier=[2, 3, 4])
        x, y = _label(ax[0, j], "region total").get_xydata().T
        np.testing.assert_array_equal(x, years)
        np.testing.assert_allclose(y, keep.sel(member=1).sum("glacier").values, rtol=1e-12)
        tot = keep.sum("glacier").values  # (year, member)
        bx, lo, hi = band_limits(_label(ax[0, j], figures.BAND_MEMBERS))
        np.testing.assert_allclose(lo, tot.min(1))
        np.testing.assert_allclose(hi, tot.max(1))
        assert np.all(lo <= tot.mean(1)) and np.all(tot.mean(1) <= hi)
        # bottom: one line per highlighted glacier, the reference member, with its band
        g = hl[0]
        name = s.table.loc[g, "name"]  # legend: "Name (RGI id)", the id alone without a name
        label = f"{name} (RGI60-99.{g:05d})" if name else f"RGI60-99.{g:05d}"
        x, y = _label(ax[1, j], label).get_xydata().T
        np.testing.assert_allclose(y, s.results[var].sel(member=1, glacier=g).values)
        _, lo, hi = band_limits(_label(ax[1, j], f"_{label} {figures.BAND_MEMBERS}"))
        np.testing.assert_allclose(hi, s.results[var].sel(glacier=g).max("member").values)


@pytest.mark.parametrize("name", ["members", "single"])
def test_mean_smb_map_is_the_mean_of_smb_on_the_grid_extent(name):
    s = synthetic_results(**CASES[name])
    res = s.results.chunk({"year": 4})
    fig = figures.figure_mean_smb(res)
    ax = fig.axes[0]
    im = ax.images[0]
    expect = s.results["smb"].mean([d for d in s.results["smb"].dims if d not in ("y", "x")]).values
    np.testing.assert_allclose(np.ma.filled(im.get_array().astype("float64"), np.nan), expect, rtol=1e-6,
                               equal_nan=True)
    x, y = s.results["x"].values, s.results["y"].values
    np.testing.assert_allclose(im.get_extent(), [x[0] - 50, x[-1] + 50, y[-1] - 50, y[0] + 50])
    assert im.origin == "upper"  # y decreases downwards: north up
    lo, hi = im.get_clim()
    assert lo == -hi and hi == pytest.approx(np.nanpercentile(np.abs(expect), 98))
    assert fig.axes[1].get_ylabel() == "mean SMB (m w.e. a$^{-1}$)"
    assert ax.get_xlabel() == "x (km), CRS unknown"  # the synthetic store names no CRS
    assert ("mean of 3 members" in ax.get_title()) == (name == "members")


def _cfg(tmp_path, obs_file, plot=True):
    dummy = tmp_path / "none"
    return RunConfig(climate=ClimateConfig(files=(), invariant=dummy), grid=GridConfig(dem=dummy),
                     glaciers=GlaciersConfig(outlines=dummy), period=PeriodConfig(2001, 2010), name="synthetic",
                     mode="evolve", observations=ObservationsConfig(files=(obs_file,), format="table", id_column="obs_id"),
                     output=OutputConfig(directory=tmp_path, plot=plot))


def _observed(s):
    """The observations of a synthetic store, read and linked as a run does (read once, handed on)."""
    return ObservedUnits(s.obs, tuple(s.units), s.unit_of_outline)


def _cv():
    pred = pd.DataFrame({"observed": [0.1, -0.5, -1.0, 0.3], "predicted": [0.0, -0.4, -1.1, 0.2]})
    return CVResult("logo", {"r": 0.98, "r2": 0.95, "rmse": 0.1, "mae": 0.1, "bias": -0.05},
                    pd.DataFrame({"fold": ["a", "b"]}), pred)


def test_write_outputs_and_summary_with_members(tmp_path):
    s = synthetic_results(**CASES["members"])
    cfg = _cfg(tmp_path, tmp_path / "never-read.csv")  # the observations come in as ObservedUnits
    # a dask-backed store is read in two passes: the per-glacier variables, and the gridded mean SMB
    with raise_if_dask_computes(max_computes=2):
        written = write_outputs(cfg, SimpleNamespace(table=s.table), s.results.chunk({"year": 4}), _cv(),
                                _observed(s), tmp_path)
    files = written.files.as_dict()
    for key in ("glacier_years_csv", "glacier_years_parquet", "glacier_years_csv_metadata", "validation_csv",
                "plot_png", "cumulative_smb_png", "area_volume_png", "mean_smb_map_png"):
        assert Path(files[key]).exists(), key
        assert getattr(written.files, key) == files[key]
    for key in ("plot_png", "cumulative_smb_png", "area_volume_png", "mean_smb_map_png"):
        assert Path(files[key]).read_bytes()[:4] == b"\x89PNG" and Path(files[key]).stat().st_size > 20_000
    assert files["results_zarr"] == tmp_path / "results.zarr" and "glacier_log_csv" not in files
    with pytest.raises(dataclasses.FrozenInstanceError):
        written.files.plot_png = None
    gy = written.glacier_years
    pd.testing.assert_frame_equal(pd.read_parquet(files["glacier_years_parquet"]), gy)
    result = SimpleNamespace(glacier_years=gy, cv=_cv(), config=cfg, validation=written.validation,
                             timings={"outputs": 1.0}, notes=[], output=tmp_path)
    text = "\n".join(summary_lines(result))
    assert "ensemble: 3 members (thickness factors [0.7, 1.0, 1.3], delta-h factors [0.9, 1.0, 1.1])" in text
    # totals over the glaciers with values in every year and member (1 and 5 have failed years)
    complete = s.results["volume"].sel(glacier=[2, 3, 4])
    ref_end = complete.sel(member=1).isel(year=-1).sum().item()
    assert f"-> {ref_end:.4f} km3 (end of first / last year; sums of the 3 / 3 of 5 glaciers" in text
    ends = complete.isel(year=-1).sum("glacier").values
    assert f"across members: {ends.min():.4f} .. {ends.max():.4f} km3" in text
    assert "isolated (failed) glacier-years: 4 (of 2 glaciers, all members)" in text
    assert "glaciers that disappeared: 1" in text
    assert "OBS-A: n=" in text and "nan" not in text.split("OBS-A")[1].split("\n")[0]


def test_write_outputs_without_plots(tmp_path):
    s = synthetic_results(spread=True)
    cfg = _cfg(tmp_path, tmp_path / "never-read.csv", plot=False)
    written = write_outputs(cfg, SimpleNamespace(table=s.table), s.results, _cv(), _observed(s), tmp_path)
    files = written.files.as_dict()
    assert not [k for k in files if k.endswith("_png")] and not list(tmp_path.glob("*.png"))
    assert written.files.plot_png is None and written.files.mean_smb_map_png is None
    assert "smb_spread_mwe" in read_glacier_years(written.files.glacier_years_csv)


def test_figures_without_observations_or_reference_member():
    s = synthetic_results(members=[(0.7, 0.9), (1.3, 1.1)])
    gy = glacier_years(s.results, s.table)
    none = np.zeros(6, dtype="int32")
    fig = figures.figure_cumulative_smb(gy, s.obs.iloc[:0], [], none)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["All 5 glaciers (modelled)"]
    assert validation_table(gy, s.obs.iloc[:0], [], none).empty
    hl = figures.highlight_glaciers(gy, none, k=3)
    area0 = s.results["glacier_area"].isel(year=0).mean("member").values
    assert hl == list(np.argsort(-area0)[:3] + 1)
    fig = figures.figure_area_volume(gy, hl)
    assert "mean of 2 members" in fig.get_suptitle()
    _, y = _label(fig.axes[0], "region total").get_xydata().T
    np.testing.assert_allclose(y, s.results["glacier_area"].sum("glacier").mean("member").values, rtol=1e-12)
