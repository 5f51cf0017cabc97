"""ResNet: keras.applications parity, paper numbers, plain twins, registry facts."""

from __future__ import annotations

import re

import h5py
import keras
import numpy as np
import pytest
from keras.src.applications import resnet as keras_resnet
from keras.src.legacy.saving import legacy_h5_format

from tlkit.errors import InputSizeError, UnknownNameError
from tlkit.models import get_model_info
from tlkit.models.resnet import (
    RESNET_SPECS,
    PlainNet18,
    ResNet,
    ResNet18,
    ResNet50,
    ResNet101,
    ResNet152,
)

# keras.applications' exact counts (../shared/reference/paper-numbers.md).
KERAS_PARAMS = {50: 25_636_712, 101: 44_707_176, 152: 60_419_944}
KERAS_BUILDERS = {
    50: (keras.applications.ResNet50, ResNet50),
    101: (keras.applications.ResNet101, ResNet101),
    152: (keras.applications.ResNet152, ResNet152),
}
# Paper Table 1 "FLOPs" (multiply-adds at 224x224).
PAPER_MACS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}
STAGE_SIZES = {
    "conv1_relu": 112,
    "pool1_pool": 56,
    "conv2": 56,
    "conv3": 28,
    "conv4": 14,
    "conv5": 7,
}


def _layout(model):
    return [
        (layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)  # input names get uniquified
    ]


def _save_legacy_h5(model, path) -> str:
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return str(path)


def _stage_output(model, stage: str):
    if stage.startswith("conv1") or stage.startswith("pool1"):
        return model.get_layer(stage).output
    blocks = [layer for layer in model.layers if re.fullmatch(rf"{stage}_block\d+_out", layer.name)]
    return blocks[-1].output


def _assert_stage_sizes(model) -> None:
    for stage, side in STAGE_SIZES.items():
        assert tuple(_stage_output(model, stage).shape[1:3]) == (side, side), stage


def _macs(model) -> int:
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += kh * kw * cin * cout * h * w
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_matches_keras_applications_with_top(depth, tmp_path):
    keras_builder, ours = KERAS_BUILDERS[depth]
    # The count does not depend on the input side (global pooling); 101/152 run at 64 to stay quick.
    side = 224 if depth == 50 else 64
    reference = keras_builder(weights=None, input_shape=(side, side, 3))
    path = _save_legacy_h5(reference, tmp_path / f"resnet{depth}.h5")
    model = ours(weights=path, input_shape=(side, side, 3))

    assert model.count_params() == reference.count_params() == KERAS_PARAMS[depth]
    assert _layout(model) == _layout(reference)
    assert model.name == reference.name == f"resnet{depth}"
    x = np.random.default_rng(depth).uniform(-1, 1, (2, side, side, 3)).astype("float32")
    diff = np.abs(keras.ops.convert_to_numpy(model(x)) - keras.ops.convert_to_numpy(reference(x)))
    assert diff.max() < 1e-5


def test_matches_keras_applications_without_top(tmp_path):
    reference = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(64, 64, 3), pooling="avg"
    )
    path = _save_legacy_h5(reference, tmp_path / "resnet50_notop.h5")
    model = ResNet50(weights=path, include_top=False, input_shape=(64, 64, 3), pooling="avg")
    assert _layout(model) == _layout(reference)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    diff = np.abs(keras.ops.convert_to_numpy(model(x)) - keras.ops.convert_to_numpy(reference(x)))
    assert diff.max() < 1e-5


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_official_weight_files_are_keras_own(depth):
    official = get_model_info(f"resnet{depth}").official_weights
    top_hash, notop_hash = keras_resnet.WEIGHTS_HASHES[f"resnet{depth}"]
    assert official.base_url == keras_resnet.BASE_WEIGHTS_PATH
    assert official.cache_subdir == "models"
    assert official.top == (f"resnet{depth}_weights_tf_dim_ordering_tf_kernels.h5", top_hash)
    assert official.notop == (
        f"resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        notop_hash,
    )
    assert get_model_info(f"plain{depth}").official_weights is None


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_paper_table_1_sizes_depth_and_flops(depth):
    model = ResNet(depth)
    _assert_stage_sizes(model)
    info = get_model_info(f"resnet{depth}")
    weighted = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
        and "_0_conv" not in layer.name
    ]
    assert len(weighted) == info.weight_layers == depth
    assert model.output_shape == (None, 1000)
    assert _macs(model) == pytest.approx(PAPER_MACS[depth], rel=0.03)


