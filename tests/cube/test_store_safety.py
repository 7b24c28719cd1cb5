"""Store safety: run locks (a second writer refused, a dead holder's lock taken over), atomic templates
(real SIGKILLs at the template and between template and plan), honest completeness, typed errors on a
full disk (simulated, and a real small tmpfs when run as root), leftover partial files cleaned, and the
umask's permissions for atomically written files."""

from __future__ import annotations

import errno
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr.storage

from glacgrid import cube
from glacgrid.atomic import atomic_dir, atomic_path, clean_partials, exclusive, locked
from glacgrid.exceptions import LockHeldError, StoreError
from glacgrid.testing import REPO, full_disk_after, store_files

def make_ds() -> xr.Dataset:
    """The dataset of every test (also built in the child processes: the same bytes)."""
    rng = np.random.default_rng(0)
    t = rng.standard_normal((6, 20, 12)).astype("float32")
    ds = xr.Dataset({"t": (("time", "lat", "lon"), t), "orog": (("lat", "lon"), rng.random((20, 12)))},
                    coords={"time": np.arange(6), "lat": np.linspace(40.0, 50.0, 20), "lon": np.arange(12.0)},
                    attrs={"history": "made"})
    return ds.chunk({"time": -1, "lat": 4, "lon": 6})


MAKE_DS = "import numpy as np, xarray as xr\n" + inspect.getsource(make_ds)
N_REGIONS = 5  # lat bands of 4

# a child that writes make_ds() to argv[1] and SIGKILLs itself at a chosen moment (argv[2], argv[3])
CHILD = MAKE_DS + '''
import os, sys
import zarr.storage
from glacgrid import cube
store, moment, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def die(*args, **kwargs):
    os.kill(os.getpid(), 9)

if moment == "zarr-set":  # the n-th object Zarr writes (template metadata first, then chunks)
    real, calls = zarr.storage.LocalStore.set, [0]
    async def counting(self, key, value):
        calls[0] += 1
        if calls[0] > n:
            die()
        return await real(self, key, value)
    zarr.storage.LocalStore.set = counting
elif moment == "before-plan":  # the template is written, its plan not yet
    real_state = cube._write_state
    cube._write_state = lambda path, state: die() if path.name.endswith(".tmp") else real_state(path, state)
elif moment == "after-template":  # create_template returned: the store is in place, no region written
    cube.completed_regions = die
cube.write_dataset(make_ds(), store, region_dim="lat", step=4)
'''


def run_child(code: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, PYTHONPATH=str(REPO)))


