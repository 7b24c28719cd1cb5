"""Per-glacier area-weighted means: glacgrid's flox reduction vs a per-glacier Python loop.

Both compute the same numbers on the same arrays in the same run; the script prints wall times, the
ratio and the largest difference. Usage: python benchmarks/glacier_means.py [--pixels 4000] [--glaciers 3000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr


def loop_means(values: np.ndarray, ids: np.ndarray, area: np.ndarray, index: np.ndarray) -> np.ndarray:
    out = np.full((values.shape[0], index.size), np.nan)
    for k, g in enumerate(index):  # the pattern glacgrid replaces
        m = ids == g
        w = area[m]
        if w.sum() > 0:
            out[:, k] = (values[:, m] * w).sum(axis=1) / w.sum()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pixels", type=int, default=3000, help="grid side in pixels")
    p.add_argument("--glaciers", type=int, default=3927)
    p.add_argument("--years", type=int, default=5)
    p.add_argument("--chunks", type=int, default=1000)
    a = p.parse_args()
    from glacgrid.glaciers import area_weighted_mean

    rng = np.random.default_rng(0)
    n = a.pixels
    # glaciers as blocks of a coarse random partition: about 20 % of the pixels are glacier
    coarse = rng.integers(1, a.glaciers + 1, size=(n // 10 + 1, n // 10 + 1))
    coarse[rng.random(coarse.shape) > 0.2] = 0
    ids = np.kron(coarse, np.ones((10, 10), dtype="int32"))[:n, :n]
    area = np.full((n, n), 625.0)
    values = rng.normal(size=(a.years, n, n)).astype("float32")
    index = np.arange(1, a.glaciers + 1)
    dims = ("y", "x")
    c = {"y": a.chunks, "x": a.chunks}
    gid = xr.DataArray(ids, dims=dims).chunk(c)
    field = xr.DataArray(values, dims=("year", *dims)).chunk({"year": 1, **c})
    w = xr.DataArray(area, dims=dims).chunk(c)

    t0 = time.perf_counter()
    fast = area_weighted_mean(field, gid, gid > 0, w, index).compute()
    t_flox = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = loop_means(values, ids, area, index)
    t_loop = time.perf_counter() - t0
    diff = np.nanmax(np.abs(fast.transpose("year", "glacier").values - slow))
    print(f"grid {n}x{n}, {a.glaciers} glaciers, {a.years} years, chunks {a.chunks}")
    print(f"flox (glacgrid): {t_flox:8.2f} s")
    print(f"python loop    : {t_loop:8.2f} s")
    print(f"speed-up       : {t_loop / t_flox:8.1f} x   (max abs difference {diff:.2e})")


if __name__ == "__main__":
    main()
