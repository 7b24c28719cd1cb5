"""A glacier-domain run as Slurm-array-sized pieces: [domain] config validation, prepare -> groups -> finish
on a tiny Alps domain (real Farinotti tiles and WGMS balances, the synthetic Alps climate), the
missing-groups error, resuming, and the synthetic climate files."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid import cube as cube_mod
from glacgrid.config import config_from_dict, domain_has_tiles, require_dense
from glacgrid.exceptions import ConfigError, InputDataError, StoreError
from glacgrid.pipeline import domain_jobs as dj
from glacgrid.testing import DATA, requires_data, write_alps_climate
from glacgrid.testing._alps import alps_climate_fields

ALPS = DATA / "alps"
MB = DATA / "wgms" / "mbdata"
# five small observed glaciers (Pizol, Sankt Anna, Schwarzbach, Corvatsch South, Murtel) and three unobserved
OBSERVED = {"00417": 638, "00432": 1367, "04340": 1376, "04535": 1962, "04339": 2024}
NUMBERS = [*OBSERVED.values(), 1, 2, 3, 6]  # 8526 pixels: 3 or more groups of 4096
NEEDS_DATA = requires_data("alps", "farinotti_thickness")


def _raw(tmp: Path, climate: dict, **domain) -> dict:
    return {
        "name": "alps-tiny",
        "climate": {"files": [str(p) for p in climate["files"]], "invariant": str(climate["invariant"])},
        "period": {"start": 2013, "end": 2015},
        "domain": {"thickness_tiles": str(ALPS / "farinotti_thickness"), "dem_tiles": str(ALPS / "farinotti_dem"),
                   "numbers": NUMBERS, "group_pixels": 4096, "year_batch": 2, **domain},
        "model": {"kind": "lasso", "features": ["cpdd", "snow_winter", "snow_summer", "max_elevation", "lat"]},
        "observations": {"files": [str(MB / f"mbdata_WGMS-{w}.csv") for w in OBSERVED],
                         "links": {f"RGI50-11.{n:05d}": [f"RGI60-11.{n:05d}"] for n in OBSERVED.values()}},
        "output": {"directory": str(tmp / "out"), "plot": False},
        "cluster": {"kind": "threads"},
    }


@pytest.fixture(scope="module")
def climate(tmp_path_factory):  # noqa: D103
    return write_alps_climate(tmp_path_factory.mktemp("alps-climate"), 2013, 2015, seed=3)


# --------------------------------------------------------------------------- config
@NEEDS_DATA
def test_domain_tiles_make_grid_and_glaciers_optional(tmp_path, climate):
    cfg = config_from_dict(_raw(tmp_path, climate))
    assert cfg.grid is None and cfg.glaciers is None and domain_has_tiles(cfg)
    assert cfg.domain.numbers == tuple(NUMBERS) and cfg.domain.group_pixels == 4096
    with pytest.raises(ConfigError, match=r"needs the section\(s\) \[grid\], \[glaciers\]"):
        require_dense(cfg, "prepare")


@NEEDS_DATA
def test_domain_config_errors_are_reported_together(tmp_path, climate):
    raw = _raw(tmp_path, climate)
    del raw["domain"]["dem_tiles"]  # one tile folder only: [grid] and [glaciers] are required again
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    assert "The section [grid] is required (or build a glacier domain from per-glacier tiles" in str(err.value)
    assert "The section [glaciers] is required" in str(err.value)
    raw = _raw(tmp_path, climate, group_pixels=100, year_batch=0, numbers=[5, 5, -1],
               dem_tiles=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    msg = str(err.value)
    assert f"[domain] tile folder {tmp_path / 'nowhere'} does not exist" in msg
    assert "group_pixels = 100 is too small" in msg
    assert "year_batch = 0 must be at least 1" in msg
    assert "numbers [-1] are not glacier numbers" in msg and "lists a glacier twice" in msg


@NEEDS_DATA
def test_evolve_on_tiles_needs_no_glaciers_thickness(tmp_path, climate):
    raw = _raw(tmp_path, climate)
    raw["mode"] = "evolve"
    assert config_from_dict(raw).mode == "evolve"
    raw = _raw(tmp_path, climate)
    raw["domain"] = {"group_pixels": 8192}  # a domain from [grid] + [glaciers]: both stay required
    with pytest.raises(ConfigError, match=r"\[grid\] is required"):
        config_from_dict(raw)


def test_parse_groups():
    assert dj.parse_groups("2:5", 10) == range(2, 5)
    assert dj.parse_groups("8:12", 10) == range(8, 10)  # the last array task asks beyond the end
    assert dj.parse_groups("3", 10) == range(3, 4)
    for bad, match in (("5:5", "must exceed"), ("a:b", "expected a:b"), ("10:12", r"groups 0\.\.9 only")):
        with pytest.raises(InputDataError, match=match):
            dj.parse_groups(bad, 10)
    assert dj._ranges([0, 1, 2, 5, 7, 8]) == "0:3, 5:6, 7:9"


@NEEDS_DATA
def test_no_domain_section_is_a_config_error(tmp_path, climate):
    cfg = dataclasses.replace(config_from_dict(_raw(tmp_path, climate)), domain=None)
    for step in (dj.prepare_domain, dj.read_jobs, dj.missing_groups, dj.finish_domain):
        with pytest.raises(ConfigError, match=r"no \[domain\] section"):
            step(cfg)


# --------------------------------------------------------------------------- the synthetic climate
def test_alps_climate_is_era5land_like(tmp_path):
    f = alps_climate_fields(2000, 2001, seed=1)
    assert f["t2m"].shape == (24, f["lat"].size, f["lon"].size)
    assert f["lat"][0] <= 42.4 and f["lat"][-1] >= 48.5 and f["lon"][0] <= -0.3 and f["lon"][-1] >= 19.9
    # the lapse rate: colder where the orography is higher (July, across the grid)
    july = f["t2m"][6]
    slope = np.polyfit(f["orog"].ravel(), july.ravel(), 1)[0]
    assert slope == pytest.approx(-0.0065, abs=0.001)
    np.testing.assert_array_equal(alps_climate_fields(2000, 2001, seed=1)["tp"], f["tp"])  # seeded
    written = write_alps_climate(tmp_path, 2001, 2001, seed=1)  # hydrological 2001: calendar 2000-2001
    names = sorted(p.name for p in written["files"])
    assert names == ["era5land_monthly_t2m_200001-200112.nc", "era5land_monthly_tp_200001-200112.nc"]
    ds = xr.open_dataset(written["files"][1], mask_and_scale=False)
    assert ds["tp"].dtype == np.int16 and ds["tp"].attrs["units"] == "m"  # packed, per day, like the CDS
    assert ds["latitude"].values[0] > ds["latitude"].values[-1]  # descending, like ERA5
    tp = xr.open_dataset(written["files"][1])["tp"].values
    np.testing.assert_allclose(tp[:, ::-1], f["tp"], atol=2e-7)  # the same fields, decoded
    z = xr.open_dataset(written["invariant"])["z"].values[0, ::-1] / 9.80665
    np.testing.assert_allclose(z, f["orog"], atol=0.05)


# --------------------------------------------------------------------------- prepare -> groups -> finish
@NEEDS_DATA
def test_groups_split_and_finish_equal_one_run(tmp_path, climate):
    cfg = config_from_dict(_raw(tmp_path, climate))
    jobs = dj.prepare_domain(cfg)
    assert jobs.n_groups >= 3 and jobs.n_glaciers == len(NUMBERS)
    assert {name for name, _ in jobs.timings} == {"ingest", "domain", "features", "model"}
    assert dj.read_jobs(cfg) == dj.DomainJobs(**{**jobs.__dict__})
    assert dj.prepare_domain(cfg).timings == ()  # prepared: nothing recomputed
    assert dj.missing_groups(cfg) == list(range(jobs.n_groups))

    with pytest.raises(StoreError) as err:
        dj.finish_domain(cfg)
    assert f"{jobs.n_groups} of {jobs.n_groups} groups are not done" in str(err.value)
    assert f"--groups a:b` for 0:{jobs.n_groups}" in str(err.value)

    first = dj.run_domain_groups(cfg, "0:2")
    assert first["groups"] == [0, 1] and first["years"] == 6 and first["resumed_years"] == 0
    assert dj.missing_groups(cfg) == list(range(2, jobs.n_groups))
    with pytest.raises(StoreError, match=re.escape(f"groups {list(range(2, jobs.n_groups))}")):
        dj.finish_domain(cfg)
    again = dj.run_domain_groups(cfg, "0:2")  # resubmitted: done groups are skipped
    assert again["years"] == 0 and again["resumed_years"] == 6
    dj.run_domain_groups(cfg, f"2:{jobs.n_groups + 5}")
    assert dj.missing_groups(cfg) == []
    result = dj.finish_domain(cfg)
    gy = result.glacier_years
    assert len(gy) == len(NUMBERS) * 3 and set(gy["year"]) == {2013, 2014, 2015}
    assert np.isfinite(gy["smb_mwe"]).all() and (gy["failed"] == 0).all()

    # the same run in one piece (glacgrid run) gives the same values
    from glacgrid.pipeline import run

    one_cfg = config_from_dict(_raw(tmp_path / "one", climate))
    whole = run(one_cfg, progress=False)
    a = cube_mod.open_store(jobs.store, chunks=None)
    b = cube_mod.open_store(Path(one_cfg.output.directory) / "results.zarr", chunks=None)
    for var in ("smb", "smb_glacier", "glacier_area", "failed"):
        np.testing.assert_allclose(a[var].values, b[var].values, rtol=1e-12, equal_nan=True)
    pd.testing.assert_frame_equal(gy.reset_index(drop=True), whole.glacier_years.reset_index(drop=True))


@NEEDS_DATA
def test_killed_group_resumes_at_its_first_unfinished_year(tmp_path, climate):
    cfg = config_from_dict(_raw(tmp_path, climate))
    jobs = dj.prepare_domain(cfg)
    dj.run_domain_groups(cfg, "0:1")
    done = cube_mod.completed_regions(jobs.store)
    assert sorted(k for k in done if k.startswith("group[0]")) == ["group[0]:year[0:2]", "group[0]:year[2:3]"]
    before = cube_mod.open_store(jobs.store, chunks=None)["smb"].values.copy()
    # a task killed after its first year batch: the mark of the second batch was never written
    _drop_mark(jobs.store, "group[0]:year[2:3]")
    assert dj.missing_groups(cfg)[0] == 0
    rep = dj.run_domain_groups(cfg, "0:1")
    assert rep["resumed_years"] == 2 and rep["years"] == 1
    np.testing.assert_array_equal(cube_mod.open_store(jobs.store, chunks=None)["smb"].values, before)


def _drop_mark(store: Path, key: str) -> None:
    """Remove one done mark from the store's sidecar (what a task killed before writing it leaves)."""
    sidecar = Path(store) / cube_mod.DONE_FILE
    state = json.loads(sidecar.read_text(encoding="utf-8"))
    assert key in state["done"]
    state["done"] = [k for k in state["done"] if k != key]
    sidecar.write_text(json.dumps(state), encoding="utf-8")


@NEEDS_DATA
def test_changed_config_needs_a_new_prepare(tmp_path, climate):
    cfg = config_from_dict(_raw(tmp_path, climate))
    dj.prepare_domain(cfg)
    raw = _raw(tmp_path, climate)
    raw["period"]["end"] = 2014
    with pytest.raises(StoreError, match="prepared for another configuration"):
        dj.read_jobs(config_from_dict(raw))
    shutil.rmtree(tmp_path / "out" / "work" / "domain.zarr")  # a missing store: prepared again
    assert dj.prepare_domain(cfg).timings != ()
