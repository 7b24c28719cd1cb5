"""Nothing lost, nothing half-true (issue 16) for whole runs: one run per output directory, readers that
refuse incomplete stores, tables written atomically with the umask's permissions, the outputs of an older
configuration moved aside, the period checked before any stage, typed one-line errors on the command
line, and runs killed at random moments resumed to the bytes of an uninterrupted run.

Kills and concurrent runs are real ``glacgrid run`` processes (SIGKILL, two at once) on a small synthetic
region; the uninterrupted run they are compared with is run once per module."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from glacgrid import cube
from glacgrid.cli import app
from glacgrid.config import load_config
from glacgrid.exceptions import GlacgridError, LockHeldError, TimeAxisError
from glacgrid.pipeline import run
from glacgrid.pipeline.outdir import LOCK_FILE, RECORD_FILE, RUN_OUTPUTS, retire_stale_outputs, run_lock
from glacgrid.testing import REPO, build_region, write_config

#: A small region (2 massifs of 5 glaciers, 4 hydrological years) on 32-pixel chunks: several regions per
#: work store, one results region per year.
REGION = dict(seed=3, shape=(96, 128), n_massifs=2, glaciers_per_massif=5, start=2001, end=2004)
#: The tables a run writes (compared byte for byte) and its figures (drawn by the lone run only).
TABLES = ("glacier_years.csv", "glacier_years.csv-metadata.json", "validation.csv", "training_features.csv",
          "cv.json", "model/model.json")
FIGURES = ("summary.png", "cumulative_smb.png", "area_volume.png", "mean_smb_map.png")


@dataclass(frozen=True)
class Lone:
    """The uninterrupted run every other run is compared with."""

    root: Path
    region: object
    out: Path
    seconds: float


def _config(root: Path, region, name: str, replace: dict[str, str] | None = None, *, plot: bool = False) -> Path:
    """The run config of ``region`` into ``root/name`` (figures only with ``plot``: they take seconds)."""
    path = write_config(region, root / f"{name}.toml", output=root / name, chunks=32)
    text = path.read_text(encoding="utf-8") + ("" if plot else "plot = false\n")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return path


def _umask_022() -> None:
    os.umask(0o022)


def _start(toml: Path, *extra: str) -> subprocess.Popen:
    """``glacgrid run TOML`` as a real process (umask 022, dask's threaded scheduler in the process)."""
    cmd = [sys.executable, "-m", "glacgrid.cli", "run", str(toml), "--no-progress", "--cluster", "threads", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_umask_022)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.fixture(scope="module")
def lone(tmp_path_factory) -> Lone:
    root = tmp_path_factory.mktemp("safety")
    region = build_region(root / "inputs", **REGION)
    toml = _config(root, region, "lone", plot=True)
    t0 = time.perf_counter()
    code, err = _finish(_start(toml))
    assert code == 0, err[-3000:]
    return Lone(root, region, root / "lone", time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------ comparisons
def _chunks(store: Path) -> dict[str, bytes]:
    """Every chunk file of a Zarr store by relative path (the metadata, with its history time, aside)."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != "zarr.json" and not p.name.startswith(".")}


def _done(store: Path) -> tuple[set, set]:
    state = json.loads((store / cube.DONE_FILE).read_text(encoding="utf-8"))
    return set(state["done"]), set(state.get("planned", []))


def _assert_same_outputs(out: Path, ref: Path) -> None:
    got, want = _chunks(out / "results.zarr"), _chunks(ref / "results.zarr")
    assert sorted(got) == sorted(want)
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, f"{len(differ)} of {len(want)} chunk files differ, e.g. {differ[:5]}"
    assert _done(out / "results.zarr") == _done(ref / "results.zarr")
    for name in TABLES:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert (out / "glacier_log.csv").exists() == (ref / "glacier_log.csv").exists()


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".partial") or (p.name.startswith(".")
                                                                         and p.name.endswith(".tmp"))]


# ------------------------------------------------------------------------------------------ run lock
@pytest.mark.slow
def test_a_second_run_on_the_same_output_is_refused_at_once_and_the_first_is_unharmed(lone):
    """Issue 16.1: two `glacgrid run` on one output. The second is refused with the holder's pid, host and
    start time while the first is still running; the first writes exactly what a lone run writes."""
    toml = _config(lone.root, lone.region, "two")
    first = _start(toml)
    lock = lone.root / "two" / LOCK_FILE
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if lock.exists() and f'"pid": {first.pid}' in lock.read_text(encoding="utf-8"):
                break
            time.sleep(0.02)
        second = _start(toml)
        code2, err2 = _finish(second, timeout=120)
        assert first.poll() is None, "the first run ended before the second was refused"
        code1, err1 = _finish(first)
    finally:
        first.kill()
    assert code1 == 0, err1[-3000:]
    assert code2 == 2
    line = err2.strip()
    assert line.startswith("error (LockHeldError): ") and "\n" not in line and "Traceback" not in err2
    assert f"pid {first.pid} on host {socket.gethostname()} since 20" in line
    assert f"glacgrid run {toml}" in line  # what holds it
    _assert_same_outputs(lone.root / "two", lone.out)


def test_a_lock_held_by_a_process_refuses_a_run_in_another_and_is_free_once_it_is_killed(lone, tmp_path):
    """A stale lock (its holder SIGKILLed) is taken over; a live one refuses `glacgrid.pipeline.run` at once."""
    cfg = load_config(_config(lone.root, lone.region, "held"))
    out = Path(cfg.output.directory)
    code = ("import sys, time; from glacgrid.pipeline.outdir import run_lock; "
            f"cm = run_lock({str(out)!r}, purpose='a test holder'); cm.__enter__(); print('held', flush=True); "
            "time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError, match=f"in use by a test holder \\(pid {holder.pid} on host"):
            run(cfg, progress=False)
        assert holder.poll() is None  # refused at once, while the holder still runs
        assert not (out / "work").exists()  # refused before any stage
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(cfg) as me:  # the dead holder's lock is free
        assert me["pid"] == os.getpid()


# ------------------------------------------------------------------------------------------ kill and resume
def _marks(out: Path) -> int:
    """The region writes recorded so far in every store of a run (cube, work stores, results)."""
    n = 0
    for sidecar in [*out.glob(f"work/*.zarr/{cube.DONE_FILE}"), out / "results.zarr" / cube.DONE_FILE]:
        try:
            n += len(json.loads(sidecar.read_text(encoding="utf-8"))["done"])
        except (OSError, ValueError, KeyError):  # not there yet
            pass
    return n


@pytest.mark.slow
def test_runs_killed_at_random_moments_resume_to_the_bytes_of_an_uninterrupted_run(lone):
    """Issue 16.8 (property): `glacgrid run` SIGKILLed at random moments (after a random delay, then when
    the k-th region write of the whole run is recorded, k random in the work stores, then in the years of
    the simulation), each time re-run on the same output,
    then run to the end: results.zarr (every chunk file and done mark) and the tables are those of the lone
    run, no partial file is left, and nothing was moved aside (same configuration)."""
    rng = random.Random(16)
    total = _marks(lone.out)
    work = total - len(_done(lone.out / "results.zarr")[0])  # the region writes before the simulation
    plan = [("after seconds", round(rng.uniform(1.0, 0.4 * lone.seconds), 2)),  # startup, ingest, masks
            ("at region write", rng.randint(1, work)),  # in the work stores
            ("at region write", rng.randint(work + 1, total - 1))]  # between the years of the simulation
    toml = _config(lone.root, lone.region, "killed")
    out = lone.root / "killed"
    killed = []
    for trigger, value in plan:
        if trigger == "at region write" and _marks(out) >= value:
            continue  # an earlier kill came later than this moment
        proc = _start(toml)
        t0 = time.monotonic()
        while proc.poll() is None:
            if (time.monotonic() - t0 >= value) if trigger == "after seconds" else _marks(out) >= value:
                proc.send_signal(signal.SIGKILL)
                killed.append((trigger, value, _marks(out)))
                break
            time.sleep(0.02)
        code, err = _finish(proc)
        assert code in (0, -signal.SIGKILL), err[-3000:]
    code, err = _finish(_start(toml))
    assert code == 0, err[-3000:]
    print(f"killed (trigger, value, region writes recorded of {total}): {killed}; lone run {lone.seconds:.1f} s")
    assert killed, "no run was killed"
    _assert_same_outputs(out, lone.out)
    assert _leftovers(out) == []
    assert not list(out.glob("previous-*"))


# ------------------------------------------------------------------------------------------ permissions
def test_outputs_are_readable_by_the_group_under_umask_022(lone):
    """Issue 16.6: every file a run writes (tables, figures, model, stores, sidecars) is 0644 under
    umask 022, every folder 0755 (the lone run ran with that umask)."""
    modes = {}
    for p in [lone.out, *lone.out.rglob("*")]:
        modes.setdefault(oct(p.stat().st_mode & 0o777), []).append(str(p.relative_to(lone.out)))
    files = [p for p in lone.out.rglob("*") if p.is_file()]
    assert len(files) > 50 and all((lone.out / name).stat().st_size > 1000 for name in FIGURES)
    bad = {m: paths[:5] for m, paths in modes.items() if m not in ("0o644", "0o755")}
    assert not bad, bad
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in files)
    assert all(p.stat().st_mode & 0o777 == 0o755 for p in [lone.out, *lone.out.rglob("*")] if p.is_dir())


# ------------------------------------------------------------------------------------------ stale outputs
def test_an_interrupted_rerun_with_another_config_leaves_no_old_table_beside_its_outputs(lone):
    """Issue 16.8: a re-run with a changed configuration that stops half-way (here: its observations file
    holds no observation) must not leave the old configuration's tables and figures beside its own outputs: they
    are moved, intact, into previous-<old digest>/; the climate cube (same [climate]) stays."""
    out = lone.root / "changed"
    shutil.copytree(lone.out, out)
    old = json.loads((out / RECORD_FILE).read_text(encoding="utf-8"))
    empty = lone.root / "no-observations.csv"
    empty.write_text("rgi_id,year,smb\n", encoding="utf-8")
    cfg = load_config(_config(lone.root, lone.region, "changed",
                              {json.dumps(str(lone.region.observations.resolve())): json.dumps(str(empty))}))
    with pytest.raises(GlacgridError):  # after the work stores, before the model
        run(cfg, progress=False)
    aside = out / f"previous-{old['digest']}"
    for name in (*TABLES, *FIGURES, "results.zarr", "glacier_years.parquet"):
        assert not (out / name).exists(), name
        assert (aside / name).exists(), name
    for name in TABLES:
        assert (aside / name).read_bytes() == (lone.out / name).read_bytes()
    assert (out / "work" / "cube.zarr").exists() and not (aside / "work").exists()
    new = json.loads((out / RECORD_FILE).read_text(encoding="utf-8"))
    assert new["digest"] != old["digest"]
    assert new["sections"]["climate"] == old["sections"]["climate"]
    # the same configuration again: nothing more is moved
    before = sorted(p.name for p in out.iterdir())
    assert retire_stale_outputs(cfg) is None
    assert sorted(p.name for p in out.iterdir()) == before


def test_run_outputs_name_every_file_a_run_writes(lone):
    """What is moved aside is what a run writes: every top-level entry of a finished run's output
    directory is a run output, the work folder, the record or a lock file (lock files stay where they are:
    another process may have one open; so does the run log, appended by every run and open while a run moves
    older outputs aside)."""
    from glacgrid.logs import LOG_NAME

    own = {"work", LOCK_FILE, RECORD_FILE, LOG_NAME}
    others = [p.name for p in lone.out.iterdir() if p.name not in own and p.name not in RUN_OUTPUTS]
    assert [name for name in others if not name.endswith(".lock")] == []  # lock files are never moved


# ------------------------------------------------------------------------------------------ period, readers
def test_a_period_outside_the_climate_fails_before_any_stage(lone):
    """Issue 16.8: hydrological years the climate files do not cover fail before ingest, masks or
    downscaling wrote anything."""
    cfg = load_config(_config(lone.root, lone.region, "early",
                              {"[period]\nstart = 2001\nend = 2004": "[period]\nstart = 1990\nend = 1995"}))
    with pytest.raises(TimeAxisError) as err:
        run(cfg, progress=False)
    assert "1990" in str(err.value) or "1989" in str(err.value)
    work = Path(cfg.output.directory) / "work"
    assert not any((work / s).exists() for s in ("cube.zarr", "static.zarr", "downscaled.zarr"))
    res = CliRunner().invoke(app, ["run", str(cfg.source), "--no-progress", "--cluster", "threads"])
    assert res.exit_code == 2 and "error (TimeAxisError): " in res.output and "Traceback" not in res.output


def test_downscale_refuses_the_cube_of_a_killed_ingest(lone, tmp_path):
    """Issue 16.4: a cube whose ingest stopped after its first latitude band (planned regions missing) is
    refused by `glacgrid downscale` with a typed error, and no store is written."""
    src = cube.open_store(lone.out / "work" / "cube.zarr", chunks={}).chunk({"lat": 2})
    killed = tmp_path / "killed.zarr"
    ds, pending = cube.prepare_regions(src, killed, region_dim="lat")
    key, index = pending[0]
    cube.write_region(ds.isel(lat=index), killed, region_dim="lat", index=index)
    cube.mark_done(killed, key)
    assert len(pending) > 1 and cube.missing_regions(killed)
    out = tmp_path / "down.zarr"
    res = CliRunner().invoke(app, ["downscale", str(killed), "--grid", str(lone.region.dem), "--out", str(out)])
    assert res.exit_code == 2
    assert res.output.startswith("error (StoreError): ") and "incomplete" in res.output
    assert not out.exists()


# ------------------------------------------------------------------------------------------ CLI errors
def _table(tmp_path: Path, n: int = 60) -> Path:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"rgi_id": np.repeat([f"G{i}" for i in range(6)], n // 6), "year": np.tile(np.arange(n // 6), 6),
                       "cpdd": rng.uniform(500, 1500, n)})
    df["smb"] = 1.0 - 0.002 * df["cpdd"]
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    return path


def test_cli_prints_the_error_type_and_no_traceback(tmp_path):
    """Issue 16.8: `error (Type): message` on one line for a GlacgridError and for an OSError."""
    table = _table(tmp_path)
    res = CliRunner().invoke(app, ["infer", str(tmp_path / "model"), str(tmp_path / "none.csv"), "--out",
                                   str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and res.output.startswith("error (") and "Traceback" not in res.output
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = CliRunner().invoke(app, ["cv", str(table), "--target", "smb", "--glacier-col", "rgi_id", "--year-col",
                                   "year", "--features", "cpdd", "--model", "ols", "--scheme", "logo",
                                   "--out", str(blocker / "cv.json")])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error (NotADirectoryError): ") or res.output.startswith("error (FileExistsError): ")
    assert str(blocker) in res.output and "Traceback" not in res.output


def _limit_file_size() -> None:
    os.umask(0o022)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_cli_reports_a_failed_write_as_one_typed_line_and_leaves_no_partial_table(tmp_path):
    """A write the system refuses (here: past a file size limit, EFBIG, as a full disk refuses one) gives
    `error (OSError): ...` naming the error and what to do; the table is not left half written."""
    table = _table(tmp_path, 6000)
    train = CliRunner().invoke(app, ["train", str(table), "--target", "smb", "--features", "cpdd", "--model", "ols",
                                     "--out", str(tmp_path / "model")])
    assert train.exit_code == 0, train.output
    out = tmp_path / "pred.csv"
    proc = subprocess.run([sys.executable, "-m", "glacgrid.cli", "infer", str(tmp_path / "model"), str(table),
                           "--out", str(out)], capture_output=True, text=True, preexec_fn=_limit_file_size,
                          env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1"), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip()
    assert line.startswith("error (OSError): File too large (EFBIG)") and "\n" not in line, line
    assert "Traceback" not in proc.stderr
    assert not out.exists() and list(tmp_path.glob(".pred.csv.*")) == []


def test_os_errors_name_the_fix():
    import errno

    from glacgrid.cli import _os_message

    msg = _os_message(OSError(errno.ENOSPC, "No space left on device", "/scratch/out/results.zarr/smb/c/0"))
    assert msg.startswith("No space left on device (ENOSPC): /scratch/out/results.zarr/smb/c/0. Free space")
    assert "resumes" in msg
    assert "permissions" in _os_message(PermissionError(errno.EACCES, "Permission denied", "/x"))
