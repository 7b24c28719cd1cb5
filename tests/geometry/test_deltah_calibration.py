"""Tests of the glacier-specific delta-h calibration (glacgrid.geometry.calibrate): known answers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from glacgrid.exceptions import GridMismatchError, InputDataError
from glacgrid.geometry import _calibration as KC
from glacgrid.geometry import deltah_curve, deltah_update
from glacgrid.geometry.calibrate import (CalibrationRules, calibrate_deltah, plot_curves, read_curves,
                                         read_dh_pairs, write_curves)
from glacgrid.testing._deltah import DhGlacier, synthetic_dh

from glacgrid.testing import DATA, requires_data

# 1: curve reaching 1 at h_r = 0.85 (the reference is the terminus), with planted faults
# 2: steep large-glacier-like curve;  3: too few pixels;  4: thickening;  5: mostly blunders
GLACIERS = [DhGlacier(3.0, 0.05, 0.4, 0.0, loss=20.0, blunders=7, outliers=5, nodata=4),
            DhGlacier(6.0, 0.12, 0.15, 0.02, loss=10.0, blunders=2, outliers=3),
            DhGlacier(3.0, 0.05, 0.4, 0.0, rows=4, cols=10),
            DhGlacier(3.0, 0.05, 0.4, 0.0, loss=-10.0),
            DhGlacier(3.0, 0.05, 0.4, 0.0, blunders=400)]


def curve_of(ds, i, h):
    c = ds.isel(glacier=i)
    return deltah_curve(h, *(float(c[k]) for k in ("gamma", "a", "b", "c")))


# --------------------------------------------------------------------------- kernels
def test_group_median_and_running_median():
    key = np.array([2, 0, 2, 2, 0, 2])
    med, n = KC.group_median(key, np.array([5.0, 1.0, -1.0, 3.0, 2.0, 100.0]), 4)
    np.testing.assert_array_equal(med, [1.5, np.nan, 4.0, np.nan])  # (3 + 5) / 2 for key 2
    np.testing.assert_array_equal(n, [2, 0, 4, 0])
    np.testing.assert_array_equal(KC.running_median3(np.array([[1.0, 9.0, 2.0, np.nan, 4.0]])),
                                  [[5.0, 2.0, 5.5, np.nan, 4.0]])
    np.testing.assert_array_equal(KC.bin_index(np.array([0.0, 0.049, 0.05, 0.999, 1.0]), 20), [0, 0, 1, 19, 19])


def test_fit_recovers_curve_without_noise():
    h = (np.arange(20) + 0.5) / 20
    truth = np.stack([deltah_curve(h, 4.0, 0.1, 0.3, 0.05), deltah_curve(h, 1.0, -0.2, 0.0, 0.2)])
    truth /= truth.max(axis=1, keepdims=True)
    fit = KC.fit_curves(h, truth)
    for i in range(2):
        got = deltah_curve(h, fit["gamma"][i], fit["a"][i], fit["b"][i], fit["c"][i])
        np.testing.assert_allclose(got, truth[i], atol=0.02)
    assert (fit["b"] >= 0).all() and (fit["rmse"] < 0.01).all()


# --------------------------------------------------------------------------- public calibration
def test_calibration_known_answers():
    ds = synthetic_dh(GLACIERS, seed=1)
    cur = calibrate_deltah(ds.glacier_id, ds.dem, ds.dh)
    assert cur.glacier.values.tolist() == [1, 2, 3, 4, 5]
    # rule counts: planted faults are found exactly (no noise, so nothing else is an outlier)
    np.testing.assert_array_equal(cur.n_valid, [996, 1000, 40, 1000, 1000])
    np.testing.assert_array_equal(cur.n_implausible, [7, 2, 0, 0, 400])
    np.testing.assert_array_equal(cur.n_outliers, [5, 3, 0, 0, 0])
    np.testing.assert_array_equal(cur.n_pixels, [984, 995, 40, 1000, 600])
    # status: calibrated, calibrated, too few pixels, no thinning, too many outliers
    np.testing.assert_array_equal(cur.status, [0, 0, 1, 4, 3])
    np.testing.assert_array_equal(cur.calibrated, [1, 1, 0, 0, 0])
    assert np.isnan(cur.gamma.values[2:]).all()
    np.testing.assert_allclose(cur.dh_reference[:2], [-20.0, -10.0])  # terminus bins: -loss * 1
    np.testing.assert_allclose(cur.zmax, 3400.0) and np.testing.assert_allclose(cur.zmin, 2400.0)
    h = cur.h_r_bin.values
    for i, g in enumerate(GLACIERS[:2]):
        np.testing.assert_allclose(curve_of(cur, i, h), deltah_curve(h, g.gamma, g.a, g.b, g.c), atol=0.015)
        # the binned normalised change is the truth at the bin centres (within a bin's spread)
        np.testing.assert_allclose(cur.bin_dh_norm[i], deltah_curve(h, g.gamma, g.a, g.b, g.c), atol=0.05)
    assert cur.gamma.attrs["units"] == "1" and cur.dh_reference.attrs["units"] == "m"
    assert "calibrate_deltah" in cur.attrs["history"]


def test_calibration_with_noise_and_two_dems():
    ds = synthetic_dh(GLACIERS[:2], seed=2, noise=3.0)
    later = ds.dem + ds.dh
    cur = calibrate_deltah(ds.glacier_id, ds.dem, dem_later=later)
    ref = calibrate_deltah(ds.glacier_id, ds.dem, ds.dh)
    xr.testing.assert_allclose(cur[["gamma", "a", "b", "c"]], ref[["gamma", "a", "b", "c"]])
    h = cur.h_r_bin.values
    for i, g in enumerate(GLACIERS[:2]):
        np.testing.assert_allclose(curve_of(cur, i, h), deltah_curve(h, g.gamma, g.a, g.b, g.c), atol=0.1)
    assert (cur.status == 0).all() and (cur.rmse < 0.06).all()


def test_calibration_rules_are_parameters():
    ds = synthetic_dh(GLACIERS[:1], seed=1)
    strict = calibrate_deltah(ds.glacier_id, ds.dem, ds.dh, rules=CalibrationRules(max_gain=600.0))
    assert strict.n_implausible.item() == 0 and strict.n_outliers.item() == 12  # blunders now rule 3
    few = calibrate_deltah(ds.glacier_id, ds.dem, ds.dh, rules=CalibrationRules(min_pixels=5000))
    assert few.status.item() == 1


def test_calibration_input_errors():
    ds = synthetic_dh(GLACIERS[:1])
    with pytest.raises(InputDataError, match="exactly one of dh"):
        calibrate_deltah(ds.glacier_id, ds.dem)
    with pytest.raises(GridMismatchError, match="dem has dims"):
        calibrate_deltah(ds.glacier_id, ds.dem.isel(y=slice(0, 5)), ds.dh)
    with pytest.raises(InputDataError, match="integers"):
        calibrate_deltah(ds.glacier_id.astype(float), ds.dem, ds.dh)


def test_curves_round_trip_and_plot(tmp_path):
    ds = synthetic_dh(GLACIERS, seed=1)
    names = xr.DataArray(["a", "b", "c", "d", "e"], dims="glacier", coords={"glacier": [1, 2, 3, 4, 5]})
    cur = calibrate_deltah(ds.glacier_id, ds.dem, ds.dh, names=names)
    for path in (tmp_path / "curves.csv", tmp_path / "curves.zarr"):
        write_curves(cur, path)
        write_curves(cur, path)  # idempotent
        back = read_curves(path)
        np.testing.assert_allclose(back.gamma, cur.gamma, rtol=1e-9)
        np.testing.assert_array_equal(back.calibrated, cur.calibrated)
        assert back["name"].values.tolist() == ["a", "b", "c", "d", "e"]
    png = plot_curves(cur, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputDataError, match=".zarr or .csv"):
        write_curves(cur, tmp_path / "curves.txt")


def test_update_uses_calibrated_curve():
    """A glacier with a calibrated curve changes along it; the others keep their generic curve."""
    ny, nx = 10, 6
    gid = np.ones((ny, nx), dtype="int32")
    gid[:, 3:] = 2
    z = np.repeat(np.linspace(3000.0, 2100.0, ny)[:, None], nx, axis=1)
    state = xr.Dataset({"glacier_id": (("y", "x"), gid), "thickness": (("y", "x"), np.full((ny, nx), 200.0)),
                        "surface": (("y", "x"), z), "pixel_area": (("y", "x"), np.full((ny, nx), 1e5))})
    smb = xr.DataArray([-1.0, -1.0], dims="glacier", coords={"glacier": [1, 2]})  # 3 km2 each: small
    curves = xr.Dataset({k: ("glacier", [v]) for k, v in dict(gamma=1.0, a=0.0, b=0.0, c=0.0).items()},
                        coords={"glacier": [1]})  # Δh = h_r (linear)
    new, report = deltah_update(state, smb, curves=curves)
    dh = (new.thickness - state.thickness).values
    h_r = (3000.0 - z[:, 0]) / 900.0
    expected = -1.0 * 3e6 * 1000 / 900 / (1e5 * 3 * h_r.sum()) * h_r  # f_s * Δh, Σ A Δh over 30 px
    np.testing.assert_allclose(dh[:, 0], expected, rtol=1e-12)
    generic = deltah_curve(h_r, 2.0, -0.30, 0.60, 0.09)
    np.testing.assert_allclose(dh[:, 4] / dh[-1, 4], generic / generic[-1], rtol=1e-12)
    np.testing.assert_array_equal(report.deltah_curve.values, [4, 1])
    # uncalibrated curves (flag 0) are ignored
    off = curves.assign(calibrated=("glacier", [0]))
    _, rep_off = deltah_update(state, smb, curves=off)
    np.testing.assert_array_equal(rep_off.deltah_curve.values, [1, 1])
    with pytest.raises(InputDataError, match="non-finite"):
        deltah_update(state, smb, curves=curves.assign(gamma=("glacier", [np.nan])))


# --------------------------------------------------------------------------- real data
ALPS = DATA / "alps"


@pytest.mark.slow
@requires_data("alps", "dh_1979_2011")
def test_french_glaciers_calibrate(tmp_path):
    px = read_dh_pairs(ALPS / "dh_1979_2011", ALPS / "dem_1979_2011_mean",
                       ALPS / "outlines_2015" / "glaciers_2015_05.shp")
    assert px.sizes["glacier"] == 91  # every 2015 outline has its dh/DEM pair
    cur = calibrate_deltah(px.glacier_id, px.dem, px.dh, names=px["name"])
    ok = cur.where(cur.calibrated == 1, drop=True)
    assert ok.sizes["glacier"] >= 40
    assert (ok.rmse <= 0.3).all() and (ok.b >= 0).all()
    # the thinning is largest towards the terminus on average over the calibrated glaciers
    h = np.array([0.1, 0.5, 0.95])
    mean_curve = np.mean([curve_of(ok, i, h) for i in range(ok.sizes["glacier"])], axis=0)
    assert mean_curve[0] < mean_curve[1] < mean_curve[2]
    sorlin = cur.where(cur.name == "Saint Sorlin", drop=True)
    assert sorlin.status.item() == 0 and -60 < sorlin.dh_reference.item() < -30
    write_curves(cur, tmp_path / "fr.csv")
    plot_curves(cur, tmp_path / "fr.png")


def test_cli_calibrate_deltah_from_raster_pairs(tmp_path):
    """Per-glacier GeoTIFF pairs (names with spaces, DEM nodata 0, dh nodata -3.4e38) through the CLI."""
    import rasterio
    from affine import Affine
    from typer.testing import CliRunner

    from glacgrid.cli import app

    ds = synthetic_dh(GLACIERS[:2], seed=3)
    (tmp_path / "dh").mkdir()
    (tmp_path / "dem").mkdir()
    for i, name in ((1, "Glacier_de la Plaine"), (2, "Glacier_d'Arve 1")):
        rows = (ds.glacier_id == i).any("x").values
        dh = np.where(ds.glacier_id.values == i, ds.dh.values, np.nan)[rows].astype("float32")
        z = np.where(ds.glacier_id.values == i, ds.dem.values, 0.0)[rows].astype("float32")
        dh = np.where(np.isfinite(dh), dh, np.float32(-3.4028230607370965e38))
        profile = dict(driver="GTiff", width=dh.shape[1], height=dh.shape[0], count=1, dtype="float32",
                       crs="EPSG:4326", transform=Affine(0.0005, 0.0, 6.0, 0.0, -0.0004, 45.0))
        with rasterio.open(tmp_path / "dh" / f"dh_{name}.tif", "w", nodata=-3.4028230607370965e38, **profile) as f:
            f.write(dh, 1)
        with rasterio.open(tmp_path / "dem" / f"DEM_{name}.tif", "w", nodata=0.0, **profile) as f:
            f.write(z, 1)
    res = CliRunner().invoke(app, ["calibrate-deltah", str(tmp_path / "dh"), str(tmp_path / "dem"),
                                   "--out", str(tmp_path / "c.csv"), "--plot", str(tmp_path / "c.png")])
    assert res.exit_code == 0, res.output
    back = read_curves(tmp_path / "c.csv")
    assert sorted(back["name"].values.tolist()) == ["d'Arve 1", "de la Plaine"]
    assert (back.status == 0).all() and (tmp_path / "c.png").exists()
    arve = back.where(back.name == "d'Arve 1", drop=True)  # sorted stems: d'Arve first -> glacier 1
    h = np.linspace(0.025, 0.975, 20)
    g = GLACIERS[1]
    np.testing.assert_allclose(curve_of(arve, 0, h), deltah_curve(h, g.gamma, g.a, g.b, g.c), atol=0.03)
    np.testing.assert_array_equal(back.n_implausible.values, [2, 7])
