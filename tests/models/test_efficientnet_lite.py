"""EfficientNet-Lite0-4 against Google's definition (tensorflow/tpu, efficientnet/lite):
published parameter counts, scaling rules, no squeeze-and-excitation, ReLU6, preprocessing
inside, freeze groups and units."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlkit.freeze import apply_freeze, freeze_groups
from tlkit.models import EfficientNetLite0, build_model, get_model_info, summary
from tlkit.models.efficientnet_lite import LITE_SPECS, block_plans, round_filters

#: tensorflow/tpu's counts without BatchNorm's moving statistics (its README: 4.7/5.4/6.1/8.2/13.0 M).
PUBLISHED = {0: 4_652_008, 1: 5_416_680, 2: 6_092_072, 3: 8_197_096, 4: 13_006_568}


def _bn_statistics(model) -> int:
    return sum(
        int(np.prod(w.shape)) for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization) for w in layer.non_trainable_weights
    )


@pytest.mark.parametrize("variant", sorted(LITE_SPECS))
def test_parameters_match_the_published_counts(variant):
    info = get_model_info(f"efficientnet_lite{variant}")
    assert info.default_size == LITE_SPECS[variant].resolution
    model = info.build()
    assert model.count_params() - _bn_statistics(model) == PUBLISHED[variant]
    assert model.input_shape == (None, info.default_size, info.default_size, 3)
    keras.backend.clear_session()


def test_lite0_keras_count_and_macs():
    model = EfficientNetLite0()
    assert model.count_params() == 4_694_024  # what Keras counts: BN statistics included
    # conv + dense multiply-adds; tensorflow/tpu publishes 407M, counting more than these
    assert summary("efficientnet_lite0").total_macs == pytest.approx(385e6, rel=0.01)


def test_scaling_keeps_stem_head_and_the_first_and_last_stage():
    # repeats per stage (tensorflow/tpu: ceil(depth * repeats), stages 1 and 7 fixed)
    expected = {0: [1, 2, 2, 3, 3, 4, 1], 1: [1, 3, 3, 4, 4, 5, 1], 2: [1, 3, 3, 4, 4, 5, 1],
                3: [1, 3, 3, 5, 5, 6, 1], 4: [1, 4, 4, 6, 6, 8, 1]}
    for variant, repeats in expected.items():
        plans = block_plans(variant)
        assert [sum(p.stage == s for p in plans) for s in range(1, 8)] == repeats
    assert [round_filters(f, 1.4) for f in (16, 24, 40, 80, 112, 192, 320)] == [
        24, 32, 56, 112, 160, 272, 448]
    lite4 = build_model("efficientnet_lite4", include_top=False, input_shape=(64, 64, 3))
    assert lite4.get_layer("stem_conv").filters == 32  # fixed, not 1.4 x 32
    assert lite4.get_layer("top_conv").filters == 1280
    assert lite4.get_layer("block1a_project_conv").filters == 24


def test_no_squeeze_excitation_relu6_and_preprocessing_inside():
    model = EfficientNetLite0(include_top=False, input_shape=(64, 64, 3))
    names = [layer.name for layer in model.layers]
    assert not [n for n in names if "se_" in n]
    relus = [layer for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    assert relus and all(float(layer.max_value) == 6.0 for layer in relus)
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    rescaling = model.get_layer("rescaling")
    x = np.array([[[[0.0, 127.0, 255.0]]]], np.float32)
    np.testing.assert_allclose(rescaling(x), (x - 127.0) / 128.0)
    info = get_model_info("efficientnet_lite0")
    assert info.preprocessing == "none" and "127" in info.preprocessing_inside
    raw = EfficientNetLite0(include_top=False, input_shape=(64, 64, 3), include_preprocessing=False)
    assert "rescaling" not in [layer.name for layer in raw.layers]


def test_odd_sizes_use_tensorflow_same_padding():
    model = EfficientNetLite0(include_top=False, input_shape=(33, 45, 3))
    assert model.output_shape == (None, 2, 2, 1280)  # ceil(33/32), ceil(45/32)


def test_freeze_groups_cover_every_weighted_layer_and_blocks_stay_whole():
    info = get_model_info("efficientnet_lite0")
    model = build_model("efficientnet_lite0", include_top=True, input_shape=(64, 64, 3))
    groups = {g.name: g for g in freeze_groups(model, info)}
    assert list(groups) == ["stem", *[f"block{i}" for i in range(1, 8)], "top", "head"]
    # the classifier only is head; rescaling has no weights
    assert [layer.name for layer in groups["head"].weighted_layers] == ["predictions"]
    assert [layer.name for layer in groups["block6"].layers if layer.name.endswith("_project_conv")] == [
        "block6a_project_conv", "block6b_project_conv", "block6c_project_conv",
        "block6d_project_conv"]
    decision = apply_freeze(model, info, 8)  # block2b's depthwise conv: moves to its end
    assert "block3a_expand_conv" in decision.trainable_layers
    assert "block2b_project_conv" in decision.frozen_layers
    assert decision.snapped_from == 8 and decision.frozen_weight_layers == 9
