"""A seeded synthetic global glacier inventory (the 19 RGI 6.0 regions) and its glacier domain, for the
scaling benchmark ``benchmarks/globe.py`` and the global-domain tests.

- :func:`global_inventory`: one row per glacier of the 19 first-order regions of RGI 6.0 with their
  real glacier counts; the areas of a region are lognormal, capped at a realistic largest glacier and
  floored at 0.01 km2, with the location chosen so that they add up to the region's real total area.
  Positions are uniform in a lon/lat box per region.
- :func:`glacier_windows`: each glacier an elliptic synthetic ice body on its own window of the local
  UTM zone (polar stereographic beyond 80 degrees of latitude) at a chosen resolution: thickness from
  volume-area scaling (Bahr et al. 1997; V = 0.034 A^1.375 km3, A in km2) with a parabolic profile
  ``h = 2 V/A (1 - r^2)`` (its mean is V/A), a surface that is a tilted plane along the major axis (the
  slope falls with the area) plus a bump, and a one-pixel halo of ice-free surface.
- :func:`global_domain`: a seeded sample of a fraction of every region's glaciers built with
  :func:`glacgrid.domain.domain_from_windows`, sorted by region and position so groups are compact.
- :func:`global_cube`: a seeded monthly ERA5-Land-like cube (``t2m`` K, ``tp`` kg m-2, ``orog`` m) over
  points anywhere on the globe, with a latitude- and hemisphere-aware climate (written year by year).

The climate and the glaciers are plausible, not real.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

__all__ = ["RGI6_REGIONS", "global_inventory", "glacier_windows", "global_domain", "global_cube",
           "volume_area_km3"]

# RGI 6.0 first-order regions: number, name, glaciers, area (km2). Source: RGI Consortium (2017),
# Randolph Glacier Inventory - A Dataset of Global Glacier Outlines: Version 6.0, Technical Report, GLIMS,
# Colorado, USA, doi:10.7265/N5-RGI-60, Table 2 (215,547 glaciers, about 705,700 km2 in all); the regions are
# those of Pfeffer et al. (2014, J. Glaciol. 60(221), 537-552). The counts were cross-checked against a
# per-region list of RGI 6.0 counts found with the search tool (Alaska ~27,000 ... Antarctic ~2,750,
# total 215,547) and the Alaska total against Kienholz et al. (2015, J. Glaciol.): 86,723 km2, 27,109
# glaciers; region 11 against the 3,927 Farinotti tiles of shared/data/alps.
# Then, per region, the synthetic choices: lon/lat box (degrees), lognormal sigma of ln(area), the largest
# glacier (km2, about the largest RGI 6.0 outline of the region) and a typical surface elevation (m).
_TABLE = [
    # rgi, name, count, area_km2, lon0, lon1, lat0, lat1, sigma, cap_km2, z_m
    (1, "Alaska", 27108, 86725.053, -160.0, -132.0, 56.0, 66.0, 1.9, 3400.0, 1300.0),
    (2, "Western Canada and US", 18855, 14524.224, -128.0, -112.0, 44.0, 58.0, 1.6, 500.0, 2200.0),
    (3, "Arctic Canada North", 4556, 105128.315, -95.0, -62.0, 75.0, 83.0, 2.1, 3000.0, 700.0),
    (4, "Arctic Canada South", 7415, 40888.184, -80.0, -62.0, 62.0, 74.0, 1.9, 1500.0, 800.0),
    (5, "Greenland Periphery", 19306, 89717.066, -70.0, -20.0, 60.0, 82.5, 1.9, 5000.0, 900.0),
    (6, "Iceland", 568, 11059.7, -24.0, -13.5, 63.5, 66.5, 2.3, 1400.0, 1000.0),
    (7, "Svalbard and Jan Mayen", 1615, 33958.934, 10.0, 33.0, 76.5, 80.5, 1.9, 1200.0, 450.0),
    (8, "Scandinavia", 3417, 2949.103, 5.0, 25.0, 60.0, 70.0, 1.5, 60.0, 1400.0),
    (9, "Russian Arctic", 1069, 51591.6, 40.0, 105.0, 73.0, 81.5, 2.1, 1800.0, 400.0),
    (10, "North Asia", 5151, 2410.051, 85.0, 175.0, 48.0, 70.0, 1.4, 60.0, 2300.0),
    (11, "Central Europe", 3927, 2092.146, 5.0, 16.0, 44.0, 47.5, 1.5, 82.0, 2900.0),
    (12, "Caucasus and Middle East", 1888, 1306.992, 38.0, 52.0, 35.0, 44.0, 1.5, 40.0, 3500.0),
    (13, "Central Asia", 54429, 49303.415, 67.0, 100.0, 35.0, 45.0, 1.5, 700.0, 4600.0),
    (14, "South Asia West", 27988, 33568.298, 70.0, 81.0, 32.0, 37.5, 1.6, 900.0, 5100.0),
    (15, "South Asia East", 13119, 14734.204, 79.0, 98.0, 27.0, 31.0, 1.6, 250.0, 5500.0),
    (16, "Low Latitudes", 2939, 2341.036, -80.0, -63.0, -18.0, 10.0, 1.4, 60.0, 5000.0),
    (17, "Southern Andes", 15908, 29429.048, -74.0, -68.0, -55.0, -30.0, 1.8, 1250.0, 1500.0),
    (18, "New Zealand", 3537, 1161.801, 167.0, 172.5, -46.0, -42.0, 1.5, 100.0, 1800.0),
    (19, "Antarctic and Subantarctic", 2752, 132867.219, -180.0, 180.0, -78.0, -54.0, 2.1, 5000.0, 500.0),
]
#: The regions: index ``region`` (1..19), columns name, count, area_km2, lon0, lon1, lat0, lat1, sigma,
#: cap_km2, z_m (see the comment above for the sources).
RGI6_REGIONS = pd.DataFrame(_TABLE, columns=["region", "name", "count", "area_km2", "lon0", "lon1", "lat0", "lat1",
                                             "sigma", "cap_km2", "z_m"]).set_index("region")
_MIN_AREA_KM2 = 0.01


def volume_area_km3(area_km2):
    """Volume-area scaling V = 0.034 A^1.375 (km3, A in km2; Bahr et al. 1997, the constant of Radic & Hock)."""
    return 0.034 * np.asarray(area_km2, dtype="float64") ** 1.375


def _areas(z: np.ndarray, total: float, sigma: float, cap: float) -> np.ndarray:
    """``clip(exp(mu + sigma z), 0.01, cap)`` with ``mu`` solved (bisection) so that the areas add up to ``total``."""
    if z.size * cap < total:
        raise ValueError(f"{z.size} glaciers of at most {cap} km2 cannot cover {total} km2; raise the cap.")
    lo, hi = -20.0, 20.0
    for _ in range(200):  # bisection on mu: the sum is monotone in mu
        mu = 0.5 * (lo + hi)
        s = np.clip(np.exp(mu + sigma * z), _MIN_AREA_KM2, cap).sum()
        lo, hi = (mu, hi) if s < total else (lo, mu)
    return np.clip(np.exp(0.5 * (lo + hi) + sigma * z), _MIN_AREA_KM2, cap)


def global_inventory(seed: int = 0) -> pd.DataFrame:
    """The synthetic global inventory: RGI 6.0's glacier count and total area in each of the 19 regions.

    Parameters
    ----------
    seed : int
        Seed of the areas and positions.

    Returns
    -------
    pandas.DataFrame
        One row per glacier (215,547): ``region`` (1..19), ``rgi_id`` (``RGI60-rr.NNNNN``), ``area_km2``,
        ``lon``, ``lat`` (degrees).
    """
    rng = np.random.default_rng(seed)
    frames = []
    for r, row in RGI6_REGIONS.iterrows():  # a loop over the 19 regions
        n = int(row["count"])
        area = _areas(rng.standard_normal(n), float(row["area_km2"]), float(row["sigma"]), float(row["cap_km2"]))
        frames.append(pd.DataFrame({
            "region": np.full(n, r, dtype="int64"),
            "rgi_id": [f"RGI60-{r:02d}.{i:05d}" for i in range(1, n + 1)],
            "area_km2": area, "lon": rng.uniform(row["lon0"], row["lon1"], n),
            "lat": rng.uniform(row["lat0"], row["lat1"], n)}))
    return pd.concat(frames, ignore_index=True)


def _crs_of(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """EPSG of each point's window: the UTM zone (326zz north, 327zz south), polar stereographic beyond 80 deg."""
    zone = np.clip(np.floor((lon + 180.0) / 6.0).astype("int64") + 1, 1, 60)
    epsg = np.where(lat >= 0, 32600, 32700) + zone
    epsg = np.where(lat > 80.0, 3413, epsg)  # NSIDC sea-ice polar stereographic north
    return np.where(lat < -80.0, 3031, epsg)  # Antarctic polar stereographic


