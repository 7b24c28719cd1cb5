"""Runs on a glacier domain: the dense run's numbers, resume after SIGKILL, isolation, chunking invariance."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time


import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import glacgrid.cube as cube_mod
from glacgrid.config import DomainConfig, OutputConfig, load_config
from glacgrid.domain import domain_from_tiles, open_domain
from glacgrid.downscale import downscale, downscale_pixels, pixel_weights
from glacgrid.grid import TargetGrid
from glacgrid.glaciers import SURFACE_REASON
from glacgrid.simulate import DomainRun, domain_log, simulate_domain
from glacgrid.testing import DATA, REPO, requires_data
from glacgrid.testing._domain import DOMAIN_FEATURES, domain_cube, domain_model

ALPS = DATA / "alps"
#: Small Farinotti tiles in two UTM zones (EPSG:32633: 401, 426, 651; EPSG:32632: 1201, 3201, 3776) and
#: two larger ones (Hintereis- and Kesselwandferner, EPSG:32632).
NUMBERS = [401, 426, 651, 1201, 3201, 3776, 787, 897]
YEARS = (2001, 2005)
needs_alps = requires_data("alps", "farinotti_thickness")


@pytest.fixture(scope="module")
def tiles_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("domain-run")
    d = domain_from_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", tmp / "domain.zarr", numbers=NUMBERS,
                          group_pixels=8192)
    px = d.pixels[["lon", "lat", "glacier_id"]].compute()
    real = px["glacier_id"].values > 0
    cube = domain_cube(px["lon"].values[real], px["lat"].values[real], tmp / "cube.zarr", start=YEARS[0],
                       end=YEARS[1], warming=0.3)
    model = domain_model()
    model_dir = model.to_artifact(tmp / "model")
    run = DomainRun("evolve", np.arange(YEARS[0], YEARS[1] + 1), DOMAIN_FEATURES, members=((1.0, 1.0), (0.8, 1.2)))
    store = simulate_domain(d, cube, model_dir, tmp / "clean.zarr", run, fingerprint="clean")
    return {"tmp": tmp, "domain": d, "cube": cube, "model": model_dir, "run": run, "clean": store}


def _per_glacier(store, domain) -> xr.Dataset:
    return cube_mod.open_store(store, chunks=None).sel(glacier=domain.table.index.values).load()


@needs_alps
def test_evolve_on_a_two_zone_domain_conserves_mass(tiles_case):
    d, res = tiles_case["domain"], _per_glacier(tiles_case["clean"], tiles_case["domain"])
    assert d.n_groups >= 2 and sorted(set(d.table["epsg"])) == [32632, 32633]
    assert int(res["failed"].sum()) == 0
    gone = res["disappeared"].values.astype(bool)  # (year, member, glacier): no ice left after the year
    before = np.concatenate([np.zeros_like(gone[:1]), gone[:-1]])
    assert np.isfinite(res["smb_glacier"].values[~before]).all() and np.isnan(res["smb_glacier"].values[before]).all()
    # the per-glacier volumes are the sums of the stored thickness x pixel area
    full = cube_mod.open_store(tiles_case["clean"], chunks=None)
    gid, a = d.pixels["glacier_id"].values, d.pixels["pixel_area"].values
    for y in range(full.sizes["year"]):
        for m in range(2):
            v = np.bincount(gid, weights=full["thickness"].values[y, m] * a, minlength=gid.max() + 1)
            np.testing.assert_allclose(v[d.table.index.values] / 1e9, res["volume"].values[y, m], rtol=1e-12)
    # volume change of each glacier-year that keeps ice = SMB x area before x rho_w / rho_i
    h0 = np.nan_to_num(d.pixels["thickness"].values)
    area0 = np.bincount(gid, weights=np.where(h0 > 0, a, 0.0), minlength=gid.max() + 1)[d.table.index.values] / 1e6
    vol0 = np.bincount(gid, weights=h0 * a, minlength=gid.max() + 1)[d.table.index.values] / 1e9
    area = np.concatenate([np.stack([area0, area0])[None], res["glacier_area"].values[:-1]])
    vol = np.concatenate([np.stack([vol0, 0.8 * vol0])[None], res["volume"].values])
    dv, target = np.diff(vol, axis=0), res["smb_glacier"].values * area * 1e6 * 1000.0 / 900.0 / 1e9
    keep = ~gone & ~before
    assert keep.sum() > 40
    np.testing.assert_allclose(dv[keep], target[keep], rtol=1e-9, atol=1e-15)
    # the thinner member ends with less ice; the region loses ice in a warming climate
    assert (vol[-1, 1] <= vol[-1, 0]).all() and (vol[-1].sum(axis=-1) < vol[0].sum(axis=-1)).all()


@needs_alps
def test_pixel_weights_equal_the_dense_bilinear_downscaling(tiles_case):
    """At a tile's pixels, the domain's downscaled climate equals downscale() on the tile's grid, bit for bit."""
    d, cube = tiles_case["domain"], cube_mod.open_store(tiles_case["cube"])
    g = d.glaciers
    slot = int(d.table.index[d.table["source_index"] == 897][0])  # Hintereisferner
    i = slot - 1
    a, b, c, dd, e, f = g["transform"].values[i]
    ny, nx = g["window_shape"].values[i]
    grid = TargetGrid.from_spec(f"EPSG:{int(g['epsg'].values[i])}", a, (c, f + e * ny, c + a * nx, f), chunks=64)
    px = d.pixels.isel(pixel=slice(int(g["first_pixel"].values[i]),
                                   int(g["first_pixel"].values[i] + g["n_pixels"].values[i]))).compute()
    z = np.full(grid.shape, np.nan, dtype="float64")
    z[px["row"].values, px["col"].values] = px["surface"].values
    dem = xr.DataArray(np.where(np.isnan(z), np.nanmean(z), z), dims=("y", "x"), coords=grid.coords())
    dense = downscale(cube.isel(time=slice(0, 12)), grid, dem).compute()
    w = pixel_weights(cube["lat"].values, cube["lon"].values, px["lat"].values, px["lon"].values)
    win = cube.isel(time=slice(0, 12), lat=w.lat_window, lon=w.lon_window)
    temp, prcp = downscale_pixels(win["t2m"].values, win["tp"].values, win["orog"].values, w,
                                  dem.values[px["row"].values, px["col"].values])
    r, cc = px["row"].values, px["col"].values
    np.testing.assert_array_equal(temp, dense["temp"].values[:, r, cc])
    np.testing.assert_array_equal(prcp, dense["prcp"].values[:, r, cc])


