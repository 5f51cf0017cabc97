"""Weight-layer depths count as the architectures' names do (VGG16 = 16, ResNet-50 = 50...)."""

from __future__ import annotations

import keras
import pytest
from freeze_helpers import TINY

from tlkit.errors import TlkitError
from tlkit.freeze import freeze_groups, layer_depths, weight_layer_depths
from tlkit.models import get_model_info, model_ids

IDS = ["vgg11", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "googlenet"]


@pytest.mark.parametrize("model_id", IDS)
def test_depth_with_the_classifier_equals_the_registry(model_id):
    if model_id not in model_ids():
        pytest.skip(f"{model_id} is not registered")
    info = get_model_info(model_id)
    model = info.build(include_top=True, input_shape=(32, 32, 3), classes=5)
    depths = weight_layer_depths(model)
    assert max(depths.values()) == info.weight_layers
    assert depths["predictions"] == info.weight_layers


def test_vgg16_depths():
    model = get_model_info("vgg16").build(include_top=True, input_shape=(32, 32, 3), classes=5)
    depths = weight_layer_depths(model)
    assert depths["block1_conv1"] == 1 and depths["block4_conv3"] == 10
    assert depths["fc1"] == 14 and depths["fc2"] == 15 and depths["predictions"] == 16
    assert len(depths) == 16


def test_resnet50_depths_and_projection_shortcuts():
    model = get_model_info("resnet50").build(include_top=True, input_shape=(32, 32, 3), classes=5)
    depths = weight_layer_depths(model)
    assert depths["conv1_conv"] == 1
    assert depths["conv2_block1_0_conv"] == 2  # projection: its input's depth + 1
    assert depths["conv3_block1_0_conv"] == 11
    assert depths["conv3_block1_3_conv"] == 13
    assert depths["conv5_block3_3_conv"] == 49 and depths["predictions"] == 50
    assert all(
        depths[f"conv{s}_block1_0_conv"] < depths[f"conv{s}_block1_3_conv"] for s in (2, 3, 4, 5)
    )
    # BatchNorm and the block output carry their conv's depth.
    every = layer_depths(model)
    assert every["conv3_block1_3_bn"] == 13 and every["conv3_block1_out"] == 13


def test_googlenet_depths():
    model = get_model_info("googlenet").build(include_top=True, input_shape=(32, 32, 3), classes=5)
    depths = weight_layer_depths(model)
    assert depths["conv1_7x7_conv"] == 1 and depths["conv2_3x3_conv"] == 3
    assert depths["inception3a_1x1_conv"] == 4 and depths["inception3a_3x3_conv"] == 5
    assert depths["inception3a_pool_proj_conv"] == 4
    assert depths["inception5b_3x3_conv"] == 21 and depths["predictions"] == 22


def test_sequential_models_count_too():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, name="block1_dense"),
            keras.layers.Dense(4, name="block2_dense"),
            keras.layers.Dense(2, name="predictions"),
        ]
    )
    assert weight_layer_depths(model) == {"block1_dense": 1, "block2_dense": 2, "predictions": 3}
    assert [g.name for g in freeze_groups(model, TINY)] == ["block1", "block2", "head"]


def test_nested_models_are_refused_with_advice():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="block1_dense")(inner_in), name="bb")
    outer_in = keras.Input((4,))
    outer = keras.Model(outer_in, keras.layers.Dense(2, name="predictions")(inner(outer_in)))
    with pytest.raises(TlkitError, match="flat model.*'bb' is a nested model"):
        weight_layer_depths(outer)
