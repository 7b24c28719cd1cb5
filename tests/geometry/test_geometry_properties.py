"""Property tests (hypothesis) of the delta-h update: mass conservation, no negative thickness,
monotone response to SMB, chunking invariance, equality with a simple reference implementation."""

from __future__ import annotations

import numpy as np
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glacgrid.geometry import _kernels as K
from glacgrid.geometry import deltah_update, evolve
from glacgrid.testing._deltah import reference_deltah_loop as reference_update
from glacgrid.testing._geometry import achieved, curves_dataset, make_smb, sums_by_id
from glacgrid.testing.strategies import PROPS, curve_params, small_glaciers


def smb_of(smb):
    return make_smb(smb) if smb else make_smb({}).astype("float64")


@PROPS
@given(small_glaciers(), st.dictionaries(st.integers(1, 3), curve_params, max_size=3))
def test_property_matches_reference_and_conserves(case, curves):
    state, smb = case
    curves = {g: c for g, c in curves.items() if (state.glacier_id == g).any()}
    new, report = deltah_update(state, smb_of(smb), curves=curves_dataset(curves) if curves else None)
    h = new.thickness.values
    ref = reference_update(state.glacier_id.values, state.thickness.values, state.surface.values,
                           state.pixel_area.values, smb, curves=curves)
    np.testing.assert_allclose(h, ref, rtol=1e-7, atol=1e-6)
    assert (h >= 0).all()  # no negative thickness
    n = int(state.glacier_id.max())
    got = achieved(state, new, n)
    v0 = sums_by_id(state.glacier_id.values, (state.thickness * state.pixel_area).values, n)
    for g, b in smb.items():  # mass conservation, or all ice lost and reported
        target = report.volume_change_target.sel(glacier=g).item()
        if np.isnan(b):
            assert got[g] == 0.0 and np.isnan(target)
        elif -target >= v0[g]:
            np.testing.assert_allclose(got[g], -v0[g], rtol=1e-12)
            assert report.disappeared.sel(glacier=g).item() == 1
            np.testing.assert_allclose(report.volume_change_unmet.sel(glacier=g).item(), target + v0[g],
                                       rtol=1e-9, atol=1e-6)
        else:
            np.testing.assert_allclose(got[g], target, rtol=1e-9, atol=1e-6)
            assert report.volume_change_unmet.sel(glacier=g).item() == 0.0
        np.testing.assert_allclose(report.volume_change.sel(glacier=g).item(), got[g], rtol=1e-9, atol=1e-6)


@PROPS
@given(small_glaciers(), st.floats(0, 30))
def test_property_monotone_in_smb(case, extra_loss):
    state, smb = case
    smb = {g: (0.0 if np.isnan(b) else b) for g, b in smb.items()}
    if not smb:
        return
    gid, h, z, a = (state[v].values for v in ("glacier_id", "thickness", "surface", "pixel_area"))
    ids = np.array(sorted(smb))
    b = np.array([smb[g] for g in ids])
    h1 = K.deltah_update_arrays(gid, h, z, a, ids, b)[0]
    h2 = K.deltah_update_arrays(gid, h, z, a, ids, b - extra_loss)[0]
    assert (h2 <= h1 + 1e-6).all()
    assert (h2 >= 0).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_glaciers(), st.data())
def test_property_chunking_invariance(case, data):
    """Any chunking (sizes that do not divide the grid included) gives the numpy result."""
    state, smb = case
    ny, nx = state.sizes["y"], state.sizes["x"]
    chunks = {"y": data.draw(st.integers(1, ny)), "x": data.draw(st.integers(1, nx))}
    ref, rep_ref = deltah_update(state, smb_of(smb))
    new, rep = deltah_update(state.chunk(chunks), smb_of(smb))
    assert new.thickness.chunks is not None
    for v in ("thickness", "surface"):
        np.testing.assert_allclose(new[v].values, ref[v].values, rtol=1e-12, atol=1e-9)
    for v in ("volume_change", "glacier_area", "disappeared"):
        np.testing.assert_allclose(rep[v].values, rep_ref[v].values, rtol=1e-10, atol=1e-6)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_glaciers(), st.lists(st.floats(-15, 5), min_size=2, max_size=4))
def test_property_evolve_conserves_over_years(case, series):
    """Over several years: Σ achieved = Σ (SMB · area at the start of each year · ρw/ρi) − Σ unmet."""
    state, smb = case
    ids = sorted(smb)
    if not ids:
        return
    smb_y = xr.DataArray([[b] * len(ids) for b in series], dims=("year", "glacier"),
                         coords={"year": 2000 + np.arange(len(series)), "glacier": ids})
    final, rep = evolve(state, smb_y)
    n = int(state.glacier_id.max())
    got = achieved(state, final, n)[ids]
    target = (rep.volume_change_target.fillna(0) - rep.volume_change_unmet).sum("year").values
    np.testing.assert_allclose(got, target, rtol=1e-9, atol=1e-5)
    np.testing.assert_allclose(rep.volume_change.sum("year").values, got, rtol=1e-9, atol=1e-5)
    assert (final.thickness.values >= 0).all()
    gone = rep.disappeared_year.values
    for i, g in enumerate(ids):  # a glacier that disappeared has no ice left, and vice versa
        had_ice = bool(((state.glacier_id == g) & (state.thickness > 0)).any())
        has_ice = bool(((final.glacier_id == g) & (final.thickness > 0)).any())
        assert (gone[i] != -1) == (had_ice and not has_ice)
