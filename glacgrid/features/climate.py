"""Climate predictors from downscaled monthly fields, for any leading dims (pixels, glaciers, points).

Per hydrological year: cumulative positive degree-days (CPDD) over the year and over a dynamic
ablation season, winter and summer snowfall, optionally the 12 monthly temperatures and snowfalls, and
anomalies of all of them against an explicit reference period. The monthly values of any ingested
ERA5-Land variable are sampled from the climate cube (:func:`era5_monthly_features`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..config import DownscaleParams
from ..exceptions import InputDataError, MissingVariableError
from ..glaciers import CLIMATE
from ..metadata import registry, stamp
from . import _kernels
from .hydro import HydroYear, hydrological_years, month_labels

__all__ = ["ClimateFeatureParams", "climate_from_monthly", "climate_stacked", "stacked_anomalies",
           "unstack_features", "climate_pixel_features", "anomalies",
           "era5_monthly_features", "stamp_feature"]

#: The periods of the year the predictors can be summed over (:attr:`ClimateFeatureParams.period`).
PERIODS = ("annual", "winter", "summer")
#: Default seasons (calendar months, inclusive, may wrap the new year) per hemisphere.
_SEASONS = {"north": ((10, 4), (5, 9)), "south": ((4, 10), (11, 3))}


def _months_between(bounds: tuple[int, int]) -> set[int]:
    a, b = (int(v) for v in bounds)
    return {((a - 1 + k) % 12) + 1 for k in range(((b - a) % 12) + 1)}


@dataclass(frozen=True)
class ClimateFeatureParams:
    """Science parameters of the climate predictors.

    Parameters
    ----------
    hydro : HydroYear
        Definition of the hydrological year (hemisphere, first month).
    winter, summer : (first, last) calendar months, inclusive, optional
        Snowfall seasons; may wrap the new year, e.g. ``(10, 4)`` = Oct-Apr. Defaults: north Oct-Apr /
        May-Sep, south Apr-Oct / Nov-Mar. They must not overlap.
    ablation : (f_start, f_end)
        Fractions (0..1) of the annual CPDD that open and close the dynamic ablation season.
    monthly : bool
        Also return the 12 monthly temperatures ``temp_<mon>`` (degC) and snowfalls ``snow_<mon>``.
    reference : (first, last) hydrological years, optional
        Reference period for anomalies; when given, every climate predictor also gets ``<name>_anom``.
    period : {"annual", "winter", "summer"}
        The months every sum is taken over: the whole hydrological year (default) or one of the two
        seasons, so that the winter and summer predictors add up to the annual ones (the predictors of a
        seasonal balance; :mod:`glacgrid.models.footprint`). Not with ``monthly``.
    """

    hydro: HydroYear = field(default_factory=HydroYear)
    winter: tuple[int, int] | None = None
    summer: tuple[int, int] | None = None
    ablation: tuple[float, float] = (0.1, 0.9)
    monthly: bool = False
    reference: tuple[int, int] | None = None
    period: str = "annual"

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise InputDataError(f"period must be one of {list(PERIODS)}; got {self.period!r}.")
        if self.period != "annual" and self.monthly:
            raise InputDataError(f"period={self.period!r} sums the predictors over the season's months; the 12 "
                                 "monthly temperatures (monthly=True) are not sums. Use one or the other.")
        for name in ("winter", "summer"):
            b = getattr(self, name)
            if b is not None and (len(b) != 2 or not all(isinstance(v, (int, np.integer)) and 1 <= v <= 12 for v in b)):
                raise InputDataError(f"{name} must be (first, last) calendar months in 1..12, got {b!r}.")
        w, s = self.seasons()
        if w & s:
            raise InputDataError(f"winter {sorted(w)} and summer {sorted(s)} share months {sorted(w & s)}; "
                                 "give non-overlapping seasons.")
        f0, f1 = self.ablation
        if not 0.0 <= f0 < f1 <= 1.0:
            raise InputDataError(f"ablation fractions must satisfy 0 <= start < end <= 1, got {self.ablation!r}.")
        if self.reference is not None and (len(self.reference) != 2 or self.reference[0] > self.reference[1]):
            raise InputDataError(f"reference must be (first, last) years with first <= last, got {self.reference!r}.")

    def seasons(self) -> tuple[set[int], set[int]]:
        """Calendar months of the winter and summer seasons."""
        dw, ds = _SEASONS[self.hydro.hemisphere]
        return _months_between(self.winter or dw), _months_between(self.summer or ds)

    def masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(12,) boolean winter and summer masks in hydrological-year month order."""
        w, s = self.seasons()
        cal = self.hydro.calendar_months()
        return np.isin(cal, sorted(w)), np.isin(cal, sorted(s))

    def within(self) -> np.ndarray | None:
        """(12,) boolean mask of the period's months in hydrological-year order; None for ``annual``."""
        if self.period == "annual":
            return None
        winter, summer = self.masks()
        return winter if self.period == "winter" else summer

    @property
    def fraction(self) -> float:
        """Share of the year's months the period covers (1 for ``annual``)."""
        within = self.within()
        return 1.0 if within is None else float(within.sum()) / 12.0

    def names(self) -> list[str]:
        """Names of the climate predictors these parameters produce, in order."""
        out = list(CLIMATE)  # the annual predictors, in kernel order
        if self.monthly:
            mons = month_labels(self.hydro)
            out += [f"temp_{m}" for m in mons] + [f"snow_{m}" for m in mons]
        if self.reference is not None:
            out += [f"{n}_anom" for n in out]
        return out


