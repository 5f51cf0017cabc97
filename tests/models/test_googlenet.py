"""GoogLeNet: Table 1 per-module weights and sizes, auxiliary classifiers, registry facts."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from tlkit.errors import InputSizeError, UserError
from tlkit.models import get_model_info
from tlkit.models.googlenet import (
    AUX_LOSS_WEIGHT,
    AUX_MIN_SIZE,
    INCEPTION_MODULES,
    GoogLeNet,
    strip_auxiliary_classifiers,
)

# Table 1 of Szegedy et al. 2015 at 224x224: module -> (output side, channels, conv weights
# without biases); weights from ../shared/reference/paper-numbers.md.
TABLE_1 = {
    "3a": (28, 256, 163_328),
    "3b": (28, 480, 388_096),
    "4a": (14, 512, 375_552),
    "4b": (14, 512, 448_512),
    "4c": (14, 512, 509_440),
    "4d": (14, 528, 604_672),
    "4e": (14, 832, 867_328),
    "5a": (7, 832, 1_042_432),
    "5b": (7, 1024, 1_442_816),
}
STEM_SIZES = {
    "conv1_7x7_relu": 112,
    "pool1_3x3": 56,
    "pool2_3x3": 28,
    "pool3_3x3": 14,
    "pool4_3x3": 7,
}


@pytest.fixture(scope="module")
def googlenet():
    return GoogLeNet()


@pytest.fixture(scope="module")
def googlenet_aux():
    return GoogLeNet(aux_classifiers=True, classes=10, input_shape=(96, 96, 3))


def _module_kernel_weights(model, module: str) -> int:
    return sum(
        int(np.prod(layer.kernel.shape))
        for layer in model.layers
        if layer.name.startswith(f"inception{module}_") and isinstance(layer, keras.layers.Conv2D)
    )


def test_spec_table_is_table_1():
    assert [m.name for m in INCEPTION_MODULES] == list(TABLE_1)
    assert [m.out_channels for m in INCEPTION_MODULES] == [v[1] for v in TABLE_1.values()]


@pytest.mark.parametrize("module", list(TABLE_1))
def test_module_weights_and_output_match_table_1(googlenet, module):
    side, channels, weights = TABLE_1[module]
    assert _module_kernel_weights(googlenet, module) == weights
    output = googlenet.get_layer(f"inception{module}_concat").output
    assert tuple(output.shape[1:]) == (side, side, channels)


def test_stem_and_pool_sizes(googlenet):
    for name, side in STEM_SIZES.items():
        assert tuple(googlenet.get_layer(name).output.shape[1:3]) == (side, side), name
    assert tuple(googlenet.get_layer("conv2_3x3_relu").output.shape[1:]) == (56, 56, 192)


def test_total_parameters(googlenet):
    # Table 1's filters with biases and a 1000-way classifier. The paper's params column
    # (no biases, rounded, with its 4c/5a slips) sums to about 6.8M.
    assert googlenet.count_params() == 6_998_552


def test_depth_is_22_weight_layers(googlenet):
    # The paper counts layers with parameters on the main path: the 3 stem convs, two conv
    # layers deep per inception module (9 x 2) and the classifier.
    stem = [
        layer for layer in googlenet.layers if re.match(r"conv\d_", layer.name) and layer.weights
    ]
    assert len(stem) == 3
    assert len(stem) + 2 * len(INCEPTION_MODULES) + 1 == get_model_info("googlenet").weight_layers


def test_builds_at_min_size_and_runs():
    model = GoogLeNet(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    assert model.output_shape == (None, 1024)
    out = keras.ops.convert_to_numpy(model(np.zeros((1, 32, 32, 3), "float32") + 0.5))
    assert np.isfinite(out).all()
    with pytest.raises(InputSizeError, match="32x32"):
        GoogLeNet(include_top=False, input_shape=(31, 31, 3))


def test_aux_outputs_only_when_asked(googlenet, googlenet_aux):
    assert len(googlenet.outputs) == 1
    assert not any(layer.name.startswith("aux") for layer in googlenet.layers)
    assert [o.shape for o in googlenet_aux.outputs] == [(None, 10)] * 3
    names = [googlenet_aux.get_layer(n) for n in ("aux1_predictions", "aux2_predictions")]
    assert all(layer is not None for layer in names)
    assert AUX_LOSS_WEIGHT == 0.3


def test_aux_heads_follow_the_paper():
    model = GoogLeNet(aux_classifiers=True, weights=None)
    assert tuple(model.get_layer("aux1_avg_pool").output.shape[1:]) == (4, 4, 512)
    assert tuple(model.get_layer("aux2_avg_pool").output.shape[1:]) == (4, 4, 528)
    assert model.get_layer("aux1_1x1_conv").filters == 128
    assert model.get_layer("aux1_fc").units == 1024
    assert model.get_layer("aux2_dropout").rate == 0.7
    assert model.get_layer("dropout").rate == 0.4


def test_strip_auxiliary_classifiers_shares_weights(googlenet_aux):
    inference = strip_auxiliary_classifiers(googlenet_aux)
    assert len(inference.outputs) == 1
    assert not any(layer.name.startswith("aux") for layer in inference.layers)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype("float32")
    full = googlenet_aux(x)
    main = keras.ops.convert_to_numpy(inference(x))
    np.testing.assert_array_equal(main, keras.ops.convert_to_numpy(full[0]))
    assert inference.get_layer("predictions") is googlenet_aux.get_layer("predictions")
    assert strip_auxiliary_classifiers(inference) is inference


def test_aux_needs_top_and_size():
    with pytest.raises(UserError, match="include_top"):
        GoogLeNet(include_top=False, aux_classifiers=True, input_shape=(224, 224, 3))
    with pytest.raises(InputSizeError, match=f"{AUX_MIN_SIZE}x{AUX_MIN_SIZE}"):
        GoogLeNet(aux_classifiers=True, input_shape=(AUX_MIN_SIZE - 1, 128, 3))
    with pytest.raises(InputSizeError, match="fixed input size"):
        GoogLeNet(aux_classifiers=True, input_shape=(None, None, 3))
    model = GoogLeNet(aux_classifiers=True, input_shape=(AUX_MIN_SIZE, AUX_MIN_SIZE, 3))
    assert tuple(model.get_layer("aux1_avg_pool").output.shape[1:3]) == (1, 1)


def test_keras_round_trip_with_aux(googlenet_aux, tmp_path):
    path = tmp_path / "googlenet_aux.keras"
    googlenet_aux.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 96, 96, 3)).astype("float32")
    for a, b in zip(googlenet_aux(x), loaded(x), strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-6
        )


def test_batch_norm_option():
    model = GoogLeNet(include_top=False, input_shape=(32, 32, 3), batch_norm=True)
    assert model.get_layer("inception3a_1x1_bn") is not None
    assert model.get_layer("inception3a_1x1_conv").use_bias is False
    assert not any(
        isinstance(layer, keras.layers.BatchNormalization)
        for layer in GoogLeNet(input_shape=(32, 32, 3)).layers
    )


def test_registry_entry(googlenet):
    info = get_model_info("googlenet")
    assert get_model_info("inception_v1") is info
    assert info.preprocessing == "tf"
    assert (info.default_size, info.min_size, info.feature_size) == (224, 32, 1024)
    assert info.official_weights is None
    assert [g.name for g in info.freeze_groups] == [
        "stem",
        "inception3",
        "inception4",
        "inception5",
    ]
    unmatched = [
        layer.name
        for layer in googlenet.layers[1:]
        if not any(re.match(g.pattern, layer.name) for g in info.freeze_groups)
    ]
    assert unmatched == ["avg_pool", "dropout", "predictions"]
    units = {
        re.match(info.unit_pattern, layer.name).group(1)
        for layer in googlenet.layers
        if re.match(info.unit_pattern, layer.name)
    }
    assert units == {f"inception{m}" for m in TABLE_1}
    with pytest.raises(UserError, match="no official ImageNet weights"):
        GoogLeNet(weights="imagenet")
