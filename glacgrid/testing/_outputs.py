"""Seeded synthetic results stores (the layout of ``results.zarr`` written by ``glacgrid run``) for tests of
the outputs stage: with or without ensemble members, with the spread of an ensemble model, with a
glacier that disappears and with failed (isolated) glacier-years. Every value is known from the
arguments, so tables and figures can be checked number by number.

Layout (as in ``glacgrid.simulate``): glacier ``g`` occupies the columns ``g-1::n_glaciers`` of rows
``1..ny-1`` (row 0 is ice-free, NaN SMB); its gridded SMB is its glacier-wide SMB plus a seeded
pixel anomaly. Members (``thickness_factor``, ``deltah_factor``) scale area and volume losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["SyntheticResults", "synthetic_results", "band_limits"]

_ATTRS = {
    "smb": ("m", "Annual surface mass balance in metres of water equivalent (m w.e.)"),
    "smb_spread": ("m", "Standard deviation of the SMB across the members of an ensemble model"),
    "thickness": ("m", "Ice thickness"),
    "surface": ("m", "Surface elevation"),
    "smb_glacier": ("m", "Glacier-wide annual surface mass balance (m w.e.)"),
    "smb_glacier_spread": ("m", "Standard deviation of the glacier-wide SMB across ensemble-model members"),
    "glacier_area": ("km2", "Glacier area (pixels with ice)"),
    "volume": ("km3", "Glacier ice volume"),
    "mean_elevation": ("m", "Mean surface elevation"),
    "disappeared": ("1", "1 where the glacier has no ice left at the end of the year"),
    "failed": ("1", "1 where the glacier was isolated"),
}


@dataclass
class SyntheticResults:
    """A results dataset and what ``write_outputs`` needs beside it."""

    results: xr.Dataset
    table: pd.DataFrame          # index 1..N: rgi_id, name (one name empty)
    obs: pd.DataFrame            # obs_id, year, smb (m w.e.): the observations
    units: list[str]             # observation unit ids, in unit order
    unit_of_outline: np.ndarray  # per glacier index (0 unused): 1-based unit, 0 = not observed


def synthetic_results(*, n_glaciers: int = 5, start: int = 2001, end: int = 2010, shape: tuple[int, int] = (7, 10),
                      members: list[tuple[float, float]] | None = None, spread: bool = False,
                      disappear: dict[int, int] | None = None, failed: list[tuple] | None = None,
                      seed: int = 0) -> SyntheticResults:
    """Build a results dataset (numpy-backed) and matching table and observations.

    members : list of ``(thickness_factor, deltah_factor)``; None: no ``member`` dimension.
    spread : add ``smb_spread`` and ``smb_glacier_spread`` (reconstruction with an ensemble model).
    disappear : ``{glacier: year}``: from that year the glacier has no ice (area, volume 0, SMB NaN,
        ``disappeared`` 1).
    failed : ``(glacier, year)`` or ``(glacier, year, member_position)``: that glacier-year (of all
        members, or one) is isolated: values NaN, ``failed`` 1.
    Observations: unit 1 = glacier 1 alone (``"OBS-A"``), unit 2 = glaciers 2 and 3 together
    (``"OBS-B"``); observed = reference-member SMB + noise, on every year but the third, plus two years
    before ``start`` (outside the modelled period).
    """
    rng = np.random.default_rng(seed)
    years = np.arange(start, end + 1)
    ny, nx = shape
    n, k = n_glaciers, years.size
    mem = members if members is not None else [(1.0, 1.0)]
    tf = np.array([m[0] for m in mem])[None, :, None]
    df = np.array([m[1] for m in mem])[None, :, None]
    t = np.arange(k)[:, None, None]
    base = rng.uniform(-1.2, 0.3, n)[None, None, :]
    anom = rng.normal(0.0, 0.4, k)[:, None, None]
    smb_gl = base + anom - 0.15 * (df - 1.0) - 0.1 * (tf - 1.0) + 0.0 * t     # (year, member, glacier)
    area0 = rng.uniform(0.5, 8.0, n)[None, None, :]
    area = area0 * (1.0 - 0.03 * t * df)
    volume = area0 * 0.04 * tf * (1.0 - 0.06 * t * df)
    elev = 2600.0 + 120.0 * np.arange(n)[None, None, :] + 4.0 * t + 0.0 * tf
    gone = np.zeros_like(smb_gl, dtype="int8")
    fail = np.zeros_like(smb_gl, dtype="int8")
    for g, y in (disappear or {}).items():
        sl = (years >= y, slice(None), g - 1)
        gone[sl], area[sl], volume[sl], smb_gl[sl], elev[sl] = 1, 0.0, 0.0, np.nan, np.nan
    for f in failed or []:
        g, y = f[0], f[1]
        m = f[2] if len(f) > 2 else slice(None)
        sl = (years == y, m, g - 1)
        fail[sl], area[sl], volume[sl], smb_gl[sl], elev[sl] = 1, np.nan, np.nan, np.nan, np.nan
    gid = np.zeros((ny, nx), dtype="int32")
    gid[1:, :] = (np.arange(nx) % n + 1)[None, :]
    pix_anom = rng.normal(0.0, 0.3, (ny, nx))
    smb = np.where(gid > 0, np.take(smb_gl, np.maximum(gid, 1) - 1, axis=2) + pix_anom, np.nan).astype("float32")
    # gridded (year, member, y, x); a disappeared or failed glacier is NaN there like its glacier-wide value
    thick = np.where(gid > 0, 50.0, 0.0)[None, None] * np.ones((k, len(mem), 1, 1))
    surf = 2500.0 + 10.0 * np.arange(ny)[:, None] + np.zeros((k, len(mem), ny, nx))
    x = 620_000.0 + 100.0 * (np.arange(nx) + 0.5)
    y = 5_200_000.0 - 100.0 * (np.arange(ny) + 0.5)
    coords = {"year": years, "glacier": np.arange(1, n + 1),
              "y": ("y", y, {"units": "m", "axis": "Y"}), "x": ("x", x, {"units": "m", "axis": "X"})}

    def arr(a, dims):
        return a if members is not None else a[:, 0]

    gdims = ("year", "member", "glacier") if members is not None else ("year", "glacier")
    pdims = ("year", "member", "y", "x") if members is not None else ("year", "y", "x")
    data = {"smb": (pdims, arr(smb, pdims)), "thickness": (pdims, arr(thick, pdims)),
            "surface": (pdims, arr(surf, pdims)), "smb_glacier": (gdims, arr(smb_gl, gdims)),
            "glacier_area": (gdims, arr(area, gdims)), "volume": (gdims, arr(volume, gdims)),
            "mean_elevation": (gdims, arr(elev, gdims)), "disappeared": (gdims, arr(gone, gdims)),
            "failed": (gdims, arr(fail, gdims))}
    if members is not None:
        coords.update({"member": np.arange(len(mem)), "thickness_factor": ("member", tf.ravel()),
                       "deltah_factor": ("member", df.ravel())})
    if spread:
        data["smb_glacier_spread"] = (("year", "glacier"), rng.uniform(0.05, 0.2, (k, n)))
        data["smb_spread"] = (("year", "y", "x"), np.where(gid > 0, 0.1, np.nan)[None] * np.ones((k, 1, 1)))
    ds = xr.Dataset(data, coords=coords)
    for v in ds.data_vars:
        ds[v].attrs.update({"units": _ATTRS[v][0], "long_name": _ATTRS[v][1]})
    table = pd.DataFrame({"rgi_id": [f"RGI60-99.{g:05d}" for g in range(1, n + 1)],
                          "name": [f"Glacier {g}" if g != 2 else "" for g in range(1, n + 1)]},
                         index=pd.Index(np.arange(1, n + 1), name="glacier"))
    uoo = np.zeros(n + 1, dtype="int32")
    uoo[1], uoo[2], uoo[3] = 1, 2, 2
    ref = next((i for i, m in enumerate(mem) if m == (1.0, 1.0)), 0)
    obs = _observations(rng, years, area[:, ref], smb_gl[:, ref], start)
    return SyntheticResults(ds, table, obs, ["OBS-A", "OBS-B"], uoo)


def _observations(rng: np.random.Generator, years: np.ndarray, area: np.ndarray, smb_gl: np.ndarray,
                  start: int) -> pd.DataFrame:
    """Observed SMB of unit ``OBS-A`` (glacier 1) and ``OBS-B`` (glaciers 2 and 3): the area-weighted
    SMB of the reference member (``area``, ``smb_gl``: year x glacier) plus noise, on every year but the
    third, and two years before ``start``."""
    rows = []
    for uid, gl in (("OBS-A", [0]), ("OBS-B", [1, 2])):
        w = np.nan_to_num(area[:, gl])
        true = (np.nan_to_num(smb_gl[:, gl]) * w).sum(1) / np.where(w.sum(1) > 0, w.sum(1), np.nan)
        for i, yr in enumerate(years):
            if i != 2 and np.isfinite(true[i]):
                rows.append({"obs_id": uid, "year": int(yr), "smb": float(true[i] + rng.normal(0, 0.1))})
        rows += [{"obs_id": uid, "year": int(start - j), "smb": -0.5} for j in (1, 2)]
    return pd.DataFrame(rows)


def band_limits(collection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, lower, upper)`` of a ``fill_between`` band, read back from its polygon's vertices."""
    v = collection.get_paths()[0].vertices
    xs = np.unique(v[:, 0])
    lower = np.array([v[v[:, 0] == x, 1].min() for x in xs])
    upper = np.array([v[v[:, 0] == x, 1].max() for x in xs])
    return xs, lower, upper