def stamp_feature(da: xr.DataArray, name: str) -> xr.DataArray:
    """Stamp a feature from the registry; ``<base>_<mon>`` and ``<base>_anom`` use their family entry.

    Monthly features use ``temp_month``/``snow_month`` (or the ERA5-Land variable's own entry), and
    anomalies ``<family>_anomaly`` when registered (else the family's units); the month is added to the
    long name.
    """
    reg = registry()
    if name in reg:
        return stamp(da, name)
    anom = name.endswith("_anom")
    base = name[:-5] if anom else name
    head, _, mon = base.rpartition("_")
    family = base if base in reg else (f"{head}_month" if f"{head}_month" in reg else head)
    if family not in reg:
        raise InputDataError(f"Feature {name!r} has no entry (nor family {family!r}) in variables.toml.")
    key = f"{family}_anomaly" if anom and f"{family}_anomaly" in reg else family
    out = stamp(da, key).rename(name)
    extra = []
    if mon and family != base:
        extra.append(mon.capitalize())
    if anom and key == family:
        extra.append("anomaly against the reference period")
    if extra:
        out.attrs["long_name"] = f"{out.attrs['long_name']} ({', '.join(extra)})"
    return out


def _one_month_chunk(da: xr.DataArray) -> xr.DataArray:
    """``da`` with its 12 months in one chunk; only the data is rechunked (``.chunk`` would also turn
    numpy coordinates into dask arrays, which later merges compute to compare)."""
    if da.chunks is None:
        return da
    return da.copy(data=da.data.rechunk({da.get_axis_num("month"): -1}))


