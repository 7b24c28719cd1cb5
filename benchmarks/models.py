"""ANN training and inference on CPU: glacgrid's ANNModel against a bare torch forward pass.

For 1,000 and 100,000 samples x 34 features (seeded synthetic data), each size in its own
subprocess (so that peak RSS is that contender's alone), the script measures

* training time of the ``alpgm`` preset for a fixed number of epochs (early stopping disabled),
  and the time per epoch;
* inference: ``model.predict(X)`` (float64 in, NaN checks, standardisation, padded batches,
  un-standardisation) against ``net(tensor)`` on the same already-standardised float32 tensor under
  ``torch.inference_mode`` -- throughput in samples/s and the ratio glacgrid / bare;
* the largest difference between the two predictions (target units);
* peak resident memory of the subprocess.

Usage: python benchmarks/models.py [--quick] [--epochs 10] [--threads 1] [--sizes 1000 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

N_FEATURES = 34


def child(n: int, epochs: int, threads: int, repeats: int) -> dict:
    import torch

    from glacgrid.models import FeatureSchema, make_model
    from glacgrid.models import _kernels

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, N_FEATURES))
    y = np.sin(X[:, 0]) * X[:, 1] + X[:, 2] ** 2 + 0.1 * X[:, 3:].sum(axis=1)
    schema = FeatureSchema(tuple(f"f{i}" for i in range(N_FEATURES)), ("1",) * N_FEATURES)
    # warm-up: the first fit of a process pays for lazy torch initialisation
    make_model("ann", preset="alpgm", epochs=1, device="cpu").fit(X[:64], y[:64], schema)
    model = make_model("ann", preset="alpgm", epochs=epochs, patience=epochs + 1, device="cpu")
    t0 = time.perf_counter()
    model.fit(X, y, schema)
    train_s = time.perf_counter() - t0
    net = model._net_for("cpu")
    nm = model.norm_
    tensor = torch.from_numpy(_kernels.standardise(X, np.asarray(nm["x_mean"]), np.asarray(nm["x_std"]))
                              .astype(np.float32))

    def best_of(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), out

    pred_s, pred = best_of(lambda: model.predict(X))

    def bare():
        with torch.inference_mode():
            return net(tensor).squeeze(1).numpy() * nm["y_std"] + nm["y_mean"]

    bare_s, ref = best_of(bare)
    return {"n": n, "features": N_FEATURES, "epochs": model.training_["epochs_run"], "train_s": train_s,
            "train_s_per_epoch": train_s / model.training_["epochs_run"], "predict_s": pred_s, "bare_s": bare_s,
            "predict_samples_per_s": n / pred_s, "bare_samples_per_s": n / bare_s,
            "throughput_ratio": (n / pred_s) / (n / bare_s), "max_abs_diff": float(np.max(np.abs(pred - ref))),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": threads}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1000, 100_000])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these small "
                   "networks on a shared machine)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="2 epochs, 2 repeats")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.quick:
        a.epochs, a.repeats = 2, 2
    if a.child:
        print(json.dumps(child(a.child, a.epochs, a.threads, a.repeats)))
        return
    rows = []
    for n in a.sizes:
        res = subprocess.run([sys.executable, __file__, "--child", str(n), "--epochs", str(a.epochs),
                              "--threads", str(a.threads), "--repeats", str(a.repeats)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n| samples x features | train ({a.epochs} epochs, alpgm) | s/epoch | glacgrid predict | bare forward "
          "| throughput ratio | max abs diff | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} x {r['features']} | {r['train_s']:.2f} s | {r['train_s_per_epoch']:.3f} | "
              f"{r['predict_samples_per_s']:,.0f}/s | {r['bare_samples_per_s']:,.0f}/s | "
              f"{r['throughput_ratio']:.2f} | {r['max_abs_diff']:.1e} | {r['peak_rss_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
