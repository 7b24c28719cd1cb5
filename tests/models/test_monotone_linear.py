"""Monotone linear models: non-negative coefficients in the monotone basis (glacgrid.models.physics).

A linear model with the profile products (``cpdd_low`` = cpdd x (1 - elevation_norm), ``snow_winter_dz`` =
snow_winter x height) responds to warming at a pixel with ``coef(cpdd) + coef(cpdd_low) * (1 - elevation_norm)``:
an unconstrained fit can make that positive at the glacier tops (more melt, more mass). Known answer: data
whose least-squares fit does exactly that; the monotone fit keeps every pixel's response non-positive (and
the snowfall response non-negative at every height), and check_physics, which moves each product with its
base, finds the violations of the free fit and none of the monotone one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glacgrid.exceptions import ModelError
from glacgrid.features import FeatureSchema
from glacgrid.models import load_model, make_model
from glacgrid.models.physics import check_physics, is_monotone, monotone_basis, product_factor_ranges

NAMES = ("cpdd", "snow_winter", "cpdd_low", "snow_winter_dz", "elevation_norm")
UNITS = ("K d", "kg m-2", "K d", "kg m-2 km", "1")


def _pixels(n=4000, seed=0):
    """Pixel rows whose SMB is, by construction, non-physical at the top: +0.0005 per degree-day at
    elevation_norm = 1 (and -0.0045 on the tongue); snowfall counts less high up, and against the mass at
    the top (+0.003 per kg m-2 at the lowest pixel, -0.0006 at the highest)."""
    rng = np.random.default_rng(seed)
    en = rng.uniform(0.0, 1.0, n)
    dz = -0.6 + 1.2 * en  # height above 3,000 m (km)
    cpdd = rng.uniform(200.0, 1500.0, n) * (1.3 - en)
    sw = rng.uniform(500.0, 1500.0, n)
    X = np.column_stack([cpdd, sw, cpdd * (1 - en), sw * dz, en])
    y = 0.0005 * cpdd - 0.005 * cpdd * (1 - en) + 0.0012 * sw - 0.003 * sw * dz + 0.3 * en + rng.normal(0, 0.05, n)
    return X, y, en, dz


@pytest.mark.parametrize("kind", ["ols", "lasso", "ridge"])
def test_the_monotone_fit_keeps_every_pixels_response_physical(kind, tmp_path):
    X, y, en, dz = _pixels()
    schema = FeatureSchema(NAMES, UNITS)
    free = make_model(kind).fit(X, y, schema)
    mono = make_model(kind, monotone=True).fit(X, y, schema)
    c, m = dict(zip(NAMES, free.coef_)), dict(zip(NAMES, mono.coef_))
    assert c["cpdd"] > 3e-4  # the free fit reproduces the top's wrong sign
    # the monotone one: the response to degree days <= 0 at the top (factor 0) and on the tongue (factor 1)
    assert m["cpdd"] <= 1e-12 and m["cpdd"] + m["cpdd_low"] <= 1e-12
    # and to snowfall >= 0 at the lowest and the highest pixel
    assert min(m["snow_winter"] + m["snow_winter_dz"] * d for d in (dz.min(), dz.max())) >= -1e-12
    assert c["snow_winter"] + c["snow_winter_dz"] * dz.max() < 0  # (the free fit: negative at the top)
    # check_physics moves the products with their base: violations for the free fit, none for the monotone one
    table = pd.DataFrame(X, columns=NAMES)
    assert check_physics(free, table).violations[0].rows_violating > 0
    report = check_physics(mono, table)
    assert report.total_violations == 0 and report.monotone and {v.feature for v in report.violations} == \
        {"cpdd", "snow_winter"}
    # the constraint costs a little fit, not much: the data are nearly physical below the top
    rmse = [float(np.sqrt(np.mean((mdl.predict(X) - y) ** 2))) for mdl in (free, mono)]
    assert rmse[0] < rmse[1] < rmse[0] + 0.1
    mono.to_artifact(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert is_monotone(back) and np.array_equal(back.coef_, mono.coef_)


def test_the_monotone_basis_and_factor_ranges():
    X, _, en, dz = _pixels(500)
    ranges = product_factor_ranges(X, NAMES)
    assert ranges["cpdd_low"] == (0.0, 1.0)  # every pixel's 1 - elevation_norm, whatever the rows hold
    assert ranges["snow_winter_dz"] == pytest.approx((dz.min(), dz.max()))
    M = monotone_basis(NAMES, ranges)
    # cpdd & cpdd_low: 2 columns, snow_winter & snow_winter_dz: 2, elevation_norm (free): 2
    assert M.shape == (5, 6)
    # non-negative coefficients in the basis give the pixel responses at both ends of the factor's range
    coef = M @ np.array([1.0, 3.0, 0.2, 0.7, 0.5, 0.0])  # (pairs in CLIMATE_PRODUCTS order: snow, then cpdd)
    lo, hi = ranges["cpdd_low"]
    assert coef[0] + coef[2] * lo == pytest.approx(-0.2) and coef[0] + coef[2] * hi == pytest.approx(-0.7)
    lo, hi = ranges["snow_winter_dz"]
    assert coef[1] + coef[3] * lo == pytest.approx(1.0) and coef[1] + coef[3] * hi == pytest.approx(3.0)
    assert coef[4] == pytest.approx(0.5)
    with pytest.raises(ModelError, match="none of the features"):
        make_model("ols", monotone=True).fit(X[:, [4]], X[:, 0], FeatureSchema(("elevation_norm",), ("1",)))
