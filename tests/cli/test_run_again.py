"""The same command twice: the second says the run is done and does nothing; `tlkit plan` names
the directory `finetune` uses; a finished run keeps no checkpoint; the closing line's time is
the command's wall clock; the saved recipe carries the run's name."""

from __future__ import annotations

import json
import time

import yaml

from tests.conftest import make_image_folder
from tests.train.train_helpers import LENET, run_tlkit


def test_a_finished_run_is_not_trained_again_and_plan_agrees(tmp_path):
    data = make_image_folder(tmp_path / "photos", classes=2, per_class=10)
    command = ["finetune", *LENET, "--data", data, "--epochs", "1", "--batch-size", "8"]
    started = time.time()
    first = run_tlkit(*command, cwd=tmp_path)
    wall = time.time() - started
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "runs" / "lenet5-photos"
    metrics = json.loads((run / "metrics.json").read_text())
    # the closing line counts the whole command (start-up, data check, reports), not only training
    said = int(first.stdout.split("done in ")[1].split("s")[0].split("m")[-1].strip())
    assert said >= metrics["seconds"] and said <= wall + 1
    assert not (run / "checkpoints").exists()  # model.keras holds the result
    assert json.loads((run / "state.json").read_text())["checkpoint"] is None
    assert yaml.safe_load((run / "recipe.yaml").read_text())["name"] == "lenet5-photos"

    plan = run_tlkit("plan", *command[1:], "--no-timing", cwd=tmp_path)
    assert f"-> {run.relative_to(tmp_path)} (it holds this run, finished" in plan.stdout
    again = run_tlkit(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already holds this run, finished" in again.stderr
    assert again.stdout.startswith("nothing done") and "epoch 1/1" not in again.stderr
    assert sorted(p.name for p in run.parent.iterdir()) == ["lenet5-photos"]

    # other settings (or other files in the folder) are another run, beside the first
    other = ["finetune", *LENET, "--data", data, "--epochs", "2", "--batch-size", "8"]
    plan = run_tlkit("plan", *other[1:], "--no-timing", cwd=tmp_path)
    assert "-> runs/lenet5-photos-2 (a new run directory)" in plan.stdout
    (data / "class_0" / "img_000.png").unlink()
    plan = run_tlkit("plan", *command[1:], "--no-timing", cwd=tmp_path)
    assert "-> runs/lenet5-photos-2 (a new run directory)" in plan.stdout


def test_freeze_and_weights_mistakes_are_found_before_the_data_is_read(tmp_path):
    data = make_image_folder(tmp_path / "photos", classes=2, per_class=4)
    for mistake, says in ((["--freeze", "block9"], "unknown freeze block 'block9'"),
                          (["--freeze", "999"], "more than the"),
                          (["--weights", tmp_path / "missing.weights.h5"], "weights file not found")):
        args = ["--backbone", "vgg11", "--image-size", "32", "--data", data, *mistake]
        if mistake[0] == "--freeze":
            args += ["--weights", "none"]
        result = run_tlkit("finetune", *args, cwd=tmp_path, timeout=120)
        assert result.returncode == 2 and says in result.stderr, result.stderr[-2000:]
        assert "data " not in result.stderr and "train " not in result.stderr  # no data check
        assert not (tmp_path / "runs").exists()
