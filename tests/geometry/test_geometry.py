"""Tests of the delta-h geometry update (glacgrid.geometry): known answers, conservation, dask, laziness."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.exceptions import GeometryError, GridMismatchError, InputDataError, MissingVariableError
from glacgrid.geometry import (HUSS_LARGE, HUSS_MEDIUM, HUSS_SMALL, deltah_update, evolve, pack_state, pack_tiles,
                               unpack_field)
from glacgrid.geometry import _kernels as K
from glacgrid.testing import DATA, ComputeCounter, raise_if_dask_computes, requires_data
from glacgrid.testing._geometry import DIMS, achieved, make_smb, make_state, sums_by_id, valley_state

RHO_RATIO = 1000.0 / 900.0


# --------------------------------------------------------------------------- kernel: known answers
@pytest.mark.parametrize(
    "params, expected",
    [
        # large: h_r=0 -> 0 + 0.12*(-0.02) = -0.0024 -> 0;  0.48**6 + 0.12*0.48;  0.98**6 + 0.1176 > 1 -> 1
        (HUSS_LARGE, [0.0, 0.48**6 + 0.0576, 1.0]),
        # medium: 0.19*(-0.05) + 0.01 = 0.0005;  0.45**4 + 0.0855 + 0.01;  0.95**4 + 0.1805 + 0.01 > 1
        (HUSS_MEDIUM, [0.0005, 0.04100625 + 0.0955, 1.0]),
        # small: -0.18 + 0.09 -> 0;  0.2**2 + 0.12 + 0.09 = 0.25;  0.49 + 0.42 + 0.09 = 1
        (HUSS_SMALL, [0.0, 0.25, 1.0]),
    ],
)
def test_huss_curve_known_values(params, expected):
    np.testing.assert_allclose(K.huss_deltah(np.array([0.0, 0.5, 1.0]), params), expected, rtol=1e-12,
                               atol=1e-15)


def test_huss_power_base_is_clipped():
    # small at h_r = 0.2: base -0.1 clipped to 0 for the power -> 0 + 0.6*(-0.1) + 0.09 = 0.03
    np.testing.assert_allclose(K.huss_deltah(np.array([0.2]), HUSS_SMALL), [0.03], rtol=1e-12)
    # a real exponent never sees a negative base
    odd = K.HussParams(gamma=2.5, a=-0.3, b=0.6, c=0.09)
    assert np.isfinite(K.huss_deltah(np.linspace(0, 1, 11), odd)).all()


def test_size_class_boundaries():
    area = np.array([0.0, 0.49, 0.5, 4.99, 5.0, 20.0, 20.01])
    expected = [K.UNIFORM, K.UNIFORM, K.SMALL, K.SMALL, K.MEDIUM, K.MEDIUM, K.LARGE]
    np.testing.assert_array_equal(K.size_class(area), expected)


def test_normalised_elevation_and_flat_glacier():
    z = np.array([3000.0, 2500.0, 2000.0])
    np.testing.assert_allclose(K.normalised_elevation(z, 3000.0, 2000.0), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(K.normalised_elevation(z, 2000.0, 2000.0), [0.0, 0.0, 0.0])


def test_group_reductions():
    pos = np.array([0, 2, 2, -1, 0])
    v = np.array([1.0, 5.0, -2.0, 100.0, 3.0])
    np.testing.assert_array_equal(K.group_sum(pos, v, 4), [4.0, 0.0, 3.0, 0.0])
    np.testing.assert_array_equal(K.group_max(pos, v, 4), [3.0, np.nan, 5.0, np.nan])
    np.testing.assert_array_equal(K.group_min(pos, v, 4), [1.0, np.nan, -2.0, np.nan])


def test_kernel_exhaustion_hand_computed():
    # uniform class (0.03 km2): loss of 9 m over 3 pixels of 10, 10, 1 m -> 3 m each, the 1 m pixel
    # runs out, its unmet 2 m are spread over the two others: 6, 6, 0.
    gid = np.array([[1, 1, 1]])
    h = np.array([[10.0, 10.0, 1.0]])
    z = np.array([[3000.0, 2900.0, 2800.0]])
    a = np.full((1, 3), 1e4)
    smb = np.array([-3.0 / RHO_RATIO])  # ΔV = smb * 3e4 m2 * 1000/900 = -9e4 m3
    h_new, z_new, target, sol = K.deltah_update_arrays(gid, h, z, a, np.array([1]), smb)
    np.testing.assert_allclose(target, [-9e4])
    np.testing.assert_allclose(h_new, [[6.0, 6.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(z_new, z - [[4.0, 4.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(sol.change, [-9e4], rtol=1e-12)
    np.testing.assert_allclose(sol.area, [2e4])
    assert sol.iterations == 2 and sol.converged.all()


# --------------------------------------------------------------------------- public API: conservation
@pytest.mark.parametrize("smb", [{1: -2.0, 2: -1.5, 3: -0.5, 4: -1.0}, {1: 1.2, 2: 0.8, 3: 2.0, 4: 0.3}])
def test_mass_conservation(smb):
    state = valley_state()
    new, report = deltah_update(state, make_smb(smb))
    ice0 = state.thickness.values > 0
    area0 = sums_by_id(state.glacier_id.values, (state.pixel_area.values * ice0), 4)[1:]
    target = np.array(list(smb.values())) * area0 * RHO_RATIO
    got = achieved(state, new, 4)[1:]
    np.testing.assert_allclose(got, target, rtol=1e-9)
    np.testing.assert_allclose(report.volume_change_target.values, target, rtol=1e-12)
    np.testing.assert_allclose(report.volume_change.values, got, rtol=1e-9)
    vol = sums_by_id(state.glacier_id.values, (new.thickness * new.pixel_area).values, 4)[1:] / 1e9
    np.testing.assert_allclose(report.volume.values, vol, rtol=1e-12)
    assert (new.thickness.values >= 0).all()
    # the bed is fixed and the ice mask never advances
    np.testing.assert_allclose((new.surface - new.thickness).values, (state.surface - state.thickness).values,
                               atol=1e-9)
    assert not ((new.thickness.values > 0) & ~ice0).any()
    assert report.disappeared.values.tolist() == [0, 0, 0, 0]
    assert report.volume.attrs["units"] == "km3" and report.volume_change.attrs["units"] == "m3"
    assert "deltah_update" in new.thickness.attrs["history"]


def test_change_follows_huss_shape_without_exhaustion():
    state = valley_state()
    new, report = deltah_update(state, make_smb({2: -0.5}))  # large glacier, thick enough everywhere
    assert report.attrs["solver_passes"] == 1  # nothing clipped, nothing to redistribute
    sel = (state.glacier_id == 2).values & (state.thickness.values > 0)
    z = state.surface.values[sel]
    h_r = (z.max() - z) / (z.max() - z.min())
    w = K.huss_deltah(h_r, HUSS_LARGE)
    dh = (new.thickness - state.thickness).values[sel]
    ratio = dh[w > 0] / w[w > 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)
    np.testing.assert_allclose(dh[w == 0], 0.0)
    assert ratio[0] < 0


def test_exhaustion_redistributes_unmet_loss():
    state = valley_state()
    new, report = deltah_update(state, make_smb({1: -4.0}))
    terminus = new.thickness.values[13:15, 1:6]
    np.testing.assert_array_equal(terminus, 0.0)  # the thin terminus ran out of ice ...
    np.testing.assert_allclose(achieved(state, new, 4)[1], report.volume_change_target.values[0],
                               rtol=1e-9)  # ... and its loss was taken elsewhere
    assert report.attrs["solver_passes"] >= 2  # pass 1 clips, later passes redistribute
    ice_after = (new.thickness.values > 0) & (state.glacier_id.values == 1)
    np.testing.assert_allclose(report.glacier_area.values[0],
                               (state.pixel_area.values * ice_after).sum() / 1e6, rtol=1e-12)


def test_large_glacier_falls_back_to_uniform_when_weighted_pixels_are_exhausted():
    # 5 x 5 px of 1 km2 (large). The top pixel has h_r = 0, so Huss weight 0; all others run out,
    # and the remaining 30 m of loss come off the top pixel uniformly: 100 -> 70 m.
    gid = np.ones((5, 5), dtype="int32")
    z = np.linspace(2900.0, 2000.0, 25).reshape(5, 5)
    z[0, 0] = 3000.0
    h = np.full((5, 5), 1.0)
    h[0, 0] = 100.0
    state = make_state(gid, h, z, 1e6)
    loss = 24e6 + 30e6
    new, report = deltah_update(state, make_smb({1: -loss / 25e6 / RHO_RATIO}))
    expected = np.zeros((5, 5))
    expected[0, 0] = 70.0
    np.testing.assert_allclose(new.thickness.values, expected, atol=1e-8)
    np.testing.assert_allclose(report.glacier_area.values, [1.0])
    np.testing.assert_allclose(report.volume_change.values, [-loss], rtol=1e-12)


def test_flat_large_glacier_changes_uniformly():
    state = make_state(np.ones((5, 5), dtype="int32"), 50.0, 2500.0, 1e6)  # 25 km2, h_r = 0 everywhere
    new, report = deltah_update(state, make_smb({1: -0.9}))
    np.testing.assert_allclose(new.thickness.values, 49.0, rtol=1e-12)  # -0.9 m w.e. = -1 m ice
    np.testing.assert_allclose(new.surface.values, 2499.0, rtol=1e-12)


def test_glacier_disappears():
    state = valley_state()
    smb = make_smb({1: -1.0, 3: -500.0})
    new, report = deltah_update(state, smb)
    on3 = state.glacier_id.values == 3
    np.testing.assert_array_equal(new.thickness.values[on3], 0.0)
    v0 = (state.thickness * state.pixel_area).values[on3].sum()
    assert report.disappeared.sel(glacier=3).item() == 1
    assert report.disappeared.sel(glacier=1).item() == 0
    np.testing.assert_allclose(report.volume_change.sel(glacier=3).item(), -v0, rtol=1e-12)
    assert report.volume_change_target.sel(glacier=3).item() < -v0  # the unmet loss is visible
    assert report.glacier_area.sel(glacier=3).item() == 0.0
    assert report.volume.sel(glacier=3).item() == 0.0
    np.testing.assert_allclose(new.surface.values[on3], (state.surface - state.thickness).values[on3])
    np.testing.assert_array_equal(new.glacier_id.values, state.glacier_id.values)  # ids are kept


def test_unlisted_and_nan_glaciers_do_not_change():
    state = valley_state()
    smb = make_smb({4: -1.0, 2: np.nan})  # unsorted on purpose
    new, report = deltah_update(state, smb)
    keep = np.isin(state.glacier_id.values, [0, 1, 2, 3])
    np.testing.assert_array_equal(new.thickness.values[keep], state.thickness.values[keep])
    np.testing.assert_array_equal(new.surface.values[keep], state.surface.values[keep])
    assert report.glacier.values.tolist() == [4, 2]
    assert np.isnan(report.volume_change_target.sel(glacier=2).item())
    assert report.volume_change.sel(glacier=2).item() == 0.0
    assert report.volume_change.sel(glacier=4).item() < 0


def test_nan_thickness_off_glaciers_is_kept():
    state = valley_state()
    state["thickness"] = state.thickness.where(state.glacier_id > 0)  # NaN off the glaciers
    new, _ = deltah_update(state, make_smb({1: -1.0}))
    off = state.glacier_id.values == 0
    assert np.isnan(new.thickness.values[off]).all()
    np.testing.assert_array_equal(new.surface.values[off], state.surface.values[off])


def test_more_negative_smb_gives_thinner_ice():
    state = valley_state()
    thick = [deltah_update(state, make_smb({1: b, 2: b, 3: b, 4: b}))[0].thickness.values
             for b in (1.0, 0.0, -1.0, -3.0, -8.0)]
    for a, b in zip(thick, thick[1:]):
        assert (b <= a + 1e-12).all()
    assert all((t >= 0).all() for t in thick)


# --------------------------------------------------------------------------- dask
SMB_MIX = {1: -4.0, 2: -1.2, 3: -500.0, 4: 0.7}


def test_dask_equals_numpy_and_chunking_invariance():
    state = valley_state()
    ref, rep_ref = deltah_update(state, make_smb(SMB_MIX))
    mixed = state.copy()
    mixed["thickness"] = state.thickness.chunk({"y": 4, "x": 9})  # other vars numpy / other chunks
    for st_ in (state.chunk({"y": 7, "x": 5}), state.chunk({"y": 23, "x": 17}), mixed):
        new, rep = deltah_update(st_, make_smb(SMB_MIX))
        assert isinstance(new.thickness.data, dsa.Array) and isinstance(new.surface.data, dsa.Array)
        for v in ("thickness", "surface"):
            np.testing.assert_allclose(new[v].values, ref[v].values, rtol=1e-12, atol=1e-9)
        for v in rep_ref.data_vars:
            np.testing.assert_allclose(rep[v].values, rep_ref[v].values, rtol=1e-10)
    assert new.thickness.chunks == ((4,) * 5 + (3,), (9, 8))


def test_numpy_kernel_equals_xarray_layer():
    state = valley_state()
    new, report = deltah_update(state, make_smb(SMB_MIX))
    ids = np.array(sorted(SMB_MIX))
    h, z, target, sol = K.deltah_update_arrays(
        *(state[v].values for v in ("glacier_id", "thickness", "surface", "pixel_area")), ids,
        np.array([SMB_MIX[g] for g in ids]))
    np.testing.assert_allclose(h, new.thickness.values, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(z, new.surface.values, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(sol.change, report.volume_change.sel(glacier=ids).values, rtol=1e-10)
    np.testing.assert_array_equal(sol.gone, [False, False, True, False])


def test_dask_output_is_lazy():
    state = valley_state().chunk({"y": 7, "x": 5})
    sched = ComputeCounter(max_computes=50)
    with dask.config.set(scheduler=sched):
        new, report = deltah_update(state, make_smb(SMB_MIX))
    # the one eager pass of the fused engine: gathering the glacier pixels
    assert sched.total == 1
    assert new.thickness.chunks == state.thickness.chunks
    with raise_if_dask_computes():
        for v in ("thickness", "surface"):
            assert isinstance(new[v].data, dsa.Array)
        change = (new.thickness - state.thickness) * state.pixel_area
        assert isinstance(change.data, dsa.Array)
    np.testing.assert_allclose(achieved(state, new, 4)[[1, 2, 4]],
                               report.volume_change_target.sel(glacier=[1, 2, 4]).values, rtol=1e-9)


def test_dask_flox_engine_passes_and_laziness():
    state = valley_state().chunk({"y": 7, "x": 5})
    sched = ComputeCounter(max_computes=50)
    with dask.config.set(scheduler=sched):
        new, report = deltah_update(state, make_smb(SMB_MIX), engine="flox")
    # documented eager passes: persist, geometry + checks, Huss weight sums, one per solver step;
    # none of them computes the pixel output.
    assert sched.total == 3 + report.attrs["solver_passes"]
    assert new.thickness.chunks == state.thickness.chunks
    with raise_if_dask_computes():
        assert isinstance(new.thickness.data, dsa.Array)
    np.testing.assert_allclose(achieved(state, new, 4)[[1, 2, 4]],
                               report.volume_change_target.sel(glacier=[1, 2, 4]).values, rtol=1e-9)
    with pytest.raises(InputDataError, match="engine must be"):
        deltah_update(state, make_smb(SMB_MIX), engine="numba")


def _counted_thickness(state, chunks=(7, 5)):
    reads = []

    def source(block, block_info=None):
        reads.append(block_info[0]["chunk-location"])
        return block

    lazy = state.copy()
    data = dsa.from_array(state.thickness.values, chunks=chunks).map_blocks(source, meta=np.array(()))
    lazy["thickness"] = (DIMS, data)
    return lazy, reads


def test_dask_inputs_read_once_per_pass():
    state = valley_state()
    n_chunks = 4 * 4
    lazy, reads = _counted_thickness(state)
    new, _ = deltah_update(lazy, make_smb(SMB_MIX))
    assert len(reads) == n_chunks  # the gather pass reads every block once, nothing is held dense
    new.compute()
    assert len(reads) == 2 * n_chunks  # the output is the input blocks with the glacier pixels written in
    lazy, reads = _counted_thickness(state)
    new, _ = deltah_update(lazy, make_smb(SMB_MIX), engine="flox")
    assert len(reads) == n_chunks  # flox: persisted once, not re-read by every solver pass
    new.compute()
    assert len(reads) == n_chunks  # the output is built on the persisted arrays


# --------------------------------------------------------------------------- input checks
def test_missing_variable():
    with pytest.raises(MissingVariableError, match="surface"):
        deltah_update(valley_state().drop_vars("surface"), make_smb({1: -1.0}))


def test_negative_thickness_names_glacier():
    state = valley_state()
    state["thickness"][5, 3] = -1.0
    with pytest.raises(GeometryError, match=r"\[1\].*negative"):
        deltah_update(state, make_smb({1: -1.0}))
    state = valley_state()
    state["thickness"][22, 0] = -1.0  # outside any glacier
    with pytest.raises(GeometryError, match="1 negative pixel"):
        deltah_update(state, make_smb({1: -1.0}))


def test_mismatched_dims():
    state = valley_state()
    state["pixel_area"] = ("y", np.full(23, 1e4))
    with pytest.raises(GridMismatchError, match="pixel_area.*expected dims"):
        deltah_update(state, make_smb({1: -1.0}))


def test_smb_glacier_absent_from_raster():
    with pytest.raises(GeometryError, match=r"\[7\].*present in the raster"):
        deltah_update(valley_state(), make_smb({1: -1.0, 7: -1.0}))


@pytest.mark.parametrize("kw", [{"rho_ice": -900.0}, {"rho_water": 0.0}, {"max_iter": 0}, {"rtol": -1.0}])
def test_bad_parameters(kw):
    with pytest.raises(InputDataError, match=next(iter(kw))):
        deltah_update(valley_state(), make_smb({1: -1.0}), **kw)


def test_bad_smb_and_ids():
    state = valley_state()
    with pytest.raises(InputDataError, match="more than once"):
        deltah_update(state, xr.DataArray([1.0, 2.0], coords={"glacier": [1, 1]}, dims="glacier"))
    with pytest.raises(GeometryError, match="indices start at"):
        deltah_update(state, make_smb({0: -1.0}))
    with pytest.raises(InputDataError, match="dim 'glacier'"):
        deltah_update(state, xr.DataArray([1.0], dims="rgi"))
    with pytest.raises(InputDataError, match="units"):
        deltah_update(state, make_smb({1: -1.0}).assign_attrs(units="kg m-2"))
    state["glacier_id"] = state.glacier_id.astype("float64")
    with pytest.raises(GeometryError, match="integer"):
        deltah_update(state, make_smb({1: -1.0}))


def test_empty_smb():
    state = valley_state()
    new, report = deltah_update(state, make_smb({}).astype("float64"))
    xr.testing.assert_identical(new, state)
    assert report.sizes["glacier"] == 0


# --------------------------------------------------------------------------- several years, packed states
def test_evolve_years_and_disappearance():
    state = valley_state()
    smb = xr.DataArray([[-1.0, -0.5, -0.2], [-1.0, -1000.0, -0.2], [0.5, -1.0, -0.2]], dims=("year", "glacier"),
                       coords={"year": [2001, 2002, 2003], "glacier": [1, 3, 4]})
    final, rep = evolve(state, smb)
    assert rep.disappeared_year.values.tolist() == [-1, 2002, -1]
    np.testing.assert_array_equal(rep.disappeared.sel(glacier=3).values, [0, 1, 1])
    # year by year equals three calls of deltah_update, each from the previous state
    st_ = state
    for i, year in enumerate((2001, 2002, 2003)):
        st_, r = deltah_update(st_, smb.sel(year=year, drop=True))
        np.testing.assert_allclose(rep.volume.isel(year=i).values, r.volume.values, rtol=1e-12)
        np.testing.assert_allclose(rep.glacier_area.isel(year=i).values, r.glacier_area.values, rtol=1e-12)
    np.testing.assert_allclose(final.thickness.values, st_.thickness.values, rtol=1e-12)
    # closure over the years: achieved = Σ SMB · area(start of year) · ρw/ρi − unmet
    got = achieved(state, final, 4)[[1, 3, 4]]
    np.testing.assert_allclose(got, (rep.volume_change_target - rep.volume_change_unmet).sum("year"), rtol=1e-9)
    assert rep.volume_change_unmet.sel(glacier=3, year=2002).item() < 0  # the loss it could not meet
    assert rep.disappeared_year.attrs["units"] == "1"
    with pytest.raises(InputDataError, match="dims"):
        evolve(state, smb.isel(year=0))


def test_packed_state_gives_the_same_update():
    state = valley_state()
    state["pixel_area"] = state.pixel_area.isel(y=0, x=0, drop=True) * 0 + 1e4  # a scalar area
    packed, index = pack_state(state, width=16)
    n = int((state.glacier_id > 0).sum())
    assert packed.sizes == {"y": int(np.ceil(n / 16)), "x": 16}
    flat = packed.glacier_id.values.ravel()
    assert (np.diff(flat[:n]) >= 0).all() and (flat[n:] == 0).all()  # grouped by glacier, then padding
    np.testing.assert_array_equal(flat[:n], state.glacier_id.values.ravel()[index])
    full, rep_full = deltah_update(state.assign(pixel_area=state.pixel_area.broadcast_like(state.thickness)),
                                   make_smb(SMB_MIX))
    new, rep = deltah_update(packed, make_smb(SMB_MIX))
    back = unpack_field(new.thickness, index, state.thickness, fill=0.0)
    np.testing.assert_allclose(back.values, full.thickness.values, rtol=1e-12, atol=1e-9)
    for v in ("volume_change", "volume", "glacier_area", "disappeared"):
        np.testing.assert_allclose(rep[v].values, rep_full[v].values, rtol=1e-12)


# --------------------------------------------------------------------------- real data: the Alps
@pytest.mark.slow
@requires_data("alps", "farinotti_thickness")
def test_alps_ten_year_mass_closure():
    """All 3,927 Alps glaciers (Farinotti 25 m), 10 years of a prescribed SMB series (seeded, mean
    -1 m w.e., glacier-specific): the total volume change equals Σ SMB · area · ρw/ρi over glaciers and
    years (area at the start of each year), less the loss of glaciers that ran out of ice."""
    alps = DATA / "alps"
    state = pack_tiles(alps / "farinotti_thickness", alps / "farinotti_dem")
    gid = state.glacier_id.values
    ids = np.unique(gid[gid > 0])
    assert ids.size == 3927
    v0 = float((state.thickness * state.pixel_area).sum())
    np.testing.assert_allclose(v0 / 1e9, 130.05, rtol=1e-3)  # the tiles' total volume (km3)
    rng = np.random.default_rng(7)
    smb = xr.DataArray(rng.normal(-1.0, 0.6, (10, ids.size)), dims=("year", "glacier"),
                       coords={"year": np.arange(2011, 2021), "glacier": ids}, attrs={"units": "m"})
    final, rep = evolve(state, smb)
    dv = float(((final.thickness - state.thickness) * state.pixel_area).sum())
    target = float(rep.volume_change_target.sum())
    unmet = float(rep.volume_change_unmet.sum())
    assert abs(dv - (target - unmet)) <= 1e-9 * abs(target)
    np.testing.assert_allclose(rep.volume_change.sum().item(), dv, rtol=1e-9)
    # unmet loss only where glaciers disappeared, and they are all reported
    gone = rep.disappeared_year.values > 0
    assert gone.sum() > 0 and (rep.volume_change_unmet.sum("year").values[~gone] == 0).all()
    assert (final.thickness.values >= 0).all()
    np.testing.assert_allclose(rep.volume.isel(year=-1).sum().item(), (v0 + dv) / 1e9, rtol=1e-9)


def test_cli_evolve_years_with_curves(tmp_path):
    from typer.testing import CliRunner

    from glacgrid.cli import app
    from glacgrid.cube import open_store, write_dataset

    state = valley_state().chunk({"y": 8, "x": 17})
    write_dataset(state, tmp_path / "state.zarr", region_dim="y")
    rows = [(y, g, b) for y, smb in ((2001, {1: -1.0, 2: -0.5, 4: 0.3}), (2002, {1: -2.0, 2: -1.0, 4: -0.2}))
            for g, b in smb.items()]
    pd.DataFrame(rows, columns=["year", "glacier", "smb"]).to_csv(tmp_path / "smb.csv", index=False)
    pd.DataFrame({"glacier": [2], "gamma": [1.0], "a": [0.0], "b": [0.0], "c": [0.0]}).to_csv(
        tmp_path / "curves.csv", index=False)
    res = CliRunner().invoke(app, ["evolve", str(tmp_path / "state.zarr"), "--smb", str(tmp_path / "smb.csv"),
                                   "--out", str(tmp_path / "new.zarr"), "--curves", str(tmp_path / "curves.csv"),
                                   "--report", str(tmp_path / "report.csv")])
    assert res.exit_code == 0, res.output
    new = open_store(tmp_path / "new.zarr").compute()
    rep = pd.read_csv(tmp_path / "report.csv")
    got = achieved(valley_state(), new, 4)[[1, 2, 4]]
    expect = (rep.volume_change_target - rep.volume_change_unmet).groupby(rep.glacier).sum().values
    np.testing.assert_allclose(got, expect, rtol=1e-9)
    assert (rep[rep.glacier == 2].deltah_curve == 4).all() and (rep[rep.glacier == 1].deltah_curve == 2).all()
    bad = CliRunner().invoke(app, ["evolve", str(tmp_path / "state.zarr"), "--smb", str(tmp_path / "curves.csv"),
                                   "--out", str(tmp_path / "x.zarr")])
    assert bad.exit_code != 0 and "lacks column" in bad.output
