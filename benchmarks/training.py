"""Training time: joint (footprint) fits against glacier-wide fits on the Otztal real data (issue 17).

The Otztal run of ``examples/hef_evolve.toml`` (HEF, KWF, VF; WGMS 1982-2018; 50 m band profiles) with the
profile features of docs/user-guide/footprints.md, built as the slow tests of tests/test_footprint.py build
it (``prepare``, ``training_table``, ``observed_pixels``, ``read_band_profiles``, ``pixel_footprints``).
In one run the script times

1. one glacier-wide lasso fit (the training table's glacier-year rows),
2. one joint lasso fit, ``band_fit = "level"``,
3. one joint lasso fit, ``band_fit = "shape"``,
4. the leave-one-year-out loop of each through the gridded path (``reconstruction_cv``),
5. building the footprints (``pixel_footprints``),
6. an ANN joint fit (aggregation loss, full batch) against an ANN glacier-wide fit, the same epochs
   (early stopping off), one torch thread,

and the floor: the bare weighted least-squares solve (``numpy.linalg.lstsq``) on the aggregated footprint
features the joint lasso sees. BLAS and torch run on one thread each. Each fast contender: best of
``--repeats``; the LOYO loops once. Printed: seconds, the ratio to the glacier-wide lasso fit and to the
floor (compare ratios, not seconds).

Usage: python benchmarks/training.py [--quick] [--epochs 50] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

PROFILE_FEATURES = ("cpdd", "snow_winter", "snow_summer", "snow_winter_dz", "cpdd_low", "cpdd_ice", "elevation_norm")
HEF = "RGI60-11.00897"


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="no LOYO loops, 10 ANN epochs, 3 repeats")
    ap.add_argument("--epochs", type=int, default=50, help="ANN epochs (early stopping off)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    epochs = 10 if args.quick else args.epochs
    repeats = 3 if args.quick else args.repeats

    import torch

    from glacgrid.config import load_config
    from glacgrid.models import make_model
    from glacgrid.models.footprint import fit_footprints, footprint_weights
    from glacgrid.pipeline import prepare, read_observed, training_table
    from glacgrid.pipeline.model import build_model
    from glacgrid.pipeline.training import (balance_columns, fit_joint, kind_weights, observed_pixels,
                                            pixel_footprints, read_band_profiles)
    from glacgrid.pipeline.validate import reconstruction_cv
    from glacgrid.testing import REPO

    from threadpoolctl import threadpool_limits

    # one thread for BLAS and torch: the lasso and ANN fits are single-threaded anyway, and with two OpenBLAS
    # threads and the other core busy the 0.4 ms floor was once measured at 29 ms
    threadpool_limits(1)
    torch.set_num_threads(1)
    cfg = load_config(REPO / "examples" / "hef_evolve.toml")
    cfg = dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, chunks=128),
                              model=dataclasses.replace(cfg.model, features=PROFILE_FEATURES, kind="lasso"))
    level = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, training="joint", band_fit="level"))
    shape = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, training="joint", band_fit="shape"))
    names = tuple(cfg.model.features)

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="glacgrid-bench-training-") as tmp:
        t = time.perf_counter()
        prep = prepare(cfg, Path(tmp) / "work")
        observed = read_observed(cfg, prep.table)
        train, _ = training_table(cfg, prep, observed)
        t_prep = time.perf_counter() - t
        t = time.perf_counter()
        px = observed_pixels(cfg, prep, observed, sorted(train["year"].unique().tolist()))
        t_px = time.perf_counter() - t
        px_seasons = observed_pixels(cfg, prep, observed, sorted(train["year"].unique().tolist()),
                                     ("winter", "summer"))
        prof = read_band_profiles(cfg)
    glw = train[["obs_id", "year", "smb"]]
    X_tab = train[list(names)].to_numpy("float64")
    y_tab = train["smb"].to_numpy("float64")

    t_fp, (X, fp) = best_of(lambda: pixel_footprints(px.features, px.unit, px.surface, px.pixel_area, px.units,
                                                      glw, prof, names=names), repeats)
    counts = fp.counts()
    print(f"Otztal: {X.shape[0]:,} pixel-years x {X.shape[1]} features; footprints {dict(counts)}; "
          f"training table {len(train)} rows")
    print(f"(setup, not compared: prepare + training table {t_prep:.1f} s, pixel features {t_px:.1f} s)")

    def glacier_fit():
        model, schema = build_model(cfg)
        return model.fit(X_tab, y_tab, schema)

    t_glw, _ = best_of(glacier_fit, repeats)
    t_level, m_level = best_of(lambda: fit_joint(level, X, fp), repeats)
    t_shape, _ = best_of(lambda: fit_joint(shape, X, fp), repeats)
    seasons = dataclasses.replace(level, model=dataclasses.replace(level.model, season_weight=2.0))
    X_s, fp_s = pixel_footprints(px_seasons.features, px_seasons.unit, px_seasons.surface, px_seasons.pixel_area,
                                 px_seasons.units, train[balance_columns(train)], prof, names=names,
                                 seasonal=px_seasons.seasonal)
    t_seasons, _ = best_of(lambda: fit_joint(seasons, X_s, fp_s), repeats)
    ols = dataclasses.replace(level, model=dataclasses.replace(level.model, kind="ols"))
    t_ols, _ = best_of(lambda: fit_joint(ols, X, fp), repeats)

    # the floor: the weighted least-squares solve on the aggregated footprint features (what the joint lasso
    # fits, without the penalty search and the checks); the aggregation is timed on its own
    w = footprint_weights(fp, kind_weights(level))
    t_agg, A = best_of(lambda: fp.aggregate(X), repeats)

    def floor():  # columns standardised, as the lasso's are (their spreads range from 0.3 to 200)
        sw = np.sqrt(w)
        mean, std = A.mean(axis=0), A.std(axis=0)
        D = np.column_stack([(A - mean) / std, np.ones(len(A))]) * sw[:, None]
        return np.linalg.lstsq(D, fp.value * sw, rcond=None)[0][:-1] / std

    t_floor, beta = best_of(floor, repeats)
    rows += [("(5) build the footprints (pixel_footprints)", t_fp),
             ("(1) glacier-wide lasso fit", t_glw),
             ("(2) joint lasso fit, level", t_level),
             ("(3) joint lasso fit, shape", t_shape),
             (f"    joint lasso fit, level, + {fp_s.counts().get('glacier_winter', 0)} winter and summer balances",
              t_seasons),
             ("    joint OLS fit, level (no penalty search)", t_ols),
             ("    aggregate the features (Footprints.aggregate)", t_agg),
             ("floor: lstsq on the aggregated features", t_floor)]

    if not args.quick:
        for label, c, training in (("(4) LOYO, glacier-wide lasso", cfg, "glacier"),
                                   ("(4) LOYO, joint lasso, level", level, "joint"),
                                   ("(4) LOYO, joint lasso, shape", shape, "joint")):
            t = time.perf_counter()
            cv = reconstruction_cv(c, train, px, "loyo", training=training, profiles=prof)
            dt = time.perf_counter() - t
            met = cv.metrics.set_index("obs_id")
            rows.append((f"{label} (HEF r {met.loc[HEF, 'r']:.3f}, RMSE {met.loc[HEF, 'rmse']:.3f}; "
                         f"pooled RMSE {met.loc['pooled', 'rmse']:.3f})", dt))

    # ANN: the same network (hidden (32, 16)), the same epochs, early stopping off, one torch thread
    def ann():
        return make_model("ann", epochs=epochs, patience=epochs + 1, seed=0, threads=1, device="cpu")

    _, schema = build_model(cfg)
    ann().fit(X_tab[:32], y_tab[:32], schema)  # warm-up: lazy torch initialisation
    t_ann_glw, _ = best_of(lambda: ann().fit(X_tab, y_tab, schema), max(1, repeats // 2))
    t_ann_joint, m_ann = best_of(lambda: fit_footprints(ann(), X, fp, schema, kind_weights=kind_weights(level)), 1)
    rows += [(f"(6) ANN glacier-wide fit, {epochs} epochs", t_ann_glw),
             (f"(6) ANN joint fit, {epochs} epochs ({m_ann.training_['n_pixel_rows']:,} pixel rows)", t_ann_joint)]

    print(f"\nfloor check: lstsq vs joint lasso (level), coefficient x feature std: max |diff| "
          f"{np.max(np.abs(beta - m_level.coef_) * A.std(axis=0)):.3g} m w.e. (the lasso's penalty shrinks some)")
    width = max(len(r[0]) for r in rows)
    print(f"\n{'contender':<{width}}  {'seconds':>9}  {'x glacier-wide':>14}  {'x floor':>9}")
    for label, s in rows:
        print(f"{label:<{width}}  {s:9.4f}  {s / t_glw:14.2f}  {s / t_floor:9.1f}")
    print(f"\nANN joint / ANN glacier-wide: {t_ann_joint / t_ann_glw:.1f}x "
          f"({t_ann_joint / epochs * 1000:.0f} ms vs {t_ann_glw / epochs * 1000:.1f} ms per epoch)")


if __name__ == "__main__":
    main()
