"""Object storage (issue 19, item 2): fsspec URLs, the bucket's run lock, staging mirrors, and a whole run on
an S3 bucket (moto's ThreadedMotoServer on 127.0.0.1), killed and resumed, equal to a local run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from glacgrid.config import config_from_dict, load_config
from glacgrid import cube
from glacgrid.cube import (DONE_FILE, completed_regions, create_template, missing_regions, open_store,
                          write_dataset)
from glacgrid.exceptions import ConfigError, LockHeldError, StoreError
from glacgrid.pipeline.outdir import LOCK_FILE, run_lock, staged_output
from glacgrid.storage import Mirror, location, remote_lock
from glacgrid.testing import REPO

moto_server = pytest.importorskip("moto.server")
pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")

pytestmark = pytest.mark.xdist_group("object-storage")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1; yields the storage_options that reach it."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"}}
    try:
        yield opts
    finally:
        server.stop()


def _bucket(opts, name: str) -> str:
    client = boto3.client("s3", endpoint_url=opts["endpoint_url"], aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return name


# ------------------------------------------------------------------------------------------------ URLs


def test_unknown_scheme_is_a_typed_error_never_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="scheme 's4'"):
        location("s4://bucket/out")
    with pytest.raises(StoreError, match="one slash"):
        location("s3:/bucket/out")
    assert location("file:///tmp/x").local and location("file:///tmp/x").path == "/tmp/x"
    loc = location("s3://bucket/out/", {"anon": True})
    assert (loc.protocol, loc.path, loc.local) == ("s3", "bucket/out", False)
    assert loc.join("results.zarr").url == "s3://bucket/out/results.zarr"
    for name in ("c.nc", "i.nc", "d.tif", "o.shp", "obs.csv"):
        (tmp_path / name).touch()
    base = {"climate": {"files": ["c.nc"], "invariant": "i.nc"}, "grid": {"dem": "d.tif"},
            "glaciers": {"outlines": "o.shp"}, "period": {"start": 2001, "end": 2002},
            "observations": {"files": ["obs.csv"]}}
    with pytest.raises(ConfigError, match="scheme 'foo'"):
        config_from_dict({**base, "output": {"directory": "foo://bucket/out"}}, base=tmp_path)
    with pytest.raises(ConfigError, match="accepted in \\[output\\] directory only"):
        config_from_dict({**base, "grid": {"dem": "s3://bucket/dem.tif"}, "output": {"directory": "o"}},
                         base=tmp_path)
    cfg = config_from_dict({**base, "output": {"directory": "s3://bucket/out",
                                               "storage_options": {"endpoint_url": "http://127.0.0.1:1"}}},
                           base=tmp_path)
    assert cfg.output.directory == "s3://bucket/out"
    assert cfg.output.storage_options == {"endpoint_url": "http://127.0.0.1:1"}
    assert "127.0.0.1" not in repr(cfg)  # (credentials live there: never in a repr or a log)
    local = config_from_dict({**base, "output": {"directory": f"file://{tmp_path}/o"}}, base=tmp_path)
    assert local.output.directory == tmp_path / "o"
    with pytest.raises(StoreError, match="staged_output"):  # never a folder named "s3:"
        with run_lock(cfg):
            pass
    with pytest.raises(StoreError, match="object storage"):
        create_template(xr.Dataset({"a": ("t", np.arange(3.0))}), "s3://bucket/x.zarr")
    assert not any(tmp_path.glob("s3*")) and not Path("s3:").exists()


# ----------------------------------------------------------------------------------------------- locks


def test_bucket_lock_refuses_a_live_holder_and_takes_over_a_dead_one(s3):
    bucket = _bucket(s3, "locks")
    lock = location(f"s3://{bucket}/out/{LOCK_FILE}", s3)
    with remote_lock(lock, purpose="first", ttl_s=60) as holder:
        assert holder["purpose"] == "first" and holder["pid"] == os.getpid()
        assert json.loads(lock.read_text())["purpose"] == "first"
        with pytest.raises(LockHeldError, match="first") as err:
            with remote_lock(lock, purpose="second", ttl_s=60):
                pass
        assert err.value.holder["pid"] == os.getpid()
    assert not lock.exists()  # released: deleted
    # a holder that died on this host, and one that stopped renewing, are taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for stale in ({"host": socket.gethostname(), "pid": int(dead.stdout), "renewed": time.time()},
                  {"host": "elsewhere", "pid": 1, "renewed": time.time() - 3600}):
        lock.fs.pipe_file(lock.path, json.dumps(stale).encode())
        with remote_lock(lock, purpose="after", ttl_s=60):
            assert json.loads(lock.read_text())["purpose"] == "after"
    # a live holder elsewhere that renews is respected
    lock.fs.pipe_file(lock.path, json.dumps({"host": "elsewhere", "pid": 1, "renewed": time.time(),
                                            "purpose": "remote run"}).encode())
    with pytest.raises(LockHeldError, match="remote run"):
        with remote_lock(lock, purpose="third", ttl_s=60):
            pass
    # the heartbeat renews
    lock.fs.rm_file(lock.path)
    with remote_lock(lock, purpose="beating", ttl_s=0.4):
        first = json.loads(lock.read_text())["renewed"]
        time.sleep(0.5)
        assert json.loads(lock.read_text())["renewed"] > first


# ---------------------------------------------------------------------------------------------- mirror


def test_mirror_pushes_changes_records_last_and_deletions(s3, tmp_path):
    bucket = _bucket(s3, "mirror")
    remote = location(f"s3://{bucket}/out", s3)
    work = tmp_path / "a"
    (work / "store.zarr" / "v" / "c").mkdir(parents=True)
    (work / "store.zarr" / "v" / "c" / "0").write_bytes(b"chunk0")
    (work / "store.zarr" / "zarr.json").write_text("{}")
    (work / "store.zarr" / DONE_FILE).write_text('{"done": ["t[0:1]"]}')
    (work / "old.csv").write_text("x\n1\n")
    (work / ".old.csv.abc.tmp").write_text("partial")  # never uploaded
    (work / "run.lock").write_text("")
    mirror = Mirror(remote, work)
    calls = []
    real = remote.fs.pipe_file
    remote.fs.pipe_file = lambda path, data, **kw: (calls.append("/".join(path.split("/")[-2:])), real(path, data, **kw))
    try:
        assert mirror.push() == 4
    finally:
        del remote.fs.pipe_file
    assert calls[-1].endswith(DONE_FILE) and calls.index("store.zarr/zarr.json") > calls.index("c/0")
    assert mirror.push() == 0  # nothing changed
    (work / "old.csv").unlink()
    (work / "store.zarr" / "v" / "c" / "0").write_bytes(b"chunk0-new")
    assert mirror.push() == 1
    copy = Mirror(remote, tmp_path / "b")
    assert copy.pull() == 3
    assert sorted(p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*") if p.is_file()) == [
        f"store.zarr/{DONE_FILE}", "store.zarr/v/c/0", "store.zarr/zarr.json"]
    assert (tmp_path / "b" / "store.zarr" / "v" / "c" / "0").read_bytes() == b"chunk0-new"


# ------------------------------------------------------------------------------- a store on the bucket


def test_write_dataset_to_a_bucket_resumes_an_interrupted_write(s3, monkeypatch):
    bucket = _bucket(s3, "stores")
    url = f"s3://{bucket}/cube.zarr"
    ds = xr.Dataset({"t2m": (("time", "y"), np.arange(24.0).reshape(6, 4)), "z": ("y", np.arange(4.0))},
                    coords={"time": np.arange(6), "y": np.arange(4)}).chunk({"time": 1})
    real, written = cube.write_region, []

    def failing(part, store, *, region_dim, index, region=None):
        if len(written) == 3:
            raise OSError(5, "connection lost")
        written.append(index.start)
        real(part, store, region_dim=region_dim, index=index, region=region)

    monkeypatch.setattr(cube, "write_region", failing)
    with pytest.raises(OSError, match="connection lost"):  # (a killed or failed write)
        write_dataset(ds, url, region_dim="time", storage_options=s3, push_interval_s=60)
    # the failed write's progress is on the bucket (pushed at the end), and the store is refused as incomplete
    assert completed_regions(url, storage_options=s3) == {"static", "time[0:1]", "time[1:2]", "time[2:3]"}
    assert missing_regions(url, storage_options=s3) == {"time[3:4]", "time[4:5]", "time[5:6]"}
    with pytest.raises(StoreError, match="incomplete"):
        open_store(url, storage_options=s3, require_complete=True)
    written.clear()
    monkeypatch.setattr(cube, "write_region", lambda part, store, **kw: (written.append(kw["index"].start),
                                                                         real(part, store, **kw)))
    assert write_dataset(ds, url, region_dim="time", storage_options=s3) == url
    assert written == [3, 4, 5]  # only what was missing
    back = open_store(url, storage_options=s3, require_complete=True).compute()
    xr.testing.assert_identical(back.drop_attrs(), ds.compute().drop_attrs())
    assert not location(url + ".lock", s3).exists()


# ---------------------------------------------------------------------------------- a whole run on S3

_REGION = {}


def _region(tmp_path: Path):
    """A tiny seeded region (9 glaciers, 4 years, 64 x 80 pixels in chunks of 16), as tests/run/test_slurm.py."""
    from glacgrid.testing import build_region

    if "r" not in _REGION:
        _REGION["r"] = build_region(tmp_path / "inputs", seed=3, shape=(64, 80), n_massifs=2, glaciers_per_massif=4,
                                    start=2001, end=2004)
    return _REGION["r"]


def _config(tmp_path: Path, name: str, directory: str, opts: dict | None = None) -> Path:
    from glacgrid.testing import write_config

    path = write_config(_region(tmp_path), tmp_path / f"{name}.toml", output=tmp_path / "placeholder", mode="evolve",
                        chunks=16)
    text = path.read_text()
    head, _, _ = text.rpartition("[output]")
    out = f"[output]\ndirectory = {json.dumps(directory)}\nplot = false\n"
    if opts:
        out += "storage_options = {" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in opts.items()
                                                 if not isinstance(v, dict)) + "}\n"
    path.write_text(head + out)
    return path


# each simulated year takes at least 0.6 s, so that a push (every 0.2 s) records the first year alone
_RUNNER = """
import sys, time
import glacgrid.cube as cube
_mark = cube.mark_done
def slow(store, key):
    _mark(store, key)
    if str(key).startswith("year["):
        time.sleep(0.6)