def glacier_windows(inventory: pd.DataFrame, resolution: float = 100.0, *, seed: int = 0):
    """The window records of the inventory's glaciers (a generator, one window at a time, in row order).

    Parameters
    ----------
    inventory : pandas.DataFrame
        Rows of :func:`global_inventory` (``region``, ``rgi_id``, ``area_km2``, ``lon``, ``lat``).
    resolution : float
        Pixel size (m).
    seed : int
        Seed of the shapes (aspect ratio, orientation, slope, elevation).

    Yields
    ------
    dict
        The records :func:`glacgrid.domain.domain_from_windows` reads: ``rgi_id``, ``name`` (the region
        name), ``source_index`` (the inventory row), ``epsg``, ``transform``, ``surface``, ``thickness``.
    """
    from pyproj import Transformer

    inv = inventory.reset_index(drop=True)
    n = len(inv)
    rng = np.random.default_rng(seed)
    lon, lat = inv["lon"].to_numpy("float64"), inv["lat"].to_numpy("float64")
    area_km2 = inv["area_km2"].to_numpy("float64")
    a_m2 = area_km2 * 1e6
    ratio = rng.uniform(1.2, 3.0, n)  # major / minor axis
    theta = rng.uniform(0.0, np.pi, n)
    major, minor = np.sqrt(a_m2 * ratio / np.pi), np.sqrt(a_m2 / (np.pi * ratio))
    hmax = 2.0 * volume_area_km3(area_km2) * 1e9 / a_m2  # paraboloid: mean thickness = V / A
    slope = np.deg2rad(np.clip(22.0 * area_km2 ** -0.2 * rng.uniform(0.8, 1.2, n), 2.0, 35.0))
    z_c = RGI6_REGIONS.loc[inv["region"].to_numpy(), "z_m"].to_numpy() + rng.normal(0.0, 250.0, n)
    epsg = _crs_of(lon, lat)
    x = np.zeros(n)
    y = np.zeros(n)
    for code in np.unique(epsg):  # a loop over the few CRSs
        sel = epsg == code
        x[sel], y[sel] = Transformer.from_crs("EPSG:4326", f"EPSG:{code}", always_xy=True).transform(lon[sel], lat[sel])
    cos, sin = np.cos(theta), np.sin(theta)
    half_x = np.sqrt((major * cos) ** 2 + (minor * sin) ** 2)
    half_y = np.sqrt((major * sin) ** 2 + (minor * cos) ** 2)
    res = float(resolution)
    ic, jc = np.floor(x / res).astype("int64"), np.floor(-y / res).astype("int64")  # lattice column/row of the centre
    nx, ny = np.ceil(half_x / res).astype("int64") + 1, np.ceil(half_y / res).astype("int64") + 1  # + halo
    names = RGI6_REGIONS.loc[inv["region"].to_numpy(), "name"].to_numpy()
    rgi, index = inv["rgi_id"].to_numpy(), inv.index.to_numpy()
    for i in range(n):  # one window per glacier (what a tile reader does per file)
        cols = np.arange(ic[i] - nx[i], ic[i] + nx[i] + 1)
        rows = np.arange(jc[i] - ny[i], jc[i] + ny[i] + 1)
        dx = (cols - ic[i]) * res  # offsets from the centre pixel's centre
        dy = -(rows - jc[i]) * res
        u = dx[None, :] * cos[i] + dy[:, None] * sin[i]  # along the major axis
        v = -dx[None, :] * sin[i] + dy[:, None] * cos[i]
        rho2 = (u / major[i]) ** 2 + (v / minor[i]) ** 2
        thickness = np.where(rho2 < 1.0, hmax[i] * (1.0 - rho2), np.nan)
        surface = z_c[i] - np.tan(slope[i]) * u + 0.3 * hmax[i] * np.exp(-rho2)
        left, top = (ic[i] - nx[i]) * res, -(jc[i] - ny[i]) * res
        yield {"rgi_id": rgi[i], "name": names[i], "source_index": int(index[i]), "epsg": int(epsg[i]),
               "transform": (res, 0.0, float(left), 0.0, -res, float(top)), "surface": surface,
               "thickness": thickness}


