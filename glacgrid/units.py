"""Units at the boundary: the conversions glacgrid applies when data enters or leaves.

All conversions live here, in one place, with their physical constants. Stage code receives arrays
already in the registry's units (``variables.toml``) and never converts by itself.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .exceptions import UnitsError

#: Standard gravity (m s-2), WMO / ECMWF convention, for geopotential -> height.
G0 = 9.80665
#: Density of liquid water (kg m-3); 1 kg m-2 of water is 1 mm w.e.
RHO_WATER = 1000.0
#: Seconds per day, for ERA5-Land per-day accumulations -> W m-2.
SECONDS_PER_DAY = 86400.0
#: 0 degC in K.
T0 = 273.15

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
