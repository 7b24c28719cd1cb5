"""Real-data skill of every SMB model kind: LOGO and LOYO, with and without sample weights,
and the transfer-learning comparison. Writes JSON lines and prints the README's Markdown tables.

Data (read from ../shared/data relative to the repository; nothing is copied):

* ``iceland`` -- ``iceland/era5_features/iceland_monthly_dataset.csv``: real ERA5 monthly
  features sampled at Icelandic stakes. One row per stake and balance period (``ID``): the monthly
  rows are aggregated over the months of the period (t2m mean and warmest month, tp/slhf/sshf/ssrd/
  str sums) plus the stake's elevation and the period's length in months. Target: the point
  balance (m w.e.). 55 stake-periods, 2 ice-cap outlets (RGI ids), 13 years.
* ``norway`` -- NVE stakes: annual point balance (m w.e.) from altitude, latitude, longitude and
  the *observed* winter balance of the same stake-year (no climate features exist for Norway, so the
  model predicts the net balance given the measured winter balance and the position).
* ``oetztal`` -- the glacier-wide WGMS balances of Hintereis-, Kesselwand- and Vernagtferner with
  the features of ``examples/hef.toml`` (built with ``pipeline.training_table``, or read from the
  CSV given with ``--oetztal``).

Usage::

    python benchmarks/model_metrics.py --datasets iceland oetztal --out metrics.jsonl
    python benchmarks/model_metrics.py --datasets norway --out metrics.jsonl
    python benchmarks/model_metrics.py --transfer --out transfer.jsonl
    python benchmarks/model_metrics.py --tables metrics.jsonl transfer.jsonl   # Markdown only
    python benchmarks/model_metrics.py --quick ...                             # few epochs, smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ICELAND = DATA / "iceland" / "era5_features" / "iceland_monthly_dataset.csv"
NORWAY = DATA / "norway" / "2023-08-28_stake_mb_norway_cleaned_ids_latlon.csv"
KINDS = ("lasso", "ols", "svr", "rf", "gbm", "ann")


def iceland_table() -> tuple[pd.DataFrame, list[str]]:
    """One row per stake-period with ERA5 features aggregated over its months."""
    d = pd.read_csv(ICELAND)
    d["t2m_c"] = d["t2m"] - 273.15
    g = d.groupby("ID")
    t = g.agg(year=("YEAR", "first"), glacier=("RGIId", "first"), smb=("POINT_BALANCE", "first"),
              elevation=("POINT_ELEVATION", "first"), elev_diff=("ELEVATION_DIFFERENCE", "first"),
              aspect=("aspect", "first"), slope=("slope", "first"), n_months=("N_MONTHS", "first"),
              t2m_mean=("t2m_c", "mean"), t2m_max=("t2m_c", "max"), tp_sum=("tp", "sum"),
              slhf_sum=("slhf", "sum"), sshf_sum=("sshf", "sum"), ssrd_sum=("ssrd", "sum"),
              str_sum=("str", "sum"), fal_mean=("fal", "mean")).reset_index()
    # aspect and slope take one value per outlet and fal is constant (std 2e-6) on one of them: with two
    # glaciers they only identify the glacier, and LOGO would extrapolate them wildly; elev_diff is the
    # elevation minus a per-cell constant. They are left out.
    feats = ["elevation", "n_months", "t2m_mean", "t2m_max", "tp_sum", "slhf_sum", "sshf_sum", "ssrd_sum",
             "str_sum"]
    return t, feats


def norway_table() -> tuple[pd.DataFrame, list[str]]:
    """Stake-years with annual and winter balance; rows lacking either are dropped (and counted)."""
    n = pd.read_csv(NORWAY, sep=";")
    end = pd.to_datetime(n["dt_curr_year_min_date"], format="%d.%m.%Y %H:%M", errors="coerce")
    alt = pd.to_datetime(n["dt_curr_year_max_date"], format="%d.%m.%Y %H:%M", errors="coerce")
    n["year"] = end.dt.year.fillna(alt.dt.year)
    n = n.rename(columns={"RGIID": "glacier", "balance_netto": "smb"})
    feats = ["altitude", "lat", "lon", "balance_winter"]
    keep = n.dropna(subset=["smb", "year", *feats]).copy()
    keep["year"] = keep["year"].astype(int)
    keep.attrs["dropped"] = int(len(n) - len(keep))
    return keep, feats


def oetztal_table(path: Path | None) -> tuple[pd.DataFrame, list[str]]:
    """The training table of ``examples/hef.toml``: read from ``path``, or built (about a minute)."""
    if path is None:
        import tempfile

        from glacgrid.config import load_config
        from glacgrid.pipeline import prepare, read_observed, training_table

        cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "hef.toml")
        with tempfile.TemporaryDirectory() as work:
            prep = prepare(cfg, Path(work))
            t, _ = training_table(cfg, prep, read_observed(cfg, prep.table))
    else:
        t = pd.read_csv(path)
    t["glacier"] = t["obs_id"]
    return t, ["cpdd", "snow_winter", "snow_summer"]


def model_options(kind: str, dataset: str, quick: bool) -> dict:
    if kind != "ann":
        return {"n_estimators": 100} if (kind == "rf" and dataset == "norway") else {}
    opts = {"preset": "alpgm" if dataset == "oetztal" else "point", "device": "cpu"}
    if dataset == "norway":  # 3700 rows x 92 folds: a reduced budget keeps a shared 2-core run to minutes
        opts.update(batch_size=512, epochs=60, patience=8)
    if quick:
        opts.update(epochs=5, patience=2)
    return opts


def run_cv(datasets, out: Path, quick: bool, oetztal: Path | None, kinds, schemes, weightings) -> None:
    from glacgrid.models import cross_validate

    done = set()
    if out.exists():  # resume: skip the combinations already in the output file
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r.get("dataset"), r.get("scheme"), r.get("kind"), r.get("weighting")))
    for ds in datasets:
        table, feats = {"iceland": iceland_table, "norway": norway_table}[ds]() if ds != "oetztal" \
            else oetztal_table(oetztal)
        for scheme in schemes:
            for kind in kinds:
                for weighting in weightings:
                    if (ds, scheme, kind, weighting or "none") in done:
                        continue
                    t0 = time.perf_counter()
                    res = cross_validate(table, target="smb", features=feats, glacier_col="glacier",
                                         year_col="year", kind=kind, scheme=scheme, seed=0, weighting=weighting,
                                         **model_options(kind, ds, quick))
                    rec = {"dataset": ds, "n": len(table), "n_glaciers": int(table.glacier.nunique()),
                           "n_years": int(table.year.nunique()), "scheme": scheme, "kind": kind,
                           "weighting": weighting or "none", "seconds": time.perf_counter() - t0,
                           "options": {k: v for k, v in model_options(kind, ds, quick).items()}, **res.metrics}
                    with out.open("a") as f:
                        f.write(json.dumps(rec) + "\n")
                    print(json.dumps(rec), flush=True)


def run_transfer(out: Path, quick: bool, sizes=(50, 100, 200), seeds=(0, 1, 2)) -> None:
    """Pretrain on southern Norway (< 63 N), fine-tune on a few stake-years of half the northern glaciers,
    test on the other northern glaciers (never seen). Features: stake altitude and observed winter balance."""
    from glacgrid.models import FeatureSchema, fine_tune, make_model, regression_metrics

    table, _ = norway_table()
    # latitude and longitude are left out: the northern glaciers lie outside the southern range (66-70 N
    # vs 60-62 N) and a network extrapolates them wildly (tried: pretrained-only bias -10 m w.e.).
    feats = ["altitude", "balance_winter"]
    schema = FeatureSchema(tuple(feats), ("m", "m w.e."))
    south, north = table[table.lat < 63], table[table.lat > 63]
    opts = {"preset": "point", "device": "cpu", "batch_size": 64, "epochs": 200, "patience": 20}
    if quick:
        opts.update(epochs=5, patience=2)
    X = lambda d: d[feats].to_numpy("float64")  # noqa: E731
    t0 = time.perf_counter()
    pre = make_model("ann", seed=0, **opts).fit(X(south), south.smb.to_numpy(), schema)
    t_pre = time.perf_counter() - t0
    glaciers = sorted(north.glacier.unique())
    for seed in seeds:
        rng = np.random.default_rng(seed)
        tune_gl = set(rng.permutation(glaciers)[: len(glaciers) // 2].tolist())
        pool, test = north[north.glacier.isin(tune_gl)], north[~north.glacier.isin(tune_gl)]
        for size in sizes:
            small = pool.iloc[rng.permutation(len(pool))[:size]]
            Xs, ys = X(small), small.smb.to_numpy()
            contenders = {
                "pretrained only (south)": pre,
                "small set only (ANN)": make_model("ann", seed=seed, **opts).fit(Xs, ys, schema),
                "small set only (lasso)": make_model("lasso", seed=seed).fit(Xs, ys, schema),
                "fine-tuned, nothing frozen": fine_tune(pre, Xs, ys, schema, freeze=0, seed=seed),
                "fine-tuned, first 2 layers frozen": fine_tune(pre, Xs, ys, schema, freeze=2, seed=seed),
            }
            for name, model in contenders.items():
                rec = {"experiment": "transfer", "seed": seed, "n_small": size, "n_pretrain": len(south),
                       "n_test": len(test), "test_glaciers": sorted(set(glaciers) - tune_gl),
                       "contender": name, "pretrain_seconds": t_pre,
                       **regression_metrics(test.smb.to_numpy(), model.predict(X(test)))}
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(json.dumps(rec), flush=True)


def tables(paths) -> str:
    recs = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]
    lines = []
    cv = pd.DataFrame([r for r in recs if "scheme" in r], columns=["dataset", "n", "n_glaciers", "n_years", "scheme",
                                                                  "kind", "weighting", "r2", "rmse", "mae", "bias"])
    cv = cv.drop_duplicates(["dataset", "scheme", "kind", "weighting"], keep="last")
    for ds, d in cv.groupby("dataset", sort=False):
        first = d.iloc[0]
        schemes = [s for s in ("logo", "loyo", "lsygo", "kfold", "random") if s in set(d.scheme)]
        head = " | ".join(f"{s.upper()} r² | {s.upper()} RMSE | {s.upper()} bias" for s in schemes)
        lines += [f"\n**{ds}** ({first.n} samples, {first.n_glaciers} glaciers, {first.n_years} years; "
                  "RMSE and bias in m w.e.)\n", f"| model | weights | {head} |",
                  "|---|---|" + "---|" * (3 * len(schemes))]
        for kind in [k for k in KINDS if k in set(d.kind)]:
            for w in [w for w in ("none", "kde", "frequency") if w in set(d.weighting)]:
                cells = []
                for sch in schemes:
                    r = d[(d.kind == kind) & (d.weighting == w) & (d.scheme == sch)]
                    cells += ["–"] * 3 if r.empty else [f"{r.r2.item():.2f}", f"{r.rmse.item():.2f}",
                                                        f"{r.bias.item():+.2f}"]
                lines.append(f"| {kind} | {w} | " + " | ".join(cells) + " |")
    tr = pd.DataFrame([r for r in recs if r.get("experiment") == "transfer"])
    if len(tr):
        agg = tr.groupby(["n_small", "contender"], sort=False)[["r2", "rmse", "mae", "bias"]].agg(["mean", "std"])
        lines += ["\n**transfer learning** (test: unseen northern glaciers; mean ± std over "
                  f"{tr.seed.nunique()} seeds)\n", "| small-set size | model | r² | RMSE | MAE | bias |",
                  "|---|---|---|---|---|---|"]
        for (size, name), r in agg.iterrows():
            lines.append(f"| {size} | {name} | " + " | ".join(
                f"{r[(m, 'mean')]:.2f} ± {r[(m, 'std')]:.2f}" for m in ("r2", "rmse", "mae", "bias")) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="*", default=[], choices=["iceland", "norway", "oetztal"])
    p.add_argument("--oetztal", type=Path, help="training table CSV of examples/hef.toml (default: build it)")
    p.add_argument("--kinds", nargs="*", default=list(KINDS))
    p.add_argument("--schemes", nargs="*", default=["logo", "loyo"])
    p.add_argument("--weightings", nargs="*", default=["none", "kde"])
    p.add_argument("--transfer", action="store_true")
    p.add_argument("--quick", action="store_true", help="a few epochs only (smoke run)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("model_metrics.jsonl"))
    p.add_argument("--tables", nargs="*", help="only print the Markdown tables of these JSONL files")
    a = p.parse_args()
    if a.tables:
        print(tables(a.tables))
        return
    import torch

    torch.set_num_threads(a.threads)
    weightings = [None if w == "none" else w for w in a.weightings]
    if a.datasets:
        run_cv(a.datasets, a.out, a.quick, a.oetztal, a.kinds, a.schemes, weightings)
    if a.transfer:
        run_transfer(a.out, a.quick)
    print(tables([a.out]))


if __name__ == "__main__":
    main()
