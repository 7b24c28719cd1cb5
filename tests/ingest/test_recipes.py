"""glacgrid.ingest recipes, the Apache Beam engine (DirectRunner), rechunk, and the ingest/rechunk verbs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from glacgrid import cube
from glacgrid.cli import app
from glacgrid.exceptions import ConfigError, InputDataError, StoreError
from glacgrid.ingest import ingest, load_recipe, rechunk, run_recipe
from glacgrid.testing._era5 import MONTHLY, era5land_fields, write_era5land_monthly

from glacgrid.testing import REPO  # noqa: E402
TIME = pd.date_range("2000-01-01", periods=15, freq="MS")
LAT = np.round(46.5 + 0.1 * np.arange(7), 1)
LON = np.round(10.2 + 0.1 * np.arange(5), 1)
CHUNKS = {"time": -1, "lat": 3, "lon": 2}  # 7 latitudes in bands of 3: the last band is short


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """All 14 variables, split per variable and year, netCDF (time layout)."""
    d = tmp_path_factory.mktemp("era5")
    f = era5land_fields(LAT, LON, TIME, seed=3)
    extra = {k: f[k] for k in MONTHLY if k not in ("t2m", "tp")}
    return write_era5land_monthly(d, lat=LAT, lon=LON, time=TIME, t2m=f["t2m"], tp=f["tp"], z=f["z"], lsm=f["lsm"],
                                  extra=extra, split="variable+year")


def recipe_file(directory: Path, src: dict, **target) -> Path:
    folder = Path(src["invariant"]).parent
    tgt = {"store": "cube.zarr", "chunks": "{ time = -1, lat = 3, lon = 2 }", **target}
    text = f"""
