import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.downscale import _kernels
from glacgrid.downscale.biascorrect import QuantileMapping, skill
from glacgrid.exceptions import GridMismatchError, InputDataError, TimeAxisError

from glacgrid.testing import HEF, raise_if_dask_computes, requires_data


def _series(nyears=30, start="1981-01", seed=0, nx=3):
    rng = np.random.default_rng(seed)
    time = pd.date_range(start, periods=12 * nyears, freq="MS")
    vals = rng.gamma(2.0, 30.0, (time.size, 2, nx))
    return xr.DataArray(vals, dims=("time", "y", "x"),
                        coords={"time": time, "y": [1.0, 0.0], "x": np.arange(nx, dtype=float)})


def test_kernels_known_answers():
    month = np.repeat(np.arange(1, 13), 5)          # 5 values per month
    x = np.tile(np.arange(5.0), 12)[None, :]        # 0..4 in every month
    q = _kernels.qm_fit(x, month, np.linspace(0, 1, 5))
    np.testing.assert_allclose(q[0, 0], [0, 1, 2, 3, 4])
    ref_q = q + 10.0
    ref_q[0, 6] = q[0, 6] * 3                      # July: multiplicative factor 3 would apply
    y = _kernels.qm_apply(np.array([[0.5, 3.5, -2.0, 9.0]]), np.array([1, 1, 1, 1]), q, ref_q, "additive")
    np.testing.assert_allclose(y, [[10.5, 13.5, 8.0, 19.0]])   # + 10, also beyond the range
    ym = _kernels.qm_apply(np.array([[1.0, 2.5]]), np.array([7, 7]), q, ref_q, "multiplicative")
    np.testing.assert_allclose(ym, [[3.0, 7.5]])
    # zero quantiles give a factor of 1, never a division by zero
    y0 = _kernels.qm_apply(np.array([[0.0]]), np.array([7]), q, ref_q, "multiplicative")
    np.testing.assert_allclose(y0, [[0.0]])


def test_monthly_offsets_and_factors_are_recovered_out_of_sample():
    ref = _series(40)
    month = ref["time"].dt.month
    off = xr.DataArray(np.arange(12) - 6.0, dims="month", coords={"month": np.arange(1, 13)})
    sim_t = ref + off.sel(month=month).drop_vars("month")
    fac = xr.DataArray(1 + 0.05 * np.arange(12), dims="month", coords={"month": np.arange(1, 13)})
    sim_p = ref * fac.sel(month=month).drop_vars("month")
    fit = ("1981-01", "2000-12")
    for sim, kind in ((sim_t, "additive"), (sim_p, "multiplicative")):
        qm = QuantileMapping.fit(sim, ref, kind=kind, n_quantiles=51, period=fit)
        assert qm.period == ("1981-01-01", "2000-12-01")
        out = qm.apply(sim).sel(time=slice("2001", None))
        # an exact monotone transform per month: recovered exactly, also outside the fitted range
        np.testing.assert_allclose(out.values, ref.sel(time=slice("2001", None)).values, rtol=1e-5, atol=1e-3)


def test_distribution_is_matched_out_of_sample():
    ref = _series(60, seed=1)
    sim = 1.5 * ref**0.9 + 10.0                     # nonlinear, monotone distortion
    qm = QuantileMapping.fit(sim, ref, kind="multiplicative", period=("1981", "2010"))
    out = qm.apply(sim).sel(time=slice("2011", None))
    obs = ref.sel(time=slice("2011", None))
    before, after = skill(sim.sel(time=slice("2011", None)), obs), skill(out, obs)
    assert abs(after["bias"]) < 0.05 * abs(before["bias"])
    assert after["rmse"] < 0.2 * before["rmse"]  # measured 0.17: interpolation between 21 quantiles
    # quantiles of each calendar month match within the quantile-interpolation error
    for m in (1, 7):
        a = np.quantile(out.where(out["time"].dt.month == m, drop=True), [0.1, 0.5, 0.9])
        b = np.quantile(obs.where(obs["time"].dt.month == m, drop=True), [0.1, 0.5, 0.9])
        np.testing.assert_allclose(a, b, rtol=0.08)


def test_dask_equals_numpy_and_lazy():
    ref = _series(25, nx=5)
    sim = ref * 1.3 + 2.0
    qm_np = QuantileMapping.fit(sim, ref, kind="additive")
    with raise_if_dask_computes():
        qm = QuantileMapping.fit(sim.chunk({"x": 2, "time": 100}), ref.chunk({"x": 3}), kind="additive")
        lazy = qm.apply(sim.chunk({"x": 2, "y": 1}))
    assert lazy.chunks is not None and lazy.dims == ("time", "y", "x")
    np.testing.assert_allclose(lazy.values, qm_np.apply(sim).values, rtol=1e-6)


def test_errors():
    ref = _series(2)
    with pytest.raises(InputDataError, match="kind"):
        QuantileMapping.fit(ref, ref, kind="ratio")
    with pytest.raises(TimeAxisError, match="every month"):
        QuantileMapping.fit(ref, ref, period=("1981-01", "1981-06"))
    with pytest.raises(GridMismatchError, match="differ along 'x'"):
        QuantileMapping.fit(ref, ref.assign_coords(x=ref["x"] + 1))
    qm = QuantileMapping.fit(ref, ref)
    with pytest.raises(GridMismatchError):
        qm.apply(ref.isel(x=slice(0, 2)))
    with pytest.raises(TimeAxisError):
        QuantileMapping.fit(ref.isel(time=0), ref.isel(time=0))


@pytest.mark.slow
@requires_data("hef", "climate", "HISTALP_oetztal.nc")
def test_histalp_validation_table():
    """ERA5-Land downscaled to 42 HISTALP cells: QM fitted 1981-2000 improves 2001-2014 bias and RMSE."""
    from glacgrid.downscale.validation import histalp_validation

    tab = histalp_validation(HEF / "climate")
    assert tab.attrs["cells"] == 42
    ev = "eval 2001-01..2014-09"
    t_b, t_a = tab.loc[("temp", ev, "before")], tab.loc[("temp", ev, "after")]
    p_b, p_a = tab.loc[("prcp", ev, "before")], tab.loc[("prcp", ev, "after")]
    assert t_b["n"] == 42 * 165
    # measured: temp bias -1.90 -> -0.36 degC, RMSE 2.79 -> 0.91; prcp bias 28.2 -> 1.7 mm, RMSE 43.2 -> 32.2
    assert t_b["bias"] == pytest.approx(-1.90, abs=0.02) and t_a["bias"] == pytest.approx(-0.36, abs=0.02)
    assert t_a["rmse"] < 0.4 * t_b["rmse"] and t_a["r"] > t_b["r"]
    assert p_b["bias"] == pytest.approx(28.2, abs=0.3) and abs(p_a["bias"]) < 0.1 * p_b["bias"]
    assert p_a["rmse"] < 0.8 * p_b["rmse"]
    # in sample the monthly distributions match: bias ~0
    assert abs(tab.loc[("temp", "fit 1981-01..2000-12", "after"), "bias"]) < 0.01
