"""Synthetic regions of any size for batched inference: lazy (dask) climate, surface and glacier rasters.

Glaciers are squares of ``glacier_size`` pixels on a regular lattice, separated by ``gap`` ice-free
pixels; the surface is a smooth analytic field, the downscaled climate a seasonal cycle plus a lapse-rate
term of a smooth reference elevation. Every array is generated block by block from its coordinates, so a
region of tens of millions of pixels costs no memory until computed. :func:`fit_ann` trains a quick ANN
on features sampled from the region, with a known temperature-index target.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from ..glaciers import FEATURES, GlacierGeometry
from ..grid import TargetGrid
from ..units import mm_we_to_m_we

__all__ = ["BASE_FEATURES", "InferenceRegion", "inference_region", "region_with_pixels", "feature_sample", "fit_ann",
           "fit_model"]

#: The twelve base features glacgrid computes (:data:`glacgrid.glaciers.FEATURES`).
BASE_FEATURES = FEATURES


@dataclass(frozen=True)
class InferenceRegion:
    """Everything :func:`glacgrid.inference.infer` takes, for a synthetic region."""

    grid: TargetGrid
    down: xr.Dataset
    surface: xr.DataArray
    glacier_id: xr.DataArray
    active: xr.DataArray
    pixel_area: xr.DataArray
    index: np.ndarray
    start: int
    end: int
    n_glacier_pixels: int

    @property
    def glaciers(self) -> GlacierGeometry:
        """The region's glacier geometry (no thickness): what :func:`glacgrid.inference.infer` takes."""
        return GlacierGeometry(self.glacier_id, self.surface, self.pixel_area, self.index, self.grid)

    def load(self) -> "InferenceRegion":
        """The same region with every array in memory (numpy)."""
        from dataclasses import replace

        return replace(self, down=self.down.compute(), surface=self.surface.compute(),
                       glacier_id=self.glacier_id.compute(), active=self.active.compute(),
                       pixel_area=self.pixel_area.compute())


def _surface_block(yy: np.ndarray, xx: np.ndarray, seed: int) -> np.ndarray:
    """Smooth surface (m): ridges of a few km on a regional swell, float64."""
    ph = 0.37 * seed
    return (2600.0 + 600.0 * np.sin(xx / 3100.0 + ph) * np.cos(yy / 2300.0 - ph)
            + 250.0 * np.sin((xx + yy) / 900.0) + 300.0 * np.cos(yy / 11000.0 + xx / 13000.0))


