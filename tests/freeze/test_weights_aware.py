"""The freeze engine knows where the weights came from: random weights are never frozen."""

from __future__ import annotations

import keras
import pytest

from tlkit.errors import UserError
from tlkit.freeze import FreezeConfig
from tlkit.freeze.freezer import Freezer
from tlkit.freeze.policy import RandomWeightsFrozenError, plan_freeze, resolve_bn
from tlkit.models.heads import build_transfer_model
from tlkit.models.registry import get_model_info


@pytest.fixture(scope="module")
def resnet18():
    info = get_model_info("resnet18")
    return build_transfer_model(info, 4, image_size=32), info


def _bn(model):
    return [la.name for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]


def test_auto_without_pretrained_weights_trains_everything_and_batchnorm(resnet18):
    model, info = resnet18
    for images in (5, 500, 5000):  # whatever the data size
        decision = plan_freeze(model, info, "auto", train_images_per_class=images,
                               pretrained=False)
        assert decision.policy == "none"
        assert decision.bn == "train"
        assert decision.frozen_layers == []
        assert set(_bn(model)) <= set(decision.trainable_layers)
        assert "no pretrained weights" in decision.message


def test_auto_with_pretrained_weights_follows_the_rule_and_freezes_batchnorm(resnet18):
    model, info = resnet18
    decision = plan_freeze(model, info, "auto", train_images_per_class=20, pretrained=True)
    assert decision.policy == "all" and decision.bn == "frozen"
    medium = plan_freeze(model, info, "none", pretrained=True)
    assert set(_bn(model)) <= set(medium.frozen_layers)  # bn: auto -> frozen when pretrained


@pytest.mark.parametrize("policy", ["all", "conv3", "5", "stem"])
def test_an_explicit_freeze_on_random_weights_is_a_user_error(resnet18, policy):
    model, info = resnet18
    with pytest.raises(RandomWeightsFrozenError) as caught:
        plan_freeze(model, info, policy, pretrained=False)
    message = str(caught.value)
    assert "randomly initialised" in message and "--freeze none" in message
    assert "--weights" in message and caught.value.exit_code == 2
    assert isinstance(caught.value, UserError)


def test_nothing_frozen_is_fine_on_random_weights(resnet18):
    model, info = resnet18
    for policy in ("none", "0"):
        assert plan_freeze(model, info, policy, pretrained=False).frozen_layers == []


def test_explicit_frozen_batchnorm_on_random_weights_is_refused(resnet18):
    model, info = resnet18
    with pytest.raises(RandomWeightsFrozenError, match="initial statistics"):
        plan_freeze(model, info, "none", config=FreezeConfig(bn="frozen"), pretrained=False)
    train = plan_freeze(model, info, "none", config=FreezeConfig(bn="train"), pretrained=True)
    assert not set(_bn(model)) & set(train.frozen_layers)


def test_resolve_bn():
    assert resolve_bn("auto", True) == "frozen" and resolve_bn("auto", False) == "train"
    assert resolve_bn("train", True) == "train" and resolve_bn("frozen", False) == "frozen"


def test_search_candidates_are_every_group_end_deepest_first(resnet18):
    model, info = resnet18
    freezer = Freezer(model, info, train_images_per_class=50)
    assert freezer.candidates() == ["all", "conv4", "conv3", "conv2", "stem", "none"]
    assert freezer.rule()[0] == "all"
    assert Freezer(model, info, train_images_per_class=300).rule()[0] == "conv4"
    assert Freezer(model, info, train_images_per_class=3000).rule()[0] == "none"
