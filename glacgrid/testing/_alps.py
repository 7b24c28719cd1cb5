"""A seeded synthetic ERA5-Land-like monthly climate over the European Alps (RGI region 11), for the scale
demonstration ``examples/alps.toml`` (``make alps``) and the domain-job tests.

The files are written by :func:`glacgrid.testing._era5.write_era5land_monthly` in the layout of the real
ERA5-Land files of ``shared/data/hef/climate`` (``time`` in hours since 1900, latitude descending, int16
packed; one file per variable): ``t2m`` in K, ``tp`` as the monthly mean of the daily accumulation in
metres of water **per day**, and an invariant file with the geopotential ``z`` (m2 s-2). The standard
ingest path reads them like a download from the CDS.

The fields are plausible, not real: an Alpine ridge of orography along the arc of the Alps (up to about
2600 m on the 0.1 degree grid), a 2 m temperature from a sea-level climatology with a lapse rate of
-6.5 K km-1, a seasonal cycle, a warming trend and seeded interannual and monthly anomalies shared by
the region, and a precipitation that increases with the orography with seeded monthly anomalies.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..units import G0
from ._era5 import write_era5land_monthly

__all__ = ["ALPS_LAT", "ALPS_LON", "alps_climate_fields", "write_alps_climate"]

#: Cell centres (0.1 degree): the Alps (5-17 E, 43-48.5 N) and the rest of RGI region 11 (Pyrenees
#: down to 42.4 N and 0.3 W, the Balkan glaciers up to 19.8 E), so every region-11 glacier has climate.
ALPS_LAT = np.round(np.arange(42.0, 48.6 + 1e-9, 0.1), 1)
ALPS_LON = np.round(np.arange(-1.0, 20.5 + 1e-9, 0.1), 1)

# the crest line of the ridges: (lon, lat) along the arc of the Alps, and the Pyrenees
_ALPS_AXIS = ([5.5, 6.8, 7.2, 8.0, 9.0, 10.5, 12.0, 13.5, 15.0, 16.5], [44.1, 44.7, 45.8, 46.3, 46.4, 46.7, 47.0, 47.1,
                                                                        47.3, 47.6])
_PYRENEES = (-1.0, 2.5, 42.7)


def _orography(lat: np.ndarray, lon: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Surface height (m) on ``(lat, lon)``: Gaussian ridges across the crest lines plus seeded relief."""
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    crest = np.interp(lo, *_ALPS_AXIS)
    along = np.clip(np.minimum(lo - 5.5, 16.5 - lo) / 0.8, 0.0, 1.0)  # fades out beyond the ends of the arc
    alps = 2300.0 * along * np.exp(-(((la - crest) / 0.55) ** 2))
    w0, w1, plat = _PYRENEES
    pyr = 1900.0 * np.clip(np.minimum(lo - w0, w1 - lo) / 0.5, 0.0, 1.0) * np.exp(-(((la - plat) / 0.3) ** 2))
    relief = rng.normal(0.0, 1.0, la.shape)
    for _ in range(3):  # a little spatial smoothing of the relief
        relief = (relief + np.roll(relief, 1, 0) + np.roll(relief, -1, 0) + np.roll(relief, 1, 1)
                  + np.roll(relief, -1, 1)) / 5.0
    return np.maximum(250.0 + np.maximum(alps, pyr) * (1.0 + 0.25 * relief), 0.0)


