"""Synthetic Farinotti-style per-glacier tiles with known mosaic answers (for tests of glacgrid.mosaic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_tiles"]


def _write(path: Path, data: np.ndarray, transform: tuple, epsg: int | None) -> None:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                       dtype=str(data.dtype), crs=None if epsg is None else f"EPSG:{epsg}",
                       transform=rasterio.Affine(*transform)) as dst:
        dst.write(data, 1)


def write_tiles(root: str | Path, seed: int = 0) -> dict:
    """Write thickness and DEM tiles to ``root/thickness`` and ``root/dem``; return the known answers.

    Layout (25 m lattice with corners at 12.5 m offsets, like the Alps product):

    * glaciers 1, 2 in EPSG:32632, overlapping tiles; their ice overlaps on a 2 x 3 pixel patch
      (glacier 1 wins there: lowest number);
    * glacier 3 in EPSG:32632 at 50 m on a lattice with 0 offset (resampled onto the 25 m grid);
    * glacier 4 in EPSG:32633 with one negative thickness pixel (set to 0);
    * DEM tiles carry no CRS; the surface is ``3000 - 0.01 * y_local`` on every tile.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "thickness").mkdir(parents=True, exist_ok=True)
    (root / "dem").mkdir(parents=True, exist_ok=True)
    x0, y0 = 600_012.5, 5_200_012.5

    def tile(num, epsg, left, top, shape, res, thick):
        tr = (res, 0.0, left, 0.0, -res, top)
        _write(root / "thickness" / f"RGI60-11.{num:05d}_thickness.tif", thick.astype("float32"), tr, epsg)
        yy = top - res * (np.arange(shape[0]) + 0.5)
        dem = np.broadcast_to((3000.0 - 0.01 * (yy - 5_000_000))[:, None], shape).astype("float32")
        _write(root / "dem" / f"dem_{num:05d}.asc.tif", np.ascontiguousarray(dem), tr, None)

    t1 = np.zeros((10, 12))
    t1[2:8, 2:10] = rng.uniform(10, 100, (6, 8))  # ice at rows 2..7, cols 2..9
    tile(1, 32632, x0, y0, t1.shape, 25.0, t1)
    # tile 2 starts 8 columns east and 1 row south of tile 1 -> ice cols 8..9 overlap for rows 3..4
    t2 = np.zeros((8, 10))
    t2[2:4, 0:6] = rng.uniform(10, 100, (2, 6))
    tile(2, 32632, x0 + 8 * 25, y0 - 25, t2.shape, 25.0, t2)
    t3 = np.zeros((4, 4))
    t3[1:3, 1:3] = 40.0  # 4 pixels of 50 m = 0.01 km2, volume 4 * 2500 * 40
    tile(3, 32632, 601_000.0, 5_199_600.0, t3.shape, 50.0, t3)
    t4 = np.zeros((5, 5))
    t4[1:4, 1:4] = 20.0
    t4[0, 0] = -0.5
    tile(4, 32633, 300_012.5, 5_100_012.5, t4.shape, 25.0, t4)
    # known answers (overlap: tile-2 ice rows 2..3 -> grid rows 3..4; cols 0..1 -> grid cols 8..9)
    ov = t2[2:4, 0:2]
    return {
        "t1": t1, "t2": t2, "t3": t3, "t4": t4,
        "overlap_pixels": 4, "overlap_volume_m3": float(ov.sum() * 625.0),
        "volume_m3": {1: float(t1.sum() * 625), 2: float(t2.sum() * 625), 3: 4 * 2500 * 40.0,
                      4: float(t4[t4 > 0].sum() * 625)},
        "area_m2": {1: 48 * 625.0, 2: 12 * 625.0, 3: 4 * 2500.0, 4: 9 * 625.0},
    }
