"""The run modes of glacgrid.simulate on the small synthetic region: one annual step (numpy and dask,
mass conservation), delta-h and thickness ensembles, resume after an interruption, failure isolation,
disappearing glaciers, interpolated surfaces and the spread of an ensemble model."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.cube import DONE_FILE, open_store
from glacgrid.exceptions import StoreError
from glacgrid.geometry import perturbed_curves
from glacgrid.glaciers import GlacierGeometry
from glacgrid.simulate import annual_step, simulate, surface_for_year
from glacgrid.testing._simulate import ScaledEnsemble, configure, corrupt_glacier, glacier_ring, prepared_run

from glacgrid.testing import REPO

RHO = 1000.0 / 900.0
GLACIER_VARS = ("smb_glacier", "glacier_area", "volume", "mean_elevation", "disappeared", "failed")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(cfg, prep, model) of the small region, evolve mode, years 2001-2003."""
    return prepared_run(tmp_path_factory.mktemp("sim"), end=2003)


@pytest.fixture(scope="module")
def clean(base, tmp_path_factory):
    """The uninterrupted single-member evolution 2001-2003."""
    cfg, prep, model = base
    store = simulate(cfg, prep, model, tmp_path_factory.mktemp("clean") / "results.zarr")
    return open_store(store).compute()


def _state(prep):
    s = prep.static
    return xr.Dataset({"glacier_id": s["glacier_id"], "thickness": s["thickness"].fillna(0.0),
                       "surface": s["surface"], "pixel_area": s["pixel_area"]})


def _step(cfg, prep, model, state, **kw):
    """One annual step of the glaciers of ``state``; the new state as a Dataset."""
    glaciers = GlacierGeometry.from_dataset(state, prep.index, prep.grid)
    new, year = annual_step(glaciers, prep.down, model, year=cfg.period.start, features=list(cfg.model.features),
                            downscale=cfg.downscale, geometry=cfg.geometry, has_thickness=prep.has_thickness[1:],
                            **kw)
    return new.as_dataset(), year


def test_annual_step_numpy_equals_dask_and_conserves_mass(base):
    cfg, prep, model = base
    state = _state(prep)
    new_d, yr_d = _step(cfg, prep, model, state.chunk({"y": 37, "x": 53}))
    assert new_d["thickness"].chunks is not None  # stays lazy (persisted), not pulled into numpy
    new_n, yr_n = _step(cfg, prep, model, state.load())
    for v in ("smb_glacier", "glacier_area", "volume", "mean_elevation"):
        np.testing.assert_allclose(yr_d[v].values, yr_n[v].values, rtol=1e-9)
    np.testing.assert_allclose(new_d["thickness"].values, new_n["thickness"].values, rtol=1e-9, atol=1e-9)
    # volume change = SMB x area at the start x rho_w / rho_i
    h0 = state["thickness"].where(state["glacier_id"] > 0, 0.0).values
    v0 = pd.Series((h0 * state["pixel_area"].values).ravel()).groupby(state["glacier_id"].values.ravel()).sum()
    a0 = pd.Series(((h0 > 0) * state["pixel_area"].values).ravel()).groupby(state["glacier_id"].values.ravel()).sum()
    g = prep.index
    expected = v0[g].to_numpy() / 1e9 + yr_n["smb_glacier"].values * a0[g].to_numpy() / 1e9 * RHO
    np.testing.assert_allclose(yr_n["volume"].values, expected, rtol=1e-9)
    assert (yr_n["failed"] == 0).all() and (yr_n["disappeared"] == 0).all()
    # mean elevation: the area-weighted mean surface of the ice after the update
    ice = (new_n["thickness"] > 0) & (new_n["glacier_id"] == 3)
    z = (new_n["surface"].where(ice) * new_n["pixel_area"]).sum() / new_n["pixel_area"].where(ice).sum()
    assert float(yr_n["mean_elevation"].sel(glacier=3)) == pytest.approx(float(z), rel=1e-12)