def _sample(inventory: pd.DataFrame, fraction: float, seed: int, regions) -> pd.DataFrame:
    """A seeded sample of ``fraction`` of each region's glaciers (at least one), sorted by region and position."""
    inv = inventory if regions is None else inventory[inventory["region"].isin(list(regions))]
    if inv.empty:
        raise ValueError(f"No glacier in regions {regions}; expected numbers in 1..19.")
    rng = np.random.default_rng(seed + 1)
    key = rng.random(len(inv))
    rank = pd.Series(key, index=inv.index).groupby(inv["region"]).rank(method="first").to_numpy()
    count = inv.groupby("region")["region"].transform("size").to_numpy()
    keep = rank <= np.maximum(1, np.round(fraction * count))
    out = inv[keep].copy()
    out["lon_bin"] = np.floor(out["lon"] / 2.0)
    out = out.sort_values(["region", "lon_bin", "lat"]).drop(columns="lon_bin")
    return out


def global_domain(store: str | Path, *, fraction: float = 0.01, resolution: float = 100.0, seed: int = 0,
                  regions=None, group_pixels: int | None = None, overwrite: bool = True):
    """The glacier domain of a seeded sample of ``fraction`` of every region's glaciers.

    Parameters
    ----------
    store : path
        The domain Zarr store.
    fraction : float
        Fraction of each region's glaciers (at least one per region).
    resolution : float
        Pixel size (m).
    seed : int
        Seed of the inventory, the sample and the shapes.
    regions : sequence of int, optional
        Only these RGI regions (default all 19).
    group_pixels : int, optional
        Pixels per group (default :data:`glacgrid.domain.DEFAULT_GROUP_PIXELS`).
    overwrite : bool
        Replace an existing store.

    Returns
    -------
    glacgrid.domain.Domain
        Its ``name`` variable holds each glacier's region name; ``source_index`` its inventory row.
    """
    from ..domain import DEFAULT_GROUP_PIXELS, domain_from_windows

    sample = _sample(global_inventory(seed), fraction, seed, regions)
    return domain_from_windows(glacier_windows(sample, resolution, seed=seed), store,
                               group_pixels=group_pixels or DEFAULT_GROUP_PIXELS, overwrite=overwrite)


