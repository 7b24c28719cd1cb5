"""Seeded synthetic regions whose answers are known, for tests, benchmarks and ``glacgrid demo``.

:func:`build_region` writes, into a directory, everything a real run reads:

- a DEM GeoTIFF (UTM 32N) with several conical massifs,
- glacier outlines (GeoPackage, EPSG:4326, RGI-like ids) radiating from the summits as annulus sectors,
- an ice-thickness GeoTIFF,
- ERA5-Land-like monthly netCDF files (real variable names, units, int16 packing, the per-day
  accumulation convention of ``tp``) and an invariant file with geopotential ``z``,
- glacier-wide annual "observed" SMB for a subset of glaciers, from a known temperature-index model.

The climate is built so that the pipeline's downscaling reproduces it exactly: sea-level temperature is
uniform in space and varies in time, ERA5-Land temperature is that minus ``LAPSE * orography``, and
precipitation varies linearly with longitude, so bilinear interpolation plus the lapse-rate correction
recovers the true pixel climate. The "observed" SMB is computed here analytically from that truth, not
with glacgrid's own stages.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..units import G0, T0
from ._era5 import write_era5land_monthly

__all__ = ["TruthParams", "SyntheticRegion", "build_region", "write_config", "truth_smb"]


@dataclass(frozen=True)
class TruthParams:
    """The known temperature-index model behind the synthetic observations.

    SMB (m w.e.) = (acc_factor * solid precipitation - ddf * positive degree-days) / 1000, averaged over
    the glacier's pixels, with monthly degree-days ``max(T, 0) * days`` and solid precipitation
    with a linear rain/snow transition between ``snow_threshold`` and ``rain_threshold`` (degC).
    """

    lapse_rate: float = -0.0065       # K m-1
    ddf: float = 4.0                  # mm w.e. K-1 d-1
    acc_factor: float = 1.0           # 1
    snow_threshold: float = 0.0       # degC
    rain_threshold: float = 2.0       # degC
    noise: float = 0.05               # m w.e., standard deviation of observation error


@dataclass(frozen=True)
class SyntheticRegion:
    directory: Path
    dem: Path
    outlines: Path
    thickness: Path
    climate_files: tuple[Path, ...]
    invariant: Path
    observations: Path
    start: int
    end: int
    n_glaciers: int
    truth: TruthParams = field(default_factory=TruthParams)


_UTM32 = "EPSG:32632"


def _massifs(rng: np.random.Generator, width: float, height: float, n: int) -> list[dict]:
    """Massif centres on a jittered layout, with height (m above base) and width sigma (m)."""
    layout = [(0.25, 0.3), (0.75, 0.7), (0.75, 0.3), (0.25, 0.72), (0.5, 0.5), (0.5, 0.1), (0.5, 0.9), (0.1, 0.5)]
    out = []
    for k in range(n):
        fx, fy = layout[k % len(layout)]
        out.append({
            "x": fx * width + rng.uniform(-0.03, 0.03) * width,
            "y": fy * height + rng.uniform(-0.03, 0.03) * height,
            "h": rng.uniform(1700.0, 2100.0),
            "sigma": rng.uniform(2000.0, 2500.0),  # m: slopes of 20-35 degrees on the glaciers
        })
    return out


def _dem(xx: np.ndarray, yy: np.ndarray, massifs: list[dict], base: float, rng: np.random.Generator) -> np.ndarray:
    z = np.full(xx.shape, base)
    for m in massifs:
        r2 = (xx - m["x"]) ** 2 + (yy - m["y"]) ** 2
        z += m["h"] * np.exp(-r2 / m["sigma"] ** 2)
    # gentle seeded undulation (a few long waves) so slopes and aspects vary
    for _ in range(3):
        kx, ky, ph = rng.uniform(2e-4, 6e-4), rng.uniform(2e-4, 6e-4), rng.uniform(0, 2 * np.pi)
        z += 25.0 * np.sin(kx * xx + ky * yy + ph)
    return z


def _sector(cx: float, cy: float, r0: float, r1: float, t0: float, t1: float):
    from shapely.geometry import Polygon

    t = np.linspace(t0, t1, 24)
    inner = np.c_[cx + r0 * np.sin(t), cy + r0 * np.cos(t)]
    outer = np.c_[cx + r1 * np.sin(t[::-1]), cy + r1 * np.cos(t[::-1])]
    return Polygon(np.vstack([inner, outer]))


def _glaciers(massifs: list[dict], per_massif: int, rng: np.random.Generator, x0: float, y0: float):
    polys = []
    for m in massifs:
        n = int(per_massif + rng.integers(0, 3))
        width = 2 * np.pi / n
        start = rng.uniform(0, width)
        for k in range(n):
            t0 = start + k * width + 0.06
            t1 = start + (k + 1) * width - 0.06
            r1 = m["sigma"] * rng.uniform(0.6, 0.92)
            polys.append(_sector(x0 + m["x"], y0 + m["y"], 0.12 * m["sigma"], r1, t0, t1))
    return polys


def _thickness(ids: np.ndarray, res: float, area_km2: np.ndarray) -> np.ndarray:
    """Ice thickness (m): grows with the square root of the distance to the glacier edge."""
    from scipy.ndimage import distance_transform_edt

    inner = ids > 0
    edge = np.zeros_like(inner)
    for axis in (0, 1):
        for shift in (1, -1):
            edge |= np.roll(ids, shift, axis=axis) != ids
    dist = distance_transform_edt(inner & ~edge) * res + res / 2
    scale = 4.0 * np.power(np.maximum(area_km2, 0.05), 0.2)
    h = np.where(inner, scale[ids] * np.sqrt(dist), 0.0)
    return h.astype("float32")


def _climate(rng: np.random.Generator, times: pd.DatetimeIndex, lat: np.ndarray, lon: np.ndarray,
             orog: np.ndarray, truth: TruthParams):
    """ERA5-Land-like t2m (K) and tp (m of water per day), plus the true sea-level series."""
    month = times.month.to_numpy()
    years = times.year.to_numpy()
    uy = np.unique(years)
    t_anom = dict(zip(uy, rng.normal(0.0, 0.9, uy.size)))
    p_anom = dict(zip(uy, rng.lognormal(0.0, 0.18, uy.size)))
    t_sl = 286.2 - 10.5 * np.cos(2 * np.pi * (month - 1) / 12) + np.array([t_anom[y] for y in years])
    t_sl = t_sl + rng.normal(0.0, 0.7, times.size) + 0.02 * (years - uy[0])  # monthly noise, slight warming
    p0 = 0.0042 + 0.0008 * np.cos(2 * np.pi * (month - 1) / 12)  # m/day, wetter winters
    p0 = p0 * np.array([p_anom[y] for y in years]) * rng.lognormal(0.0, 0.25, times.size)
    lon_c = lon.mean()
    p_factor = 1.0 + 1.5 * (lon - lon_c)  # +15 % per 0.1 degree eastwards: linear, so bilinear is exact
    t2m = t_sl[:, None, None] + truth.lapse_rate * orog[None, :, :]
    tp = p0[:, None, None] * p_factor[None, None, :] * np.ones((1, lat.size, 1))
    return t2m.astype("float64"), tp.astype("float64"), t_sl, p0, p_factor, lon_c


def truth_smb(t_sl: np.ndarray, p0: np.ndarray, times: pd.DatetimeIndex, z: np.ndarray, lon: np.ndarray,
              lon_c: float, truth: TruthParams) -> np.ndarray:
    """True pixel SMB (m w.e.) per hydrological year (Oct-Sep) for pixels at elevation ``z`` (m)
    and longitude ``lon`` (degrees). Returns shape (n_years, n_pixels)."""
    t = t_sl[:, None] - T0 + truth.lapse_rate * z[None, :]
    p = p0[:, None] * (1.0 + 1.5 * (lon[None, :] - lon_c)) * times.days_in_month.to_numpy()[:, None] * 1000.0
    solid = np.clip((truth.rain_threshold - t) / (truth.rain_threshold - truth.snow_threshold), 0.0, 1.0)
    monthly = (truth.acc_factor * p * solid - truth.ddf * np.maximum(t, 0.0) * times.days_in_month.to_numpy()[:, None])
    return monthly.reshape(-1, 12, z.size).sum(axis=1) / 1000.0


def build_region(directory: str | Path, *, seed: int = 0, shape: tuple[int, int] = (180, 240),
                 resolution: float = 100.0, n_massifs: int = 5, glaciers_per_massif: int = 11,
                 start: int = 2001, end: int = 2020, observed_share: float = 0.6,
                 truth: TruthParams = TruthParams()) -> SyntheticRegion:
    """Write a seeded synthetic region into ``directory`` and return the paths.

    Hydrological years ``start..end`` (Oct-Sep, labelled by the end year) are covered by monthly climate
    from January of ``start - 1`` to December of ``end``, written one file per calendar year.
    """
    import geopandas as gpd
    import rasterio
    from affine import Affine
    from rasterio.features import rasterize
    from pyproj import Transformer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ny, nx = shape
    x0, y_top = 620_000.0, 5_200_000.0
    width, height = nx * resolution, ny * resolution
    transform = Affine(resolution, 0.0, x0, 0.0, -resolution, y_top)
    xs = x0 + resolution * (np.arange(nx) + 0.5)
    ys = y_top - resolution * (np.arange(ny) + 0.5)
    xx, yy = np.meshgrid(xs - x0, ys - (y_top - height))
    massifs = _massifs(rng, width, height, n_massifs)
    dem = _dem(xx, yy, massifs, 1500.0, rng).astype("float32")
    profile = {"driver": "GTiff", "height": ny, "width": nx, "count": 1, "crs": _UTM32, "transform": transform}
    dem_path = directory / "dem.tif"
    with rasterio.open(dem_path, "w", dtype="float32", **profile) as dst:
        dst.write(dem, 1)

    polys = _glaciers(massifs, glaciers_per_massif, rng, x0, y_top - height)
    n = len(polys)
    rgi = [f"RGI60-99.{k + 1:05d}" for k in range(n)]
    gdf = gpd.GeoDataFrame({"RGIId": rgi, "Name": [f"Synthetic glacier {k + 1}" for k in range(n)]},
                           geometry=polys, crs=_UTM32)
    outlines_path = directory / "outlines.gpkg"
    gdf.to_crs("EPSG:4326").to_file(outlines_path, driver="GPKG")

    ids = rasterize(list(zip(polys, range(1, n + 1))), out_shape=(ny, nx), transform=transform, fill=0, dtype="int32")
    area_km2 = np.r_[0.0, np.array([p.area for p in polys]) / 1e6]
    thick = _thickness(ids, resolution, area_km2)
    thick_path = directory / "thickness.tif"
    with rasterio.open(thick_path, "w", dtype="float32", **profile) as dst:
        dst.write(thick, 1)

    # Climate on a 0.1 degree grid covering the region with a margin of one cell.
    to_ll = Transformer.from_crs(_UTM32, "EPSG:4326", always_xy=True)
    corners = to_ll.transform([x0, x0 + width, x0, x0 + width], [y_top, y_top, y_top - height, y_top - height])
    lon = np.round(np.arange(np.floor(min(corners[0]) * 10) / 10 - 0.1, max(corners[0]) + 0.2, 0.1), 4)
    lat = np.round(np.arange(np.floor(min(corners[1]) * 10) / 10 - 0.1, max(corners[1]) + 0.2, 0.1), 4)
    orog = 1800.0 + 350.0 * np.sin(lat[:, None] * 7.0) * np.cos(lon[None, :] * 5.0)
    times = pd.date_range(f"{start - 1}-01-01", f"{end}-12-01", freq="MS")
    t2m, tp, t_sl, p0, _, lon_c = _climate(rng, times, lat, lon, orog, truth)
    files = write_era5land_monthly(directory / "era5land", lat=lat[::-1], lon=lon, time=times,
                                   t2m=t2m[:, ::-1, :], tp=tp[:, ::-1, :], z=(orog * G0)[::-1, :],
                                   layout="time", split="year", packed=True)

    # "Observed" glacier-wide SMB from the known TI model, for a subset of glaciers.
    hydro = (times >= pd.Timestamp(f"{start - 1}-10-01")) & (times <= pd.Timestamp(f"{end}-09-01"))
    sel = np.flatnonzero(ids.ravel() > 0)
    px, py = np.meshgrid(xs, ys)
    plon, _ = to_ll.transform(px.ravel()[sel], py.ravel()[sel])
    smb_pix = truth_smb(t_sl[hydro], p0[hydro], times[hydro], dem.ravel()[sel].astype("float64"), np.asarray(plon), lon_c, truth)
    gid = ids.ravel()[sel]
    counts = np.bincount(gid, minlength=n + 1)
    years = np.arange(start, end + 1)
    smb_gl = np.stack([np.bincount(gid, weights=row, minlength=n + 1) for row in smb_pix])[:, 1:] / np.maximum(counts[1:], 1)
    observed = np.sort(rng.choice(n, size=max(3, int(round(observed_share * n))), replace=False))
    rows = []
    for g in observed:
        noise = rng.normal(0.0, truth.noise, years.size)
        for y, v, e in zip(years, smb_gl[:, g], noise):
            rows.append({"rgi_id": rgi[g], "year": int(y), "smb": float(v + e), "smb_true": float(v)})
    obs_path = directory / "observed_smb.csv"
    pd.DataFrame(rows).to_csv(obs_path, index=False)
    (directory / "truth.json").write_text(json.dumps({"seed": seed, **asdict(truth), "n_glaciers": n}, indent=2))
    return SyntheticRegion(directory, dem_path, outlines_path, thick_path, tuple(files["files"]), files["invariant"],
                           obs_path, start, end, n, truth)


def write_config(region: SyntheticRegion, path: str | Path, *, output: str | Path, mode: str = "evolve",
                 kind: str = "lasso", chunks: int = 128, features: tuple[str, ...] | None = None) -> Path:
    """Write a run configuration (TOML) for ``region`` and return its path."""
    features = features or ("cpdd", "snow_winter", "snow_summer", "mean_elevation", "max_elevation", "area",
                            "slope", "lat", "lon", "aspect_cos", "aspect_sin")
    path = Path(path)

    def q(p) -> str:
        return json.dumps(str(Path(p).resolve()))

    text = f"""name = "synthetic-demo"
mode = "{mode}"

[climate]
files = [{", ".join(q(f) for f in region.climate_files)}]
invariant = {q(region.invariant)}

[grid]
dem = {q(region.dem)}
chunks = {chunks}
crop_to_glaciers = false

[glaciers]
outlines = {q(region.outlines)}
id_column = "RGIId"
name_column = "Name"
thickness = [{q(region.thickness)}]

[period]
start = {region.start}
end = {region.end}

[downscale]
lapse_rate = {region.truth.lapse_rate}
snow_threshold = {region.truth.snow_threshold}
rain_threshold = {region.truth.rain_threshold}

[model]
kind = "{kind}"
features = [{", ".join(json.dumps(f) for f in features)}]
cv = "logo"

[observations]
files = [{q(region.observations)}]
format = "table"
id_column = "rgi_id"

[output]
directory = {q(output)}
"""
    path.write_text(text, encoding="utf-8")
    return path
