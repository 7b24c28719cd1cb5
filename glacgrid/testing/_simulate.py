"""Synthetic runs for the simulate stage: a prepared small region with a fitted model, corruptions of
one glacier (for failure isolation), and a two-member ensemble with a known mean and spread."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

__all__ = ["prepared_run", "configure", "corrupt_glacier", "ScaledEnsemble", "glacier_ring"]


def prepared_run(directory: str | Path, *, seed: int = 1, mode: str = "evolve", end: int | None = 2004,
                 **geometry):
    """The small demo region prepared (ingest, grid, downscale) with a fitted model.

    Returns ``(cfg, prep, model)``; ``end`` shortens the period (the climate covers 2001-2010),
    ``geometry`` replaces fields of ``[geometry]`` (e.g. ``thickness_factors=(0.7, 1.0)``).
    """
    from ._demo import prepare_demo
    from ..pipeline import fit_model, prepare, read_observed, training_table

    out = Path(directory)
    cfg, _ = prepare_demo(out, size="small", seed=seed, mode=mode)
    prep = prepare(cfg, out / "work")
    train, _ = training_table(cfg, prep, read_observed(cfg, prep.table))
    model, _ = fit_model(cfg, train, out)
    return configure(cfg, end=end, **geometry), prep, model


def configure(cfg, *, end: int | None = None, mode: str | None = None, **geometry):
    """``cfg`` with another period end, mode or ``[geometry]`` fields."""
    if end is not None:
        cfg = dataclasses.replace(cfg, period=dataclasses.replace(cfg.period, end=end))
    if mode is not None:
        cfg = dataclasses.replace(cfg, mode=mode)
    if geometry:
        cfg = dataclasses.replace(cfg, geometry=dataclasses.replace(cfg.geometry, **geometry))
    return cfg


def glacier_ring(glacier_id: np.ndarray, glacier: int) -> np.ndarray:
    """Glacier indices of the pixels touching ``glacier`` (8-neighbourhood), besides 0 and itself."""
    mask = glacier_id == glacier
    grown = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= np.roll(np.roll(mask, dy, 0), dx, 1)
    near = np.unique(glacier_id[grown & ~mask])
    return near[(near != 0) & (near != glacier)]


def corrupt_glacier(prep, glacier: int, what: str):
    """A copy of ``prep`` with one glacier's input broken.

    what : ``"thickness"`` (negative thickness on its pixels), ``"surface"`` (NaN surface) or
        ``"climate"`` (NaN downscaled temperature on its pixels: NaN features).
    """
    static = prep.static.load().copy()
    down = prep.down
    on = static["glacier_id"] == glacier
    if what == "thickness":
        static["thickness"] = static["thickness"].where(~on, -5.0)
    elif what == "surface":
        static["surface"] = static["surface"].where(~on)
    elif what == "climate":
        down = down.copy()
        down["temp"] = down["temp"].where(~on)
    else:
        raise ValueError(f"what must be thickness, surface or climate; got {what!r}")
    chunks = dict(zip(("y", "x"), prep.grid.chunks))
    return dataclasses.replace(prep, static=static.chunk(chunks), down=down)


class ScaledEnsemble:
    """An ensemble whose members are ``model`` times each factor: known mean and spread.

    The member predictions at a pixel are ``f_i * p`` (``p``: the base prediction), so the ensemble mean
    is ``mean(f) * p`` and the spread ``std(f) * |p|`` (population std, as ``xarray.std``).
    """

    def __init__(self, model, factors=(0.8, 1.2)) -> None:
        self.base = model
        self.factors = tuple(float(f) for f in factors)
        self.members = [_Scaled(model, f) for f in self.factors]
        self.coef_ = getattr(model, "coef_", None)
        self.intercept_ = getattr(model, "intercept_", None)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.mean([m.predict(X) for m in self.members], axis=0)


class _Scaled:
    def __init__(self, model, factor: float) -> None:
        self.model, self.factor = model, factor

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.factor * self.model.predict(X)
