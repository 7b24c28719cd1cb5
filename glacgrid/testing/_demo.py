"""The region of ``glacgrid demo``: the seeded synthetic inputs and their run config, in two sizes."""

from __future__ import annotations

from pathlib import Path

from ..config import load_config
from ..exceptions import ConfigError
from ._region import build_region, write_config

__all__ = ["prepare_demo"]

#: Sizes of the demo region: (grid shape, massifs, glaciers per massif, first and last hydrological year).
SIZES = {
    "full": {"shape": (180, 240), "n_massifs": 5, "glaciers_per_massif": 11, "start": 2001, "end": 2020},
    "small": {"shape": (120, 160), "n_massifs": 2, "glaciers_per_massif": 7, "start": 2001, "end": 2010},
}


def prepare_demo(out: str | Path, *, size: str = "full", seed: int = 0, mode: str = "evolve",
                 kind: str = "lasso"):
    """Build the synthetic inputs in ``out/inputs`` and a run config ``out/demo.toml``; return the config."""
    if mode not in ("evolve", "reconstruct"):  # before the region is built
        raise ConfigError(f"mode {mode!r} is not one of evolve, reconstruct (glacgrid demo --mode).")
    out = Path(out)
    spec = SIZES[size]
    region = build_region(out / "inputs", seed=seed, **spec)
    chunks = 64 if size == "small" else 128
    path = write_config(region, out / "demo.toml", output=out, mode=mode, kind=kind, chunks=chunks)
    return load_config(path), region