def test_deltah_factor_changes_the_shape_not_the_mass(base):
    cfg, prep, model = base
    state = _state(prep).load()
    assert perturbed_curves(np.ones(3), np.arange(1, 4), 1.0) is None  # factor 1: the unperturbed update
    new1, yr1 = _step(cfg, prep, model, state)
    new2, yr2 = _step(cfg, prep, model, state, deltah_factor=1.3)
    np.testing.assert_array_equal(yr1["smb_glacier"].values, yr2["smb_glacier"].values)
    np.testing.assert_allclose(yr1["volume"].values, yr2["volume"].values, rtol=1e-9)
    dh1 = (new1["thickness"] - state["thickness"]).values
    dh2 = (new2["thickness"] - state["thickness"]).values
    assert np.nanmax(np.abs(dh1 - dh2)) > 0.05
    # a larger exponent concentrates the thinning at the terminus: the lowest pixels thin more
    gid = state["glacier_id"].values
    big = int(yr1["glacier_area"].idxmax())
    on = (gid == big) & (state["thickness"].values > 0)
    z = state["surface"].values[on]
    low = z <= np.quantile(z, 0.1)
    assert dh2[on][low].mean() < dh1[on][low].mean() < 0


def test_ensemble_members_and_resume_after_an_interruption(base, clean, tmp_path):
    cfg, prep, model = base
    ens = configure(cfg, thickness_factors=(0.7, 1.0), deltah_factors=(1.0, 1.2))
    store = simulate(ens, prep, model, tmp_path / "a.zarr")
    ref = open_store(store).compute()
    assert ref["smb"].dims == ("year", "member", "y", "x") and ref.sizes["member"] == 4
    assert ref["volume"].dims == ("year", "member", "glacier")
    np.testing.assert_array_equal(ref["thickness_factor"].values, [0.7, 0.7, 1.0, 1.0])
    np.testing.assert_array_equal(ref["deltah_factor"].values, [1.0, 1.2, 1.0, 1.2])
    # member (1.0, 1.0) is the single-member run, exactly
    one = ref.isel(member=2)
    for v in (*GLACIER_VARS, "smb", "thickness", "surface"):
        np.testing.assert_array_equal(one[v].values, clean[v].values, err_msg=v)
    # member (0.7, 1.0): 70 % of the initial volume, the same first-year SMB (same surface)
    v0 = clean["volume"].isel(year=0) - clean["smb_glacier"].isel(year=0) * clean["glacier_area"].isel(year=0) * RHO / 1e3
    thin = ref.isel(member=0, year=0)
    np.testing.assert_allclose(thin["volume"] - thin["smb_glacier"] * clean["glacier_area"].isel(year=0) * RHO / 1e3,
                               0.7 * v0, rtol=1e-9)
    assert not np.allclose(ref["thickness"].isel(member=3).values, ref["thickness"].isel(member=2).values)

    # a REAL kill: the ensemble run in a subprocess, SIGKILLed once its first year is committed
    with open(tmp_path / "run.pkl", "wb") as fh:
        pickle.dump((ens, prep, model, tmp_path / "b.zarr"), fh)
    code = ("import pickle, sys; from glacgrid.simulate import simulate; "
            "simulate(*pickle.load(open(sys.argv[1], 'rb')))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run.pkl")], stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    done_file = tmp_path / "b.zarr" / DONE_FILE
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if done_file.exists() and "year[0:1]" in json.loads(done_file.read_text())["done"]:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert "year[2:3]" not in json.loads(done_file.read_text())["done"]  # killed before the end
    with pytest.raises(StoreError, match="is incomplete"):  # a partial run is not read as a finished one
        open_store(tmp_path / "b.zarr", require_complete=True)
    resumed = open_store(simulate(ens, prep, model, tmp_path / "b.zarr")).compute()
    xr.testing.assert_identical(resumed.drop_attrs(), ref.drop_attrs())


