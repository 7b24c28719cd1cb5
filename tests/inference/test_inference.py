"""Batched inference: blockwise features + model equal the xarray feature path, for any chunking, lazily,
with the model loaded once per worker."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from glacgrid import features as feat
from glacgrid.config import DownscaleParams
from glacgrid.exceptions import GridMismatchError, MissingVariableError, ModelError
from glacgrid.glaciers import paint_lookup
from glacgrid.inference import _cache, _kernels, block_spec, glacier_mean, infer, predict_pixels
from glacgrid.testing._inference import BASE_FEATURES, fit_model, inference_region

from glacgrid.testing import raise_if_dask_computes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FEATURES = [*BASE_FEATURES, "elevation_norm", "aspect"]
DS = DownscaleParams()


@pytest.fixture(scope="module")
def region():
    # 90 x 130 pixels in odd blocks of 32 x 48 (edge blocks 26 and 34 wide), two hydrological years
    return inference_region((90, 130), chunks=(32, 48), glacier_size=20, gap=3, seed=1)


@pytest.fixture(scope="module")
def constants(region):
    return feat.glacier_constants(region.glacier_id, region.surface, region.active, region.pixel_area,
                                  region.index).compute()


@pytest.fixture(scope="module")
def models(region, one_torch_thread):
    return {
        "ols": fit_model("ols", region, FEATURES),
        "ols_ablation": fit_model("ols", region, ABLATION),
        "rf": fit_model("rf", region, FEATURES, n_estimators=15, n_rows=800),
        "ann": fit_model("ann", region, FEATURES, preset="alpgm", epochs=3),
        "ensemble": fit_model("ann", region, FEATURES, ensemble=3, preset="alpgm", epochs=2, n_rows=600),
    }


ABLATION = ["cpdd_ablation", "ablation_months", "cpdd", "snow_winter", "slope", "elevation_norm"]


def _infer(model, r, constants=None, features=FEATURES, **kw):
    return infer(model, r.down, r.glaciers, active=r.active, features=features, downscale=DS, start=r.start,
                 end=r.end, constants=constants, **kw)


def _reference(model, r, constants, features=FEATURES):
    """The xarray feature path: every feature a separate lazy array, then predict_pixels and flox means."""
    clim = feat.climate_pixel_features(r.down, r.surface, DS, start=r.start, end=r.end)
    pix = feat.pixel_features(clim, feat.topo_pixel_features(r.surface, r.grid), constants, r.glacier_id, r.active)
    members = getattr(model, "members", None) or [model]
    each = xr.concat([predict_pixels(m, pix, features) for m in members], dim="member")
    gl = glacier_mean(each, r.glacier_id, r.active, r.pixel_area, r.index)
    return xr.Dataset({"smb": each.mean("member"), "smb_spread": each.std("member"),
                       "smb_glacier": gl.mean("member"), "smb_glacier_spread": gl.std("member")}).compute()


@pytest.mark.parametrize("kind", ["ols", "ols_ablation", "rf", "ann", "ensemble"])
def test_blockwise_equals_the_xarray_feature_path(region, constants, models, kind):
    model = models[kind]
    features = ABLATION if kind == "ols_ablation" else FEATURES
    got = _infer(model, region, constants, features).compute()
    ref = _reference(model, region, constants, features)
    names = ["smb", "smb_glacier"] + (["smb_spread", "smb_glacier_spread"] if kind == "ensemble" else [])
    assert sorted(got.data_vars) == sorted(names)
    for name in names:
        g, e = got[name], ref[name].transpose(*got[name].dims)
        assert np.isfinite(g.values).sum() == np.isfinite(e.values).sum() > 0
        # a spread is a difference of member predictions: its error is the members' float32 rounding (the
        # reference path batches rows differently), ~1 ulp of values near 1 m w.e.
        atol = 5e-7 if name.endswith("spread") else 1e-7
        np.testing.assert_allclose(g.values, e.values, rtol=1e-6, atol=atol, equal_nan=True, err_msg=name)
    assert got["smb"].dtype == np.float32 and got["smb_glacier"].dtype == np.float64
    if kind == "ensemble":  # a real spread, the std of the members' glacier means
        assert float(got["smb_glacier_spread"].max()) > 1e-4
    for name in names:  # CF metadata from the registry and provenance
        attrs = got[name].attrs
        assert attrs["units"] == "m" and attrs["long_name"] and "infer(" in attrs["history"]


def test_every_pixel_and_glacier_is_covered(region, constants, models):
    index = np.append(region.index, 999)  # a glacier without pixels gets NaN, never dropped
    out = infer(models["ols"], region.down, region.glaciers.with_index(index), features=FEATURES, downscale=DS,
                start=region.start, end=region.end, constants=constants).compute()
    active = region.active.values
    finite = np.isfinite(out["smb"].values)
    assert (finite == active[None]).all()  # edge blocks included (90 x 130 in 32 x 48 blocks)
    assert finite.sum() == 2 * region.n_glacier_pixels
    gl = out["smb_glacier"].sel(glacier=region.index)
    assert np.isfinite(gl.values).all() and gl.sizes == {"year": 2, "glacier": region.index.size}
    assert np.isnan(out["smb_glacier"].sel(glacier=999).values).all()


def _chunkings(seed=1):
    """Three layouts of the same region: single-chunk numpy, odd blocks of one year, other odd blocks of two."""
    one = inference_region((90, 130), chunks=(90, 130), glacier_size=20, gap=3, seed=seed).load()
    odd = inference_region((90, 130), chunks=(17, 23), glacier_size=20, gap=3, seed=seed)
    two = inference_region((90, 130), chunks=(41, 59), time_chunk=24, glacier_size=20, gap=3, seed=seed)
    return one, odd, two


@pytest.mark.parametrize("kind", ["ann", "rf"])
def test_gridded_smb_is_bitwise_identical_for_any_chunking(constants, models, kind):
    one, odd, two = _chunkings()
    assert one.surface.chunks is None and odd.surface.chunks != two.surface.chunks
    lazy = [_infer(models[kind], r, constants) for r in (one, odd, two)]
    assert lazy[1]["smb"].chunks[1] == (17,) * 5 + (5,)  # an edge block of 5 rows
    assert lazy[0]["smb"].chunks[1:] == ((90,), (130,))  # numpy inputs on a one-block grid: one block
    outs = [o.compute() for o in lazy]
    for o in outs[1:]:
        np.testing.assert_array_equal(o["smb"].values, outs[0]["smb"].values)
        np.testing.assert_allclose(o["smb_glacier"].values, outs[0]["smb_glacier"].values, rtol=1e-12)


def test_building_the_graph_computes_nothing(region, constants, models, tmp_path):
    from dataclasses import replace

    models["ann"].to_artifact(tmp_path / "ann")
    in_memory = replace(region, active=region.active.compute())  # which blocks are occupied: no compute
    with raise_if_dask_computes(0):
        out = _infer(models["ann"], in_memory, constants)
        out_path = _infer(tmp_path / "ann", in_memory, constants)
    with raise_if_dask_computes(1):  # a lazy mask: one boolean per block, nothing else
        _infer(models["ann"], region, constants)
    with raise_if_dask_computes(1):  # the small glacier constants, in the same compute as those booleans
        lazy = _infer(models["ann"], region)
    for o in (out, out_path, lazy):
        assert all(o[v].chunks for v in o.data_vars)
    np.testing.assert_array_equal(out_path["smb"].values, out["smb"].values)
    xr.testing.assert_allclose(lazy["smb_glacier"], out["smb_glacier"], rtol=1e-12)


def _counted(da: xr.DataArray, calls: list) -> xr.DataArray:
    """``da`` whose every block records its (y, x) origin in ``calls`` when computed."""
    def count(block, block_info=None):
        loc = block_info[0]["array-location"]
        calls.append((loc[-2][0], loc[-1][0]))
        return block

    data = da.data.map_blocks(count, dtype=da.dtype, meta=np.empty((0,) * da.ndim, da.dtype))
    return da.copy(data=data)


def test_blocks_without_active_pixels_compute_no_climate(region, constants, models):
    from dataclasses import replace

    # 90 x 130 in 32 x 48 blocks (3 x 3); blocks (0, 0), (0, 1) and (2, 2) lose their active pixels
    keep = np.ones((90, 130), bool)
    keep[:32, :96] = False
    keep[64:, 96:] = False
    active = region.active & xr.DataArray(keep, dims=("y", "x"))
    calls: list = []
    down = region.down.copy()
    down["temp"], down["prcp"] = _counted(down["temp"], calls), _counted(down["prcp"], calls)
    r = replace(region, down=down, active=active)
    out = _infer(models["ann"], r, constants)
    assert calls == []  # building the graph computes no climate
    got = out.compute(scheduler="threads")
    occupied = {(0, 96), (32, 0), (32, 48), (32, 96), (64, 0), (64, 48)}
    assert set(calls) == occupied  # only the occupied blocks' climate ...
    assert len(calls) == 2 * 2 * len(occupied)  # ... once per variable and per hydrological year
    # results unchanged: equal to the same mask on one in-memory block, NaN exactly off the active pixels
    ref = _infer(models["ann"], replace(region.load(), active=active.compute()), constants).compute()
    np.testing.assert_array_equal(got["smb"].values, ref["smb"].values)
    np.testing.assert_allclose(got["smb_glacier"].values, ref["smb_glacier"].values, rtol=1e-12)
    assert (np.isfinite(got["smb"].values) == active.values[None]).all()
    assert np.isnan(got["smb"].values[:, :32, :96]).all() and np.isfinite(got["smb"].values[:, 32:64]).any()


def test_artifact_is_loaded_once_per_process_and_checked(region, constants, models, tmp_path):
    path = models["rf"].to_artifact(tmp_path / "rf")
    _cache.clear()
    out = _infer(path, region, constants)
    assert np.prod(out["smb"].data.numblocks) == 18  # many blocks ...
    out.compute(scheduler="threads", num_workers=2)
    assert _cache.load_count() == 1  # ... one load
    stale = _infer(path, region, constants)
    meta = json.loads((path / "model.json").read_text())
    meta["training"]["note"] = "rewritten"
    (path / "model.json").write_text(json.dumps(meta))
    _cache.clear()
    with pytest.raises(ModelError, match="changed after the inference graph was built"):
        stale["smb"].compute()


@pytest.mark.filterwarnings("ignore::UserWarning")  # distributed's port and memory notices
def test_local_cluster_loads_the_artifact_at_most_once_per_worker(region, constants, models, tmp_path):
    from distributed import Client, LocalCluster

    # a forest (numpy prediction): workers need not import torch, which keeps the test short
    path = models["rf"].to_artifact(tmp_path / "rf")
    local = _infer(models["rf"], region, constants).compute(scheduler="sync")
    r = inference_region((90, 130), chunks=(16, 20), glacier_size=20, gap=3, seed=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        out = _infer(path, r, constants)
        n_blocks = int(np.prod(out["smb"].data.numblocks))
        got = client.compute(out).result()
        loads = client.run(_cache.load_count)
    assert n_blocks == 2 * 6 * 7  # 84 inference blocks
    assert len(loads) == 2 and max(loads.values()) <= 1 and sum(loads.values()) >= 1
    np.testing.assert_array_equal(got["smb"].values, local["smb"].values)


def test_kernels_known_answers():
    # painting: unknown ids get NaN
    np.testing.assert_array_equal(paint_lookup(np.array([3, 0, 7, 5]), np.array([3, 5, 9]), np.array([1.0, 2.0, 3.0])),
                                  [1.0, np.nan, np.nan, 2.0])
    # torch rows: position modulo 16 = grid index modulo 16, whatever the block
    pos, length = _kernels.aligned_layout(np.array([5, 21, 3, 37]), period=16)
    assert pos.tolist() == [5, 21, 3, 37] and length == 48
    # a plane rising 1 m per 10 m pixel towards the east faces west: slope atan(0.1), aspect (cos 0, sin -1)
    spec = _kernels.BlockSpec(("slope", "aspect_cos", "aspect_sin", "mean_elevation", "elevation_norm"), -0.0065,
                              0.0, 2.0, np.ones(12, bool), np.zeros(12, bool), (0.1, 0.9), "EPSG:32632", False,
                              10.0, 10.0, np.array([1]), {"min_elevation": np.array([100.0]),
                                                          "max_elevation": np.array([104.0])})
    zpad = np.pad(100.0 + np.arange(5.0)[None, :].repeat(4, 0), 1, mode="edge")
    gid = np.ones((4, 5), int)
    act = gid > 0
    temp = np.zeros((1, 12, 4, 5), "float32")
    X, r, c = _kernels.block_features(spec, temp, temp, np.full((1, 12), 30.0), np.zeros((4, 5)), zpad, gid, act,
                                      np.arange(4.0), np.arange(5.0))
    interior = (c > 0) & (c < 4)
    np.testing.assert_allclose(X[interior, 0], np.degrees(np.arctan(0.1)), rtol=1e-6)
    np.testing.assert_allclose(X[interior, 1:3], [[0.0, -1.0]] * int(interior.sum()), atol=1e-6)
    # at the raster edge the halo repeats the pixel: a one-sided difference over one pixel, halved
    np.testing.assert_allclose(X[c == 0, 0], np.degrees(np.arctan(0.05)), rtol=1e-6)
    np.testing.assert_allclose(X[:, 4], c / 4.0, rtol=1e-6)  # (z - zmin) / (zmax - zmin)


def test_compiled_rows_equal_the_numpy_rows(region, constants):
    # one 32 x 48 block: the compiled pass against the numpy path, bitwise, with a NaN month on an active pixel,
    # rows at permuted positions, and the standardisation of ANNModel.predict
    spec = block_spec(FEATURES, constants, region.index, region.grid, DS, lapse_rate=-0.0065)
    sub = dict(y=slice(32, 64), x=slice(48, 96))
    hy, days = feat.hydrological_years(region.down[["temp", "prcp"]], region.start, region.end)
    temp = hy["temp"].isel(**sub).transpose("year", "month", "y", "x").values.copy()
    prcp = hy["prcp"].isel(**sub).transpose("year", "month", "y", "x").values
    ref = region.down["reference_elevation"].isel(**sub).values
    zpad = np.pad(region.surface.isel(**sub).values, 1, mode="edge")
    gid = region.glacier_id.isel(**sub).values
    r, c = np.nonzero(gid > 0)
    temp[1, 4, r[7], c[7]] = np.nan
    args = (spec, temp, prcp, days.values, ref, zpad, gid, r, c, region.grid.y[32:64], region.grid.x[48:96])
    static = _kernels._static_features(spec, zpad, gid[r, c], r, c, args[-2], args[-1])
    corr = spec.lapse_rate * (zpad[r + 1, c + 1] - ref[r, c]).astype("float32")
    shape3 = (temp.shape[0], 12, temp.shape[-2] * temp.shape[-1])
    raw = _kernels._numpy_rows(spec, temp.reshape(shape3), prcp.reshape(shape3), days.values,
                               r.astype("int64") * temp.shape[-1] + c, static, corr)
    X, ok = _kernels.assemble(*args)
    assert X.dtype == np.float32 and np.isnan(X).any()
    np.testing.assert_array_equal(X, raw)  # NaN where numpy has NaN, the same bits elsewhere
    np.testing.assert_array_equal(ok, np.isfinite(raw).all(axis=1))
    pos = np.random.default_rng(0).permutation(2 * r.size + 5)[:2 * r.size]
    mean, std = np.linspace(0, 1000, len(FEATURES)), np.linspace(1, 300, len(FEATURES))
    Z, okz = _kernels.assemble(*args, pos=pos, length=2 * r.size + 5, mean=mean, std=std, zero_bad=True)
    want = ((raw.astype("float64") - mean) / std).astype("float32")
    want[~ok] = 0.0
    np.testing.assert_array_equal(Z[pos], want)
    np.testing.assert_array_equal(okz[pos], ok)
    assert (np.delete(Z, pos, axis=0) == 0).all()  # rows no pixel-year lands on


def test_bad_inputs_are_refused(region, constants, models):
    with pytest.raises(MissingVariableError, match="slope_lower20"):
        infer(models["ols"], region.down, region.glaciers, features=["slope_lower20"], downscale=DS, start=2001,
              end=2002, constants=constants)
    with pytest.raises(ModelError, match="differ from those the model was trained on"):
        infer(models["ols"], region.down, region.glaciers, features=FEATURES[::-1], downscale=DS, start=2001,
              end=2002, constants=constants)
    with pytest.raises(GridMismatchError, match="same grid"):
        infer(models["ols"], region.down, region.glaciers.with_surface(region.surface.isel(x=slice(1, None))),
              features=FEATURES, downscale=DS, start=2001, end=2002, constants=constants)
    with pytest.raises(MissingVariableError, match="reference_elevation"):
        infer(models["ols"], region.down.drop_vars("reference_elevation"), region.glaciers, features=FEATURES,
              downscale=DS, start=2001, end=2002, constants=constants)


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _torch_cuda(), reason="no CUDA device: the GPU path runs on a GPU machine")
def test_cuda_predictions_match_cpu(region, constants, models):
    import copy

    gpu, cpu = copy.deepcopy(models["ann"]), copy.deepcopy(models["ann"])
    gpu.device, cpu.device = "cuda", "cpu"
    a = _infer(gpu, region, constants).compute()
    b = _infer(cpu, region, constants).compute()
    assert "cuda" in {str(p.device.type) for p in gpu._nets["cuda"].parameters()}
    np.testing.assert_allclose(a["smb"].values, b["smb"].values, rtol=1e-4, atol=1e-5, equal_nan=True)