def climate_stacked(temp: xr.DataArray, prcp: xr.DataArray, days: xr.DataArray, params: ClimateFeatureParams,
                    snow_threshold: float, rain_threshold: float) -> xr.DataArray:
    """Climate predictors (no anomalies) as one array ``(..., feature)`` from ``(year, month, ...)`` inputs.

    One kernel call per block computes every predictor; lazy with dask inputs.
    """
    temp, prcp = _one_month_chunk(temp), _one_month_chunk(prcp)
    winter, summer = params.masks()
    names = [n for n in params.names() if not n.endswith("_anom")]
    out = xr.apply_ufunc(
        _kernels.climate_stack, temp, prcp, days,
        kwargs={"winter": winter, "summer": summer, "snow_threshold": snow_threshold,
                "rain_threshold": rain_threshold, "ablation": tuple(params.ablation), "monthly": params.monthly,
                "within": params.within()},
        input_core_dims=[["month"], ["month"], ["month"]], output_core_dims=[["feature"]],
        dask="parallelized", output_dtypes=["float32"], dask_gufunc_kwargs={"output_sizes": {"feature": len(names)}},
    )
    return out.assign_coords(feature=names)


def _check_reference(years: np.ndarray, reference: tuple[int, int]) -> tuple[int, int]:
    """``reference`` (first, last) when both lie inside the computed ``years``; else InputDataError."""
    a, b = reference
    if a < years.min() or b > years.max():
        raise InputDataError(f"The reference period {a}-{b} is not inside the computed years "
                             f"{years.min()}-{years.max()}; widen the period or pick another reference.")
    return a, b


def stacked_anomalies(stacked: xr.DataArray, reference: tuple[int, int]) -> xr.DataArray:
    """Anomalies ``<name>_anom`` of a stacked ``(year, ..., feature)`` array against the ``reference`` years."""
    a, b = _check_reference(stacked["year"].values, reference)
    anom = (stacked - stacked.sel(year=slice(a, b)).mean("year")).astype(stacked.dtype)
    return anom.assign_coords(feature=[f"{n}_anom" for n in stacked["feature"].values])


def unstack_features(stacked: xr.DataArray, reference: tuple[int, int] | None = None) -> xr.Dataset:
    """A stacked ``(..., feature)`` array as a Dataset of stamped feature variables."""
    ds = stacked.to_dataset("feature")
    out = {}
    for k in stacked["feature"].values:
        da = stamp_feature(ds[k], str(k))
        if reference is not None and str(k).endswith("_anom"):
            da.attrs["reference_period"] = f"{reference[0]}-{reference[1]}"
        out[str(k)] = da
    return xr.Dataset(out)


def climate_from_monthly(temp: xr.DataArray, prcp: xr.DataArray, days: xr.DataArray,
                         params: ClimateFeatureParams, snow_threshold: float, rain_threshold: float) -> xr.Dataset:
    """Climate predictors from monthly temperature (degC) and precipitation (kg m-2) on ``(year, month, ...)``.

    Works for any other dims (pixels, glaciers, points); lazy with dask inputs. No anomalies (see
    :func:`anomalies`).
    """
    return unstack_features(climate_stacked(temp, prcp, days, params, snow_threshold, rain_threshold))


def anomalies(ds: xr.Dataset, reference: tuple[int, int]) -> xr.Dataset:
    """``<name>_anom`` = value minus its mean over the hydrological years ``reference`` (inclusive)."""
    a, b = _check_reference(ds["year"].values, reference)
    ref = ds.sel(year=slice(a, b)).mean("year")
    out = {}
    for name in ds.data_vars:
        da = (ds[name] - ref[name]).astype("float32")
        out[f"{name}_anom"] = stamp_feature(da, f"{name}_anom").assign_attrs(reference_period=f"{a}-{b}")
    return xr.Dataset(out)


def _surface_climate(down: xr.Dataset, surface: xr.DataArray, params: DownscaleParams,
                     features: ClimateFeatureParams, start: int, end: int) -> xr.DataArray:
    """Stacked climate predictors on ``surface`` for ``start..end`` widened to the reference period."""
    lapse = float(down.attrs.get("lapse_rate", params.lapse_rate))
    temp = down["temp"] + lapse * (surface - down["reference_elevation"]).astype("float32")
    lo, hi = start, end
    if features.reference is not None:
        lo, hi = min(lo, features.reference[0]), max(hi, features.reference[1])
    hy, days = hydrological_years(xr.Dataset({"temp": temp, "prcp": down["prcp"]}), lo, hi, hydro=features.hydro)
    return climate_stacked(hy["temp"], hy["prcp"], days, features, params.snow_threshold, params.rain_threshold)