def start_holder(lock: Path, purpose: str, *, shared: bool = False, store_lock: bool = False) -> subprocess.Popen:
    """A process that holds ``lock`` (or the run lock of the store ``lock``) until killed."""
    take = (f"cube.store_lock({str(lock)!r}, purpose={purpose!r}, shared={shared})" if store_lock else
            f"exclusive({str(lock)!r}, purpose={purpose!r}, shared={shared})")
    code = ("import sys, time\nfrom glacgrid import cube\nfrom glacgrid.atomic import exclusive\n"
            f"with {take}:\n    print('held', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def try_in_child(lock: Path, *, shared: bool = False) -> int:
    """Exit status of another process's attempt to take ``lock``: 0 taken, 3 refused."""
    code = ("import sys\nfrom glacgrid.atomic import exclusive\nfrom glacgrid.exceptions import LockHeldError\n"
            f"try:\n    with exclusive({str(lock)!r}, purpose='probe', shared={shared}):\n        pass\n"
            "except LockHeldError:\n    sys.exit(3)\n")
    return run_child(code).returncode




@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The store written by one uninterrupted call."""
    return cube.write_dataset(make_ds(), tmp_path_factory.mktemp("ref") / "c.zarr", region_dim="lat", step=4)


# ----------------------------------------------------------------------------- locks
def test_second_writer_is_refused_at_once_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    lock = tmp_path / "out" / ".glacgrid.lock"
    holder = start_holder(lock, "glacgrid ingest")
    try:
        with pytest.raises(LockHeldError) as info:
            with exclusive(lock, purpose="second run"):
                pytest.fail("the lock is held by the other process")
        assert holder.poll() is None  # refused at once, while the holder still runs (not after waiting for it)
        err = info.value
        assert isinstance(err, StoreError) and err.path == lock
        assert err.holder["pid"] == holder.pid and err.holder["host"] == socket.gethostname()
        assert err.holder["purpose"] == "glacgrid ingest" and err.holder["mode"] == "exclusive"
        assert abs(datetime.fromisoformat(err.holder["started"]).timestamp() - time.time()) < 120
        assert f"in use by glacgrid ingest (pid {holder.pid} on host {socket.gethostname()} since" in str(err)
        assert "Wait for it to finish, or write to another output directory" in str(err)
        assert json.loads(lock.read_text())["pid"] == holder.pid  # the record another user can read
    finally:
        stop(holder)  # SIGKILL: the process cannot release anything itself
    with exclusive(lock, purpose="after the crash") as record:  # taken over at once
        assert record["pid"] == os.getpid() and record["purpose"] == "after the crash"
        assert try_in_child(lock) == 3
    assert lock.read_text() == ""  # released: no stale record
    assert try_in_child(lock) == 0


def test_lock_is_reentrant_and_closing_other_descriptors_does_not_drop_it(tmp_path):
    lock = tmp_path / "run.lock"
    with exclusive(lock, purpose="outer") as outer:
        with exclusive(lock, purpose="inner") as inner:
            assert inner == outer  # one holder: the outer block's
        with locked(lock):  # the short-section lock on the same file: no second descriptor is closed
            pass
        assert try_in_child(lock) == 3  # still held after the nested blocks closed
        pid = os.fork()  # a forked child (multiprocessing, dask's process pool) holds none of our locks
        if pid == 0:
            try:
                with exclusive(lock, purpose="forked child"):
                    os._exit(0)
            except LockHeldError:
                os._exit(3)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3
    assert try_in_child(lock) == 0


def test_shared_holders_exclude_an_exclusive_one(tmp_path):
    lock = tmp_path / "run.lock"
    task = start_holder(lock, "array task", shared=True)
    try:
        with exclusive(lock, purpose="another task", shared=True) as record:
            assert record["mode"] == "shared"
            with pytest.raises(LockHeldError, match="in use by"):  # upgrading needs the other task gone
                with exclusive(lock, purpose="whole run"):
                    pass
            assert try_in_child(lock) == 3  # still shared by both: an exclusive writer is refused
            assert try_in_child(lock, shared=True) == 0
    finally:
        stop(task)
    assert try_in_child(lock) == 0


def test_write_dataset_holds_the_store_lock(tmp_path):
    store = tmp_path / "c.zarr"
    holder = start_holder(store, "glacgrid ingest", store_lock=True)
    try:
        with pytest.raises(LockHeldError, match=f"c.zarr.lock is in use by glacgrid ingest \\(pid {holder.pid}"):
            cube.write_dataset(make_ds(), store, region_dim="lat", step=4)
        assert not store.exists()  # refused before anything was written
    finally:
        stop(holder)
    cube.write_dataset(make_ds(), store, region_dim="lat", step=4)
    assert cube.missing_regions(store) == set()


# ----------------------------------------------------------------------------- atomic templates
# the template is Zarr's first 16 objects (metadata, coordinates, consolidated metadata), then come the chunks
@pytest.mark.parametrize("moment, n", [("zarr-set", 0), ("zarr-set", 8), ("zarr-set", 15), ("before-plan", 0),
                                       ("after-template", 0), ("zarr-set", 22)])
def test_kill_at_the_template_or_before_its_plan_leaves_a_store_the_rerun_completes(tmp_path, reference, moment, n):
    store = tmp_path / "c.zarr"
    child = run_child(CHILD, store, moment, n)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    if moment == "zarr-set" and n < 16 or moment == "before-plan":  # killed inside the template: no store at all
        assert not store.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # its temporary directory
    else:  # the template is in place with its plan: incomplete until every region is written
        missing = cube.missing_regions(store)
        assert "lat[16:20]" in missing
        assert missing == ({f"lat[{a}:{a + 4}]" for a in range(0, 20, 4)} if moment == "after-template" else
                           {f"lat[{a}:{a + 4}]" for a in range(4, 20, 4)})
    with pytest.raises(StoreError, match="does not exist|is incomplete"):
        cube.open_store(store, require_complete=True)
    cube.write_dataset(make_ds(), store, region_dim="lat", step=4)  # the re-run: no "different schema" refusal
    assert store_files(store) == store_files(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.zarr.lock", "c.zarr", "c.zarr.lock"]  # no .tmp left
    xr.testing.assert_identical(cube.open_store(store, require_complete=True).compute(), make_ds().compute())


def test_overwrite_replaces_a_store_whole_and_keeps_the_old_one_on_failure(tmp_path, monkeypatch):
    store = cube.write_dataset(make_ds(), tmp_path / "c.zarr", region_dim="lat", step=4)
    before = store_files(store)
    monkeypatch.setattr(cube, "_write_state", lambda path, state: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(StoreError, match="full or over quota"):
        cube.create_template(make_ds() * 2, store, overwrite=True)
    monkeypatch.undo()
    assert store_files(store) == before  # the old store is back in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.zarr.lock", "c.zarr", "c.zarr.lock"]
    cube.create_template(make_ds().isel(time=slice(0, 3)), store, overwrite=True, planned=["lat[0:4]"])
    assert cube.open_store(store).sizes["time"] == 3 and cube.missing_regions(store) == {"lat[0:4]"}


def test_a_kept_store_gets_the_plan_of_the_resumed_write(tmp_path):
    store = cube.create_template(make_ds(), tmp_path / "c.zarr", planned=["lat[0:8]", "lat[8:20]"])
    cube.mark_done(store, "lat[0:8]")
    cube.create_template(make_ds(), store, planned=["lat[0:4]", "lat[4:8]", "lat[8:20]"])  # split differently
    assert cube.missing_regions(store) == {"lat[0:4]", "lat[4:8]", "lat[8:20]"}
    assert cube.completed_regions(store) == {"lat[0:8]"}


# ----------------------------------------------------------------------------- full disk


@pytest.mark.parametrize("after, where", [(2, "the template"), (22, "region lat[4:8]")])
def test_a_full_disk_is_a_store_error_naming_the_store_and_the_rerun_resumes(tmp_path, reference, monkeypatch,
                                                                              after, where):
    store = tmp_path / "c.zarr"
    monkeypatch.setattr(zarr.storage.LocalStore, "set", full_disk_after(after))
    with pytest.raises(StoreError) as info:
        cube.write_dataset(make_ds(), store, region_dim="lat", step=4)
    msg = str(info.value)
    assert f"Could not write {where}" in msg and f"Zarr store {store}" in msg
    assert "OSError [ENOSPC]: No space left on device" in msg and "is full or over quota" in msg
    assert "MiB free now" in msg and "re-run the same command: it resumes" in msg
    assert "np.float64" not in msg
    monkeypatch.undo()
    if where == "the template":
        assert not store.exists()
    else:
        assert 0 < len(cube.completed_regions(store) - {"static"}) < N_REGIONS
        with pytest.raises(StoreError, match="is incomplete"):
            cube.open_store(store, require_complete=True)
    cube.write_dataset(make_ds(), store, region_dim="lat", step=4)
    assert store_files(store) == store_files(reference)


def test_a_full_disk_while_recording_progress_is_a_store_error(tmp_path, monkeypatch):
    store = cube.create_template(make_ds(), tmp_path / "c.zarr", planned=["lat[0:4]"])

    def full(path, state):
        raise OSError(errno.ENOSPC, "No space left on device", str(path / cube.DONE_FILE))

    monkeypatch.setattr(cube, "_write_state", full)
    with pytest.raises(StoreError, match=r"Could not write the progress file \.glacgrid_done\.json .* full"):
        cube.mark_done(store, "lat[0:4]")


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_real_full_disk_on_a_small_tmpfs(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "256k"):
        pytest.skip("needs root and tmpfs mounts")
    try:
        rng = np.random.default_rng(1)  # random float64: incompressible, about 1.2 MB
        ds = xr.Dataset({"v": (("lat", "lon"), rng.random((400, 400)))},
                        coords={"lat": np.arange(400.0), "lon": np.arange(400.0)}).chunk({"lat": 50, "lon": 400})
        store = disk / "c.zarr"
        with pytest.raises(StoreError, match=f"Zarr store {store}: OSError \\[ENOSPC\\].*is full or over quota"):
            cube.write_dataset(ds, store, region_dim="lat")
        done = cube.completed_regions(store)
        assert 0 < len(done) < 8
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)  # space freed
        cube.write_dataset(ds, store, region_dim="lat")
        assert cube.completed_regions(store) >= done and cube.missing_regions(store) == set()
        xr.testing.assert_identical(cube.open_store(store, require_complete=True).compute(), ds.compute())
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ----------------------------------------------------------------------------- leftovers and permissions
def test_leftover_partial_files_are_cleaned_on_resume(tmp_path, reference):
    store = tmp_path / "c.zarr"
    assert run_child(CHILD, store, "zarr-set", 20).returncode == -signal.SIGKILL  # some regions written
    # what killed writes leave: Zarr's temporary chunk files, atomic_path's sidecar temporaries, a template's
    # temporary directory beside the store
    leftovers = [store / "t" / "c" / "0" / "0" / "0.0123456789abcdef0123456789abcdef.partial",
                 store / ".glacgrid_done.json.0123456789ab.tmp", tmp_path / ".c.zarr.0123456789ab.tmp" / "zarr.json"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    cube.write_dataset(make_ds(), store, region_dim="lat", step=4)
    assert not any(p.exists() for p in leftovers) and not (tmp_path / ".c.zarr.0123456789ab.tmp").exists()
    assert store_files(store) == store_files(reference)


def test_clean_partials_removes_only_temporaries_and_respects_their_age(tmp_path):
    keep = [tmp_path / "data.tmp", tmp_path / "a" / "x.partial.csv", tmp_path / "a" / ".hidden"]
    gone = [tmp_path / ".t.csv.0123456789ab.tmp", tmp_path / "a" / "0.abc.partial"]
    for p in keep + gone:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    (tmp_path / "a" / ".c.zarr.0123456789ab.tmp").mkdir()
    assert clean_partials(tmp_path, min_age_s=3600) == []  # too young: maybe a live writer's
    removed = clean_partials(tmp_path)
    assert sorted(removed) == sorted(gone + [tmp_path / "a" / ".c.zarr.0123456789ab.tmp"])
    assert all(p.exists() for p in keep) and not any(p.exists() for p in gone)
    assert clean_partials(tmp_path / "missing") == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomically_written_files_get_the_umasks_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "table.csv") as tmp:
            tmp.write_text("a,b\n1,2\n")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == mode
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "table.csv"]


# ----------------------------------------------------------------------------- results stores
def test_the_results_store_plans_its_years_so_a_partial_run_is_refused(tmp_path):
    from types import SimpleNamespace

    from glacgrid.grid import TargetGrid
    from glacgrid.simulate import init_store, results_template

    grid = TargetGrid("EPSG:32632", (100.0, 0.0, 600000.0, 0.0, -100.0, 5200000.0), (6, 8), (3, 4))
    prep = SimpleNamespace(grid=grid, index=np.array([1, 2, 5]), table=None)  # (no glacier table: no rgi_id labels)
    years = np.arange(2001, 2004)
    template = results_template(prep, years, "fp", members=[(0.8, 1.0), (1.0, 1.0)])
    store = tmp_path / "results.zarr"
    init_store(template, store)
    assert cube.missing_regions(store) == {"year[0:1]", "year[1:2]", "year[2:3]"}  # the members are written
    cube.mark_done(store, "year[0:1]")
    cube.mark_done(store, "year[1:2]")  # a run killed before its last year
    with pytest.raises(StoreError, match=r"is incomplete: 1 region\(s\) .* \(year\[2:3\]\)"):
        cube.open_store(store, require_complete=True)
    init_store(template, store)  # the resumed run keeps the store and its record
    cube.mark_done(store, "year[2:3]")
    assert cube.open_store(store, require_complete=True).sizes["year"] == 3


DOMAIN_CHILD = '''
import os, sys
import numpy as np
import glacgrid.cube as cube_mod
from glacgrid.simulate import DomainRun, simulate_domain
from glacgrid.testing._domain import DOMAIN_FEATURES
domain, cube, model, store, kill_after = sys.argv[1:6]
real, calls = cube_mod.mark_done, [0]
def mark(*args, **kwargs):
    real(*args, **kwargs)
    calls[0] += 1
    if calls[0] >= int(kill_after):
        os.kill(os.getpid(), 9)
cube_mod.mark_done = mark
import dask
dask.config.set(scheduler="synchronous")
run = DomainRun("reconstruct", np.arange(2001, 2004), DOMAIN_FEATURES, year_batch=2)
simulate_domain(domain, cube, model, store, run, fingerprint="fp")
'''


def test_a_killed_domain_run_is_refused_until_every_group_and_year_is_written(tmp_path):
    import pandas as pd

    from glacgrid.domain import domain_from_rasters
    from glacgrid.grid import TargetGrid
    from glacgrid.simulate import DomainRun, simulate_domain
    from glacgrid.testing._domain import DOMAIN_FEATURES, domain_cube, domain_model

    grid = TargetGrid.from_spec("EPSG:4326", 0.001, (10.70, 46.70, 10.72, 46.71), chunks=(4, 7))
    ny, nx = grid.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    gid = np.zeros((ny, nx), "int32")
    gid[0:4, 0:5], gid[5:9, 12:20] = 1, 3
    static = xr.Dataset({"glacier_id": (("y", "x"), gid), "surface": (("y", "x"), 3000.0 + 7.0 * yy - 3.0 * xx),
                         "thickness": (("y", "x"), np.where(gid > 0, 50.0, np.nan)),
                         "pixel_area": grid.pixel_area()}).chunk({"y": 4, "x": 7})
    table = pd.DataFrame({"rgi_id": ["A", "B", "C"], "name": ["a", "b", "c"]},
                         index=pd.Index([1, 2, 3], name="glacier"))
    d = domain_from_rasters(static, grid, table, tmp_path / "domain.zarr", group_pixels=24)
    px = d.pixels[["lon", "lat", "glacier_id"]].compute()
    real = px["glacier_id"].values > 0
    climate = domain_cube(px["lon"].values[real], px["lat"].values[real], tmp_path / "cube.zarr", start=2001, end=2003)
    model = domain_model().to_artifact(tmp_path / "model")
    run = DomainRun("reconstruct", np.arange(2001, 2004), DOMAIN_FEATURES, year_batch=2)
    clean = simulate_domain(d, climate, model, tmp_path / "clean.zarr", run, fingerprint="fp")
    planned = {f"group[{k}]:year[{a}:{b}]" for k in range(d.n_groups) for a, b in ((0, 2), (2, 3))}
    assert d.n_groups == 2 and cube.completed_regions(clean) == planned

    store = tmp_path / "killed.zarr"
    child = run_child(DOMAIN_CHILD, d.path, climate, model, store, 2)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert len(cube.completed_regions(store)) == 2 and len(cube.missing_regions(store)) == 2
    with pytest.raises(StoreError, match=r"is incomplete: 2 region\(s\)"):  # not NaN years with failed = 0
        cube.open_store(store, require_complete=True)
    simulate_domain(d.path, climate, model, store, run, fingerprint="fp")
    xr.testing.assert_identical(cube.open_store(store, require_complete=True).compute().drop_attrs(),
                                cube.open_store(clean).compute().drop_attrs())
