"""``tlkit.rundir``: the run directory's names and readers."""

from __future__ import annotations

import json

import pytest

from tlkit.errors import UserError
from tlkit.rundir import RunDir


def test_paths_are_the_names_in_the_folder(tmp_path):
    run = RunDir(tmp_path)
    assert run.model == tmp_path / "model.keras" == tmp_path / RunDir.MODEL
    assert run.state == tmp_path / "state.json"
    assert run.export == tmp_path / "export"
    assert run.predictions("val") == tmp_path / "predictions_val.npy"
    assert run.per_class("test") == tmp_path / "per_class_test.csv"
    assert run / RunDir.METRICS == tmp_path / "metrics.json"


def test_of_finds_the_run_of_a_folder_or_of_its_model_file(tmp_path):
    model = tmp_path / RunDir.MODEL
    model.write_bytes(b"")
    assert RunDir.of(tmp_path).path == tmp_path
    assert RunDir.of(model) is None  # a bare model file: no metrics.json beside it
    (tmp_path / RunDir.METRICS).write_text("{}")
    assert RunDir.of(model).path == tmp_path
    assert RunDir.of(tmp_path / "missing.keras") is None


def test_readers_read_what_is_there_and_leave_out_the_rest(tmp_path):
    run = RunDir(tmp_path)
    assert run.metrics() == {} and run.class_names() is None and run.recipe_text() == ""
    (tmp_path / RunDir.METRICS).write_text('{"val": {"top1": 0.5}}')
    (tmp_path / RunDir.LABELS).write_text(json.dumps({"class_names": ["cat", "dog"]}))
    (tmp_path / RunDir.CALIBRATION).write_text("{not json")
    (tmp_path / RunDir.DATA_REPORT).write_text("[1, 2]")
    assert run.metrics() == {"val": {"top1": 0.5}}
    assert run.class_names() == ["cat", "dog"]
    assert run.read_json(RunDir.CALIBRATION) is None  # unreadable
    assert run.read_json(RunDir.DATA_REPORT) is None  # not an object


def test_required_files_fail_with_a_message_that_names_them(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(UserError, match=r"no model at .*model\.keras \(not yet\)"):
        run.require_model(" (not yet)")
    with pytest.raises(UserError, match="has no recipe.yaml: cannot rebuild"):
        run.require_recipe("cannot rebuild")
