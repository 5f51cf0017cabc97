"""Pretrain, then transfer from the run directory: the path for users without ImageNet files.

Real runs of LeNet-5 on small generated folders: ``tlkit pretrain`` on one set of classes,
``tlkit finetune --weights RUN_DIR`` on another; what each run records, the freeze search's
file, the solver route of a frozen backbone, ``tlkit plan``, and the defaults of a bare command.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import make_image_folder
from tlkit.cli.main import cli

BASE = ["--backbone", "lenet5", "--image-size", "32", "--batch-size", "16"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    source = make_image_folder(root / "source", classes=4, per_class=20, seed=1)
    out = root / "pretrain"
    result = invoke("pretrain", *BASE, "--data", source, "--epochs", "3", "--output", out)
    assert result.exit_code == 0, result.output
    (root / "pretrain-output.txt").write_text(result.output)
    return root, out


@pytest.fixture(scope="module")
def target(pretrained):
    root, _ = pretrained
    return make_image_folder(root / "target", classes=3, per_class=16, seed=7)


def test_pretrain_trains_everything_and_records_what_it_learned_from(pretrained):
    _, out = pretrained
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights"] == "none"
    assert metrics["trained_on"]["classes"] == [f"class_{c}" for c in range(4)]
    assert metrics["trained_on"]["backbone"] == "lenet5"
    assert metrics["trained_on"]["train_images"] == metrics["train_images"]
    assert "froze nothing" in " ".join(metrics["freeze"])
    assert metrics["freeze_search"] is None  # nothing to search without pretrained weights


def test_pretrain_ends_pointing_at_finetune_from_the_run(pretrained):
    root, out = pretrained
    last = (root / "pretrain-output.txt").read_text().strip().splitlines()[-1]
    assert f"tlkit finetune --weights {out} --data" in last
    assert "tlkit predict" not in last


def test_transfer_from_a_run_directory(pretrained, target, tmp_path):
    _, pre = pretrained
    out = tmp_path / "t"
    result = invoke("finetune", *BASE, "--data", target, "--weights", pre, "--epochs", "2",
                    "--output", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    start = metrics["start_from"]
    assert start["run"] == str(pre) and start["source"] == str(pre / "model.keras")
    assert start["backbone"] == "lenet5" and start["trained_on"]["classes"][0] == "class_0"
    assert len(start["trained_on"]["classes"]) == 4  # the pretraining run's, not this one's
    # 13 training images per class: the rule's `all`, no fine-tuning tried, the head
    # cross-fitted on every labelled image and judged out of fold.
    assert "fine-tuning is not tried" in result.output
    assert not (out / "freeze_search.json").exists() and metrics["freeze_search"] is None
    assert metrics["fast_path"] is True
    cv = metrics["cross_validation"]
    assert cv["images"] == 48 and cv["folds"] == 5 and 0 < cv["accuracy_se"] < 0.1
    assert metrics["calibration"]["fitted_on"] == "out_of_fold"
    assert "cross-validated top-1" in result.output


def test_evidence_weighs_fine_tuning_against_the_frozen_backbone(pretrained, target, tmp_path):
    _, pre = pretrained
    out = tmp_path / "evidence"
    result = invoke("finetune", *BASE, "--data", target, "--weights", pre, "--epochs", "3",
                    "--set", "freeze.auto.finetune_from=0", "--output", out)
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "freeze_search.json").read_text())
    assert stored["method"] == "evidence" and stored["prior"] == "all"
    assert stored["candidate"] == "none" and stored["chosen"] in ("all", "none")
    assert stored["images"] == 9 and stored["se"] >= 0
    assert "freeze decision on 9 validation images" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["freeze_search"]["chosen"] == stored["chosen"]
    model = keras.models.load_model(out / "model.keras", compile=False)
    backbone = keras.models.load_model(pre / "model.keras", compile=False)
    same = [np.array_equal(a, b) for a, b in zip(model.get_layer("c1").get_weights(),
                                                 backbone.get_layer("c1").get_weights(),
                                                 strict=True)]
    if stored["chosen"] == "all":  # the pretrained backbone, untouched, under the cross-fit head
        assert all(same) and metrics["fast_path"] is True
        assert metrics["calibration"]["fitted_on"] == "out_of_fold"
    else:  # the fine-tuned run as it finished, not trained again
        assert not all(same) and metrics["stages"][0].startswith("linear probe")


def test_grid_search_tries_every_freeze_point(pretrained, target, tmp_path):
    _, pre = pretrained
    out = tmp_path / "grid"
    result = invoke("finetune", *BASE, "--data", target, "--weights", pre, "--epochs", "2",
                    "--set", "freeze.auto.search=grid", "--output", out)
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "freeze_search.json").read_text())
    assert "freeze search:" in result.output and "<- chosen" in result.output
    policies = [c["policy"] for c in stored["candidates"]]
    assert policies[0] == "all" and policies[-1] == "none" and stored["chosen"] in policies
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["freeze_search"]["chosen"] == stored["chosen"]
    assert all(c["accuracy"] is not None for c in stored["candidates"])
    if stored["chosen"] != "all":  # a fine-tune starts from the converged head
        assert metrics["stages"][0].startswith("linear probe")


def test_frozen_backbone_head_is_fitted_by_the_solver_despite_augmentation(
    pretrained, target, tmp_path
):
    _, pre = pretrained
    out = tmp_path / "all"
    result = invoke("finetune", *BASE, "--data", target, "--weights", pre / "model.keras",
                    "--freeze", "all", "--epochs", "3", "--output", out)  # light: mirror, crop
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fast_path"] is True
    assert "crop not applied" in result.output
    fit = json.loads((out / "head_fit.json").read_text())
    assert fit["converged"] and fit["solver"].startswith("lbfgs")
    assert fit["c"] in [float(c) for c in fit["scores"]]
    assert metrics["val"]["top1"] >= 0.9  # three well separated colours
    # The saved image model gives the solver's head: predictions from images agree.
    model = keras.models.load_model(out / "model.keras", compile=False)
    assert model.get_layer("predictions").get_weights()[0].shape[1] == 3


def test_freezing_random_weights_is_refused_with_exit_2(target, tmp_path):
    result = invoke("finetune", *BASE, "--data", target, "--weights", "none", "--freeze", "all",
                    "--epochs", "1", "--output", tmp_path / "o")
    assert result.exit_code == 2
    assert "randomly initialised" in result.output and "--freeze none" in result.output
    assert "Traceback" not in result.output


def test_a_run_directory_without_a_model_is_a_user_error(target, tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("finetune", *BASE, "--data", target, "--weights", tmp_path / "empty",
                    "--epochs", "1", "--output", tmp_path / "o")
    assert result.exit_code == 2 and "no model.keras" in result.output


def test_scratch_run_trains_batchnorm(tmp_path):
    data = make_image_folder(tmp_path / "d", classes=2, per_class=12)
    out = tmp_path / "r"
    result = invoke("finetune", "--backbone", "resnet18", "--image-size", "32", "--weights",
                    "none", "--data", data, "--epochs", "1", "--batch-size", "8",
                    "--output", out)
    assert result.exit_code == 0, result.output
    assert "BatchNorm included" in result.output
    model = keras.models.load_model(out / "model.keras", compile=False)
    bns = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and all(la.trainable for la in bns)
    means = np.concatenate([np.ravel(la.moving_mean.numpy()) for la in bns])
    variances = np.concatenate([np.ravel(la.moving_variance.numpy()) for la in bns])
    # Not the initial mean 0 / variance 1: the statistics were learnt from the data.
    assert np.abs(means).max() > 1e-3 and np.abs(variances - 1).max() > 1e-2


def test_plan_prints_the_decision_and_trains_nothing(pretrained, target, tmp_path):
    _, pre = pretrained
    out = tmp_path / "planned"
    result = invoke("plan", *BASE, "--data", target, "--weights", pre, "--output", out)
    assert result.exit_code == 0, result.output
    for needle in ("train 39", "weights:", "freeze:", "route:", "freeze table",
                   "fine-tuning is not tried"):
        assert needle in result.output, needle
    # The rule's prior here is `all`: the head by the solver, on cached features.
    assert "by a solver" in result.output and "route: cached features" in result.output
    tuned = invoke("plan", *BASE, "--data", target, "--weights", pre, "--freeze", "c3",
                   "--output", out)
    assert tuned.exit_code == 0, tuned.output
    for needle in ("linear probe", "stage 1: policy c3", "route: images", "per epoch"):
        assert needle in tuned.output, needle
    # the same decision `finetune` takes (one function): here fine-tuning is weighed
    weighed = invoke("plan", *BASE, "--data", target, "--weights", pre, "--no-timing",
                     "--set", "freeze.auto.finetune_from=0", "--output", out)
    assert "fine-tuning (none) are both scored on the validation images" in weighed.output
    blocked = invoke("plan", *BASE, "--data", target, "--weights", pre, "--no-timing",
                     "--set", "freeze.auto.finetune_from=0", "--set", "train.strategy=multi_worker",
                     "--output", out)
    assert "no search: multi_worker" in blocked.output, blocked.output
    assert not out.exists()


def test_bare_backbone_gets_the_regime_and_a_descriptive_run_name(target, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("finetune", "--backbone", "lenet5", "--data", target, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "regime-small" in result.output and "preset: light" in result.output
    assert "early_stopping: 6" in result.output
    planned = invoke("plan", "--backbone", "lenet5", "--data", target, "--no-timing")
    assert "runs/lenet5-target" in planned.output
    assert not (tmp_path / "runs").exists()


def test_pretrain_dry_run_is_the_pretrain_recipe(target):
    result = invoke("pretrain", "--backbone", "lenet5", "--data", target, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "source: none" in result.output and "policy: none" in result.output
