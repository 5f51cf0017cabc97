"""VGG: Table 2 parameter counts, keras.applications parity, registry facts."""

from __future__ import annotations

import re

import h5py
import keras
import numpy as np
import pytest

from tlkit.errors import InputSizeError, UnknownNameError
from tlkit.models import vgg
from tlkit.models.registry import get_model_info

# The VGG paper's Table 2, exactly (../shared/reference/paper-numbers.md).
TABLE2 = {
    "A": 132_863_336,
    "A-LRN": 132_863_336,
    "B": 133_047_848,
    "C": 133_638_952,
    "D": 138_357_544,
    "E": 143_667_240,
}


@pytest.mark.parametrize("config", list(TABLE2))
def test_table2_parameter_counts(config):
    model = vgg.VGG(config)
    assert model.count_params() == TABLE2[config]
    assert model.output.shape == (None, 1000)


@pytest.mark.parametrize("builder, expected", [(vgg.VGG16, 14_714_688), (vgg.VGG19, 20_024_384)])
def test_notop_counts(builder, expected):
    model = builder(include_top=False)
    assert model.count_params() == expected
    assert model.output.shape == (None, 7, 7, 512)


def test_config_c_has_1x1_convs_in_blocks_3_to_5():
    model = vgg.VGG("C", include_top=False, input_shape=(32, 32, 3))
    kernels = {
        layer.name: layer.kernel_size
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
    }
    assert len(kernels) == 13
    for block in (3, 4, 5):
        assert kernels[f"block{block}_conv3"] == (1, 1)
        assert kernels[f"block{block}_conv2"] == (3, 3)
    assert kernels["block1_conv1"] == (3, 3)


def test_a_lrn_places_lrn_after_first_conv():
    model = vgg.VGG("a_lrn", include_top=False, input_shape=(32, 32, 3))
    names = [layer.name for layer in model.layers]
    assert names[1:4] == ["block1_conv1", "block1_lrn", "block1_pool"]


def test_dropout_adds_no_weights():
    plain = vgg.VGG11(input_shape=(32, 32, 3), classes=5)
    dropped = vgg.VGG11(input_shape=(32, 32, 3), classes=5, dropout=0.5)
    assert plain.count_params() == dropped.count_params()
    assert "fc1_dropout" in [layer.name for layer in dropped.layers]
    assert "fc1_dropout" not in [layer.name for layer in plain.layers]
    weighted = [layer.name for layer in dropped.layers if layer.weights]
    assert weighted == [layer.name for layer in plain.layers if layer.weights]


def _save_legacy_h5(model, path):
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize(
    "ours, theirs, include_top, size",
    [
        (vgg.VGG16, keras.applications.VGG16, False, 224),
        (vgg.VGG19, keras.applications.VGG19, False, 224),
        (vgg.VGG16, keras.applications.VGG16, True, 224),
        # Same layers with top at a small input: keeps fc1 (and the file) small.
        (vgg.VGG19, keras.applications.VGG19, True, 48),
    ],
)
def test_keras_applications_parity(tmp_path, ours, theirs, include_top, size):
    shape = (size, size, 3)
    reference = theirs(weights=None, include_top=include_top, input_shape=shape)
    path = tmp_path / "reference.h5"
    _save_legacy_h5(reference, path)
    model = ours(weights=str(path), include_top=include_top, input_shape=shape)
    assert model.name == reference.name
    assert [w.shape for w in model.weights] == [w.shape for w in reference.weights]
    ref_weighted = [layer.name for layer in reference.layers if layer.weights]
    assert [layer.name for layer in model.layers if layer.weights] == ref_weighted
    x = np.random.default_rng(0).uniform(-120, 150, size=(2, *shape)).astype("float32")
    diff = np.abs(model.predict(x, verbose=0) - reference.predict(x, verbose=0)).max()
    assert diff < 1e-5


