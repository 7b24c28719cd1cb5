"""Ingest safety with real processes: two ingests into one store (the second refused at once, naming the
first), kill-and-resume at random moments (hypothesis) giving the bytes of an uninterrupted ingest, a full
disk (a typed error, then the re-run resumes) and leftovers of killed writes removed on resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr.storage
from hypothesis import given, settings
from hypothesis import strategies as st

from glacgrid import cube
from glacgrid.exceptions import LockHeldError, StoreError
from glacgrid.ingest import ingest
from glacgrid.testing import REPO, full_disk_after, store_files
from glacgrid.testing._era5 import write_era5land_monthly

TIME = pd.date_range("2001-01-01", "2002-12-01", freq="MS")
LAT = np.linspace(47.0, 46.0, 6)
LON = np.linspace(10.0, 11.0, 5)
CHUNKS = {"time": -1, "lat": 2, "lon": 3}  # 3 bands of 2 latitudes, 2 chunks per band and variable


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> dict:
    rng = np.random.default_rng(4)
    shape = (TIME.size, LAT.size, LON.size)
    return write_era5land_monthly(tmp_path_factory.mktemp("src"), lat=LAT, lon=LON, time=TIME,
                                  t2m=rng.uniform(255.0, 290.0, shape), tp=rng.uniform(0.0, 0.01, shape),
                                  z=rng.uniform(5000.0, 30000.0, shape[1:]))


def run_ingest(src: dict, store: Path) -> Path:
    return ingest(src["files"], store, invariant=src["invariant"], chunks=CHUNKS)


@pytest.fixture(scope="module")
def reference(src, tmp_path_factory) -> tuple[Path, int]:
    """The uninterrupted ingest and the number of objects Zarr wrote for it."""
    real, calls = zarr.storage.LocalStore.set, [0]

    async def counting(self, key, value):
        calls[0] += 1
        return await real(self, key, value)

    zarr.storage.LocalStore.set = counting
    try:
        store = run_ingest(src, tmp_path_factory.mktemp("ref") / "cube.zarr")
    finally:
        zarr.storage.LocalStore.set = real
    return store, calls[0]




# (in a child process) SIGKILL the process before the (n+1)-th object Zarr writes from now on
KILL_HOOK = '''
import os
import zarr.storage
def kill_after(n):
    real, calls = zarr.storage.LocalStore.set, [0]
    async def counting(self, key, value):
        calls[0] += 1
        if calls[0] > n:
            os.kill(os.getpid(), 9)
        return await real(self, key, value)
    zarr.storage.LocalStore.set = counting
'''

CHILD = KILL_HOOK + '''
import json, os, sys, time
from glacgrid import cube
from glacgrid.ingest import ingest
src, store, chunks = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
mode, n = sys.argv[4], int(sys.argv[5])
if mode == "kill":  # SIGKILL itself before the (n+1)-th object Zarr writes
    kill_after(n)
elif mode == "held":  # a slow disk: the regions wait until the file <store>.go exists
    write = cube.write_region
    def slow(*args, **kwargs):
        deadline = time.monotonic() + 120
        while not os.path.exists(store + ".go") and time.monotonic() < deadline:
            time.sleep(0.02)
        return write(*args, **kwargs)
    cube.write_region = slow
ingest(src["files"], store, invariant=src["invariant"], chunks=chunks)
'''


def child(src: dict, store: Path, mode: str, n: int) -> subprocess.Popen:
    args = [json.dumps({"files": [str(p) for p in src["files"]], "invariant": str(src["invariant"])}), str(store),
            json.dumps(CHUNKS), mode, str(n)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_a_second_ingest_into_the_same_store_is_refused_at_once(src, reference, tmp_path):
    store = tmp_path / "cube.zarr"
    first = child(src, store, "held", 0)  # writes its bands once <store>.go exists
    lock = tmp_path / "cube.zarr.lock"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            if lock.exists() and lock.read_text().strip():
                break
            time.sleep(0.02)
        assert first.poll() is None, first.stderr.read()[-2000:]
        holder = json.loads(lock.read_text())
        assert holder["pid"] == first.pid and holder["purpose"] == "glacgrid ingest"
        # in-process: a LockHeldError at once
        with pytest.raises(LockHeldError) as info:
            run_ingest(src, store)
        assert info.value.holder["pid"] == first.pid
        # the second ingest, from the command line as a user would start it
        second = subprocess.run([sys.executable, "-m", "glacgrid.cli", "ingest", *map(str, src["files"]), "--out",
                                 str(store), "--invariant", str(src["invariant"]), "--chunks", "time=-1,lat=2,lon=3"],
                                capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        said = " ".join(second.stderr.split())
        assert f"cube.zarr.lock is in use by glacgrid ingest (pid {first.pid} on host" in said
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # refused while the first one still runs: it did not wait for it
        (tmp_path / "cube.zarr.go").touch()
        assert first.wait(timeout=120) == 0, first.stderr.read()[-2000:]
    finally:
        first.kill()
        first.wait()
    assert store_files(store) == store_files(reference[0])  # the first ingest was not disturbed
    assert lock.read_text() == ""


@settings(max_examples=4, deadline=None, derandomize=True)
@given(data=st.data())
def test_an_ingest_killed_at_any_moment_resumes_to_the_bytes_of_an_uninterrupted_one(src, reference, data):
    ref, n_writes = reference
    n = data.draw(st.integers(min_value=0, max_value=n_writes - 1), label="Zarr writes before the SIGKILL")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "cube.zarr"
        proc = child(src, store, "kill", n)
        assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr.read()[-2000:]
        if store.exists():  # killed after the template: the store says it is unfinished
            with pytest.raises(StoreError, match="is incomplete"):
                cube.open_store(store, require_complete=True)
        run_ingest(src, store)  # the re-run, as a user would type it again
        assert store_files(store) == store_files(ref)
        assert sorted(p.name for p in Path(tmp).iterdir()) == [".cube.zarr.lock", "cube.zarr", "cube.zarr.lock"]


@pytest.mark.parametrize("after", [3, 26])  # in the template; in the bands (the template is ~22 objects)
def test_an_ingest_onto_a_full_disk_is_a_store_error_and_the_rerun_resumes(src, reference, tmp_path, monkeypatch,
                                                                            after):
    store = tmp_path / "cube.zarr"
    monkeypatch.setattr(zarr.storage.LocalStore, "set", full_disk_after(after))
    with pytest.raises(StoreError, match=f"Zarr store {store}: OSError \\[ENOSPC\\].* full or over quota.*it resumes"):
        run_ingest(src, store)
    monkeypatch.undo()
    assert store.exists() == (after > 22)
    run_ingest(src, store)
    assert store_files(store) == store_files(reference[0])


def test_leftovers_of_a_killed_append_are_removed_on_resume(src, reference, tmp_path):
    store = run_ingest(src, tmp_path / "cube.zarr")
    partial = store / "t2m" / "c" / "0" / "0" / "0.0123456789abcdef0123456789abcdef.partial"
    sidecar_tmp = store / ".glacgrid_done.json.0123456789ab.tmp"
    for p in (partial, sidecar_tmp):
        p.write_bytes(b"half")
    ingest(src["files"], store, invariant=src["invariant"], chunks=CHUNKS, append=True)  # nothing new to append
    assert not partial.exists() and not sidecar_tmp.exists()
    assert store_files(store) == store_files(reference[0])


APPEND_CHILD = KILL_HOOK + '''
import json, os, sys
from glacgrid.ingest import _store, ingest
files, inv, store, n = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
grow = _store._grow_time
def killing(*args, **kwargs):  # SIGKILL before the (n+1)-th object Zarr writes while the time axis grows
    kill_after(n)
    return grow(*args, **kwargs)
_store._grow_time = killing
ingest(files, store, invariant=inv, chunks={"time": -1, "lat": 2, "lon": 3}, append=True)
'''


@pytest.mark.parametrize("n", [1, 2, 4, 9])  # arrays of two lengths; time values unwritten; attributes; consolidation
def test_an_append_killed_while_the_time_axis_grows_resumes(src, reference, tmp_path, n):
    first_year = [f for f in src["files"] if "2001" in f.name]
    assert 0 < len(first_year) < len(src["files"])
    store = ingest(first_year, tmp_path / "cube.zarr", invariant=src["invariant"], chunks=CHUNKS)
    proc = subprocess.run([sys.executable, "-c", APPEND_CHILD, json.dumps([str(p) for p in src["files"]]),
                           str(src["invariant"]), str(store), str(n)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    with pytest.raises(StoreError, match="incomplete|Could not open"):
        cube.open_store(store, require_complete=True)
    ingest(src["files"], store, invariant=src["invariant"], chunks=CHUNKS, append=True)  # the re-run
    got = cube.open_store(store, require_complete=True)
    xr.testing.assert_identical(got.compute().drop_attrs(), cube.open_store(reference[0]).compute().drop_attrs())
    assert got.attrs["history"].count("append(") == 1
    names = sorted(f["name"] for f in json.loads(got.attrs["source_files"]))  # each recorded once
    assert names == sorted(f["name"] for f in json.loads(cube.open_store(reference[0]).attrs["source_files"]))
