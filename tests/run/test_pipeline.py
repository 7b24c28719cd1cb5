"""End-to-end: the small synthetic demo through every stage, resume after a kill, laziness, and the
real Hintereisferner example against WGMS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid import features as feat
from glacgrid.cube import DONE_FILE, open_store
from glacgrid.testing import prepare_demo
from glacgrid.inference import glacier_mean, predict_pixels
from glacgrid.pipeline import run

from glacgrid.testing import REPO, raise_if_dask_computes, requires_data


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cfg, region = prepare_demo(out, size="small", seed=1)
    result = run(cfg, progress=False)
    return cfg, region, result


def test_demo_recovers_the_known_temperature_index_model(demo_run):
    cfg, region, result = demo_run
    m = result.cv.metrics
    # the observations are a linear function of the features plus 0.05 m w.e. noise
    assert m["r"] > 0.98 and m["rmse"] < 0.08 and abs(m["bias"]) < 0.03
    assert len(result.cv.per_fold) == pd.read_csv(region.observations)["rgi_id"].nunique()
    model = json.loads((result.output / "model" / "model.json").read_text())
    coef = dict(zip(model["schema"]["names"], model["coef"]))
    # truth: SMB = (snow - ddf * cpdd) / 1000 with ddf = 4 mm w.e. K-1 d-1
    assert coef["cpdd"] == pytest.approx(-region.truth.ddf / 1000, rel=0.15)


def test_demo_outputs_are_complete_and_conserve_mass(demo_run):
    cfg, region, result = demo_run
    gy = pd.read_csv(result.files.glacier_years_csv)
    years = np.arange(region.start, region.end + 1)
    assert len(gy) == region.n_glaciers * years.size
    assert set(gy["year"]) == set(years)
    assert gy["smb_mwe"].notna().all() and gy["volume_km3"].notna().all()
    res = open_store(result.files.results_zarr)
    for name in ("smb", "thickness", "surface", "smb_glacier", "glacier_area", "volume", "mean_elevation",
                 "disappeared", "failed"):
        assert res[name].attrs["units"] and res[name].attrs["long_name"]
    assert int(res["failed"].sum()) == 0 and res["mean_elevation"].notnull().all()
    assert float(res["thickness"].min()) >= 0.0
    # volume change each year = SMB x area at the start of the year x rho_w / rho_i
    # (float64 values from the store; the CSV is rounded to 6 significant digits)
    vol, smb, area = (res[v].values for v in ("volume", "smb_glacier", "glacier_area"))
    dv = np.diff(vol, axis=0)
    expected = smb[1:] * area[:-1] * 1e-3 * 1000.0 / 900.0
    gone = res["disappeared"].values[1:].astype(bool)
    np.testing.assert_allclose(dv[~gone], expected[~gone], rtol=1e-9, atol=1e-15)
    assert (vol[-1] < vol[0]).sum() > 0.5 * region.n_glaciers
    np.testing.assert_allclose(gy.pivot(index="year", columns="glacier")["volume_km3"].values, vol, rtol=1e-5)
    # the surface moved with the thickness (bed fixed)
    static = open_store(result.output / "work" / "static.zarr")
    bed0 = (static["surface"] - static["thickness"].fillna(0)).where(static["glacier_id"] > 0)
    bed = (res["surface"].isel(year=-1) - res["thickness"].isel(year=-1)).where(static["glacier_id"] > 0)
    np.testing.assert_allclose(bed.values, bed0.values, atol=1e-2)
    assert result.files.plot_png.stat().st_size > 20_000


def test_killed_run_resumes_to_identical_results(demo_run, tmp_path):
    """A REAL kill: `glacgrid run` in a subprocess, SIGKILLed once the first year is committed, rerun."""
    cfg, region, result = demo_run
    ref = open_store(result.files.results_zarr).compute()
    toml = tmp_path / "demo.toml"
    toml.write_text(cfg.source.read_text().replace(json.dumps(str(result.output.resolve())),
                                                   json.dumps(str(tmp_path / "out"))))
    assert str(tmp_path / "out") in toml.read_text()
    cmd = [sys.executable, "-c", "from glacgrid.cli import app; app()", "run", str(toml), "--no-progress",
           "--cluster", "threads"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done_file = tmp_path / "out" / "results.zarr" / DONE_FILE
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if done_file.exists() and "year[0:1]" in json.loads(done_file.read_text())["done"]:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed = json.loads(done_file.read_text())["done"]
    years_done = [k for k in killed if k.startswith("year[")]
    assert 1 <= len(years_done) < region.end - region.start + 1  # killed in the middle
    first_chunk = tmp_path / "out" / "results.zarr" / "thickness" / "c" / "0" / "0" / "0"
    written = first_chunk.stat().st_mtime_ns
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert first_chunk.stat().st_mtime_ns == written  # the committed year was kept, not recomputed
    new = open_store(tmp_path / "out" / "results.zarr").compute()
    xr.testing.assert_allclose(new.drop_attrs(), ref.drop_attrs(), rtol=1e-9, atol=0)
    assert (tmp_path / "out" / "glacier_log.csv").exists()


def test_inference_graph_is_lazy_and_linear_models_aggregate_exactly(demo_run):
    cfg, region, result = demo_run
    from glacgrid.models import load_model

    model = load_model(result.output / "model")
    static = open_store(result.output / "work" / "static.zarr", chunks={"y": 37, "x": 53})
    down = open_store(result.output / "work" / "downscaled.zarr", chunks={"time": 12, "y": 37, "x": 53})
    gid, surface, area = static["glacier_id"], static["surface"], static["pixel_area"]
    active = gid > 0
    index = np.arange(1, region.n_glaciers + 1)
    const = feat.glacier_constants(gid, surface, active, area, index).compute()
    from glacgrid.grid import TargetGrid

    grid = TargetGrid.from_raster(region.dem, chunks=(37, 53))
    with raise_if_dask_computes(max_computes=0):
        climate = feat.climate_pixel_features(down, surface, cfg.downscale, start=region.start, end=region.end)
        pix = feat.pixel_features(climate, feat.topo_pixel_features(surface, grid), const, gid, active)
        smb = predict_pixels(model, pix, list(cfg.model.features))
        gl = glacier_mean(smb, gid, active, area, index)
        gf = feat.glacier_features(pix, gid, active, area, index)
    assert smb.chunks is not None
    # dask (odd chunks) equals numpy (everything loaded)
    np.testing.assert_allclose(smb.values, predict_pixels(model, pix.compute(), list(cfg.model.features)).values,
                               rtol=1e-6, equal_nan=True)
    # linear model: the area-weighted mean of pixel predictions is the prediction on glacier features
    gf = gf.compute()
    cols = xr.broadcast(*[gf[f] for f in cfg.model.features])
    dims = cols[0].dims
    X = np.stack([c.transpose(*dims).values.ravel() for c in cols], axis=-1)
    direct = model.predict(X).reshape(cols[0].shape)
    np.testing.assert_allclose(gl.transpose(*dims).values, direct, rtol=1e-4, atol=1e-4)


def test_cli_demo_on_a_local_cluster(tmp_path):
    from typer.testing import CliRunner

    from glacgrid.cli import app

    res = CliRunner().invoke(app, ["demo", "--size", "small", "--out", str(tmp_path), "--no-progress", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "cross-validation LOGO" in res.output and "demo finished" in res.output
    assert (tmp_path / "glacier_years.csv").exists() and (tmp_path / "summary.png").exists()
    assert (tmp_path / "results.zarr" / "zarr.json").exists()


@pytest.mark.slow
@requires_data("hef", "climate", "sel_era5_land_monthly_t2m_1981-2018.nc")
def test_hef_example_against_wgms(hef_dense_run):
    result = hef_dense_run
    gy = result.glacier_years
    assert gy["glacier"].nunique() == 20 and set(gy["year"]) == set(range(1982, 2019))
    assert len(gy) == 20 * 37 and gy["smb_mwe"].notna().all()
    val = result.validation
    hef = val[val["obs_id"] == "RGI60-11.00897"]
    assert len(hef) == 37
    r = float(np.corrcoef(hef["observed"], hef["modelled"])[0, 1])
    rmse = float(np.sqrt(np.mean((hef["modelled"] - hef["observed"]) ** 2)))
    print(f"HEF 1982-2018 vs WGMS: r={r:.3f} RMSE={rmse:.3f} m w.e.; LOGO r={result.cv.metrics['r']:.3f} "
          f"RMSE={result.cv.metrics['rmse']:.3f}")
    assert r > 0.5 and rmse < 0.6
    assert result.cv.metrics["r"] > 0.5
    # HEF volume from the Farinotti thickness resampled onto the SRTM grid: 0.578 km3 on its own grid
    hef_vol = gy.loc[gy["rgi_id"] == "RGI50-11.00897", "volume_km3"].iloc[0]
    assert hef_vol == pytest.approx(0.578, rel=0.05)
    # mean HEF balance 1982-2018 is strongly negative in WGMS; the reconstruction must agree within 0.3
    assert hef["modelled"].mean() == pytest.approx(hef["observed"].mean(), abs=0.3)


def test_cli_demo_on_an_existing_scheduler(tmp_path):
    """--scheduler ADDRESS: how a Pangeo hub or dask-gateway cluster is used."""
    from distributed import LocalCluster
    from typer.testing import CliRunner

    from glacgrid.cli import app

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        res = CliRunner().invoke(app, ["demo", "--size", "small", "--out", str(tmp_path), "--no-progress",
                                       "--scheduler", cluster.scheduler_address])
        assert res.exit_code == 0, res.output
        assert cluster.scheduler_address in res.output
    gy = pd.read_csv(tmp_path / "glacier_years.csv")
    assert gy["smb_mwe"].notna().all() and gy["year"].nunique() == 10


def test_overlapping_per_glacier_thickness_rasters_keep_each_glaciers_ice(tmp_path):
    """Per-glacier thickness rasters hold 0 around their glacier; where two overlap, the ice of either
    must survive whatever the order they are listed in (Farinotti tiles of neighbouring glaciers)."""
    import rasterio
    from affine import Affine

    from glacgrid.grid import TargetGrid
    from glacgrid.pipeline.prepare import _read_thickness

    profile = {"driver": "GTiff", "height": 4, "width": 6, "count": 1, "dtype": "float32",
               "crs": "EPSG:32632", "transform": Affine(25.0, 0, 600_000.0, 0, -25.0, 5_200_000.0)}
    a = np.zeros((4, 6), "float32")
    a[:, :2] = 50.0                  # glacier A on the left, zeros elsewhere
    b = np.zeros((4, 6), "float32")
    b[:, 3:] = 80.0                  # glacier B on the right
    paths = []
    for name, data in (("a", a), ("b", b)):
        paths.append(tmp_path / f"{name}.tif")
        with rasterio.open(paths[-1], "w", **profile) as dst:
            dst.write(data, 1)
    grid = TargetGrid.from_raster(paths[0], chunks=16)
    expected = np.maximum(a, b)
    for order in (paths, paths[::-1]):
        np.testing.assert_array_equal(_read_thickness(order, grid).values, expected)