def global_cube(lon: np.ndarray, lat: np.ndarray, store: str | Path, *, start: int, end: int, seed: int = 0,
                resolution: float = 0.25) -> Path:
    """A monthly cube (``t2m`` K, ``tp`` kg m-2 per month, ``orog`` m) at ``resolution`` degrees over the box
    of the points ``lon``/``lat`` (two cells of margin) for the hydrological years ``start..end`` (from October
    of ``start - 1``), written one year at a time beside ``store`` and renamed onto it when complete.

    The sea-level annual mean temperature is ``28 - 0.0065 lat^2`` degC with a seasonal half-amplitude of
    ``3 + 0.15 |lat|`` K peaking in July (north) or January (south), -6.5 K km-1 with the synthetic
    orography, and noise; precipitation is gamma-distributed, grows with the orography and falls towards
    the poles.
    """
    lon, lat = np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")
    r = float(resolution)
    glon = np.round(np.arange(np.floor(lon.min() / r) * r - 2 * r, np.ceil(lon.max() / r) * r + 2 * r + 1e-9, r), 6)
    glat = np.round(np.arange(np.floor(lat.min() / r) * r - 2 * r, np.ceil(lat.max() / r) * r + 2 * r + 1e-9, r), 6)
    rng = np.random.default_rng(seed)
    la, lo = np.meshgrid(glat, glon, indexing="ij")
    orog = (1000.0 + 800.0 * np.sin(np.deg2rad(lo) * 7.0) * np.cos(np.deg2rad(la) * 5.0)
            + rng.normal(0, 80, la.shape)).astype("float32")
    t_mean = (28.0 - 0.0065 * la ** 2 - 0.0065 * orog).astype("float32")
    amp = (3.0 + 0.15 * np.abs(la)).astype("float32")
    peak = np.where(la >= 0, 7, 1)
    dry = (1.0 + orog / 3000.0) * (1.0 - 0.6 * (la / 90.0) ** 2)
    store = Path(store)
    tmp = store.with_name(store.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for k, year in enumerate(range(start, end + 1)):  # a loop over the years: one year in memory
        time = pd.date_range(f"{year - 1}-10-01", periods=12, freq="MS")
        t2m = np.empty((12, *la.shape), dtype="float32")
        tp = np.empty((12, *la.shape), dtype="float32")
        for m, month in enumerate(time.month):  # a loop over 12 months
            t2m[m] = (t_mean + amp * np.cos(2 * np.pi * (month - peak) / 12) + 273.15
                      + rng.normal(0, 0.7, la.shape).astype("float32"))
            tp[m] = rng.gamma(4.0, 30.0, la.shape).astype("float32") * dry
        ds = xr.Dataset({"t2m": (("time", "lat", "lon"), t2m, {"units": "K"}),
                         "tp": (("time", "lat", "lon"), tp, {"units": "kg m-2"})},
                        coords={"time": time, "lat": glat, "lon": glon})
        chunks = {"time": 12, "lat": 200, "lon": 400}
        if k == 0:
            ds["orog"] = (("lat", "lon"), orog, {"units": "m"})
            ds.chunk(chunks).to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
        else:
            ds.chunk(chunks).to_zarr(tmp, append_dim="time", consolidated=False)
    with warnings.catch_warnings():  # consolidated metadata is not (yet) part of the Zarr v3 specification
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(tmp))
    shutil.rmtree(store, ignore_errors=True)  # a complete store replaces the old one (no half-written cube)
    tmp.rename(store)
    return store
