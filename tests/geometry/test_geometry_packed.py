"""Dask-backed states go through the gathered (packed) fused path: the same numbers as the numpy path to the
last bit, lazy outputs, any chunking, sparse mosaics, multi-year evolve gathering once, input errors."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from glacgrid.exceptions import GeometryError
from glacgrid.geometry import _scatter, deltah_update, evolve
from glacgrid.testing import ComputeCounter, raise_if_dask_computes
from glacgrid.testing._deltah import reference_deltah_loop
from glacgrid.testing._geometry import DIMS, make_smb, make_state, random_curves, random_glaciers


def random_state(seed):
    gid, h, z, area, ids, smb = random_glaciers(seed)
    return make_state(gid, h, z, area), xr.DataArray(smb, dims="glacier", coords={"glacier": ids}), ids


def curves_for(ids, seed):
    cal, coef = random_curves(ids, seed)
    return xr.Dataset({k: ("glacier", v) for k, v in coef.items()} | {"calibrated": ("glacier", cal.astype("int8"))},
                      coords={"glacier": ids})


def assert_identical(new, rep, ref, rep_ref):
    for v in ("thickness", "surface"):
        assert new[v].dtype == ref[v].dtype == np.float64
        np.testing.assert_array_equal(new[v].values, ref[v].values)  # bit for bit (NaN where NaN)
    for v in rep_ref.data_vars:
        np.testing.assert_array_equal(rep[v].values, rep_ref[v].values, err_msg=v)
    assert rep.attrs["solver_passes"] == rep_ref.attrs["solver_passes"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gathered_equals_numpy_bit_for_bit_any_chunking(seed):
    """Glaciers spread over every block (random ids), unlisted glaciers, NaN thickness off the glaciers,
    glacier-specific curves: the dask result is the numpy result exactly, for several chunkings."""
    state, smb, ids = random_state(seed)
    curves = curves_for(ids, seed) if seed else None
    ref, rep_ref = deltah_update(state, smb, curves=curves)
    assert rep_ref.disappeared.sum() > 0 and np.isnan(rep_ref.volume_change_target).any()
    for chunks in ({"y": 7, "x": 9}, {"y": 60, "x": 1}, {"y": 13}):
        new, rep = deltah_update(state.chunk(chunks), smb, curves=curves)
        assert isinstance(new.thickness.data, dsa.Array)
        assert new.thickness.chunks == state.chunk(chunks).thickness.chunks
        assert_identical(new, rep, ref, rep_ref)


def test_sparse_mosaic_blocks_and_dtypes():
    """A mostly empty float32 raster (as the mosaic stores): glaciers across block corners, whole empty
    blocks; empty blocks and off-glacier pixels keep their values (as float64), glacier pixels match the
    reference loop."""
    ny, nx = 300, 410
    gid = np.zeros((ny, nx), "int32")
    gid[90:140, 120:170] = 7      # across the corner of four 128 x 128 blocks
    gid[5:20, 390:405] = 3        # in one block
    gid[250:252, 10:300] = 12     # a thin glacier across three blocks
    yy = np.mgrid[0:ny, 0:nx][0]
    z = (3600.0 - 4.0 * yy).astype("float32")
    z[:, :8] = np.nan  # no surface outside the tiles (off the glaciers)
    h = np.where(gid > 0, 20.0 + (yy % 17), 0.0).astype("float32")
    area = np.full((ny, nx), 625.0)
    state = make_state(gid, h, z, area).assign(thickness=(DIMS, h), surface=(DIMS, z))
    assert state.thickness.dtype == np.float32
    smb = make_smb({3: -1.5, 7: -0.8, 12: 0.4})
    ref, rep_ref = deltah_update(state, smb)
    new, rep = deltah_update(state.chunk({"y": 128, "x": 128}), smb)
    assert_identical(new, rep, ref, rep_ref)
    out = new.thickness.values
    off = gid == 0
    np.testing.assert_array_equal(out[off], h[off].astype("float64"))
    np.testing.assert_array_equal(new.surface.values[off], z[off].astype("float64"))  # NaN kept
    expect = reference_deltah_loop(gid, h.astype("float64"), z.astype("float64"), area,
                                   {3: -1.5, 7: -0.8, 12: 0.4}, tol=1e-12)
    np.testing.assert_allclose(out, expect, rtol=1e-9, atol=1e-9)
    dv = ((new.thickness - state.thickness.astype("float64")) * 625.0).groupby(state.glacier_id).sum()
    np.testing.assert_allclose(dv.sel(glacier_id=[3, 7, 12]).values, rep.volume_change_target.values, rtol=1e-9)


def test_gather_is_one_pass_and_output_lazy():
    state, smb, _ = random_state(3)
    lazy = state.chunk({"y": 11, "x": 8})
    sched = ComputeCounter(max_computes=5)
    with dask.config.set(scheduler=sched):
        new, rep = deltah_update(lazy, smb)
    assert sched.total == 1  # the gather pass only
    with raise_if_dask_computes():
        total = (new.thickness * new.pixel_area).sum()
        assert isinstance(total.data, dsa.Array)
    ref, _ = deltah_update(state, smb)
    np.testing.assert_array_equal(new.thickness.values, ref.thickness.values)


def test_gather_groups_by_glacier_in_raster_order():
    gid = np.array([[0, 5, 2, 5], [2, 0, 5, 9], [9, 2, 0, 0]], "int32")
    vals = np.arange(12, dtype="float64").reshape(3, 4)
    arrs = [dsa.from_array(a, chunks=(2, 3)) for a in (gid, vals, vals + 100, vals * 0 + 1)]
    g = _scatter.gather(*arrs, np.array([2, 5]))
    np.testing.assert_array_equal(g.gid, [2, 2, 2, 5, 5, 5])
    np.testing.assert_array_equal(g.h, [2, 4, 9, 1, 3, 6])  # raster order within each glacier
    np.testing.assert_array_equal(g.z, g.h + 100)
    out = _scatter.scatter(arrs[1], g, -g.h).compute()
    expect = np.where(np.isin(gid, [2, 5]), -vals, vals)
    np.testing.assert_array_equal(out, expect)


def test_evolve_on_dask_gathers_once_and_equals_numpy():
    state, smb1, ids = random_state(4)
    rng = np.random.default_rng(4)
    years = np.arange(2001, 2005)
    smb = xr.DataArray(rng.normal(-1.5, 2.0, (years.size, ids.size)), dims=("year", "glacier"),
                       coords={"year": years, "glacier": ids})
    ref, rep_ref = evolve(state, smb)
    reads = []

    def source(block, block_info=None):
        reads.append(block_info[0]["chunk-location"])
        return block

    lazy = state.chunk({"y": 20, "x": 25})
    lazy["thickness"] = (DIMS, dsa.from_array(state.thickness.values, chunks=(20, 25)).map_blocks(
        source, meta=np.array(())))
    new, rep = evolve(lazy, smb)
    assert len(reads) == 3 * 2  # one gather pass for all four years
    for v in ("thickness", "surface"):
        np.testing.assert_array_equal(new[v].values, ref[v].values)
        # the same attributes, except the history's timestamp (the two runs may straddle a second)
        drop = lambda a: {k: val for k, val in a.items() if k != "history"}  # noqa: E731
        assert drop(new[v].attrs) == drop(ref[v].attrs) and new[v].attrs["history"]
    for v in rep_ref.data_vars:
        np.testing.assert_array_equal(rep[v].values, rep_ref[v].values)
    # and year by year on dask (each year gathers from the last one's lazy output)
    step = lazy
    for y in years:
        step, _ = deltah_update(step, smb.sel(year=y, drop=True))
    np.testing.assert_array_equal(step.thickness.values, ref.thickness.values)


def test_gathered_path_input_errors():
    state, smb, ids = random_state(5)
    gid = state.glacier_id.values
    h = state.thickness.values.copy()
    h[np.argwhere(gid == 0)[0][0], np.argwhere(gid == 0)[0][1]] = -2.0  # off the glaciers
    bad = state.assign(thickness=(DIMS, h)).chunk({"y": 16})
    with pytest.raises(GeometryError, match="1 negative pixel"):
        deltah_update(bad, smb)
    with pytest.raises(GeometryError, match="1 negative pixel"):
        evolve(bad, smb.expand_dims(year=[2001]))
    h = state.thickness.values.copy()
    on = np.argwhere(gid == ids[0])[0]
    h[on[0], on[1]] = np.nan  # on an updated glacier
    with pytest.raises(GeometryError, match=rf"Glacier indices \[{ids[0]}\].*thickness NaN or negative"):
        deltah_update(state.assign(thickness=(DIMS, h)).chunk({"y": 16}), smb)
    absent = xr.DataArray([-1.0], dims="glacier", coords={"glacier": [999]})
    with pytest.raises(GeometryError, match="no pixel"):
        deltah_update(state.chunk({"y": 16}), absent)
