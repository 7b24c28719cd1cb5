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