cube.mark_done = slow
from glacgrid.config import load_config
from glacgrid.pipeline import run
from glacgrid.pipeline.outdir import staged_output
cfg = load_config(sys.argv[1])
with staged_output(cfg, interval_s=0.2) as local:
    run(local, progress=False)
"""


def _bucket_done(fs, url: str) -> list[str]:
    try:
        return json.loads(fs.cat_file(url))["done"]
    except (FileNotFoundError, OSError, ValueError):
        return []


@pytest.mark.slow
def test_run_on_a_bucket_killed_and_resumed_equals_a_local_run(s3, tmp_path):
    from glacgrid.pipeline import run

    bucket = _bucket(s3, "runs")
    opts = {k: v for k, v in s3.items() if k != "client_kwargs"}
    local_cfg = load_config(_config(tmp_path, "local", str(tmp_path / "local")))
    ref = run(local_cfg, progress=False)
    url = f"s3://{bucket}/out"
    toml = _config(tmp_path, "bucket", url, opts)
    cfg = load_config(toml)
    assert cfg.output.directory == url
    fs = location(url, opts).fs
    env = dict(os.environ, PYTHONPATH=str(REPO), AWS_DEFAULT_REGION="us-east-1")
    cmd = [sys.executable, "-c", _RUNNER, str(toml)]
    done_url = f"{bucket}/out/results.zarr/{DONE_FILE}"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            fs.invalidate_cache()
            if "year[0:1]" in _bucket_done(fs, done_url):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read().decode()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    fs.invalidate_cache()
    killed = [k for k in _bucket_done(fs, done_url) if k.startswith("year[")]
    assert 1 <= len(killed) < 4  # killed in the middle, with progress on the bucket
    assert fs.exists(f"{bucket}/out/{LOCK_FILE}")  # the dead run's lock: taken over by the re-run
    assert missing_regions(f"{url}/results.zarr", storage_options=opts)
    with pytest.raises(StoreError, match="incomplete"):
        open_store(f"{url}/results.zarr", storage_options=opts, require_complete=True)
    first_chunk = f"{bucket}/out/results.zarr/thickness/c/0/0/0"
    written = fs.info(first_chunk)["LastModified"]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/out/{LOCK_FILE}")  # released
    assert fs.info(first_chunk)["LastModified"] == written  # the committed year was kept, not recomputed
    assert not missing_regions(f"{url}/results.zarr", storage_options=opts)
    assert {"year[0:1]", "year[3:4]"} <= completed_regions(f"{url}/results.zarr", storage_options=opts)
    new = open_store(f"{url}/results.zarr", storage_options=opts, require_complete=True).compute()
    old = open_store(ref.output / "results.zarr").compute()
    xr.testing.assert_allclose(new.drop_attrs(), old.drop_attrs(), rtol=1e-9, atol=0)
    with fs.open(f"{bucket}/out/glacier_years.csv") as fh:
        gy = pd.read_csv(fh)
    pd.testing.assert_frame_equal(gy, pd.read_csv(ref.output / "glacier_years.csv"))
    assert fs.exists(f"{bucket}/out/work/static.zarr/zarr.json") and fs.exists(f"{bucket}/out/model")
    assert not any(p.endswith((".tmp", ".partial", ".lock")) for p in fs.find(f"{bucket}/out"))
    assert not (tmp_path / "s3:").exists()