_KILLED = textwrap.dedent("""
    import sys, time
    import numpy as np
    from glacgrid.simulate import domain as engine
    from glacgrid.simulate import DomainRun, simulate_domain
    from glacgrid.testing._domain import DOMAIN_FEATURES
    write = engine._write
    def slow(*args, **kwargs):  # a slow store: the parent kills the run between two writes
        write(*args, **kwargs)
        time.sleep(0.4)
    engine._write = slow
    import dask
    dask.config.set(scheduler="synchronous")
    domain, cube, model, store = sys.argv[1:5]
    run = DomainRun("evolve", np.arange({y0}, {y1} + 1), DOMAIN_FEATURES, members=((1.0, 1.0), (0.8, 1.2)))
    simulate_domain(domain, cube, model, store, run, fingerprint="clean")
""")


@needs_alps
def test_a_killed_domain_run_resumes_to_identical_results(tiles_case):
    tmp = tiles_case["tmp"]
    store = tmp / "killed.zarr"
    script = tmp / "killed.py"
    script.write_text(_KILLED.format(y0=YEARS[0], y1=YEARS[1]))
    proc = subprocess.Popen([sys.executable, str(script), str(tiles_case["domain"].path), str(tiles_case["cube"]),
                             str(tiles_case["model"]), str(store)], cwd=REPO)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (store / "zarr.json").exists() and len(cube_mod.completed_regions(store)) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = cube_mod.completed_regions(store)
    total = tiles_case["domain"].n_groups * (YEARS[1] - YEARS[0] + 1)
    assert 3 <= len(done) < total
    simulate_domain(tiles_case["domain"].path, tiles_case["cube"], tiles_case["model"], store, tiles_case["run"],
                    fingerprint="clean")
    assert len(cube_mod.completed_regions(store)) == total
    a = cube_mod.open_store(tiles_case["clean"], chunks=None).load()
    b = cube_mod.open_store(store, chunks=None).load()
    for name in ("smb", "thickness", "surface", "smb_glacier", "volume", "glacier_area", "mean_elevation", "failed"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@needs_alps
def test_a_corrupted_glacier_is_isolated_and_the_others_unchanged(tiles_case):
    tmp = tiles_case["tmp"]
    bad_store = tmp / "corrupted-domain.zarr"
    shutil.copytree(tiles_case["domain"].path, bad_store)
    d = open_domain(bad_store)
    slot = int(d.table.index[d.table["source_index"] == 3201][0])
    first = int(d.glaciers["first_pixel"].values[slot - 1])
    assert int(d.glaciers["n_pixels"].values[slot - 1]) > 3
    import zarr

    z = zarr.open_array(bad_store / "surface", mode="r+")
    vals = z[:]
    vals[first:first + 3] = np.nan  # a hole in the DEM of one glacier
    z[:] = vals
    store = simulate_domain(open_domain(bad_store), tiles_case["cube"], tiles_case["model"], tmp / "isolated.zarr",
                            tiles_case["run"], fingerprint="corrupted")
    bad = _per_glacier(store, d)
    clean = _per_glacier(tiles_case["clean"], tiles_case["domain"])
    assert (bad["failed"].sel(glacier=slot).values == 1).all()
    assert np.isnan(bad["smb_glacier"].sel(glacier=slot).values).all()
    others = [g for g in d.table.index if g != slot]
    for name in ("smb_glacier", "volume", "glacier_area", "mean_elevation"):
        np.testing.assert_array_equal(bad[name].sel(glacier=others).values, clean[name].sel(glacier=others).values)
    log = domain_log(store, d, tmp / "glacier_log.csv")
    assert set(log["glacier"]) == {slot} and set(log["reason"]) == {SURFACE_REASON}
    assert len(log) == (YEARS[1] - YEARS[0] + 1) * 2  # every year, both members
    assert pd.read_csv(tmp / "glacier_log.csv")["rgi_id"].iloc[0] == "RGI60-11.03201"


@needs_alps
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group_pixels=st.integers(min_value=4096, max_value=40000).filter(lambda c: c % 1000 != 0))
def test_results_do_not_depend_on_the_grouping(tiles_case, group_pixels, tmp_path_factory):
    """Any group size (not dividing the pixel count): the same numbers for every glacier, to the bit."""
    tmp = tmp_path_factory.mktemp("grouping")
    d = domain_from_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", tmp / "domain.zarr", numbers=NUMBERS,
                          group_pixels=group_pixels)
    run = dataclasses.replace(tiles_case["run"], years=np.arange(YEARS[0], YEARS[0] + 2))
    base = tiles_case["domain"]
    got = simulate_domain(d, tiles_case["cube"], tiles_case["model"], tmp / "res.zarr", run, fingerprint="g")
    want = _per_glacier(tiles_case["clean"], base).isel(year=slice(0, 2))
    have = _per_glacier(got, d)
    by_rgi = lambda ds, dom: ds.assign_coords(glacier=dom.table.loc[ds["glacier"].values, "rgi_id"].values)  # noqa: E731
    want, have = by_rgi(want, base), by_rgi(have, d).sel(glacier=by_rgi(want, base)["glacier"].values)
    for name in ("smb_glacier", "volume", "glacier_area", "mean_elevation"):
        np.testing.assert_array_equal(have[name].values, want[name].values, err_msg=name)


