import json
import subprocess
import sys

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from glacgrid.cli import app

runner = CliRunner()
VERBS = ("ingest", "mask", "downscale", "features", "train", "cv", "infer", "evolve", "run", "demo")


def test_help_lists_every_stage_verb():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for verb in VERBS:
        assert verb in res.output


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "glacgrid.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout


def test_run_template_and_config_errors(tmp_path):
    res = runner.invoke(app, ["run", "--template"])
    assert res.exit_code == 0 and "[climate]" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[climate]\nfiles = ["nope.nc"]\ninvariant = "nope.nc"\n')
    res = runner.invoke(app, ["run", str(bad)])
    assert res.exit_code == 2
    assert "[grid] is required" in res.output and "[period] is required" in res.output


def test_train_cv_infer_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({"rgi_id": np.repeat([f"G{i}" for i in range(6)], 20), "year": np.tile(np.arange(2000, 2020), 6),
                       "cpdd": rng.uniform(500, 1500, n), "snow_winter": rng.uniform(500, 2000, n)})
    df["smb"] = 0.001 * df["snow_winter"] - 0.004 * df["cpdd"] + 2.0 + rng.normal(0, 0.01, n)
    table = tmp_path / "t.csv"
    df.to_csv(table, index=False)
    res = runner.invoke(app, ["cv", str(table), "--target", "smb", "--glacier-col", "rgi_id", "--year-col", "year",
                              "--features", "cpdd,snow_winter", "--model", "ols", "--scheme", "logo",
                              "--out", str(tmp_path / "cv.json")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "cv.json").read_text())
    assert result["metrics"]["r"] > 0.99
    res = runner.invoke(app, ["train", str(table), "--target", "smb", "--features", "cpdd,snow_winter",
                              "--model", "ols", "--out", str(tmp_path / "model")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["infer", str(tmp_path / "model"), str(table), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(pred["predicted"], df["smb"], atol=0.05)
    res = runner.invoke(app, ["infer", str(tmp_path / "model"), str(tmp_path / "t2.csv"), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "does not exist" in res.output


# --- a CLI like its peers (issue 19, item 4) ---------------------------------------------------------------------
import logging
import re
import tomllib
import warnings
from pathlib import Path
from types import SimpleNamespace


import glacgrid
from glacgrid.config import CLUSTER_KINDS, TEMPLATE, ClusterConfig
from glacgrid.logs import LOG_NAME
from glacgrid.testing import REPO


def test_version_in_process_and_as_a_program():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout == f"glacgrid {glacgrid.__version__}\n"
    out = subprocess.run([sys.executable, "-m", "glacgrid.cli", "--version"], capture_output=True, text=True,
                         check=True)
    assert out.stdout == f"glacgrid {glacgrid.__version__}\n" and out.stderr == ""


def test_help_keeps_bracketed_section_names():
    res = runner.invoke(app, ["run", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.stdout.split())  # the help is wrapped to the terminal width
    assert "SLURMCluster from the [cluster] section" in text
    assert "--scheduler" not in text  # the deprecated alias is hidden
    res = runner.invoke(app, ["validate", "-h"])
    assert "default: [model] training" in " ".join(res.stdout.split())


#: (verb, option, where glacgrid defines the values once): the help shows them, a wrong value lists them.
def _lists():
    from glacgrid.downscale.regrid import ENGINES as REGRID_ENGINES
    from glacgrid.downscale.regrid import METHODS
    from glacgrid.ingest import ENGINES
    from glacgrid.models import ANN_PRESETS, ENSEMBLE_METHODS, MODEL_KINDS, SCHEMES, WEIGHTINGS
    from glacgrid.outputs import EXPORT_FORMATS
    from glacgrid.testing import DEMO_SIZES

    return [("ingest", "--engine", ENGINES), ("downscale", "--method", METHODS),
            ("downscale", "--engine", REGRID_ENGINES), ("train", "--model", MODEL_KINDS),
            ("train", "--ann-preset", tuple(ANN_PRESETS)), ("train", "--weights", ("none", *WEIGHTINGS)),
            ("cv", "--model", MODEL_KINDS), ("cv", "--scheme", SCHEMES), ("cv", "--weighting", ("none", *WEIGHTINGS)),
            ("cv", "--ensemble-method", ENSEMBLE_METHODS), ("export", "--to", EXPORT_FORMATS),
            ("demo", "--size", tuple(DEMO_SIZES)), ("demo", "--cluster", (*CLUSTER_KINDS, "ADDRESS")),
            ("run", "--cluster", (*CLUSTER_KINDS, "ADDRESS"))]


def test_help_shows_every_choice_of_glacgrids_own_lists():
    assert {"ridge", "kfold"} <= {v for _, _, values in _lists() for v in values}  # the two cv once lacked
    for verb, option, values in _lists():
        res = runner.invoke(app, [verb, "--help"])
        assert f"{option} {{{'|'.join(values)}}}" in res.stdout, (verb, option)


def test_a_wrong_choice_is_refused_with_the_valid_ones(tmp_path):
    from glacgrid.models import MODEL_KINDS, SCHEMES

    table = tmp_path / "t.csv"
    table.write_text("rgi_id,year,cpdd,smb\nG1,2000,1.0,0.5\n")
    base = ["cv", str(table), "--target", "smb", "--glacier-col", "rgi_id", "--year-col", "year", "--features",
            "cpdd", "--out", str(tmp_path / "cv.json")]
    res = runner.invoke(app, [*base, "--model", "linear", "--scheme", "logo"])
    assert res.exit_code == 2 and "Invalid value for '--model': 'linear' is not one of" in res.stderr
    assert f"is not one of {', '.join(MODEL_KINDS)}." in res.stderr
    res = runner.invoke(app, [*base, "--model", "ridge", "--scheme", "holdout"])
    assert res.exit_code == 2 and f"'holdout' is not one of {', '.join(SCHEMES)}." in res.stderr
    res = runner.invoke(app, ["export", str(tmp_path / "r.zarr"), "--to", "shapefile"])
    assert res.exit_code == 2 and "'shapefile' is not one of netcdf, geotiff" in res.stderr
    res = runner.invoke(app, ["demo", "--cluster", "kubernetes", "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and ", ".join(CLUSTER_KINDS) in res.stderr and "tcp://" in res.stderr
    res = runner.invoke(app, ["validate", str(tmp_path / "x.toml"), "--schemes", "logo,holdout"])
    assert res.exit_code == 2 and "'holdout' is not one of logo, loyo" in res.stderr
    res = runner.invoke(app, ["validate", str(tmp_path / "x.toml"), "--training", "joint,bands"])
    assert res.exit_code == 2 and "'bands' is not one of glacier, joint (comma-separated)" in res.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was written


def test_scheduler_is_a_hidden_alias_of_cluster_that_warns(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[climate]\nfiles = ["nope.nc"]\n')
    res = runner.invoke(app, ["run", str(bad), "--scheduler", "tcp://127.0.0.1:9"])
    assert res.exit_code == 2  # the config error comes after the warning
    assert "warning: --scheduler is deprecated and will be removed; use --cluster tcp://127.0.0.1:9" in res.stderr
    res = runner.invoke(app, ["run", str(bad), "--scheduler", "tcp://127.0.0.1:9", "--cluster", "local"])
    assert res.exit_code == 2 and "disagree: give --cluster only" in res.stderr
    res = runner.invoke(app, ["run", str(bad), "--scheduler", "nonsense"])
    assert res.exit_code == 2 and "Invalid value for '--scheduler'" in res.stderr


def test_quiet_prints_errors_only(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[climate]\nfiles = ["nope.nc"]\n')
    for args in (["-q", "run", str(bad), "--scheduler", "tcp://127.0.0.1:9"],
                 ["run", str(bad), "-q", "--scheduler", "tcp://127.0.0.1:9"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and res.stdout == ""
        assert res.stderr.startswith("error (ConfigError): ") and "deprecated" not in res.stderr
    res = runner.invoke(app, ["-q", "run", "--template"])  # what was asked for is still printed
    assert res.exit_code == 0 and res.stdout.startswith("# glacgrid run configuration")


def _fake_demo(monkeypatch):
    """`glacgrid demo` without its region and pipeline: the run emits what third parties emit in a real run
    (distributed's port warning and nanny message, a zarr warning, pint's logger) and a glacgrid warning."""
    import distributed  # noqa: F401  (installs distributed's own stderr handler, which the session re-routes)
    import zarr

    from glacgrid.features import PartialYearWarning

    def prepare(out, size, seed, mode):
        region = SimpleNamespace(n_glaciers=3, start=2001, end=2002, directory=Path(out) / "inputs")
        return SimpleNamespace(cluster=ClusterConfig()), region

    def run(cfg, progress=True):
        warnings.simplefilter("always")  # inside the session's catch_warnings: undone with it
        warnings.warn("Port 8787 is already in use.\nPerhaps you already have a cluster running?\nHosting the "
                      "HTTP server on port 41234 instead", UserWarning)
        logging.getLogger("distributed.nanny").warning("Worker process still alive after 4.0 seconds, killing")
        logging.getLogger("pint.util").warning("Redefining 'percent'")
        zarr.create_array(store={}, shape=(2,), dtype="<U4", zarr_format=3)  # UnstableSpecificationWarning
        warnings.warn("hydrological year 2002 is incomplete", PartialYearWarning)
        return "result"

    monkeypatch.setattr("glacgrid.testing.prepare_demo", prepare)
    monkeypatch.setattr("glacgrid.pipeline.run", run)
    monkeypatch.setattr("glacgrid.outputs.summary_lines", lambda result: ["mean SMB -0.50 m w.e. a-1"])


THIRD_PARTY_LINES = ("Port 8787 is already in use", "Worker process still alive", "Redefining 'percent'",
                     "does not have a Zarr V3 specification")


def test_third_party_warnings_go_to_the_run_log_not_the_terminal(tmp_path, monkeypatch):
    _fake_demo(monkeypatch)
    handlers = list(logging.getLogger("distributed").handlers)
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--cluster", "threads", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "synthetic region: 3 glaciers" in res.stdout and "mean SMB -0.50 m w.e. a-1" in res.stdout
    assert "warning: PartialYearWarning: hydrological year 2002 is incomplete" in res.stderr  # glacgrid's own
    for line in THIRD_PARTY_LINES:
        assert line not in res.output
    log = (out / LOG_NAME).read_text()
    for line in (*THIRD_PARTY_LINES, "PartialYearWarning", "synthetic region: 3 glaciers", "mean SMB -0.50"):
        assert line in log, line
    assert re.search(r"WARNING distributed\.nanny: Worker process still alive", log)
    # the session is undone: distributed prints through its own handler again
    assert logging.getLogger("distributed").handlers == handlers

    res = runner.invoke(app, ["-v", "demo", "--out", str(out), "--cluster", "threads", "--no-progress"])
    assert res.exit_code == 0 and "warning (distributed.nanny): Worker process still alive" in res.stderr

    res = runner.invoke(app, ["-q", "demo", "--out", str(out), "--cluster", "threads"])
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == ""
    log = (out / LOG_NAME).read_text()  # appended: three runs
    assert log.count("Worker process still alive") == 3 and log.count("mean SMB -0.50") == 3


def test_progress_bars_show_the_time_left():
    import io

    from rich.console import Console
    from rich.progress import Progress, TimeRemainingColumn

    from glacgrid.pipeline.steps import progress_columns

    columns = progress_columns()
    assert any(isinstance(c, TimeRemainingColumn) for c in columns)
    console = Console(file=io.StringIO(), width=120)
    with Progress(*columns, console=console, auto_refresh=False) as bar:
        task = bar.add_task("years", total=10)
        bar.advance(task, 4)
        console.print(bar.make_tasks_table(bar.tasks))
    assert re.search(r"years .* 4/10 \d:\d\d:\d\d eta (-:--:--|\d:\d\d:\d\d)", console.file.getvalue())


def test_the_template_carries_every_key_the_examples_use():
    def keys(toml_text: str, commented: bool) -> set[tuple[str, str]]:
        found, section = set(), ""
        for line in toml_text.splitlines():
            text = line.strip().lstrip("#").strip() if commented else line.strip()
            if m := re.match(r"^\[([a-z_.]+)\]", text):
                section = m.group(1)
            elif m := re.match(r"^([A-Za-z_0-9]+)\s*=", text):
                found.add((section, m.group(1)))
        return found

    template = keys(TEMPLATE, commented=True)
    tomllib.loads(TEMPLATE)  # and it stays valid TOML
    examples = sorted((REPO / "examples").glob("*.toml"))
    assert len(examples) >= 3
    for path in examples:
        used = {(s, k) for s, k in keys(path.read_text(), commented=False) if s != "observations.links"}
        assert used <= template, (path.name, sorted(used - template))


def test_worker_process_warnings_go_to_the_run_log(tmp_path, monkeypatch):
    """A LocalCluster's worker processes route their warnings like the command: into glacgrid.log."""
    import functools

    from distributed import get_client

    _fake_demo(monkeypatch)

    def run(cfg, progress=True):
        client = get_client()
        warn = functools.partial(warnings.warn, "numcodecs: a codec warning raised in a worker", UserWarning)
        client.submit(warn, pure=False).result()
        return "result"

    monkeypatch.setattr("glacgrid.pipeline.run", run)
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--cluster", "local", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "dask: scheduler tcp://" in res.stdout
    log = (out / LOG_NAME).read_text()
    assert re.search(r"WARNING py\.warnings \[worker \d+\]: .*numcodecs: a codec warning raised in a worker", log)
