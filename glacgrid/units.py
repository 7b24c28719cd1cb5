"""Units at the boundary: the conversions glacgrid applies when data enters or leaves.

All conversions live here, in one place, with their physical constants. Stage code receives arrays
already in the registry's units (``variables.toml``) and never converts by itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import xarray as xr

from .exceptions import UnitsError

__all__ = ["G0", "RHO_WATER", "SECONDS_PER_DAY", "T0", "M2_PER_KM2", "M3_PER_KM3", "METRES_PER_DEGREE", "canonical", "require_units",
           "factor", "convert", "m2_to_km2", "m3_to_km3", "km3_to_m3", "mm_we_to_m_we", "days_in_month",
           "era5_daily_accumulation_to_monthly_amount", "era5_daily_energy_to_flux", "geopotential_to_height",
           "kelvin_to_celsius"]

#: Standard gravity (m s-2), WMO / ECMWF convention, for geopotential -> height.
G0 = 9.80665
#: Density of liquid water (kg m-3); 1 kg m-2 of water is 1 mm w.e.
RHO_WATER = 1000.0
#: Seconds per day, for ERA5-Land per-day accumulations -> W m-2.
SECONDS_PER_DAY = 86400.0
#: 0 degC in K.
T0 = 273.15
#: Square metres per square kilometre (for numba kernels, which cannot call :func:`convert`).
M2_PER_KM2 = 1e6
#: Cubic metres per cubic kilometre.
M3_PER_KM3 = 1e9
#: Metres per degree of latitude, rounded: an approximation used only for crop margins on geographic grids.
METRES_PER_DEGREE = 111_000.0

# Spellings of the same unit found in ERA5 / ERA5-Land files and CF files.
_ALIASES = {
    "K": {"K", "kelvin", "Kelvin", "degK"},
    "degC": {"degC", "°C", "C", "celsius", "deg_C", "degrees_Celsius"},
    "m": {"m", "metre", "meter", "metres", "meters", "m of water equivalent"},
    "m2 s-2": {"m**2 s**-2", "m2 s-2", "m^2 s^-2", "m2/s2"},
    "J m-2": {"J m**-2", "J m-2", "J/m2"},
    "W m-2": {"W m**-2", "W m-2", "W/m2"},
    "kg m-2": {"kg m**-2", "kg m-2", "kg/m2", "mm"},
    "1": {"1", "(0 - 1)", "0-1", "", "dimensionless", "~"},
}


def canonical(units: str | None) -> str | None:
    """The canonical spelling of ``units`` (e.g. ``'m**2 s**-2'`` -> ``'m2 s-2'``), or None."""
    if units is None:
        return None
    u = str(units).strip()
    for canon, spellings in _ALIASES.items():
        if u in spellings:
            return canon
    return None


def require_units(da: xr.DataArray, expected: str, *, source: str = "") -> None:
    """Raise :class:`UnitsError` unless ``da`` carries units equivalent to ``expected``."""
    got = da.attrs.get("units")
    known = canonical(got), canonical(expected)
    # units the alias table knows compare by meaning; any other spelling must match exactly
    same = known[0] == known[1] if None not in known else str(got).strip() == expected.strip()
    if not same:
        where = f" in {source}" if source else ""
        raise UnitsError(
            f"Variable {da.name!r}{where} has units {got!r}; expected {expected!r}. "
            "Convert it, or fix the 'units' attribute if the values are already in those units."
        )


def days_in_month(time: xr.DataArray) -> xr.DataArray:
    """Number of days of each month stamped in ``time`` (a datetime coordinate)."""
    return time.dt.days_in_month.astype("float64")


def era5_daily_accumulation_to_monthly_amount(da: xr.DataArray) -> xr.DataArray:
    """ERA5-Land monthly mean of a daily accumulation in metres of water per day -> kg m-2 per month.

    ERA5-Land monthly means of accumulated fields (tp, sf, smlt) are mean *daily* amounts, labelled
    ``m``. The monthly total is the value times the days in the month, and 1 m of water is 1000 kg m-2.
    """
    return da * days_in_month(da["time"]) * RHO_WATER


def era5_daily_energy_to_flux(da: xr.DataArray) -> xr.DataArray:
    """ERA5-Land monthly mean of a daily energy accumulation (J m-2 per day) -> W m-2."""
    return da / SECONDS_PER_DAY


def geopotential_to_height(da: xr.DataArray) -> xr.DataArray:
    """Geopotential (m2 s-2) -> height above the geoid (m)."""
    return da / G0


def kelvin_to_celsius(da: xr.DataArray) -> xr.DataArray:
    """K -> degC."""
    return da - T0


def mm_we_to_m_we(values: np.ndarray | float) -> np.ndarray | float:
    """Millimetres of water equivalent (kg m-2) -> metres of water equivalent."""
    return np.asarray(values, dtype="float64") / RHO_WATER if np.ndim(values) else float(values) / RHO_WATER


@lru_cache(maxsize=None)
def factor(source: str, target: str) -> float:
    """The factor that converts a value in ``source`` units to ``target`` units (pint, through
    cf-xarray's registry, which reads CF spellings such as ``kg m-2`` and ``km2``).

    Raises :class:`UnitsError` for units pint does not know or that are not of the same dimension.
    """
    import pint
    from cf_xarray.units import units as ureg

    try:
        return float(ureg.Quantity(1.0, source).to(target).magnitude)
    except (pint.UndefinedUnitError, pint.DimensionalityError) as err:
        raise UnitsError(f"Cannot convert {source!r} to {target!r}: {err}. Use CF unit strings "
                         "(e.g. 'm2', 'km3', 'kg m-2').") from err


def convert(values, source: str, target: str):
    """``values`` (scalar, numpy, xarray or dask) from ``source`` to ``target`` units.

    A factor that is the inverse of a whole number (m2 -> km2: 1/1e6) divides by that number, so the
    result is bit for bit ``values / 1e6`` (multiplying by 1e-6 differs in the last bit); whole factors
    are rounded to the integer pint's float arithmetic lands next to.
    """
    f = factor(source, target)
    if f == 1.0:
        return values
    whole = lambda v: abs(v - round(v)) <= 1e-12 * v  # noqa: E731  (pint's 1e-9 is (1e-3)**3, off by an ulp)
    if f < 1.0 and whole(1.0 / f):
        return values / float(round(1.0 / f))
    return values * (float(round(f)) if whole(f) else f)


def m2_to_km2(values):
    """Areas in m2 -> km2."""
    return convert(values, "m2", "km2")


def m3_to_km3(values):
    """Volumes in m3 -> km3."""
    return convert(values, "m3", "km3")


def km3_to_m3(values):
    """Volumes in km3 -> m3."""
    return convert(values, "km3", "m3")