def alps_climate_fields(start_year: int, end_year: int, *, seed: int = 0, lat=ALPS_LAT, lon=ALPS_LON) -> dict:
    """The synthetic monthly fields of the calendar years ``start_year`` to ``end_year`` (month starts).

    Parameters
    ----------
    start_year, end_year : int
        First and last calendar year (every month of each).
    seed : int
        Seed of the anomalies and the relief.
    lat, lon : array-like
        Cell centres (degrees).

    Returns
    -------
    dict
        ``time`` (DatetimeIndex), ``lat``, ``lon``, ``t2m`` (K, ``(time, lat, lon)``), ``tp`` (m of water
        per day), ``z`` (m2 s-2) and ``orog`` (m).
    """
    if end_year < start_year:
        raise ValueError(f"end_year ({end_year}) is before start_year ({start_year}).")
    rng = np.random.default_rng(seed)
    lat, lon = np.asarray(lat, "float64"), np.asarray(lon, "float64")
    time = pd.date_range(f"{start_year}-01-01", f"{end_year}-12-01", freq="MS")
    orog = _orography(lat, lon, rng)
    nt = time.size
    month = time.month.to_numpy()
    years = time.year.to_numpy() - start_year
    # temperature: sea-level climatology (colder to the north), seasonal cycle, lapse rate, trend, anomalies
    t_sea = 286.0 - 0.6 * (lat[:, None] - 45.5)
    season = -10.0 * np.cos(2.0 * np.pi * (month - 1.0) / 12.0)
    year_anom = rng.normal(0.0, 0.6, years.max() + 1)[years]
    month_anom = rng.normal(0.0, 1.2, nt)
    t2m = (t_sea[None] - 0.0065 * orog[None] + (season + 0.035 * years + year_anom + month_anom)[:, None, None]
           + rng.normal(0.0, 0.15, (nt, lat.size, lon.size)))
    # precipitation per day: orographic enhancement, a wetter summer, lognormal monthly anomalies
    base = 0.0022 * (1.0 + 0.6 * orog / 1000.0)
    wet = 1.0 + 0.2 * np.sin(2.0 * np.pi * (month - 4.0) / 12.0)
    anom = np.exp(rng.normal(-0.06, 0.35, nt))
    tp = base[None] * (wet * anom)[:, None, None] * np.exp(rng.normal(0.0, 0.1, (nt, lat.size, lon.size)))
    return {"time": time, "lat": lat, "lon": lon, "t2m": t2m, "tp": tp, "z": orog * G0, "orog": orog}


def write_alps_climate(directory: str | os.PathLike, start_year: int, end_year: int, *, seed: int = 0) -> dict:
    """Write the synthetic Alps climate of a run's hydrological years as ERA5-Land-like netCDF files.

    The hydrological years are ``start_year`` to ``end_year``; the files cover the calendar years
    ``start_year - 1`` to ``end_year`` (a hydrological year starts in October of the previous year):
    ``era5land_monthly_t2m_<first>-<last>.nc``, ``era5land_monthly_tp_<...>.nc`` and
    ``era5land_invariant.nc`` in ``directory``, in the layout of the real ERA5-Land monthly files (see
    :mod:`glacgrid.testing._era5`). Idempotent: files that exist with the same request are kept.

    Parameters
    ----------
    directory : path
        Output folder (created).
    start_year, end_year : int
        First and last hydrological year of the run.
    seed : int
        Seed of the fields.

    Returns
    -------
    dict
        ``{"files": [Path, Path], "invariant": Path}``.
    """
    out = Path(directory)
    stamp = out / ".glacgrid-alps-climate"
    want = f"{start_year - 1}-{end_year} seed={seed} lat={ALPS_LAT[0]}..{ALPS_LAT[-1]} lon={ALPS_LON[0]}..{ALPS_LON[-1]}"
    files = sorted(out.glob("era5land_monthly_*.nc"))
    if stamp.exists() and stamp.read_text(encoding="utf-8") == want and len(files) == 2:
        return {"files": files, "invariant": out / "era5land_invariant.nc"}
    for old in (*files, out / "era5land_invariant.nc", stamp):
        old.unlink(missing_ok=True)
    f = alps_climate_fields(start_year - 1, end_year, seed=seed)
    written = write_era5land_monthly(out, lat=f["lat"], lon=f["lon"], time=f["time"], t2m=f["t2m"], tp=f["tp"],
                                     z=f["z"], layout="time", split="variable")
    stamp.write_text(want, encoding="utf-8")
    return written
