"""The policy ``freeze: auto`` records as chosen is the policy the saved model was trained with.

Real ``tlkit finetune`` runs of ResNet-18 at 32 px on a small generated folder, starting from a
saved model (it stands in for pretrained weights: what matters is that the run may freeze
them). Each run's decision is forced by the recipe, so the test knows which branch it checks:

* the rule's medium policy (``conv4``) kept: the fine-tuned candidate is the run's model;
* the rule's ``all`` kept after fine-tuning (``none``) was tried: the frozen backbone with its
  cross-fitted head is the run's model, although the last thing trained was ``none``.

For each, the saved ``model.keras`` is checked against the policy recorded in
``freeze_search.json`` and ``metrics.json``, group by group: the ``trainable`` flags of every
layer (BatchNorm's included), and the weights themselves: a frozen group's weights and moving
statistics are bit for bit the starting ones, a trained group's convolutions moved.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import make_image_folder
from tlkit.cli.main import cli
from tlkit.freeze.groups import HEAD, freeze_groups, is_batch_norm, is_weight_layer
from tlkit.models.heads import build_transfer_model
from tlkit.models.registry import get_model_info

INFO = get_model_info("resnet18")
BASE = ["--backbone", "resnet18", "--image-size", "32", "--batch-size", "16", "--epochs", "2",
        "--set", "freeze.auto.finetune_from=0", "--set", "freeze.auto.margin_se=1000",
        "--set", "augment.preset=none", "--set", "train.verbose=0"]


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    root = tmp_path_factory.mktemp("search_to_run")
    keras.utils.set_random_seed(0)
    model = build_transfer_model(INFO, 4, image_size=32)
    (root / "pre").mkdir()
    model.save(root / "pre" / "model.keras")
    data = make_image_folder(root / "data", classes=3, per_class=16, seed=7)
    return root, root / "pre" / "model.keras", data


def _run(start, name, *settings):
    root, weights, data = start
    out = root / name
    args = ["finetune", *BASE, "--data", data, "--weights", weights, "--output", out]
    for setting in settings:
        args += ["--set", setting]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return out


def _expected_frozen_groups(policy: str, groups: list[str]) -> set[str]:
    """The backbone groups ``policy`` freezes, derived from the group order alone."""
    backbone = [g for g in groups if g != HEAD]
    if policy == "all":
        return set(backbone)
    if policy == "none":
        return set()
    assert policy in backbone, f"the test knows group policies only, not {policy!r}"
    return set(backbone[: backbone.index(policy) + 1])


def _check_trains_policy(out, start_weights, *, bn: str):
    """``model.keras`` in ``out`` froze and trained exactly the recorded policy's groups."""
    stored = json.loads((out / "freeze_search.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    chosen = stored["chosen"]
    assert metrics["freeze_search"]["chosen"] == chosen
    model = keras.models.load_model(out / "model.keras", compile=False)
    before = keras.models.load_model(start_weights, compile=False)
    groups = freeze_groups(model, INFO)
    frozen = _expected_frozen_groups(chosen, [g.name for g in groups])
    wrong, moved, unmoved = [], [], []
    for group in groups:
        for layer in group.layers:
            if group.name in frozen:
                should_train = False
            elif group.name == HEAD:
                should_train = True
            else:  # a trained backbone group: BatchNorm as freeze.bn says
                should_train = bn == "train" if is_batch_norm(layer) else True
            if layer.trainable != should_train:
                wrong.append(f"{group.name}/{layer.name}: trainable={layer.trainable}")
            if group.name == HEAD or not layer.weights:
                continue
            old = before.get_layer(layer.name).get_weights()
            changed = any(not np.array_equal(a, b)
                          for a, b in zip(layer.get_weights(), old, strict=True))
            if changed and not should_train:
                moved.append(f"{group.name}/{layer.name}")
            if not changed and should_train and (is_weight_layer(layer) or is_batch_norm(layer)):
                unmoved.append(f"{group.name}/{layer.name}")
    assert not wrong, f"chosen {chosen!r}, but the saved model's flags differ: {wrong}"
    assert not moved, f"chosen {chosen!r}, but these frozen layers' weights moved: {moved}"
    assert not unmoved, f"chosen {chosen!r}, but these layers did not train: {unmoved}"
    return stored, metrics, frozen


def test_the_kept_fine_tuning_policy_is_what_the_saved_model_trained(start):
    # 13 images per class in [1, 1000): the rule's medium policy, conv4, is the candidate; the
    # huge margin keeps it. BatchNorm trains where its group trains (freeze.bn=train), so the
    # BatchNorm flags and statistics say which groups trained, too.
    out = _run(start, "medium", "freeze.auto.small_per_class=1", "freeze.bn=train")
    stored, metrics, frozen = _check_trains_policy(out, start[1], bn="train")
    assert stored["chosen"] == stored["candidate"] == "conv4"
    assert frozen == {"stem", "conv2", "conv3", "conv4"}
    assert metrics["freeze"][0].startswith("froze through conv4")


def test_the_kept_frozen_backbone_is_what_the_saved_model_holds(start):
    # The rule says all; fine-tuning everything (none) is tried first and loses on the margin:
    # the run's model is the frozen backbone, with the flags of `all`, not of the last stage.
    out = _run(start, "frozen")
    stored, metrics, frozen = _check_trains_policy(out, start[1], bn="frozen")
    assert (stored["prior"], stored["candidate"], stored["chosen"]) == ("all", "none", "all")
    assert stored["tuned_epochs"] >= 1  # the candidate did train before it lost
    assert frozen == {"stem", "conv2", "conv3", "conv4", "conv5"}
    assert metrics["freeze"][0].startswith("froze the whole backbone")