def climate_pixel_features(down: xr.Dataset, surface: xr.DataArray, params: DownscaleParams, *,
                           start: int, end: int, hemisphere: str = "north",
                           features: ClimateFeatureParams | None = None) -> xr.Dataset:
    """Climate predictors per pixel and hydrological year (lazy).

    Temperature is moved from ``down.reference_elevation`` to ``surface`` with the lapse rate the
    downscaled cube was built with (``down.attrs['lapse_rate']``, else ``params.lapse_rate``), so an
    evolving surface changes the predictors consistently. With ``features.reference`` outside
    ``start..end`` the reference years are computed as well and dropped from the result.
    """
    features = features or ClimateFeatureParams(HydroYear(hemisphere))
    stacked = _surface_climate(down, surface, params, features, start, end)
    return _finish(stacked, features, start, end)


def _finish(stacked: xr.DataArray, features: ClimateFeatureParams, start: int, end: int) -> xr.Dataset:
    """Add anomalies to a stacked climate array, select ``start..end`` and unstack into a Dataset."""
    if features.reference is not None:
        stacked = xr.concat([stacked, stacked_anomalies(stacked, features.reference)], dim="feature")
    return unstack_features(stacked.sel(year=slice(start, end)), features.reference)


def era5_monthly_features(cube: xr.Dataset, lon: xr.DataArray, lat: xr.DataArray, variables, *,
                          start: int, end: int, hydro: HydroYear = HydroYear()) -> xr.Dataset:
    """Monthly values ``<var>_<mon>`` of ERA5-Land cube variables, bilinear at ``lon``/``lat`` (any dims).

    The cube (coarse, dims ``time, lat, lon``) is loaded per variable; the targets stay lazy. Values
    keep the cube's units (registry names of :data:`glacgrid.ingest.ERA5LAND_MONTHLY`).
    """
    missing = [v for v in variables if v not in cube]
    if missing:
        raise MissingVariableError(f"ERA5-Land variables {missing} are not in the cube (has {list(cube.data_vars)}); "
                                   "ingest them with --variables.")
    hy, _ = hydrological_years(cube[list(variables)], start, end, hydro=hydro)
    clat, clon = np.asarray(cube["lat"].values, "float64"), np.asarray(cube["lon"].values, "float64")
    mons = month_labels(hydro)
    out = {}
    for var in variables:
        field = np.asarray(hy[var].transpose("year", "month", "lat", "lon").values, dtype="float64")

        def sample(la, lo, field=field):
            j, wy = _kernels.bilinear_index(clat, la)
            i, wx = _kernels.bilinear_index(clon, lo)
            f = field  # (year, month, nlat, nlon)
            v = ((1 - wy) * (1 - wx) * f[..., j, i] + (1 - wy) * wx * f[..., j, i + 1 if clon.size > 1 else i]
                 + wy * (1 - wx) * f[..., j + 1 if clat.size > 1 else j, i]
                 + wy * wx * f[..., j + 1 if clat.size > 1 else j, i + 1 if clon.size > 1 else i])
            return np.moveaxis(v, (0, 1), (-2, -1)).astype("float32")

        da = xr.apply_ufunc(sample, lat, lon, output_core_dims=[["year", "month"]], dask="parallelized",
                            output_dtypes=["float32"],
                            dask_gufunc_kwargs={"output_sizes": {"year": field.shape[0], "month": 12}})
        da = da.assign_coords(year=hy["year"].values)
        for k, mon in enumerate(mons):
            out[f"{var}_{mon}"] = stamp_feature(da.isel(month=k, drop=True), f"{var}_{mon}")
    return xr.Dataset(out)