@pytest.mark.slow
@requires_data("hef", "climate", "sel_era5_land_monthly_t2m_1981-2018.nc")
def test_the_domain_run_of_the_oetztal_equals_the_dense_run(tmp_path, hef_dense_run):
    """examples/hef.toml as today's dense run and on a domain built from the same inputs: same numbers."""
    from glacgrid.pipeline import run

    cfg = load_config(REPO / "examples" / "hef.toml")
    dense = hef_dense_run
    dom = run(dataclasses.replace(cfg, output=OutputConfig(directory=tmp_path / "domain", plot=False),
                                  domain=DomainConfig(group_pixels=4096)), progress=False)
    a, b = dense.glacier_years, dom.glacier_years
    assert len(a) == len(b) == 20 * 37
    m = a.merge(b, on=["rgi_id", "year"], suffixes=("_dense", "_domain"))
    assert len(m) == len(a)
    for col in ("smb_mwe", "area_km2", "volume_km3", "mean_elevation_m"):
        x, y = m[f"{col}_dense"].to_numpy(), m[f"{col}_domain"].to_numpy()
        assert (np.isnan(x) == np.isnan(y)).all(), col
        np.testing.assert_allclose(y[~np.isnan(x)], x[~np.isnan(x)], rtol=0, atol=1e-9, err_msg=col)
    assert (m["failed_dense"] == m["failed_domain"]).all()
    assert open_domain(tmp_path / "domain" / "work" / "domain.zarr").n_groups > 1
    np.testing.assert_allclose(dom.validation["modelled"], dense.validation["modelled"], atol=1e-9)


@needs_alps
def test_an_ensemble_artifact_gives_the_spread_of_its_members(tiles_case):
    """Reconstruct with an ensemble model given as its artifact directory (what array tasks get): the mean of
    the members and their spread, the same as with the fitted object."""
    from glacgrid.testing import domain_model

    tmp, d = tiles_case["tmp"], tiles_case["domain"]
    ens = domain_model(seed=1, kind="ridge", ensemble=3, ensemble_method="bootstrap")
    path = ens.to_artifact(tmp / "ensemble")
    run = DomainRun("reconstruct", np.arange(YEARS[0], YEARS[0] + 2), DOMAIN_FEATURES)
    a = _per_glacier(simulate_domain(d, tiles_case["cube"], path, tmp / "ens-path.zarr", run), d)
    b = _per_glacier(simulate_domain(d, tiles_case["cube"], ens, tmp / "ens-object.zarr", run), d)
    assert "smb_glacier_spread" in a and "smb_glacier_spread" in b
    for name in ("smb_glacier", "smb_glacier_spread"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert (a["smb_glacier_spread"].values > 0).all()
