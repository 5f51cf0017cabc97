"""A stray empty class folder (or a class whose files are all unreadable) is left out and
reported, not fatal; data.strict makes it, and every other finding, an error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tests.conftest import make_image_folder
from tlkit.cli.main import cli
from tlkit.data import DataConfig, prepare_data
from tlkit.errors import UserError


@pytest.fixture()
def folder(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=3, per_class=10)
    (root / "empty_class").mkdir()
    (root / "all_broken").mkdir()
    for i in range(3):
        (root / "all_broken" / f"{i}.jpg").write_bytes(b"not an image")
    return root


def test_empty_and_unreadable_classes_are_dropped_and_reported(folder, tmp_path):
    bundle = prepare_data(DataConfig(source=str(folder)), seed=0, run_dir=tmp_path, progress=False)
    assert bundle.class_names == ["class_0", "class_1", "class_2"]
    dropped = {d["class"]: d["reason"] for d in bundle.report.dropped_classes}
    assert set(dropped) == {"empty_class", "all_broken"}
    assert "empty class folder" in dropped["empty_class"] and "readable" in dropped["all_broken"]
    for split in (bundle.train, bundle.val):
        assert len(split) and set(split.labels.tolist()) <= {0, 1, 2}
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 30
    report = json.loads((tmp_path / "data_report.json").read_text())
    assert {d["class"] for d in report["dropped_classes"]} == {"empty_class", "all_broken"}
    assert len(report["skipped"]) == 3
    assert "dropped 2 classes" in bundle.report.format()


def test_strict_data_turns_findings_into_errors(folder, tmp_path):
    with pytest.raises(UserError, match="no training images"):
        prepare_data(DataConfig(source=str(folder), strict=True), seed=0, progress=False)
    clean = make_image_folder(tmp_path / "clean", classes=2, per_class=8)
    (clean / "class_0" / "bad.png").write_bytes(b"")
    with pytest.raises(UserError, match="data.strict is on .* 1 unreadable files skipped"):
        prepare_data(DataConfig(source=str(clean), strict=True), seed=0, progress=False)
    result = CliRunner().invoke(cli, ["plan", "--backbone", "lenet5", "--weights", "none",
                                      "--data", str(folder), "--set", "data.strict=true"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_run_plans_with_the_classes_that_are_left(folder):
    result = CliRunner().invoke(cli, ["plan", "--backbone", "lenet5", "--weights", "none",
                                      "--data", str(folder)])
    assert result.exit_code == 0, result.output
    assert "dropped 2 classes" in result.output


def test_a_run_that_fails_before_it_starts_leaves_no_run_directory(tmp_path):
    data = make_image_folder(tmp_path / "one", classes=1, per_class=6)
    (data / "empty").mkdir()
    out = tmp_path / "runs" / "never"
    result = CliRunner().invoke(cli, ["finetune", "--backbone", "lenet5", "--weights", "none",
                                      "--data", str(data), "--output", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not out.exists()
