"""AlexNet (one and two towers) and ZFNet: the paper-numbers table, sizes, minimum input."""

from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np
import pytest

from tlkit.errors import InputSizeError
from tlkit.models import alexnet
from tlkit.models.registry import get_model_info

# paper-numbers.md, AlexNet at 227x227: layer -> (output, weights one tower, weights two towers)
ALEXNET_TABLE = {
    "conv1": ((55, 55, 96), 34_848, 34_848),
    "pool1": ((27, 27, 96), 0, 0),
    "conv2": ((27, 27, 256), 614_400, 307_200),
    "pool2": ((13, 13, 256), 0, 0),
    "conv3": ((13, 13, 384), 884_736, 884_736),
    "conv4": ((13, 13, 384), 1_327_104, 663_552),
    "conv5": ((13, 13, 256), 884_736, 442_368),
    "pool5": ((6, 6, 256), 0, 0),
    "fc6": ((4096,), 37_748_736, 37_748_736),
    "fc7": ((4096,), 16_777_216, 16_777_216),
    "predictions": ((1000,), 4_096_000, 4_096_000),
}
TOTALS = {1: 62_378_344, 2: 60_965_224}


@pytest.mark.parametrize("towers", [1, 2])
def test_alexnet_matches_paper_table(towers):
    model = alexnet.AlexNet(towers=towers)
    assert model.count_params() == TOTALS[towers]
    for layer_name, (shape, one, two) in ALEXNET_TABLE.items():
        layer = model.get_layer(layer_name)
        assert tuple(layer.output.shape[1:]) == shape, layer_name
        kernel = int(np.prod(layer.kernel.shape)) if hasattr(layer, "kernel") else 0
        assert kernel == (one if towers == 1 else two), layer_name


def test_two_towers_are_grouped_convolutions():
    model = alexnet.AlexNet(towers=2, include_top=False, input_shape=(67, 67, 3))
    assert model.get_layer("conv2").kernel.shape == (5, 5, 48, 256)
    assert model.get_layer("conv3").kernel.shape == (3, 3, 256, 384)
    assert model.get_layer("conv4").kernel.shape == (3, 3, 192, 384)
    assert model.get_layer("conv5").kernel.shape == (3, 3, 192, 256)
    assert model.name == "alexnet_2tower"


def test_two_tower_forward_and_training_step_on_cpu():
    model = alexnet.AlexNet(towers=2, input_shape=(67, 67, 3), classes=3)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 67, 67, 3)).astype("float32")
    y = model.predict(x, verbose=0)
    assert y.shape == (2, 3) and np.isfinite(y).all()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = model.get_layer("conv4").kernel.numpy().copy()
    model.fit(x, np.array([0, 2]), epochs=1, verbose=0)
    assert not np.allclose(before, model.get_layer("conv4").kernel.numpy())


def test_alexnet_layer_order_lrn_before_pool():
    model = alexnet.AlexNet(include_top=False, input_shape=(67, 67, 3))
    names = [layer.name for layer in model.layers]
    assert names == [
        "input_layer", "conv1", "norm1", "pool1", "conv2", "norm2", "pool2",
        "conv3", "conv4", "conv5", "pool5",
    ]  # fmt: skip


def test_zfnet_sizes():
    model = alexnet.ZFNet()
    sides = {
        name: model.get_layer(name).output.shape[1]
        for name in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5")
    }
    assert sides == {"conv1": 110, "pool1": 55, "conv2": 26, "pool2": 13, "conv5": 13, "pool5": 6}
    assert model.get_layer("conv1").kernel.shape == (7, 7, 3, 96)
    assert model.get_layer("conv2").strides == (2, 2)
    assert [model.get_layer(f"conv{i}").filters for i in range(1, 6)] == [96, 256, 384, 384, 256]
    # AlexNet's count with conv1 7x7x3x96 instead of 11x11x3x96.
    assert model.count_params() == 62_378_344 - 34_848 + 14_112 == 62_357_608


@pytest.mark.parametrize(
    "builder, spec, minimum",
    [(alexnet.AlexNet, alexnet.ALEXNET, 67), (alexnet.ZFNet, alexnet.ZFNET, 53)],
)
def test_min_size_is_the_true_minimum(builder, spec, minimum):
    with pytest.raises(InputSizeError, match=f"{minimum}x{minimum}"):
        builder(include_top=False, input_shape=(minimum - 1, minimum - 1, 3))
    model = builder(include_top=False, input_shape=(minimum, minimum, 3))
    assert model.output.shape[1:3] == (1, 1)
    # Without the check, one pixel less really cannot be built.
    unchecked = dataclasses.replace(spec, min_size=1)
    with pytest.raises(ValueError):
        alexnet._build(
            unchecked, "x", towers=1, include_top=False, weights=None, input_tensor=None,
            input_shape=(minimum - 1, minimum - 1, 3), pooling=None, classes=10,
            classifier_activation=None, name="x", dropout=0.0,
        )  # fmt: skip


def test_keras_round_trip(tmp_path):
    model = alexnet.AlexNet(towers=2, input_shape=(67, 67, 3), classes=4)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 67, 67, 3)).astype("float32")
    path = tmp_path / "alexnet.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored.get_layer("norm1")).__name__ == "LocalResponseNormalization"
    assert restored.get_layer("conv2").groups == 2
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_dropout_option():
    with_dropout = alexnet.AlexNet(input_shape=(67, 67, 3), classes=2)
    without = alexnet.AlexNet(input_shape=(67, 67, 3), classes=2, dropout=0.0)
    assert with_dropout.get_layer("fc6_dropout").rate == 0.5
    assert "fc6_dropout" not in [layer.name for layer in without.layers]


def test_registry_entries():
    for model_id, size, minimum in (
        ("alexnet", 227, 67),
        ("alexnet_2tower", 227, 67),
        ("zfnet", 224, 53),
    ):
        info = get_model_info(model_id)
        assert (info.default_size, info.min_size, info.preprocessing) == (size, minimum, "tf")
        assert (info.weight_layers, info.feature_size) == (8, 256)
        assert [g.name for g in info.freeze_groups] == [
            "conv1",
            "conv2",
            "conv3",
            "conv4",
            "conv5",
            "fc",
        ]
        model = info.build(input_shape=(minimum, minimum, 3), classes=3)
        weighted = [layer for layer in model.layers if layer.weights]
        assert len(weighted) == info.weight_layers
        for layer in model.layers[1:]:
            groups = [g.name for g in info.freeze_groups if re.search(g.pattern, layer.name)]
            assert len(groups) == (0 if layer.name == "predictions" else 1), layer.name
    assert get_model_info("alexnet_2tower").build(include_top=False).name == "alexnet_2tower"


def test_non_overlapping_pooling_is_2x2_stride_2_with_the_same_maps():
    overlapping = alexnet.AlexNet()
    plain = alexnet.AlexNet(overlapping_pooling=False)
    for name in ("pool1", "pool2", "pool5"):
        assert overlapping.get_layer(name).pool_size == (3, 3)
        assert plain.get_layer(name).pool_size == (2, 2)
        assert plain.get_layer(name).strides == (2, 2)
        assert plain.get_layer(name).output.shape == overlapping.get_layer(name).output.shape
    assert plain.count_params() == overlapping.count_params()
