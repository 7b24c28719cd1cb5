"""Issue 16.7: malformed model artifacts, poisoned ANN weights and an empty cross-validation table give
typed errors naming the file, never a KeyError/UnpicklingError traceback, and run no code."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from glacgrid.cli import app
from glacgrid.exceptions import InputDataError, ModelError
from glacgrid.models import ANNModel, FeatureSchema, LinearModel, cross_validate, load_model, make_model
from glacgrid.testing._models import glacier_year_table, linear_truth

SCHEMA = FeatureSchema(("x1", "x2", "x3"), ("K", "m", "1"))
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def data(n=40, seed=0):
    X = np.random.default_rng(seed).uniform(-2, 2, (n, 3))
    return X, linear_truth(X)


def edit_json(directory: Path, change) -> Path:
    path = directory / "model.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize("change, pattern", [
    (lambda m: m.pop("coef"), r"lacks the key 'coef' \(it has \["),
    (lambda m: m.update(coef=["a", "b", "c"]), r"is malformed \(ValueError: could not convert string to float"),
    (lambda m: m.update(coef=[1.0, 2.0]), "coef must be 3 finite numbers"),
    (lambda m: m.update(intercept="1.0"), "with a finite intercept"),
    (lambda m: m.update(schema=["x1", "x2"]), "A FeatureSchema dict needs keys 'names' and 'units'"),
    (lambda m: m.update(seed="one"), r"is malformed \(ValueError: invalid literal for int"),
], ids=["missing key", "strings", "too few", "string intercept", "schema list", "seed"])
def test_malformed_linear_model_json_names_the_file(tmp_path, change, pattern):
    """models/linear.py read fields of model.json unchecked: KeyError / ValueError tracebacks."""
    LinearModel("ols").fit(*data(), SCHEMA).to_artifact(tmp_path)
    path = edit_json(tmp_path, change)
    with pytest.raises(ModelError, match=pattern) as err:
        load_model(tmp_path)
    assert str(path) in str(err.value) or "FeatureSchema" in str(err.value)


def test_damaged_model_json_is_a_model_error(tmp_path):
    LinearModel("ols").fit(*data(), SCHEMA).to_artifact(tmp_path)
    path = tmp_path / "model.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelError, match=f"{path} is not valid JSON"):
        load_model(tmp_path)
    path.write_text(json.dumps([1, 2, 3]))
    with pytest.raises(ModelError, match="format_version None"):
        load_model(tmp_path)


def test_malformed_ann_and_forest_artifacts_name_the_file_and_key(tmp_path):
    X, y = data()
    ann = ANNModel(hidden=(4,), epochs=3, seed=0, device="cpu").fit(X, y, SCHEMA)
    ann.to_artifact(tmp_path / "ann")
    path = edit_json(tmp_path / "ann", lambda m: m["weights"].pop("sha256"))
    with pytest.raises(ModelError, match=rf"{path} lacks the key 'sha256' \(it has \['file', 'format'\]\)"):
        load_model(tmp_path / "ann")
    ann.to_artifact(tmp_path / "ann")
    edit_json(tmp_path / "ann", lambda m: m["normalisation"].update(x_mean=[0.0]))
    with pytest.raises(ModelError, match="normalisation must hold 3 finite x_mean"):
        load_model(tmp_path / "ann")
    make_model("rf", seed=0, n_estimators=3).fit(X, y, SCHEMA).to_artifact(tmp_path / "rf")
    path = edit_json(tmp_path / "rf", lambda m: m.update(arrays="arrays.npz"))
    with pytest.raises(ModelError, match=rf"{path} is malformed \(TypeError"):
        load_model(tmp_path / "rf")


class _Payload:
    """What a poisoned pickle carries: unpickling it would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_poisoned_ann_weights_are_refused_and_run_no_code(tmp_path):
    """models/ann.py let torch's UnpicklingError through as a traceback (whose first line advises
    weights_only=False). A consistent but poisoned artifact (its sha256 updated) is a ModelError."""
    X, y = data()
    ANNModel(hidden=(4,), epochs=3, seed=0, device="cpu").fit(X, y, SCHEMA).to_artifact(tmp_path)
    marker = tmp_path / "pwned"
    weights = tmp_path / "weights.pt"
    torch.save({"0.weight": _Payload(marker)}, weights)
    edit_json(tmp_path, lambda m: m["weights"].update(sha256=hashlib.sha256(weights.read_bytes()).hexdigest()))
    with pytest.raises(ModelError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"Refusing to load {weights}: UnpicklingError: ")
    assert "GLOBAL posix.system" in msg or "GLOBAL os.system" in msg
    assert "this file is not a glacgrid artifact or was written by an untrusted tool" in msg.lower()
    assert "weights_only=False" not in msg
    assert not marker.exists()
    weights.write_bytes(b"not a torch file")
    edit_json(tmp_path, lambda m: m["weights"].update(sha256=hashlib.sha256(weights.read_bytes()).hexdigest()))
    with pytest.raises(ModelError, match=rf"Refusing to load {weights}: \w+Error: .* not a glacgrid artifact"):
        load_model(tmp_path)


def test_empty_cv_table_is_an_input_error(tmp_path):
    """models/cv.py: an empty table raised numpy's "zero-size array to reduction operation" ValueError."""
    table = glacier_year_table(4, 5).iloc[:0]
    with pytest.raises(InputDataError, match=r"The cross-validation table has no rows \(columns: \['glacier'"):
        cross_validate(table, target="smb", features=["x1", "x2", "x3"], kind="ols")
    table.attrs["source"] = "features.csv"
    with pytest.raises(InputDataError, match="The cross-validation table features.csv has no rows"):
        cross_validate(table, target="smb", features=["x1", "x2", "x3"], kind="ols")
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    res = CliRunner().invoke(app, ["cv", str(path), "--target", "smb", "--features", "x1,x2,x3", "--glacier-col", "glacier", "--year-col", "year", "--model", "ols",
                                   "--scheme", "logo", "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "has no rows" in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "r.json").exists()
