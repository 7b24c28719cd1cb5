"""Reconstruction (static geometry, all years at once) and evolution (annual delta-h loop) runs.

Both write one results store with gridded ``smb``, ``thickness`` and ``surface`` per year and
glacier-wide ``smb_glacier``, ``glacier_area``, ``volume`` and ``disappeared`` per glacier and year.
The evolution loop commits every finished year to the store (template, then one region per year) and
reads the state of the last committed year back from it, so a killed run resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import dask.array as dsa
import numpy as np
import xarray as xr

from . import cube as cube_mod
from . import features as feat
from .config import RunConfig, config_digest
from .exceptions import StoreError
from .geometry import deltah_update
from .inference import glacier_mean, predict_pixels
from .metadata import stamp

__all__ = ["simulate", "results_fingerprint", "results_template"]


def results_fingerprint(cfg: RunConfig, model) -> str:
    """A hash of everything that determines the results (config sections and model coefficients)."""
    state = repr(getattr(model, "coef_", None)) + repr(getattr(model, "intercept_", None))
    return config_digest(cfg, ("climate", "grid", "glaciers", "period", "downscale", "model", "geometry", "mode"),
                         model_state=state)


def results_template(prep, years: np.ndarray, fingerprint: str) -> xr.Dataset:
    """The (lazy, all-zero) template of the results store."""
    grid = prep.grid
    ny, nx = grid.shape
    ng = len(prep.index)
    pix = dsa.zeros((len(years), ny, nx), chunks=(1, *grid.chunks), dtype="float32")
    # thickness and surface are the state the next year (and a resumed run) starts from: float64, so
    # that mass is conserved across years to floating-point tolerance
    state = dsa.zeros((len(years), ny, nx), chunks=(1, *grid.chunks), dtype="float64")
    gl = dsa.zeros((len(years), ng), chunks=(1, ng), dtype="float64")
    coords = {"year": years, "glacier": prep.index, **grid.coords()}
    ds = xr.Dataset(
        {
            "smb": stamp(xr.DataArray(pix, dims=("year", "y", "x")), "smb"),
            "thickness": stamp(xr.DataArray(state, dims=("year", "y", "x")), "thickness"),
            "surface": stamp(xr.DataArray(state, dims=("year", "y", "x")), "surface"),
            "smb_glacier": stamp(xr.DataArray(gl, dims=("year", "glacier")), "smb_glacier"),
            "glacier_area": stamp(xr.DataArray(gl, dims=("year", "glacier")), "glacier_area"),
            "volume": stamp(xr.DataArray(gl, dims=("year", "glacier")), "volume"),
            "disappeared": stamp(xr.DataArray(dsa.zeros((len(years), ng), chunks=(1, ng), dtype="int8"),
                                              dims=("year", "glacier")), "disappeared"),
        },
        coords=coords,
    )
    ds.attrs.update({"glacgrid_fingerprint": fingerprint, "crs": grid.crs,
                     "transform": list(grid.transform)})
    return ds


def _year_results(smb, state, smb_gl, area, volume, gone, year) -> xr.Dataset:
    ds = xr.Dataset({
        "smb": smb.astype("float32"),
        "thickness": state["thickness"].astype("float64").expand_dims(year=[year]),
        "surface": state["surface"].astype("float64").expand_dims(year=[year]),
        "smb_glacier": smb_gl.astype("float64").expand_dims(year=[year]),
        "glacier_area": area.astype("float64").expand_dims(year=[year]),
        "volume": volume.astype("float64").expand_dims(year=[year]),
        "disappeared": gone.astype("int8").expand_dims(year=[year]),
    })
    return ds.transpose("year", ...)


def simulate(cfg: RunConfig, prep, model, store: Path, *, advance: Callable[[], None] = lambda: None) -> Path:
    """Run the simulation of ``cfg.mode`` and return the results store path."""
    years = np.arange(cfg.period.start, cfg.period.end + 1)
    fp = results_fingerprint(cfg, model)
    template = results_template(prep, years, fp)
    if store.exists():
        try:
            old = cube_mod.open_store(store, chunks=None).attrs.get("glacgrid_fingerprint")
        except StoreError:
            old = None
        cube_mod.create_template(template, store, overwrite=old != fp)
    else:
        cube_mod.create_template(template, store)
    done = cube_mod.completed_regions(store)
    s = prep.static
    index = prep.index
    features = list(cfg.model.features)
    has_th = xr.DataArray(prep.has_thickness[1:], dims="glacier", coords={"glacier": index})
    evolve = cfg.mode == "evolve"
    state = xr.Dataset({
        "glacier_id": s["glacier_id"], "thickness": s["thickness"].fillna(0.0),
        "surface": s["surface"], "pixel_area": s["pixel_area"],
    })
    chunks = dict(zip(("y", "x"), prep.grid.chunks))

    def stored_state(i: int) -> xr.Dataset:
        """The state at the end of year ``i``, read back from the store (what a resumed run starts from)."""
        res = cube_mod.open_store(store, chunks=chunks).isel(year=i, drop=True)
        return state.assign(thickness=res["thickness"], surface=res["surface"])

    def geometry_terms(st: xr.Dataset):
        """Active pixels, topographic pixel features and glacier constants of a geometry."""
        # persisted: every graph that uses this geometry refers to the same in-memory blocks
        # (chunk-sized per worker) instead of re-reading and re-optimising the store chain each time
        st = st.persist()
        active = (st["glacier_id"] > 0) & ((st["thickness"] > 0) if evolve else True)
        topo = feat.topo_pixel_features(st["surface"], prep.grid)
        const = feat.glacier_constants(st["glacier_id"], st["surface"], active, st["pixel_area"], index).compute()
        return st, active, topo, const

    if not evolve:  # static geometry: its terms and volumes are the same every year
        state, active, topo, const = geometry_terms(state)
        th = feat.area_weighted_mean(state["thickness"], state["glacier_id"], active, state["pixel_area"], index)
        static_volume = (th * const["area"] / 1e3).where(has_th).compute()
    for i, year in enumerate(years):
        key = cube_mod.region_key("year", slice(i, i + 1))
        if key in done:
            if evolve:  # resume: the state at the end of this year is in the store
                state = stored_state(i)
            advance()
            continue
        if evolve:
            state, active, topo, const = geometry_terms(state)
        climate = feat.climate_pixel_features(prep.down, state["surface"], cfg.downscale, start=int(year),
                                              end=int(year), hemisphere=cfg.period.hemisphere)
        pix = feat.pixel_features(climate, topo, const, state["glacier_id"], active)
        smb = predict_pixels(model, pix, features).persist()  # used twice: glacier means and the store
        smb_gl = glacier_mean(smb.isel(year=0), state["glacier_id"], active, state["pixel_area"], index).compute()
        if evolve:
            new_state, report = deltah_update(state, smb_gl.fillna(0.0).where(const["area"] > 0),
                                              rho_ice=cfg.geometry.rho_ice, rho_water=cfg.geometry.rho_water)
            report = report.compute()
            area, volume, gone = report["glacier_area"], report["volume"].where(has_th), report["disappeared"]
        else:
            new_state, area, volume = state, const["area"], static_volume
            gone = xr.zeros_like(area, dtype="int8")
        out = _year_results(smb, new_state, smb_gl, area, volume, gone, int(year))
        out = out.chunk({"year": 1, **chunks})
        cube_mod.write_region(out, store, region_dim="year", index=slice(i, i + 1))
        cube_mod.mark_done(store, key)
        if evolve:
            state = stored_state(i)
        advance()
    return store
