"""The jobs/ scripts against a real Slurm (ci/slurm-up.sh starts one on localhost; .ci/run does).

Skipped when no Slurm answers, unless GLACGRID_REQUIRE_SLURM is set (then they fail). The jobs run
the python that runs pytest (GLACGRID_PYTHON) with this checkout on PYTHONPATH. The time from
submission to result of each job kind is printed and appended to <slurm dir>/timings.txt.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glacgrid.cube import completed_regions, open_store

from glacgrid.testing import REPO

JOBS = REPO / "jobs"
# one pytest-xdist worker runs them all: they share one slurmd (4 CPUs), and side by side the jobs of one
# test (a driver and two worker jobs, a tile array) would queue behind those of another
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]
_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
             "DEADLINE", "PREEMPTED"}


def _slurm_conf() -> Path | None:
    candidates = [os.environ.get("SLURM_CONF"),
                  str(Path(os.environ.get("GLACGRID_SLURM_DIR", "/tmp/glacgrid-slurm")) / "slurm.conf"),
                  "/etc/slurm/slurm.conf"]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@pytest.fixture(scope="module")
def slurm() -> dict:
    """The environment for sbatch & co., or skip (fail under GLACGRID_REQUIRE_SLURM) without a Slurm."""
    conf = _slurm_conf()
    problem = None
    if conf is None:
        problem = "no slurm.conf found (SLURM_CONF, $GLACGRID_SLURM_DIR/slurm.conf, /etc/slurm/slurm.conf)"
    else:
        env = dict(os.environ, SLURM_CONF=str(conf), GLACGRID_PYTHON=sys.executable,
                   PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
        try:
            ping = subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=30)
            if ping.returncode or "UP" not in ping.stdout:
                first = (ping.stdout.strip() or ping.stderr.strip()).splitlines()[:1]
                problem = f"slurmctld does not answer ({conf}): {' '.join(first)}"
            else:
                node = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=30)
                if not re.search(r"idle|mix|alloc", node.stdout):
                    problem = f"no Slurm node takes jobs (sinfo: {node.stdout.strip()!r})"
        except (OSError, subprocess.SubprocessError) as err:
            problem = f"the Slurm commands do not run: {err}"
    if problem:
        msg = f"no local Slurm is up: {problem}. Start one with `ci/slurm-up.sh` (what .ci/run does)."
        if os.environ.get("GLACGRID_REQUIRE_SLURM"):
            pytest.fail(msg + " GLACGRID_REQUIRE_SLURM is set, so this is an error.")
        pytest.skip(msg)
    env["GLACGRID_TIMINGS"] = str(conf.parent / "timings.txt")
    return env


def _run(args, env, **kwargs) -> str:
    res = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=120, **kwargs)
    assert res.returncode == 0, f"{args} failed: {res.stdout}\n{res.stderr}"
    return res.stdout.strip()


def _sbatch(env, *args) -> str:
    return _run(["sbatch", "--parsable", *args], env).split(";")[0]


def _states(env, job: str) -> dict[str, str]:
    """JobState of a job, or of every task of an array job (key: JobId or ArrayJobId_TaskId)."""
    out = _run(["scontrol", "-o", "show", "job", job], env)
    states = {}
    for line in out.splitlines():
        f = dict(re.findall(r"(\w+)=(\S*)", line))
        key = f"{f['ArrayJobId']}_{f['ArrayTaskId']}" if "ArrayTaskId" in f else f["JobId"]
        states[key] = f["JobState"]
    return states


def _wait(env, jobs: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = {k: v for j in jobs if j != "-" for k, v in _states(env, j).items()}
        if all(s in _TERMINAL for s in states.values()):
            return states
        if time.monotonic() > deadline:
            subprocess.run(["scancel", *jobs], env=env)
            pytest.fail(f"Slurm jobs {jobs} did not end within {timeout:.0f} s: {states}")
        time.sleep(0.5)


def _span(env, jobs: list[str]) -> float:
    """Seconds from the first SubmitTime to the last EndTime of ``jobs`` (array tasks included),
    as Slurm recorded them (1 s resolution)."""
    from datetime import datetime

    submit, end = [], []
    for job in jobs:
        for line in _run(["scontrol", "-o", "show", "job", job], env).splitlines():
            f = dict(re.findall(r"(\w+)=(\S*)", line))
            submit.append(datetime.fromisoformat(f["SubmitTime"]))
            end.append(datetime.fromisoformat(f["EndTime"]))
    return (max(end) - min(submit)).total_seconds()


def _record(env, kind: str, seconds: float) -> None:
    line = f"{kind}: {seconds:.0f} s from submission to result"
    print(line)
    with open(env["GLACGRID_TIMINGS"], "a", encoding="utf-8") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


def _logs(directory: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(directory.glob("*.log")))


_REGIONS: dict[Path, object] = {}


def _config(tmp_path: Path, name: str, cluster: str) -> Path:
    """A tiny seeded region (9 glaciers, 4 years, 64 x 80 pixels in chunks of 16) and a config for it."""
    from glacgrid.testing import build_region, write_config

    if tmp_path not in _REGIONS:
        _REGIONS[tmp_path] = build_region(tmp_path / "inputs", seed=3, shape=(64, 80), n_massifs=2,
                                          glaciers_per_massif=4, start=2001, end=2004)
    region = _REGIONS[tmp_path]
    path = write_config(region, tmp_path / f"{name}.toml", output=tmp_path / name, mode="evolve", chunks=16)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n[cluster]\n" + (cluster or 'kind = "local"\nn_workers = 1\nthreads_per_worker = 2\n'))
    return path


def test_single_node_job_on_the_demo(slurm, tmp_path):
    """jobs/run_single_node.sbatch on the `glacgrid demo --size small` region: outputs and known answers."""
    from glacgrid.testing import prepare_demo

    cfg, region = prepare_demo(tmp_path / "demo", size="small", seed=1)
    job = _sbatch(slurm, "--cpus-per-task=2", "--mem=4G", f"--output={tmp_path}/%x-%j.log",
                  JOBS / "run_single_node.sbatch", tmp_path / "demo" / "demo.toml")
    states = _wait(slurm, [job], timeout=400)
    _record(slurm, f"single-node job (demo --size small, {region.n_glaciers} glaciers x 10 years)", _span(slurm, [job]))
    log = _logs(tmp_path)
    assert states == {job: "COMPLETED"}, log
    assert f"job {job}, 2 CPUs" in log and "glacgrid run finished" in log
    out = tmp_path / "demo"
    gy = pd.read_csv(out / "glacier_years.csv")
    assert len(gy) == region.n_glaciers * 10 and gy["smb_mwe"].notna().all() and gy["volume_km3"].notna().all()
    m = json.loads((out / "cv.json").read_text())["metrics"]
    assert m["r"] > 0.98 and m["rmse"] < 0.08  # the synthetic observations' known model (0.05 m w.e. noise)
    res = open_store(out / "results.zarr")
    vol, smb, area = (res[v].values for v in ("volume", "smb_glacier", "glacier_area"))
    gone = res["disappeared"].values[1:].astype(bool)
    expected = smb[1:] * area[:-1] * 1e-3 * 1000.0 / 900.0  # mass conservation of the delta-h update
    np.testing.assert_allclose(np.diff(vol, axis=0)[~gone], expected[~gone], rtol=1e-9, atol=1e-15)
    assert (out / "summary.png").stat().st_size > 20_000


def test_driver_job_scales_a_slurmcluster_to_two_workers(slurm, tmp_path):
    """jobs/run_slurm_cluster.sbatch: `glacgrid run --cluster slurm` on 2 worker jobs (interface lo)."""
    logs = tmp_path / "worker-logs"
    cfg = _config(tmp_path, "driver", f'kind = "local"\nn_workers = 2\ncores = 1\nmemory = "1GiB"\n'
                                      f'interface = "lo"\nwalltime = "00:20:00"\nlog_directory = "{logs}"\n'
                                      'wait_timeout = 180.0\n')
    job = _sbatch(slurm, "--mem=1G", f"--output={tmp_path}/%x-%j.log", JOBS / "run_slurm_cluster.sbatch", cfg)
    states = _wait(slurm, [job], timeout=400)
    _record(slurm, "driver job + SLURMCluster of 2 worker jobs (9 glaciers x 4 years)", _span(slurm, [job]))
    log = _logs(tmp_path)
    assert states == {job: "COMPLETED"}, log + _logs(logs)
    assert re.search(r"dask: scheduler tcp://127\.0\.0\.1:\d+, 2 workers, 2 threads", log), log
    # two worker jobs, named after the driver, each with its own log; none left in the queue
    worker_jobs = {p.stem.split("-")[-1] for p in logs.glob("*.err")}
    assert len(worker_jobs) == 2, sorted(logs.iterdir())
    assert _run(["squeue", "-h", "--name", f"glacgrid-worker-{job}"], slurm) == ""
    for w in worker_jobs:
        assert _states(slurm, w)[w] in {"CANCELLED", "COMPLETED"}
    gy = pd.read_csv(tmp_path / "driver" / "glacier_years.csv")
    assert len(gy) == 9 * 4 and gy["smb_mwe"].notna().all()


def test_tile_array_equals_a_single_run_and_resubmission_finishes_the_rest(slurm, tmp_path):
    """jobs/submit_tiles.sh: prepare -> array of 2 tiles -> finish. One tile task is killed mid-run;
    re-submitting runs only that tile (resuming its finished years), and the merged store equals a
    single local run."""
    from glacgrid.config import load_config
    from glacgrid.pipeline import run

    cfg_path = _config(tmp_path, "tiled", "")
    single = load_config(_config(tmp_path, "single", ""))
    tiled = tmp_path / "tiled"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = dict(slurm, **{f"GLACGRID_{k}_OPTS": "--cpus-per-task=1 --mem=2G" for k in ("PREPARE", "TILE", "FINISH")})
    ids = dict(kv.split("=") for kv in _run([JOBS / "submit_tiles.sh", cfg_path, 2], env, cwd=logs).split())
    assert ids["prepare"] != "-" and ids["tiles"] == "0-1"
    # kill tile 1 as soon as its scratch store has a finished year
    scratch = tiled / "tiles" / "tile-1.zarr"
    deadline = time.monotonic() + 300
    while not (scratch.exists() and any(k.startswith("year[") for k in completed_regions(scratch))):
        assert time.monotonic() < deadline, _logs(logs)
        time.sleep(0.2)
    _run(["scancel", f"{ids['array']}_1"], env)
    # meanwhile, the reference: one local run of the same configuration in this process
    reference = run(single, progress=False)
    states = _wait(env, [ids["prepare"], ids["array"], ids["finish"]], timeout=300)
    assert states[ids["prepare"]] == "COMPLETED" and states[f"{ids['array']}_0"] == "COMPLETED", _logs(logs)
    assert states[f"{ids['array']}_1"] == "CANCELLED" and states[ids["finish"]] == "CANCELLED"
    finished_before = {k for k in completed_regions(scratch) if k.startswith("year[")}
    assert 1 <= len(finished_before) < 4
    assert "tile[0]" in completed_regions(tiled / "results.zarr")
    assert _run([sys.executable, "-m", "glacgrid.cli", "tiles", "missing", cfg_path], env) == "1"

    again = dict(kv.split("=") for kv in _run([JOBS / "submit_tiles.sh", cfg_path, 2], env, cwd=logs).split())
    assert again["prepare"] == "-" and again["tiles"] == "1"  # only the missing tile
    states = _wait(env, [again["array"], again["finish"]], timeout=300)
    _record(slurm, "tile array, first submission (prepare, tile 0 done, tile 1 killed mid-run)",
            _span(env, [ids["prepare"], f"{ids['array']}_0"]))
    _record(slurm, "tile array re-submission (only tile 1, resumed, + finish)", _span(env, [again["array"], again["finish"]]))
    log = _logs(logs)
    assert set(states.values()) == {"COMPLETED"}, log
    resumed = (logs / f"glacgrid-tile-{again['array']}_1.log").read_text()
    assert f"tile 1: 4 glaciers, 10 chunks, {len(finished_before)} years resumed" in resumed, resumed
    assert not list(logs.glob(f"glacgrid-tile-{again['array']}_0.log"))
    # the merged store equals the single local run
    a = open_store(reference.files.results_zarr).compute()
    b = open_store(tiled / "results.zarr").compute()
    assert list(a.data_vars) == list(b.data_vars) and a.sizes == b.sizes
    for name in a.data_vars:
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-12, atol=1e-12, equal_nan=True,
                                   err_msg=name)
    np.testing.assert_array_equal(b["smb"].values, a["smb"].values)
    gy_a = pd.read_csv(reference.files.glacier_years_csv)
    gy_b = pd.read_csv(tiled / "glacier_years.csv")
    pd.testing.assert_frame_equal(gy_a, gy_b)


def _toml(raw: dict) -> str:
    """A TOML text of a config dictionary (strings, numbers, booleans, lists and nested tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        return "[" + ", ".join(value(x) for x in v) + "]"

    top = [f"{k} = {value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    out = ["\n".join(top)]

    def table(prefix, d):
        plain = [f"{json.dumps(k) if '.' in k else k} = {value(v)}" for k, v in d.items() if not isinstance(v, dict)]
        out.append(f"[{prefix}]\n" + "\n".join(plain))
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}", v)

    for k, v in raw.items():
        if isinstance(v, dict):
            table(k, v)
    return "\n\n".join(out) + "\n"


def test_domain_array_by_glacier_groups_equals_a_single_run(slurm, tmp_path):
    """jobs/submit_domain.sh on a tiny Alps domain: prepare (login node) -> array of group tasks -> finish.
    One task is cancelled; re-submitting runs only the tasks with missing groups, and the tables equal a
    single local run of the same configuration."""
    from glacgrid.config import config_from_dict
    from glacgrid.pipeline import run
    from glacgrid.testing import write_alps_climate

    from tests.run.test_domain_jobs import _raw

    if not (REPO.parent / "shared" / "data" / "alps" / "farinotti_thickness").is_dir():
        pytest.skip("the Alps tiles are not here")
    climate = write_alps_climate(tmp_path / "climate", 2013, 2015, seed=3)
    raw = _raw(tmp_path / "array", climate, year_batch=1)
    raw["mode"] = "evolve"
    cfg_path = tmp_path / "domain.toml"
    cfg_path.write_text(_toml(raw))
    single_raw = _raw(tmp_path / "single", climate, year_batch=1)
    single_raw["mode"] = "evolve"
    logs = tmp_path / "logs"
    logs.mkdir()
    env = dict(slurm, GROUPS_PER_TASK="1",
               **{f"GLACGRID_{k}_OPTS": "--cpus-per-task=1 --mem=2G" for k in ("GROUP", "FINISH")})
    first = dict(kv.split("=") for kv in _run([JOBS / "submit_domain.sh", cfg_path], env, cwd=logs).split())
    n = int(first["groups"])
    assert n >= 3 and first["tasks"] == ",".join(str(i) for i in range(n))
    task1 = f"{first['array']}_1"
    deadline = time.monotonic() + 120
    while _states(env, first["array"]).get(task1) != "RUNNING":  # kill task 1 while it runs
        assert time.monotonic() < deadline, (_states(env, first["array"]), _logs(logs))
        time.sleep(0.1)
    _run(["scancel", "--signal=KILL", task1], env)
    reference = run(config_from_dict(single_raw), progress=False)
    states = _wait(env, [first["array"], first["finish"]], timeout=300)
    assert states[task1] in ("CANCELLED", "FAILED") and states[first["finish"]] == "CANCELLED", (states, _logs(logs))
    missing = _run([sys.executable, "-m", "glacgrid.cli", "domain-missing", cfg_path], env)
    assert "1" in missing.split(",")
    again = dict(kv.split("=") for kv in _run([JOBS / "submit_domain.sh", cfg_path], env, cwd=logs).split())
    assert again["tasks"] == missing  # only the tasks whose groups are missing
    states = _wait(env, [again["array"], again["finish"]], timeout=300)
    _record(slurm, "domain array re-submission (missing groups + finish)", _span(env, [again["array"], again["finish"]]))
    assert set(states.values()) == {"COMPLETED"}, _logs(logs)
    a = pd.read_csv(reference.files.glacier_years_csv)
    b = pd.read_csv(tmp_path / "array" / "out" / "glacier_years.csv")
    pd.testing.assert_frame_equal(a, b)
