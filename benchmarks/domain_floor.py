"""Shared inputs of the glacier-domain benchmarks (``evolve.py``, ``reconstruct.py``) and the floor.

- :func:`ensure_domain`: the Alps glacier domain (:func:`glacgrid.domain.domain_from_tiles` from
  ``../shared/data/alps``), built once and cached in ``/tmp/glacgrid-shared/alps-domain.zarr``.
- :func:`ensure_cube`: the seeded synthetic ERA5-Land-like monthly cube (`glacgrid.testing.synthetic_cube`) of
  ``evolve.climate_cube`` (``t2m`` K, ``tp`` kg m-2, ``orog`` m at 0.1 degree) over a lon/lat box, for any
  number of hydrological years, written once to a Zarr store.
- :func:`replicate`: a domain store holding the groups of a domain ``k`` times (glacier ids renumbered):
  a region ``k`` times as large with the same per-group work.
- :func:`load_packed` / :func:`floor_year`: the floor -- the same science as the domain engine's step
  (bilinear sampling of the 12 monthly fields at each pixel with the lapse-rate correction, yearly CPDD
  and snowfall sums, the linear model on the features, per-glacier area-weighted sums by ``np.bincount``,
  the fused delta-h update of :func:`glacgrid.geometry.deltah_update` on a ``(1, n)`` state) written as
  one numba pass (``prange``) over in-memory arrays of every pixel, without checks, stores or tasks.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit, prange

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
ALPS = REPO.parent / "shared" / "data" / "alps"
SHARED = Path("/tmp/glacgrid-shared")
DOMAIN = SHARED / "alps-domain.zarr"
T0 = 273.15


def status_mb(field: str = "VmHWM") -> float:
    """A memory field of this process from /proc/self/status (VmHWM: peak resident, VmRSS: now), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- inputs
