"""Hypothesis strategies of glacier states, for property tests.

Needs ``hypothesis`` (a test dependency): :mod:`glacgrid.testing` does not import this module, so glacgrid
never needs hypothesis at run time.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ._geometry import make_state

__all__ = ["small_glaciers", "curve_params", "PROPS"]


@st.composite
def small_glaciers(draw):
    """A small random state (up to 7 x 7 pixels, 1-3 glaciers) and the SMB of some of its glaciers.

    Draws ``(state, smb)``: ``smb`` maps glacier index -> m w.e. (odd glaciers may have NaN).
    """
    ny, nx = draw(st.integers(2, 7)), draw(st.integers(2, 7))
    n = draw(st.integers(1, 3))
    gid = draw(hnp.arrays("int32", (ny, nx), elements=st.integers(0, n)))
    thick = draw(hnp.arrays("int64", (ny, nx), elements=st.integers(0, 80))) * 1.5
    thick[draw(hnp.arrays(bool, (ny, nx)))] = 0.0
    thick[gid == 0] = 0.0
    surface = draw(hnp.arrays("int64", (ny, nx), elements=st.integers(1500, 3500))) * 1.0
    area = draw(hnp.arrays("int64", (ny, nx), elements=st.integers(1, 300))) * 1e4
    present = sorted(set(np.unique(gid).tolist()) - {0})
    listed = draw(st.lists(st.sampled_from(present), unique=True, min_size=1)) if present else []
    smb = {g: draw(st.one_of(st.floats(-60, 8), st.just(np.nan)) if g % 2 else st.floats(-60, 8))
           for g in listed}
    return make_state(gid, thick, surface, area), smb


#: Delta-h curve coefficients ``(gamma, a, b, c)``.
curve_params = st.tuples(st.floats(0.5, 8), st.floats(-0.4, 0.3), st.floats(0, 1), st.floats(-0.1, 0.3))

#: Settings of the delta-h property tests.
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
