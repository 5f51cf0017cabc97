"""The freeze table: groups in order, parameters adding up, trainable state per group."""

from __future__ import annotations

import math

import pytest

from tlkit.freeze import FreezeConfig, apply_freeze, freeze_groups, freeze_table
from tlkit.models import get_model_info


@pytest.mark.parametrize(
    "model_id,groups",
    [
        ("vgg16", ["block1", "block2", "block3", "block4", "block5", "head"]),
        ("resnet50", ["stem", "conv2", "conv3", "conv4", "conv5", "head"]),
        ("googlenet", ["stem", "inception3", "inception4", "inception5", "head"]),
    ],
)
def test_parameters_add_up(finetune_model, model_id, groups):
    model, info = finetune_model(model_id), get_model_info(model_id)
    apply_freeze(model, info, "all")
    table = freeze_table(model, info)
    rows = table.as_rows()
    assert [r["group"] for r in rows] == groups
    assert sum(r["parameters"] for r in rows) == model.count_params() == table.total_parameters
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert sum(r["trainable_parameters"] for r in rows) == trainable == table.trainable_parameters
    assert [r["trainable"] for r in rows] == ["no"] * (len(groups) - 1) + ["yes"]
    text = table.format()
    assert "group" in text and "parameters" in text
    assert f"total: {model.count_params():,} parameters, {trainable:,} trainable" in text


def test_group_membership_and_head(finetune_model):
    model, info = finetune_model("resnet50"), get_model_info("resnet50")
    groups = {g.name: g for g in freeze_groups(model, info)}
    assert {la.name for la in groups["stem"].weighted_layers} == {"conv1_conv", "conv1_bn"}
    assert groups["stem"].depths == (1, 1) and groups["conv5"].depths == (41, 49)
    head = {la.name for la in groups["head"].layers}
    assert {"preprocess", "head_pool", "head_dense", "head_bn", "predictions"} <= head
    assert len(groups["conv2"].weighted_layers) == 20  # 3 blocks x 3 conv+BN, plus projection


def test_partial_and_bn_frozen_states(finetune_model):
    model, info = finetune_model("vgg16"), get_model_info("vgg16")
    apply_freeze(model, info, 3)  # block2_conv1 frozen, block2_conv2 trains
    states = {r["group"]: r["trainable"] for r in freeze_table(model, info).as_rows()}
    assert states == {
        "block1": "no",
        "block2": "partial",
        "block3": "yes",
        "block4": "yes",
        "block5": "yes",
        "head": "yes",
    }
    model, info = finetune_model("resnet50"), get_model_info("resnet50")
    apply_freeze(model, info, "conv4", config=FreezeConfig(bn="frozen"))
    rows = {r["group"]: r for r in freeze_table(model, info).as_rows()}
    assert rows["conv4"]["trainable"] == "no"
    assert rows["conv5"]["trainable"] == "yes (BN frozen)"
    assert rows["head"]["trainable"] == "yes"  # the head's own BN always trains
    assert rows["conv5"]["weight_layers"] == "41-49"