def test_failing_glaciers_are_isolated_and_logged(base, clean, tmp_path):
    cfg, prep, model = base
    gid = prep.static["glacier_id"].values
    bad_th, bad_clim, bad_z = 2, 5, 12
    bad = [bad_th, bad_clim, bad_z]
    # a NaN surface would also break the slope (a feature here) of the pixels around it: the glaciers
    # touching glacier 12 are computed with its surface filled from their side (close to the clean run)
    assert "slope" in cfg.model.features
    ring = glacier_ring(gid, bad_z).tolist()
    assert ring == [11, 13]
    broken = corrupt_glacier(prep, bad_th, "thickness")
    broken = corrupt_glacier(corrupt_glacier(broken, bad_clim, "climate"), bad_z, "surface")
    cfg2 = configure(cfg, end=2002, thickness_factors=(1.0, 1.3))  # two members: both isolate them
    both = open_store(simulate(cfg2, broken, model, tmp_path / "results.zarr")).compute()
    assert (both["failed"].sel(glacier=bad) == 1).all() and (both["failed"].sel(glacier=[1, 7]) == 0).all()
    res = both.isel(member=0, drop=True)
    ok = np.setdiff1d(prep.index, bad + ring)
    ref = clean.isel(year=slice(0, 2))
    assert (res["failed"].sel(glacier=bad) == 1).all() and (res["failed"].sel(glacier=ok) == 0).all()
    for v in ("smb_glacier", "glacier_area", "volume", "mean_elevation"):
        assert res[v].sel(glacier=bad).isnull().all()
        np.testing.assert_array_equal(res[v].sel(glacier=ok).values, ref[v].sel(glacier=ok).values, err_msg=v)
    others = np.isin(gid, ok)
    for v in ("smb", "thickness", "surface"):
        np.testing.assert_array_equal(res[v].values[:, others], ref[v].values[:, others], err_msg=v)
    assert res["smb"].values[:, np.isin(gid, bad)].size and np.isnan(res["smb"].values[:, np.isin(gid, bad)]).all()
    log = pd.read_csv(tmp_path / "glacier_log.csv")
    assert list(log.columns) == ["glacier", "rgi_id", "year", "member", "reason"]
    assert set(log["glacier"]) == set(bad) and set(log["year"]) == {2001, 2002}
    assert (res["failed"].sel(glacier=ring) == 0).all()
    np.testing.assert_allclose(res["smb_glacier"].sel(glacier=ring), ref["smb_glacier"].sel(glacier=ring), rtol=0.05)
    assert set(log["member"]) == {0, 1} and len(log) == len(log.drop_duplicates(["glacier", "year", "member"]))
    assert len(log[log["glacier"].isin(bad)]) == len(bad) * 2 * 2  # every year of every member
    reason = log.groupby("glacier")["reason"].first()
    assert "thickness" in reason[bad_th] and "NaN features" in reason[bad_clim] and "surface" in reason[bad_z]
    assert log.loc[log["glacier"] == bad_th, "rgi_id"].iloc[0] == prep.table.loc[bad_th, "rgi_id"]


def test_a_disappearing_glacier_leaves_the_loop(base, clean, tmp_path):
    cfg, prep, model = base
    g = int(clean["smb_glacier"].isel(year=0).idxmin())  # the most negative balance
    static = prep.static.load().copy()
    static["thickness"] = static["thickness"].where(static["glacier_id"] != g, 0.3)
    thin = dataclasses.replace(prep, static=static.chunk(dict(zip(("y", "x"), prep.grid.chunks))))
    res = open_store(simulate(cfg, thin, model, tmp_path / "results.zarr")).compute()
    one = res.sel(glacier=g)
    np.testing.assert_array_equal(one["disappeared"].values, [1, 1, 1])
    np.testing.assert_array_equal(one["glacier_area"].values, [0, 0, 0])
    np.testing.assert_array_equal(one["volume"].values, [0, 0, 0])
    assert np.isfinite(one["smb_glacier"].values[0]) and np.isnan(one["smb_glacier"].values[1:]).all()
    assert (one["failed"] == 0).all()
    assert float(res["thickness"].isel(year=-1).where(static["glacier_id"] == g).max()) == 0.0
    ok = prep.index[prep.index != g]
    np.testing.assert_array_equal(res["volume"].sel(glacier=ok).values, clean["volume"].sel(glacier=ok).values)


def test_surface_interpolation_known_answers():
    dem = xr.DataArray(np.full((2, 2), 100.0), dims=("y", "x"))
    z = xr.DataArray(np.stack([np.full((2, 2), 10.0), np.array([[30.0, np.nan], [30.0, 30.0]])]),
                     dims=("surface_year", "y", "x"), coords={"surface_year": [2000, 2010]})
    assert float(surface_for_year(dem, z, 1990)[0, 0]) == 10.0
    assert float(surface_for_year(dem, z, 2004)[0, 0]) == pytest.approx(18.0)
    assert float(surface_for_year(dem, z, 2015)[0, 0]) == 30.0
    assert float(surface_for_year(dem, z, 2004)[0, 1]) == 100.0  # no dated value: the DEM
    assert surface_for_year(dem, None, 2004) is dem


