"""The fused, compiled delta-h kernel (glacgrid.geometry._fused) equals the numpy kernel, the reference loop
and the dask/flox path: ordered (packed) and unordered pixels, curves, exhaustion, positive SMB, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glacgrid.exceptions import GeometryError
from glacgrid.geometry import _fused as F
from glacgrid.geometry import _kernels as K
from glacgrid.geometry import deltah_update, pack_state
from glacgrid.testing._deltah import reference_deltah_loop as reference_update
from glacgrid.testing._geometry import make_smb, random_curves, random_glaciers, valley_state
from glacgrid.testing.strategies import PROPS, curve_params, small_glaciers

SOL_FIELDS = ("scale", "lower", "gone", "change", "area", "converged")


def assert_same(fused, numpy_kernel, rtol=1e-12):
    (h1, z1, res), (h2, z2, target, sol) = fused, numpy_kernel
    np.testing.assert_allclose(h1, h2, rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(z1, z2, rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(res.target, target, rtol=rtol)
    for name in SOL_FIELDS:
        np.testing.assert_allclose(getattr(res.solution, name), getattr(sol, name), rtol=1e-10, atol=1e-6,
                                   err_msg=name)
    assert res.solution.iterations == sol.iterations


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_curves", [False, True])
def test_fused_equals_numpy_kernel(seed, ordered, with_curves):
    gid, h, z, area, ids, smb = random_glaciers(seed, ordered=ordered)
    cal, coef = random_curves(ids, seed) if with_curves else (None, None)
    fused = F.deltah_update_fused(gid, h, z, area, ids, smb, calibrated=cal, coefficients=coef)
    ref = K.deltah_update_arrays(gid, h, z, area, ids, smb, calibrated=cal, coefficients=coef)
    assert_same(fused, ref)
    assert np.isnan(fused[0][np.isnan(h)]).all()  # untouched off the glaciers
    unlisted = ~np.isin(gid, ids)
    np.testing.assert_array_equal(fused[1][unlisted], z[unlisted])
    assert (fused[2].solution.gone).any() and (smb > 0).any()  # the cases are exercised


def test_fused_exact_on_packed_pixels_without_power():
    """Sums run in pixel order like np.bincount: with uniform weights the results are bit-identical."""
    gid, h, z, area, ids, smb = random_glaciers(5, ordered=True)
    area = np.full(gid.shape, 25.0**2)  # every glacier < 0.5 km2: uniform class, no power evaluated
    h1, z1, res = F.deltah_update_fused(gid, h, z, area, ids, smb)
    h2, z2, target, sol = K.deltah_update_arrays(gid, h, z, area, ids, smb)
    assert (res.size_cls == K.UNIFORM).all()
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(z1, z2)
    np.testing.assert_array_equal(res.solution.change, sol.change)


def test_fused_sparse_glacier_numbers_and_dtypes():
    """Glacier numbers far apart (binary search, no dense table), int16 ids, float32 fields."""
    gid, h, z, area, ids, smb = random_glaciers(3)
    big = np.where(gid > 0, gid.astype("int64") * 10_000_019, 0)
    fused = F.deltah_update_fused(big, h, z, area, ids * 10_000_019, smb)
    assert F._table(ids * 10_000_019)[1] is False
    assert_same(fused, K.deltah_update_arrays(gid, h, z, area, ids, smb))
    h32, z32, a32 = h.astype("float32"), z.astype("float32"), area.astype("float32")
    assert_same(F.deltah_update_fused(gid.astype("int16"), h32, z32, a32, ids, smb),
                K.deltah_update_arrays(gid, h32.astype("float64"), z32.astype("float64"),
                                       a32.astype("float64"), ids, smb))


def test_fused_ordered_with_foreign_pixels_inside_a_range():
    """Glaciers in order but interleaved with unlisted/unglaciated pixels (ranges are not contiguous)."""
    gid, h, z, area, ids, smb = random_glaciers(7, ordered=True, listed=0.6)
    gid = gid.copy()
    gid.ravel()[::7] = 0  # holes inside the glaciers' ranges
    ids = ids[np.isin(ids, gid)]
    smb = smb[: ids.size]
    fused = F.deltah_update_fused(gid, h, z, area, ids, smb)
    assert_same(fused, K.deltah_update_arrays(gid, h, z, area, ids, smb))


def test_fused_known_answer_hand_computed():
    """Same hand-computed case as the numpy kernel: 3 pixels, the terminus runs out of ice."""
    gid = np.array([[1, 1, 1]])
    h, z, area = np.array([[10.0, 10.0, 1.0]]), np.array([[3000.0, 2500.0, 2000.0]]), np.full((1, 3), 1e4)
    h_new, z_new, res = F.deltah_update_fused(gid, h, z, area, np.array([1]), np.array([-2.7]))
    np.testing.assert_allclose(res.target, [-9e4])
    np.testing.assert_allclose(h_new, [[6.0, 6.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(z_new, z - [[4.0, 4.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(res.solution.change, [-9e4], rtol=1e-12)
    np.testing.assert_allclose(res.solution.area, [2e4])


def test_deltah_update_uses_fused_kernel_unless_flox(monkeypatch):
    state = valley_state()
    smb = make_smb({1: -1.2, 2: -0.8, 3: -300.0, 4: 0.7})
    ref, rep_ref = deltah_update(state, smb)
    calls = []
    original = F.deltah_update_fused
    monkeypatch.setattr(F, "deltah_update_fused", lambda *a, **k: calls.append(1) or original(*a, **k))
    new, rep = deltah_update(state, smb)
    assert calls == [1]
    gathered, rep_g = deltah_update(state.chunk({"y": 5, "x": 7}), smb)  # dask: gathered pixels, fused
    assert calls == [1, 1]
    lazy, rep_lazy = deltah_update(state.chunk({"y": 5, "x": 7}), smb, engine="flox")  # the flox path
    assert calls == [1, 1]
    for v in ("thickness", "surface"):
        np.testing.assert_array_equal(gathered[v].values, new[v].values)
        np.testing.assert_allclose(lazy[v].values, new[v].values, rtol=1e-12, atol=1e-9)
        assert new[v].attrs["units"] == "m" and gathered[v].attrs == new[v].attrs
    for v in rep.data_vars:
        np.testing.assert_array_equal(rep_g[v].values, rep[v].values)
        np.testing.assert_allclose(rep_lazy[v].values, rep[v].values, rtol=1e-10, atol=1e-6)
    assert rep.attrs["solver_passes"] == rep_lazy.attrs["solver_passes"] == rep_g.attrs["solver_passes"]
    assert rep.disappeared.sel(glacier=3).item() == 1


def test_packed_numpy_equals_full_grid_dask():
    """Packed + fused (ordered path) == full grid on dask chunks (flox path)."""
    state = valley_state(3)
    smb = make_smb({1: -2.5, 2: -1.0, 3: 0.4, 4: -9.0})
    packed, index = pack_state(state, width=64)
    new_p, rep_p = deltah_update(packed, smb)
    new_d, rep_d = deltah_update(state.chunk({"y": 4, "x": 9}), smb, engine="flox")
    np.testing.assert_allclose(new_p.thickness.values.ravel()[: index.size],
                               new_d.thickness.values.ravel()[index], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(rep_p.volume_change.values, rep_d.volume_change.values, rtol=1e-10)


def test_fused_not_converged_warns_like_numpy():
    state = valley_state()
    smb = make_smb({1: -12.0, 4: -8.0})  # exhaustion needs several rounds
    with pytest.warns(RuntimeWarning, match="did not reach their volume change"):
        _, rep = deltah_update(state, smb, max_iter=1)
    with pytest.warns(RuntimeWarning, match="did not reach their volume change"):
        _, rep_d = deltah_update(state.chunk({"y": 6}), smb, max_iter=1, engine="flox")
    with pytest.warns(RuntimeWarning, match="did not reach their volume change"):
        _, rep_g = deltah_update(state.chunk({"y": 6}), smb, max_iter=1)
    assert rep.attrs["not_converged"] == rep_d.attrs["not_converged"] == rep_g.attrs["not_converged"] > 0
    np.testing.assert_allclose(rep.volume_change_unmet.values, rep_d.volume_change_unmet.values, rtol=1e-10)


@pytest.mark.parametrize("where", ["glacier", "off"])
def test_fused_path_rejects_negative_thickness(where):
    state = valley_state()
    h = state.thickness.values.copy()
    if where == "glacier":
        h[5, 3] = -1.0  # glacier 1
        match = r"Glacier indices \[1\].*thickness NaN or negative"
    else:
        h[22, 0] = -1.0  # no glacier
        match = "1 negative pixel"
    with pytest.raises(GeometryError, match=match):
        deltah_update(state.assign(thickness=(state.thickness.dims, h)), make_smb({1: -1.0, 2: -1.0}))


@PROPS
@given(small_glaciers(), st.dictionaries(st.integers(1, 3), curve_params, max_size=3), st.booleans())
def test_property_fused_equals_numpy_kernel_and_reference(case, curves, pack):
    state, smb = case
    if pack:
        state = pack_state(state, width=5)[0]
    gid, h, z, area = (state[v].values for v in ("glacier_id", "thickness", "surface", "pixel_area"))
    ids = np.array(sorted(smb), dtype="int64")
    values = np.array([smb[g] for g in ids], dtype="float64")
    cal = np.isin(ids, list(curves))
    coef = {k: np.array([curves[g][i] if g in curves else 0.0 for g in ids]) for i, k in
            enumerate(("gamma", "a", "b", "c"))}
    if ids.size == 0:
        return
    fused = F.deltah_update_fused(gid, h, z, area, ids, values, calibrated=cal, coefficients=coef)
    assert_same(fused, K.deltah_update_arrays(gid, h, z, area, ids, values, calibrated=cal, coefficients=coef),
                rtol=1e-9)
    ref = reference_update(gid, h, z, area, smb, curves={g: c for g, c in curves.items() if g in smb})
    np.testing.assert_allclose(fused[0], ref, rtol=1e-7, atol=1e-6)
    assert (fused[0] >= 0).all()