def test_deep_stage_sizes_and_flops():
    # Built once each without a forward pass; the FLOPs of the Keras v1 layout (stride in the
    # 1x1 conv) are within 3% of the paper's.
    for depth in (101, 152):
        model = ResNet(depth, include_top=False, pooling=None)
        _assert_stage_sizes(model)
        assert _macs(model) == pytest.approx(PAPER_MACS[depth], rel=0.03)


@pytest.mark.parametrize("depth", [18, 50])
def test_plain_twin_is_resnet_without_shortcuts(depth):
    res = ResNet(depth, input_shape=(32, 32, 3), include_top=False)
    plain = ResNet(depth, shortcuts=False, input_shape=(32, 32, 3), include_top=False)
    res_convs = [layer.name for layer in res.layers if isinstance(layer, keras.layers.Conv2D)]
    plain_convs = [layer.name for layer in plain.layers if isinstance(layer, keras.layers.Conv2D)]
    projections = [n for n in res_convs if n.endswith("_0_conv")]
    assert plain_convs == [n for n in res_convs if n not in projections]
    assert len(projections) == (3 if depth == 18 else 4)
    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    adds = [layer for layer in res.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == sum(RESNET_SPECS[depth].blocks)
    projection_params = sum(
        res.get_layer(n).count_params() + res.get_layer(n.replace("_conv", "_bn")).count_params()
        for n in projections
    )
    assert plain.count_params() == res.count_params() - projection_params
    assert plain.name == f"plain{depth}"


def test_shortcuts_change_the_function():
    res = ResNet18(include_top=False, input_shape=(32, 32, 3))
    plain = PlainNet18(include_top=False, input_shape=(32, 32, 3))
    for layer in plain.layers:
        if layer.weights:
            res.get_layer(layer.name).set_weights(layer.get_weights())
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(res(x))
    b = keras.ops.convert_to_numpy(plain(x))
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert np.abs(a - b).max() > 1e-3


def test_basic_block_names_follow_keras_grammar():
    model = ResNet18(include_top=False, input_shape=(32, 32, 3))
    names = {layer.name for layer in model.layers}
    for name in [
        "conv2_block1_1_conv",
        "conv2_block2_2_bn",
        "conv3_block1_0_conv",
        "conv3_block1_add",
        "conv5_block2_out",
    ]:
        assert name in names
    assert "conv2_block1_0_conv" not in names  # 64 -> 64 at stride 1 needs no projection
    assert "conv2_block1_3_conv" not in names
    assert model.output_shape == (None, 1, 1, 512)


@pytest.mark.parametrize("model_id", [f"{p}{d}" for p in ("resnet", "plain") for d in RESNET_SPECS])
def test_registry_entries(model_id):
    info = get_model_info(model_id)
    depth = int(model_id.removeprefix("resnet").removeprefix("plain"))
    assert info.family == "resnet"
    assert info.preprocessing == "caffe"
    assert (info.default_size, info.min_size) == (224, 32)
    assert info.weight_layers == depth
    assert info.feature_size == (512 if depth < 50 else 2048)
    assert [g.name for g in info.freeze_groups] == ["stem", "conv2", "conv3", "conv4", "conv5"]
    assert re.match(info.unit_pattern, "conv4_block23_2_bn").group(1) == "conv4_block23"
    assert get_model_info(model_id.replace(str(depth), f"_{depth}")) is info


def test_freeze_groups_cover_the_backbone():
    info = get_model_info("resnet50")
    model = info.build(include_top=True, input_shape=(32, 32, 3))
    unmatched = [
        layer.name
        for layer in model.layers[1:]
        if not any(re.match(g.pattern, layer.name) for g in info.freeze_groups)
    ]
    assert unmatched == ["avg_pool", "predictions"]


def test_bad_arguments_are_user_errors():
    with pytest.raises(InputSizeError, match="32x32"):
        ResNet50(include_top=False, input_shape=(31, 64, 3))
    with pytest.raises(UnknownNameError):
        ResNet(42)