def ensure_domain(path: Path = DOMAIN):
    """The Alps glacier domain (built from the Farinotti tiles when missing, about 30 s)."""
    from glacgrid.domain import domain_from_tiles, open_domain

    try:
        return open_domain(path)
    except Exception:  # noqa: BLE001 - missing or interrupted: (re)build it
        t0 = time.perf_counter()
        dom = domain_from_tiles(ALPS / "farinotti_thickness", ALPS / "farinotti_dem", path)
        print(f"built the domain {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return dom


def ensure_cube(domain, first_year: int, n_years: int, seed: int = 0) -> Path:
    """The synthetic cube over the domain's pixels written (once) to ``/tmp/glacgrid-shared``."""
    import xarray as xr

    from glacgrid.testing import climate_box, synthetic_cube

    path = SHARED / f"alps-domain-cube-{first_year}-{n_years}-{seed}.zarr"
    if path.exists():
        return path
    px = domain.pixels[["lon", "lat", "glacier_id"]].compute()
    real = px["glacier_id"].values > 0
    cube = synthetic_cube(climate_box(px["lon"].values[real], px["lat"].values[real]), first_year, n_years, seed)
    tmp = path.with_name(path.name + ".tmp")
    cube.chunk({"time": 12}).to_zarr(tmp, mode="w", consolidated=True)
    xr.open_zarr(tmp).close()
    tmp.rename(path)
    return path


def replicate(domain, k: int) -> Path:
    """A domain store with the groups of ``domain`` ``k`` times (glacier ids and slots renumbered), cached."""
    import xarray as xr
    import zarr

    if k == 1:
        return Path(domain.path)
    path = SHARED / f"alps-domain-x{k}.zarr"
    if path.exists():
        return path
    src = xr.open_zarr(domain.path, chunks={})
    npix, ngl = src.sizes["pixel"], src.sizes["glacier"]
    pix = [v for v in src.data_vars if "pixel" in src[v].dims]
    gl = [v for v in src.data_vars if "glacier" in src[v].dims]
    copies = []
    for c in range(k):
        part = src.copy()
        gid = part["glacier_id"]
        part["glacier_id"] = gid.where(gid == 0, gid + c * ngl).astype(gid.dtype)
        fp = part["first_pixel"]
        part["first_pixel"] = fp.where(fp < 0, fp + c * npix).astype(fp.dtype)
        part = part.assign_coords(glacier=part["glacier"] + c * ngl)
        copies.append(part)
    out = xr.merge([xr.concat([p[pix] for p in copies], dim="pixel"),
                    xr.concat([p[gl] for p in copies], dim="glacier")], combine_attrs="override")
    out.attrs.update(n_groups=int(src.attrs["n_groups"]) * k, n_glaciers=int(src.attrs["n_glaciers"]) * k,
                     n_pixels=int(src.attrs["n_pixels"]) * k)
    for v in out.variables.values():
        v.encoding = {}
    out = out.chunk({"pixel": int(src.attrs["group_pixels"]), "glacier": int(src.attrs["group_glaciers"])})
    tmp = path.with_name(path.name + ".tmp")
    out.to_zarr(tmp, mode="w", consolidated=True)
    zarr.consolidate_metadata(str(tmp))
    tmp.rename(path)
    return path


# --------------------------------------------------------------------------- the floor
@dataclass(frozen=True)
class Packed:
    """Every real pixel of a domain in memory (compacted: padding removed), and the per-glacier layout."""

    gid: np.ndarray        # (n,) int64 glacier slot number
    pos: np.ndarray        # (n,) int64 dense glacier position 0..G-1
    glacier: np.ndarray    # (G,) slot numbers
    surface: np.ndarray    # float64
    thickness: np.ndarray  # float64
    area: np.ndarray       # float64 m2
    lon: np.ndarray        # float64
    lat: np.ndarray
    slope: np.ndarray      # float32 (stored, for a static surface)
    aspect_cos: np.ndarray
    aspect_sin: np.ndarray
    nb: np.ndarray         # (n, 4) int64 compacted neighbour index (-1: outside the glacier)
    nb_surface: np.ndarray  # (n, 4) float64 surface of the outside neighbours
    dx: np.ndarray
    dy: np.ndarray

    @property
    def n(self) -> int:
        return int(self.gid.size)


def load_packed(domain) -> Packed:
    """Read the real pixels of every group into memory (not timed)."""
    C = domain.group_pixels
    px = domain.pixels.compute()
    gid = px["glacier_id"].values.astype("int64")
    real = gid > 0
    idx = np.flatnonzero(real)
    offset = np.cumsum(real) - 1  # compacted position of each stored pixel
    nb = px["neighbours"].values.astype("int64")[idx]
    group_start = (idx // C) * C
    glob = np.where(nb >= 0, nb + group_start[:, None], 0)
    nb = np.where(nb >= 0, offset[glob], -1)
    glacier = np.unique(gid[idx])
    pos = np.searchsorted(glacier, gid[idx])
    f64 = lambda v: np.ascontiguousarray(px[v].values[idx], dtype="float64")  # noqa: E731
    f32 = lambda v: np.ascontiguousarray(px[v].values[idx], dtype="float32")  # noqa: E731
    return Packed(gid[idx], pos, glacier, f64("surface"), np.nan_to_num(f64("thickness")), f64("pixel_area"),
                  f64("lon"), f64("lat"), f32("slope"), f32("aspect_cos"), f32("aspect_sin"), np.ascontiguousarray(nb),
                  np.ascontiguousarray(px["neighbour_surface"].values[idx], dtype="float64"), f64("dx"), f64("dy"))


@njit(cache=True)
def _glacier_max(pos, z, G):  # pragma: no cover - compiled
    out = np.full(G, -np.inf)
    for i in range(pos.size):
        if z[i] > out[pos[i]]:
            out[pos[i]] = z[i]
    return out


@njit(cache=True, parallel=True)
def _pixel_smb(lat, lon, z, pos, zmax, area_km2, nb, nb_surface, dx, dy, slope_in, acos_in, asin_in, evolve,
               clat0, dlat, nlat, clon0, dlon, nlon, t2m, tp, orog, days, winter, gamma, pfac, pgrad, rain, band,
               coef, intercept, out):  # pragma: no cover - compiled
    """SMB (m w.e.) of every pixel and year: ``out[year, i]``; ``t2m``/``tp`` are ``(year, 12, lat, lon)``."""
    ny = t2m.shape[0]
    for i in prange(z.size):
        fy = (lat[i] - clat0) / dlat
        j = min(max(int(np.floor(fy)), 0), nlat - 2)
        wy = min(max(fy - j, 0.0), 1.0)
        fx = (lon[i] - clon0) / dlon
        k = min(max(int(np.floor(fx)), 0), nlon - 2)
        wx = min(max(fx - k, 0.0), 1.0)
        w00, w01, w10, w11 = (1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx
        zera = w00 * orog[j, k] + w01 * orog[j, k + 1] + w10 * orog[j + 1, k] + w11 * orog[j + 1, k + 1]
        dz = z[i] - zera
        pscale = max(1.0 + pgrad * dz, 0.0) * pfac
        if evolve:  # slope and aspect from the current surface at the four neighbours
            zn = np.empty(4)
            for s in range(4):
                zn[s] = z[nb[i, s]] if nb[i, s] >= 0 else nb_surface[i, s]
            gx = (zn[1] - zn[0]) / (2.0 * dx[i])
            gy = (zn[2] - zn[3]) / (2.0 * dy[i])
            g = np.hypot(gx, gy)
            sl = np.degrees(np.arctan(g))
            ac = -gy / g if g > 0 else 0.0
            as_ = -gx / g if g > 0 else 0.0
        else:
            sl, ac, as_ = slope_in[i], acos_in[i], asin_in[i]
        static = (coef[3] * z[i] + coef[4] * zmax[pos[i]] + coef[5] * area_km2[pos[i]] + coef[6] * sl
                  + coef[7] * lat[i] + coef[8] * lon[i] + coef[9] * ac + coef[10] * as_ + intercept)
        for y in range(ny):
            cpdd = 0.0
            sw = 0.0
            ss = 0.0
            for m in range(12):
                t = (w00 * t2m[y, m, j, k] + w01 * t2m[y, m, j, k + 1] + w10 * t2m[y, m, j + 1, k]
                     + w11 * t2m[y, m, j + 1, k + 1]) - T0 + gamma * dz
                p = (w00 * tp[y, m, j, k] + w01 * tp[y, m, j, k + 1] + w10 * tp[y, m, j + 1, k]
                     + w11 * tp[y, m, j + 1, k + 1]) * pscale
                if t > 0:
                    cpdd += t * days[y, m]
                f = min(max((rain - t) / band, 0.0), 1.0)
                if winter[m]:
                    sw += max(p, 0.0) * f
                else:
                    ss += max(p, 0.0) * f
            out[y, i] = coef[0] * cpdd + coef[1] * sw + coef[2] * ss + static


def floor_smb(p: Packed, h: np.ndarray, z: np.ndarray, clim: dict, coef: np.ndarray, intercept: float,
              evolve: bool, params) -> tuple[np.ndarray, np.ndarray]:
    """Pixel SMB ``(year, n)`` and area-weighted glacier SMB ``(year, G)`` of every pixel (all years of ``clim``)."""
    G = p.glacier.size
    ice = h > 0
    area_km2 = np.bincount(p.pos, weights=np.where(ice, p.area, 0.0), minlength=G) / 1e6
    zmax = _glacier_max(p.pos, np.where(ice, z, -np.inf), G)
    ny = clim["t2m"].shape[0]
    out = np.empty((ny, p.n))
    _pixel_smb(p.lat, p.lon, z, p.pos, zmax, area_km2, p.nb, p.nb_surface, p.dx, p.dy, p.slope, p.aspect_cos,
               p.aspect_sin, evolve, clim["lat0"], clim["dlat"], clim["nlat"], clim["lon0"], clim["dlon"],
               clim["nlon"], clim["t2m"], clim["tp"], clim["orog"], clim["days"], clim["winter"],
               params.lapse_rate, params.precip_factor, params.precip_gradient, params.rain_threshold,
               params.rain_threshold - params.snow_threshold, coef, intercept, out)
    w = np.where(ice, p.area, 0.0)
    asum = np.bincount(p.pos, weights=w, minlength=G)
    gl = np.stack([np.bincount(p.pos, weights=out[y] * w, minlength=G) for y in range(ny)])
    with np.errstate(invalid="ignore", divide="ignore"):
        gl = np.where(asum > 0, gl / asum, np.nan)
    return out, gl


def floor_year(p: Packed, h: np.ndarray, z: np.ndarray, clim: dict, coef: np.ndarray, intercept: float, params,
               geometry) -> dict:
    """One evolve year: pixel SMB, glacier SMB, then the delta-h update on a ``(1, n)`` state."""
    import xarray as xr

    from glacgrid.geometry import deltah_update

    t0 = time.perf_counter()
    _, gl = floor_smb(p, h, z, clim, coef, intercept, True, params)
    t1 = time.perf_counter()
    ok = np.isfinite(gl[0])
    state = xr.Dataset({"glacier_id": (("y", "x"), p.gid[None]), "thickness": (("y", "x"), h[None]),
                        "surface": (("y", "x"), z[None]), "pixel_area": (("y", "x"), p.area[None])})
    smb = xr.DataArray(gl[0][ok], dims="glacier", coords={"glacier": p.glacier[ok]}, attrs={"units": "m"})
    new, report = deltah_update(state, smb, rho_ice=geometry.rho_ice, rho_water=geometry.rho_water)
    h1, z1 = new["thickness"].values[0], new["surface"].values[0]
    t2 = time.perf_counter()
    return {"h": h1, "z": z1, "smb_glacier": gl[0], "report": report, "smb_s": t1 - t0, "deltah_s": t2 - t1}


def floor_climate(cube, hemisphere: str = "north") -> dict:
    """The cube's hydrological years as in-memory ``(year, 12, lat, lon)`` arrays (not timed)."""
    from glacgrid.features import HydroYear, hydrological_years
    from glacgrid.features.climate import ClimateFeatureParams

    hy, days = hydrological_years(cube[["t2m", "tp"]], hydro=HydroYear(hemisphere))
    hy = hy.transpose("year", "month", "lat", "lon").compute()
    winter, _ = ClimateFeatureParams(HydroYear(hemisphere)).masks()
    lat, lon = cube["lat"].values, cube["lon"].values
    return {"t2m": np.ascontiguousarray(hy["t2m"].values, dtype="float64"),
            "tp": np.ascontiguousarray(hy["tp"].values, dtype="float64"),
            "orog": np.ascontiguousarray(cube["orog"].values, dtype="float64"),
            "days": np.ascontiguousarray(days.values, dtype="float64"), "winter": np.asarray(winter, bool),
            "lat0": float(lat[0]), "dlat": float(lat[1] - lat[0]), "nlat": int(lat.size),
            "lon0": float(lon[0]), "dlon": float(lon[1] - lon[0]), "nlon": int(lon.size),
            "years": hy["year"].values}