def _ids_block(rows: np.ndarray, cols: np.ndarray, size: int, gap: int, per_row: int) -> np.ndarray:
    inside = (rows % size < size - gap) & (cols % size < size - gap)
    return np.where(inside, (rows // size) * per_row + cols // size + 1, 0).astype("int32")


def _ref_block(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Smooth reference elevation (m) of the downscaled cube, float32."""
    return (2200.0 + 300.0 * np.sin(xx / 7000.0) * np.cos(yy / 6000.0)).astype("float32")


def _block(kind: str, ycoord: np.ndarray, xcoord: np.ndarray, params: dict, block_info=None) -> np.ndarray:
    """One block of a synthetic field, from its location only: every block is an independent root task
    (no shared dask dependency, so the scheduler never has to hold many input blocks at once)."""
    loc = block_info[None]["array-location"]
    (r0, r1), (c0, c1) = loc[-2], loc[-1]
    yy, xx = ycoord[r0:r1, None], xcoord[None, c0:c1]
    if kind == "surface":
        return _surface_block(yy, xx, params["seed"])
    if kind == "ids":
        return _ids_block(np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :], params["size"], params["gap"],
                          params["per_row"])
    if kind == "ref":
        return _ref_block(yy, xx)
    t0, t1 = loc[0]
    if kind == "temp":
        ts = params["t_sl"][t0:t1, None, None]
        return (ts + (np.float32(params["lapse_rate"]) * _ref_block(yy, xx))[None]).astype("float32")
    pf = (1.0 + 0.3 * np.sin(np.broadcast_to(xx, (r1 - r0, c1 - c0)) / 5000.0)).astype("float32")
    return (params["p_m"][t0:t1, None, None] * pf[None]).astype("float32")


def inference_region(shape: tuple[int, int] = (90, 130), *, chunks: tuple[int, int] = (32, 48),
                     time_chunk: int = 12, start: int = 2001, end: int = 2002, glacier_size: int = 20,
                     gap: int = 3, resolution: float = 50.0, crs: str = "EPSG:32632",
                     origin: tuple[float, float] = (640_000.0, 5_200_000.0), seed: int = 0,
                     lapse_rate: float = -0.0065) -> InferenceRegion:
    """A lazy synthetic region of ``shape`` pixels chunked ``chunks`` (time chunks of ``time_chunk`` months).

    The monthly record runs from October ``start - 1`` to September ``end`` (whole hydrological years).
    """
    ny, nx = shape
    left, top = origin
    grid = TargetGrid.from_spec(crs, resolution, (left, top - ny * resolution, left + nx * resolution, top),
                                chunks=chunks)
    ych, xch = dsa.core.normalize_chunks(chunks, shape)
    per_row = -(-nx // glacier_size)
    times = pd.date_range(f"{start - 1}-10-01", f"{end}-09-01", freq="MS")
    rng = np.random.default_rng(seed)
    month = times.month.to_numpy()
    params = {
        "seed": seed, "size": glacier_size, "gap": gap, "per_row": per_row, "lapse_rate": lapse_rate,
        "t_sl": (14.0 - 11.0 * np.cos(2 * np.pi * (month - 1) / 12)
                 + rng.normal(0, 1.5, times.size)).astype("float32"),
        "p_m": rng.gamma(4.0, 30.0, times.size).astype("float32"),
    }
    tch = dsa.core.normalize_chunks(time_chunk, (times.size,))[0]

    def field(kind, dtype, time=False):
        chunks2 = ((tch,) if time else ()) + (ych, xch)
        return dsa.map_blocks(_block, kind, grid.y, grid.x, params, dtype=dtype, chunks=chunks2,
                              meta=np.empty((0,) * len(chunks2), dtype=dtype),
                              name=f"synthetic-{kind}-{dask.base.tokenize(kind, shape, chunks2, seed, glacier_size, gap)}")

    coords = grid.coords()
    dims = ("y", "x")
    down = xr.Dataset({
        "temp": (("time", *dims), field("temp", "float32", True), {"units": "degC"}),
        "prcp": (("time", *dims), field("prcp", "float32", True), {"units": "kg m-2"}),
        "reference_elevation": (dims, field("ref", "float32"), {"units": "m"}),
    }, coords={"time": times, **coords}, attrs={"lapse_rate": float(lapse_rate)})
    gida = xr.DataArray(field("ids", "int32"), dims=dims, coords=coords, name="glacier_id")
    ids = np.arange(ny)[:, None] % glacier_size < glacier_size - gap
    jds = np.arange(nx)[None, :] % glacier_size < glacier_size - gap
    n_pix = int(ids.sum() * jds.sum())
    n_gl = -(-ny // glacier_size) * per_row
    return InferenceRegion(
        grid=grid, down=down, surface=xr.DataArray(field("surface", "float64"), dims=dims, coords=coords,
                                                   name="surface"),
        glacier_id=gida, active=(gida > 0).rename("active"),
        pixel_area=xr.DataArray(dsa.full(shape, resolution**2, chunks=chunks), dims=dims, coords=coords,
                                name="pixel_area"),
        index=np.arange(1, n_gl + 1), start=start, end=end, n_glacier_pixels=n_pix)


def region_with_pixels(n_pixels: float, *, glacier_size: int = 40, gap: int = 2, **kw) -> InferenceRegion:
    """A square-ish region holding at least ``n_pixels`` glacier pixels."""
    frac = ((glacier_size - gap) / glacier_size) ** 2
    side = int(np.ceil(np.sqrt(n_pixels / frac) / glacier_size)) * glacier_size
    return inference_region((side, side), glacier_size=glacier_size, gap=gap, **kw)


def feature_sample(region: InferenceRegion, features=BASE_FEATURES, *, n_blocks: int = 4,
                   constants=None) -> np.ndarray:
    """Features of the active pixels of the first ``n_blocks`` blocks along x of the first block row."""
    from .. import features as feat
    from ..config import DownscaleParams
    from ..inference import block_features, block_spec

    cy = region.grid.chunks[0]
    cx = region.grid.chunks[1] * n_blocks
    sub = dict(y=slice(0, cy), x=slice(0, cx))
    gid, surf, act = (region.glacier_id.isel(**sub).values, region.surface.isel(**sub).values,
                      region.active.isel(**sub).values)
    if constants is None:
        constants = feat.glacier_constants(region.glacier_id, region.surface, region.active, region.pixel_area,
                                           region.index).compute()
    spec = block_spec(features, constants, region.index, region.grid, DownscaleParams(),
                      lapse_rate=region.down.attrs["lapse_rate"])
    hy, days = feat.hydrological_years(region.down[["temp", "prcp"]].isel(**sub), region.start, region.end)
    temp = hy["temp"].transpose("year", "month", "y", "x").values
    prcp = hy["prcp"].transpose("year", "month", "y", "x").values
    zpad = np.pad(surf, 1, mode="edge")
    X, _, _ = block_features(spec, temp, prcp, days.values, region.down["reference_elevation"].isel(**sub).values,
                             zpad, gid, act, region.grid.y[:cy], region.grid.x[:cx])
    return X


def _target(X: np.ndarray, features) -> np.ndarray:
    """Known SMB (m w.e.): snowfall - 4 mm K-1 d-1 x CPDD (mm w.e.) in m w.e., plus a small elevation term."""
    f = {n: X[:, i].astype("float64") for i, n in enumerate(features)}
    smb = mm_we_to_m_we(f.get("snow_winter", 0.0) + f.get("snow_summer", 0.0) - 4.0 * f.get("cpdd", 0.0))
    if "mean_elevation" in f:
        smb = smb + 2e-4 * (f["mean_elevation"] - 2600.0)
    return smb


def fit_model(kind: str, region: InferenceRegion, features=BASE_FEATURES, *, n_rows: int = 2000, seed: int = 0,
              **options):
    """A model of ``kind`` (any :func:`glacgrid.models.make_model` kind) fitted on ``n_rows`` pixel-years
    sampled from the region, against the known target plus 0.05 m w.e. noise."""
    from ..models import FeatureSchema, make_model
    from ..metadata import registry

    X = feature_sample(region, features)
    rng = np.random.default_rng(seed)
    rows = rng.choice(X.shape[0], size=min(n_rows, X.shape[0]), replace=False)
    X = X[rows].astype("float64")
    y = _target(X, features) + rng.normal(0, 0.05, X.shape[0])
    schema = FeatureSchema(tuple(features), tuple(registry()[f]["units"] for f in features))
    return make_model(kind, seed=seed, **options).fit(X, y, schema)


def fit_ann(region: InferenceRegion, features=BASE_FEATURES, *, epochs: int = 5, n_rows: int = 2000,
            seed: int = 0, **options):
    """A quick ANN of the ALPGM preset (few epochs) fitted on a small sample of the region."""
    return fit_model("ann", region, features, n_rows=n_rows, seed=seed, preset="alpgm", epochs=epochs,
                     **options)