def test_reconstruct_interpolated_surfaces_and_ensemble_spread(base, tmp_path):
    cfg, prep, model = base
    rec = configure(cfg, mode="reconstruct", surfaces=("a.tif", "b.tif"), surface_years=(2001, 2003))
    dem = prep.static["surface"]
    dated = xr.concat([dem - 20.0, dem - 60.0], dim="surface_year").assign_coords(surface_year=[2001, 2003])
    moved = dataclasses.replace(prep, surfaces=dated.chunk({"surface_year": 1}))
    ens = ScaledEnsemble(model, (0.8, 1.2))
    single = open_store(simulate(rec, moved, model, tmp_path / "single.zarr")).compute()
    res = open_store(simulate(rec, moved, ens, tmp_path / "ens.zarr")).compute()
    on = (prep.static["glacier_id"] > 0).values
    np.testing.assert_allclose(res["surface"].sel(year=2002).values[on], (dem - 40.0).values[on], rtol=1e-12)
    # ensemble of 0.8 and 1.2 x the model: mean = the model, spread = 0.2 x |model|
    np.testing.assert_allclose(res["smb_glacier"], single["smb_glacier"], rtol=1e-6)
    np.testing.assert_allclose(res["smb_glacier_spread"], 0.2 * np.abs(single["smb_glacier"]), rtol=1e-6)
    np.testing.assert_allclose(res["smb_spread"], 0.2 * np.abs(single["smb"]), rtol=1e-5, atol=1e-6)
    for v in ("smb_spread", "smb_glacier_spread", "mean_elevation", "failed"):
        assert res[v].attrs["units"] and res[v].attrs["long_name"]
    assert "smb_spread" not in single
    # lower surfaces melt more: the SMB falls from the 2001 surface to the 2003 one, relative to static
    static = open_store(simulate(configure(cfg, mode="reconstruct"), prep, model, tmp_path / "static.zarr")).compute()
    diff = (single["smb_glacier"] - static["smb_glacier"]).mean("glacier").values
    assert diff[0] < 0 and diff[2] < diff[1] < diff[0]
    np.testing.assert_allclose(single["mean_elevation"].sel(year=2003), static["mean_elevation"].sel(year=2003) - 60,
                               rtol=1e-9)


@pytest.mark.slow
def test_glacgrid_run_reconstruct_from_the_cli_equals_the_library(base, tmp_path):
    """`glacgrid run CONFIG` with mode = "reconstruct": the store of the library call with the run's model."""
    from typer.testing import CliRunner

    from glacgrid.cli import app
    from glacgrid.models import load_model

    cfg, prep, _ = base
    text = cfg.source.read_text()
    text = text.replace('mode = "evolve"', 'mode = "reconstruct"').replace("end = 2010", "end = 2003")
    out = cfg.output.directory
    text = text.replace(json.dumps(str(Path(out).resolve())), json.dumps(str(tmp_path / "out")))
    assert 'mode = "reconstruct"' in text and "end = 2003" in text and str(tmp_path / "out") in text
    (tmp_path / "run.toml").write_text(text)
    res = CliRunner().invoke(app, ["run", str(tmp_path / "run.toml"), "--cluster", "threads", "--no-progress"])
    assert res.exit_code == 0, res.output
    got = open_store(tmp_path / "out" / "results.zarr").compute()
    assert "member" not in got.dims and got.sizes["year"] == 3
    model = load_model(tmp_path / "out" / "model")
    rec = configure(cfg, mode="reconstruct")
    want = open_store(simulate(rec, prep, model, tmp_path / "lib.zarr")).compute()
    for v in ("smb", "smb_glacier", "glacier_area", "volume", "mean_elevation", "surface", "failed"):
        np.testing.assert_array_equal(got[v].values, want[v].values, err_msg=v)
    assert (got["volume"].diff("year") == 0).all() and got["smb_glacier"].notnull().all()
