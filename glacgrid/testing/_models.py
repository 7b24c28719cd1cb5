"""Seeded glacier-year tables with known truths, for the model and cross-validation tests.

``y = truth(x) + glacier offset + year offset + noise``; the offsets let a test predict exactly
what a model that never saw a glacier (or a year) gets wrong.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd


def linear_truth(X: np.ndarray) -> np.ndarray:
    """``2 x0 - x1 + 0.5 x2 + 1`` (x3.. irrelevant)."""
    return 2 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] + 1.0


def nonlinear_truth(X: np.ndarray) -> np.ndarray:
    """``sin(x0) x1 + x2²`` -- no linear model can fit it."""
    return np.sin(X[:, 0]) * X[:, 1] + X[:, 2] ** 2


def glacier_year_table(n_glaciers: int = 6, n_years: int = 8, *, truth: str = "linear", noise: float = 0.0,
                       glacier_offsets: dict | None = None, year_offsets: dict | None = None,
                       n_features: int = 3, seed: int = 0) -> pd.DataFrame:
    """Every glacier in every year: columns ``glacier`` (``G1``..), ``year`` (2001..), ``x1``.., ``smb``.

    Features are uniform on [-2, 2]; ``smb`` is the truth plus the given per-glacier and per-year
    offsets plus Gaussian noise of standard deviation ``noise`` (target units).
    """
    rng = np.random.default_rng(seed)
    g, yr = np.meshgrid([f"G{i + 1}" for i in range(n_glaciers)], np.arange(2001, 2001 + n_years), indexing="ij")
    X = rng.uniform(-2, 2, (g.size, n_features))
    f = {"linear": linear_truth, "nonlinear": nonlinear_truth}[truth]
    df = pd.DataFrame({"glacier": g.ravel(), "year": yr.ravel()})
    for j in range(n_features):
        df[f"x{j + 1}"] = X[:, j]
    df["smb"] = f(X) + rng.normal(0, noise, len(df)) if noise else f(X)
    for gl, off in (glacier_offsets or {}).items():
        df.loc[df.glacier == gl, "smb"] += off
    for y, off in (year_offsets or {}).items():
        df.loc[df.year == y, "smb"] += off
    return df


def pickle_globals(weights: Path) -> set[str]:
    """Every global a ``torch.save``'d file would import when unpickled (``"module name"`` strings)."""
    found = set()
    with zipfile.ZipFile(weights) as zf:
        for name in zf.namelist():
            if name.endswith(".pkl"):
                strings = []
                for op, arg, _ in pickletools.genops(zf.read(name)):
                    if op.name == "GLOBAL":
                        found.add(arg)
                    elif op.name == "STACK_GLOBAL":
                        found.add(" ".join(strings[-2:]))
                    elif isinstance(arg, str):
                        strings.append(arg)
    return found