[recipe]
name = "test"
[input]
pattern = ["{folder}/era5land_monthly_t2m_*.nc", "{folder}/era5land_monthly_tp_*.nc", "{folder}/era5land_monthly_ssrd_*.nc"]
invariant = "{src['invariant']}"
variables = ["t2m", "tp", "ssrd"]
[target]
""" + "\n".join(f"{k} = {v if k == 'chunks' else json.dumps(v)}" for k, v in tgt.items())
    path = directory / "r.toml"
    path.write_text(text)
    return path


def stored(store: Path) -> xr.Dataset:
    return cube.open_store(store, require_complete=True).compute()


def test_recipe_runs_on_dask_and_beam_and_both_stores_are_identical(tmp_path, src):
    rec = recipe_file(tmp_path, src)
    a = run_recipe(rec)
    assert a == tmp_path / "cube.zarr"
    b = run_recipe(dataclasses.replace(load_recipe(rec), store="beam.zarr"),
                   engine="beam", beam_options=["--runner=DirectRunner", "--direct_num_workers=1"])
    da, db = stored(a), stored(b)
    xr.testing.assert_identical(da.drop_attrs(deep=False), db.drop_attrs(deep=False))  # values, coords, var attrs
    for attr in ("source_files", "software_versions", "Conventions", "title", "source"):
        assert da.attrs[attr] == db.attrs[attr], attr
    ra, rb = json.loads(da.attrs["recipe"]), json.loads(db.attrs["recipe"])
    assert (ra.pop("store"), rb.pop("store")) == ("cube.zarr", "beam.zarr") and ra == rb
    assert ra["variables"] == ["t2m", "tp", "ssrd"] and ra["chunks"] == {"time": -1, "lat": 3, "lon": 2}
    assert len(json.loads(da.attrs["source_files"])) == 3 * 2 + 1  # 3 variables x 2 years + invariant
    assert set(json.loads(da.attrs["software_versions"])) >= {"glacgrid", "xarray", "dask", "zarr", "netCDF4"}
    meta = json.loads((a / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and "t2m" in meta["consolidated_metadata"]["metadata"]
    bands = {"lat[0:3]", "lat[3:6]", "lat[6:7]"}
    assert cube.completed_regions(a) == bands and bands <= cube.completed_regions(b)  # Beam also records chunks
    assert cube.missing_regions(a) == cube.missing_regions(b) == set()
    for name in ("t2m", "tp", "ssrd", "orog"):  # same Zarr chunks, byte for byte
        for chunk in sorted((a / name / "c").rglob("*")):
            if chunk.is_file():
                assert chunk.read_bytes() == (b / name / "c" / chunk.relative_to(a / name / "c")).read_bytes()
    src_ssrd = xr.concat([xr.open_dataset(p, engine="netcdf4")["ssrd"] for p in src["files"] if "_ssrd_" in p.name], "time")
    np.testing.assert_allclose(da["ssrd"].values, src_ssrd.values[:, ::-1] / 86400.0, rtol=1e-6)  # J m-2 per day -> W m-2


def test_beam_resumes_a_killed_run_without_rewriting_finished_chunks(tmp_path, src, monkeypatch):
    files = [p for p in src["files"] if "_t2m_" in p.name]
    real = cube.write_region

    def dies_in_middle_band(chunk, store, **kwargs):
        if kwargs["index"] == slice(3, 6) and kwargs["region"]["lon"] == slice(2, 4):
            raise KeyboardInterrupt("killed")
        return real(chunk, store, **kwargs)

    monkeypatch.setattr(cube, "write_region", dies_in_middle_band)
    opts = ["--runner=DirectRunner"]
    with pytest.raises((KeyboardInterrupt, Exception)):
        ingest(files, tmp_path / "b.zarr", chunks=CHUNKS, engine="beam", beam_options=opts)
    done = cube.completed_regions(tmp_path / "b.zarr")
    assert "lat[3:6]/lon[2:4]/t2m" not in done and "lat[3:6]" not in done
    assert cube.missing_regions(tmp_path / "b.zarr") >= {"lat[3:6]"}
    with pytest.raises(StoreError, match="incomplete"):
        cube.open_store(tmp_path / "b.zarr", require_complete=True)
    written = []
    monkeypatch.setattr(cube, "write_region", lambda c, s, **k: (written.append(k), real(c, s, **k)))
    ingest(files, tmp_path / "b.zarr", chunks=CHUNKS, engine="beam", beam_options=opts)
    again = {f"lat[{k['index'].start}:{k['index'].stop}]/lon[{k['region']['lon'].start}:{k['region']['lon'].stop}]/t2m"
             for k in written}
    assert again and not again & done  # only chunks not recorded before are written
    assert cube.missing_regions(tmp_path / "b.zarr") == set()
    ref = ingest(files, tmp_path / "d.zarr", chunks=CHUNKS)
    xr.testing.assert_identical(stored(tmp_path / "b.zarr").drop_attrs(), stored(ref).drop_attrs())


def test_recipe_errors(tmp_path, src):
    bad = tmp_path / "bad.toml"
    bad.write_text('[input]\npattern = "x*.nc"\n[target]\nstore = "c.zarr"\nchunk = 3\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['chunk'\] in \[target\]"):
        load_recipe(bad)
    bad.write_text('[input]\npattern = "x*.nc"\nvariables = ["t2m", "prcp"]\n[target]\nstore = "c.zarr"\n')
    with pytest.raises(ConfigError, match=r"unknown variable\(s\) \['prcp'\]"):
        load_recipe(bad)
    bad.write_text('[input]\npattern = "nothing-here-*.nc"\n[target]\nstore = "c.zarr"\n')
    with pytest.raises(InputDataError, match="matched no file"):
        run_recipe(bad)
    assert not (tmp_path / "c.zarr").exists()


def test_rechunk_for_maps_keeps_values(tmp_path, src):
    files = [p for p in src["files"] if "_t2m_" in p.name or "_tp_" in p.name]
    a = ingest(files, tmp_path / "a.zarr", invariant=src["invariant"], chunks=CHUNKS)
    m = rechunk(a, tmp_path / "maps.zarr", chunks={"time": 4, "lat": -1, "lon": -1})
    maps = cube.open_store(m, chunks={}, require_complete=True)
    assert maps["t2m"].chunks == ((4, 4, 4, 3), (7,), (5,))
    assert maps["orog"].chunks == ((7,), (5,))
    assert cube.completed_regions(m) == {"static", "time[0:4]", "time[4:8]", "time[8:12]", "time[12:15]"}
    xr.testing.assert_identical(maps.compute().drop_attrs(deep=False), stored(a).drop_attrs(deep=False))
    assert "rechunk(" in maps.attrs["history"]
    with pytest.raises(InputDataError, match="Cannot rechunk along"):
        rechunk(a, tmp_path / "x.zarr", chunks={"step": 1})


def test_cli_ingest_files_recipe_and_rechunk(tmp_path, src):
    runner = CliRunner()
    files = [str(p) for p in src["files"] if "_t2m_" in p.name]
    res = runner.invoke(app, ["ingest", *files, "--invariant", str(src["invariant"]), "--variables", "t2m",
                              "--chunks", "time=-1,lat=3,lon=2", "--out", str(tmp_path / "c.zarr")])
    assert res.exit_code == 0, res.output
    ds = cube.open_store(tmp_path / "c.zarr", chunks={})
    assert sorted(ds.data_vars) == ["lsm", "orog", "t2m"] and ds["t2m"].chunks == ((15,), (3, 3, 1), (2, 2, 1))
    res = runner.invoke(app, ["ingest", str(recipe_file(tmp_path, src)), "--engine", "beam"])
    assert res.exit_code == 0, res.output
    assert sorted(cube.open_store(tmp_path / "cube.zarr").data_vars) == ["lsm", "orog", "ssrd", "t2m", "tp"]
    res = runner.invoke(app, ["rechunk", str(tmp_path / "c.zarr"), "--out", str(tmp_path / "m.zarr")])
    assert res.exit_code == 0, res.output
    assert cube.open_store(tmp_path / "m.zarr", chunks={})["t2m"].chunks[0] == (1,) * 15
    res = runner.invoke(app, ["ingest", str(tmp_path / "nothing.nc"), "--out", str(tmp_path / "n.zarr")])
    assert res.exit_code == 2 and "nothing.nc does not exist" in res.output


def test_shipped_recipe_loads():
    rec = load_recipe(REPO / "recipes" / "era5land_monthly.toml")
    assert rec.variables == ("t2m", "tp") and rec.chunks == {"time": -1, "lat": 64, "lon": 64}
    if (REPO.parent / "shared" / "data" / "hef").exists():
        assert [p.name for p in rec.files()] == ["sel_era5_land_monthly_prcp_1981-2018.nc", "sel_era5_land_monthly_t2m_1981-2018.nc"]


HEF = REPO.parent / "shared" / "data" / "hef" / "climate"


@pytest.mark.slow
@pytest.mark.skipif(not HEF.exists(), reason="shared HEF data not available")
def test_shipped_recipe_on_hef_with_both_engines(tmp_path):
    """Real data: the shipped recipe, on dask and on Beam: identical cubes, ~1160 mm/yr, exact t2m."""
    rec = load_recipe(REPO / "recipes" / "era5land_monthly.toml")
    a = stored(run_recipe(dataclasses.replace(rec, store=str(tmp_path / "dask.zarr"))))
    b = stored(run_recipe(dataclasses.replace(rec, store=str(tmp_path / "beam.zarr")), engine="beam"))
    xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))
    tp = a["tp"].sel(lat=46.8, lon=10.8, method="nearest").sel(time=slice("1981-10-01", "2018-09-01"))
    assert (float(tp["lat"]), float(tp["lon"])) == (46.8, 10.8)
    annual = tp.groupby(tp["time"].dt.year + (tp["time"].dt.month >= 10)).sum()
    assert annual.size == 37 and float(annual.mean()) == pytest.approx(1162.4, abs=0.05)
    src = xr.open_dataset(HEF / "sel_era5_land_monthly_t2m_1981-2018.nc", engine="netcdf4")["t2m"]
    np.testing.assert_array_equal(a["t2m"].values, src.values[:, ::-1].astype("float32"))


def test_recipe_with_append_picks_up_newly_downloaded_months(tmp_path):
    f = era5land_fields(LAT, LON, TIME, seed=5)
    src = write_era5land_monthly(tmp_path / "all", lat=LAT, lon=LON, time=TIME, t2m=f["t2m"], tp=f["tp"], z=f["z"],
                                 split="month")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rec = tmp_path / "r.toml"
    rec.write_text(f'[input]\npattern = "inbox/*.nc"\ninvariant = "{src["invariant"]}"\n'
                   '[target]\nstore = "cube.zarr"\nchunks = { time = -1, lat = 3, lon = 2 }\nappend = true\n')
    for p in src["files"][:10]:
        (inbox / p.name).write_bytes(p.read_bytes())
    assert stored(run_recipe(rec)).sizes["time"] == 10
    for p in src["files"][10:]:  # next download
        (inbox / p.name).write_bytes(p.read_bytes())
    out = stored(run_recipe(rec))
    np.testing.assert_array_equal(out["time"].values, TIME.to_numpy())
    ref = stored(ingest(src["files"], tmp_path / "ref.zarr", invariant=src["invariant"], chunks=CHUNKS))
    xr.testing.assert_identical(out.drop_attrs(), ref.drop_attrs())
