"""Empirical quantile mapping per calendar month: fit on an overlap period, apply anywhere.

Fit once, apply many (as ``xesmf.Regridder``): :meth:`QuantileMapping.fit` computes, for every
location and calendar month, the empirical quantiles of the simulated and the reference series over
the overlap period; :meth:`QuantileMapping.apply` maps any simulated series (e.g. outside the overlap
period) through them. Temperature uses the additive form, precipitation the multiplicative one.
The numpy kernels are :func:`glacgrid.downscale._kernels.qm_fit` / ``qm_apply``; here they run through
``xr.apply_ufunc(dask="parallelized")`` with ``time`` as the core dimension, blockwise in space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ..exceptions import GridMismatchError, InputDataError, TimeAxisError
from ..metadata import provenance
from . import _kernels

__all__ = ["QuantileMapping", "skill"]

KINDS = ("additive", "multiplicative")


def _month(da: xr.DataArray) -> xr.DataArray:
    if "time" not in da.dims:
        raise TimeAxisError(f"Quantile mapping needs a 'time' dimension; got dims {da.dims}.")
    return da["time"].dt.month.astype("int64")


def _one_time_chunk(da: xr.DataArray) -> xr.DataArray:
    return da.chunk({"time": -1}) if da.chunks is not None else da


@dataclass(frozen=True)
class QuantileMapping:
    """A fitted monthly quantile mapping.

    Attributes
    ----------
    sim_q, ref_q : DataArray
        Quantiles of the simulated and reference series on ``(*space, month, quantile)``.
    kind : {"additive", "multiplicative"}
    period : (str, str)
        First and last time of the fitting (overlap) period.
    """

    sim_q: xr.DataArray
    ref_q: xr.DataArray
    kind: str
    period: tuple[str, str]

    @classmethod
    def fit(cls, sim: xr.DataArray, ref: xr.DataArray, *, kind: str = "additive", n_quantiles: int = 21,
            period: tuple[str, str] | None = None) -> "QuantileMapping":
        """Fit on the overlap of ``sim`` and ``ref`` (same non-time dims and coordinates).

        Parameters
        ----------
        sim, ref : DataArray
            Monthly series with a ``time`` dimension (units must agree: e.g. degC or kg m-2).
        kind : {"additive", "multiplicative"}
            Additive for temperature, multiplicative for precipitation.
        n_quantiles : int
            Quantiles 0, 1/(n-1), ..., 1 per calendar month (21: every 5 %).
        period : (start, end), optional
            Fitting period (inclusive, anything ``.sel(time=slice(...))`` takes); default the times
            present in both series.
        """
        if kind not in KINDS:
            raise InputDataError(f"kind must be one of {KINDS}; got {kind!r}.")
        if n_quantiles < 3:
            raise InputDataError(f"n_quantiles must be >= 3; got {n_quantiles}.")
        _month(sim), _month(ref)
        if set(sim.dims) != set(ref.dims):
            raise GridMismatchError(f"sim has dims {sim.dims}, ref {ref.dims}; regrid one onto the other first.")
        common = np.intersect1d(sim["time"].values, ref["time"].values)
        if period is not None:
            common = common[(common >= np.datetime64(pd.Timestamp(period[0]))) & (common <= np.datetime64(pd.Timestamp(period[1])))]
        months = set(pd.DatetimeIndex(common).month)
        if len(common) == 0 or months != set(range(1, 13)):
            raise TimeAxisError(
                f"The fitting period has {len(common)} common time steps covering months {sorted(months)}; "
                "quantile mapping per calendar month needs every month, ideally 20+ years. Widen the period."
            )
        sim_f, ref_f = sim.sel(time=common), ref.sel(time=common)
        for d in sim.dims:
            if d != "time" and not np.array_equal(sim_f[d].values, ref_f[d].values):
                raise GridMismatchError(f"sim and ref differ along {d!r}; put them on the same locations.")
        q = np.linspace(0.0, 1.0, n_quantiles)

        def fit_one(da):
            return xr.apply_ufunc(_kernels.qm_fit, _one_time_chunk(da), _month(da), kwargs={"quantiles": q},
                                  input_core_dims=[["time"], ["time"]], output_core_dims=[["month", "quantile"]],
                                  dask="parallelized", output_dtypes=["float64"],
                                  dask_gufunc_kwargs={"output_sizes": {"month": 12, "quantile": q.size}})

        coords = {"month": np.arange(1, 13), "quantile": q}
        sim_q = fit_one(sim_f).assign_coords(coords)
        ref_q = fit_one(ref_f).assign_coords(coords)
        t = pd.DatetimeIndex(common)
        return cls(sim_q, ref_q, kind, (str(t[0].date()), str(t[-1].date())))

    def apply(self, sim: xr.DataArray) -> xr.DataArray:
        """Corrected ``sim`` (lazy when ``sim`` is dask; ``time`` in one chunk per block).

        Locations whose fitted quantiles are NaN (no data in some calendar month) give NaN.
        """
        month = _month(sim)
        for d in self.sim_q.dims:
            if d in ("month", "quantile"):
                continue
            if d not in sim.dims or not np.array_equal(sim[d].values, self.sim_q[d].values):
                raise GridMismatchError(f"The series to correct differs from the fitted one along {d!r}.")
        out = xr.apply_ufunc(_kernels.qm_apply, _one_time_chunk(sim), month, self.sim_q, self.ref_q,
                             kwargs={"kind": self.kind},
                             input_core_dims=[["time"], ["time"], ["month", "quantile"], ["month", "quantile"]],
                             output_core_dims=[["time"]], dask="parallelized", output_dtypes=["float32"])
        out = out.transpose(*sim.dims)
        out.attrs = dict(sim.attrs)
        hist = provenance("quantile_mapping", kind=self.kind, period=self.period,
                          n_quantiles=self.sim_q.sizes["quantile"])
        out.attrs["history"] = (out.attrs["history"] + "\n" + hist) if out.attrs.get("history") else hist
        return out.rename(sim.name)


def skill(sim: xr.DataArray, ref: xr.DataArray) -> dict[str, float]:
    """Bias (mean sim - ref), RMSE and Pearson r over all common values (NaN pairs skipped)."""
    s, r = xr.align(sim, ref, join="inner")
    a = np.asarray(s.values, dtype="float64").ravel()
    b = np.asarray(r.values, dtype="float64").ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        raise InputDataError(f"Only {int(ok.sum())} common finite values to compare; check that the series overlap.")
    a, b = a[ok], b[ok]
    return {"bias": float((a - b).mean()), "rmse": float(np.sqrt(((a - b) ** 2).mean())),
            "r": float(np.corrcoef(a, b)[0, 1]), "n": int(ok.sum())}