def _keras_constants(module_name):
    import importlib

    module = importlib.import_module(f"keras.src.applications.{module_name}")
    with open(module.__file__, encoding="utf8") as fh:
        source = fh.read()
    hashes = re.findall(r'file_hash="([0-9a-f]{32})"', source)
    files = re.findall(r'get_file\(\s*"([^"]+)"', source)
    return module, files, hashes


@pytest.mark.parametrize("model_id", ["vgg16", "vgg19"])
def test_official_files_match_keras(model_id):
    module, files, hashes = _keras_constants(model_id)
    official = get_model_info(model_id).official_weights
    assert official is not None
    assert official.top == (files[0], hashes[0])
    assert official.notop == (files[1], hashes[1])
    assert official.base_url + official.top[0] == module.WEIGHTS_PATH
    assert official.base_url + official.notop[0] == module.WEIGHTS_PATH_NO_TOP
    assert official.cache_subdir == "models"


def test_registry_entries():
    expected = {
        "vgg11": ("vgg_a", 11),
        "vgg11_lrn": ("vgg_a_lrn", 11),
        "vgg13": ("vgg_b", 13),
        "vgg16_c": ("vgg_c", 16),
        "vgg16": ("vgg_d", 16),
        "vgg19": ("vgg_e", 19),
    }
    for model_id, (alias, depth) in expected.items():
        info = get_model_info(alias)
        assert info.id == model_id
        assert info.weight_layers == depth
        assert (info.preprocessing, info.default_size, info.min_size) == ("caffe", 224, 32)
        assert info.feature_size == 512
        assert [g.name for g in info.freeze_groups] == [
            "block1",
            "block2",
            "block3",
            "block4",
            "block5",
            "fc",
        ]
        assert (info.official_weights is not None) == (model_id in ("vgg16", "vgg19"))


def test_registry_builds_named_config():
    model = get_model_info("vgg_c").build(include_top=False, input_shape=(32, 32, 3))
    assert model.name == "vgg16_c"
    assert model.get_layer("block5_conv3").kernel_size == (1, 1)


def test_weight_layers_counts_conv_and_dense():
    for model_id in ("vgg11", "vgg16_c", "vgg19"):
        info = get_model_info(model_id)
        model = info.build(input_shape=(32, 32, 3), classes=3)
        weighted = [layer for layer in model.layers if layer.weights]
        assert len(weighted) == info.weight_layers


def test_min_size_error_names_the_minimum():
    with pytest.raises(InputSizeError, match="32x32"):
        vgg.VGG16(include_top=False, input_shape=(31, 64, 3))


def test_unknown_config():
    with pytest.raises(UnknownNameError):
        vgg.VGG("F")


def test_pooling_features():
    model = vgg.VGG13(include_top=False, input_shape=(64, 64, 3), pooling="avg")
    assert model.output.shape == (None, 512)


def test_input_tensor_is_honoured():
    inputs = keras.Input((48, 48, 3))
    model = vgg.VGG11(include_top=False, input_tensor=inputs, pooling="max")
    assert model.inputs[0] is inputs
    assert model.output.shape == (None, 512)


def test_imagenet_offline_names_the_official_file(tmp_path, monkeypatch):
    from tlkit.errors import UserError

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    with pytest.raises(UserError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        vgg.VGG16(include_top=False, weights="imagenet")
    with pytest.raises(UserError, match="no official ImageNet weights"):
        vgg.VGG13(include_top=False, weights="imagenet")


def test_width_scales_every_layer_and_keeps_the_layout():
    full = vgg.VGG("D", input_shape=(32, 32, 3), classes=10)
    quarter = vgg.VGG("D", input_shape=(32, 32, 3), classes=10, width=0.25)
    assert [layer.name for layer in quarter.layers] == [layer.name for layer in full.layers]
    for layer in full.layers:
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense) and layer.name != "predictions":
            units = getattr(layer, "filters", None) or layer.units
            small = quarter.get_layer(layer.name)
            assert (getattr(small, "filters", None) or small.units) == units // 4, layer.name
    assert quarter.get_layer("predictions").units == 10
    with pytest.raises(Exception, match="width must be positive"):
        vgg.VGG("A", width=0)
