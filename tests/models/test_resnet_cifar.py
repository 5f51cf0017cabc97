"""The CIFAR ResNets of He et al. (2016, section 4.2): the paper's parameter counts, 6n+2
weighted layers on 32/16/8 maps, identity (option A) shortcuts, plain twins with the same
weights, and a saved model that loads with Keras alone."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from tlkit.models import build_model, get_model_info
from tlkit.models.facts.resnet_cifar import PAPER_PARAMS_M
from tlkit.models.resnet_cifar import CifarResNet, identity_shortcut


@pytest.mark.parametrize("depth", sorted(PAPER_PARAMS_M))
def test_parameter_counts_and_depth_are_the_papers_table_6(depth):
    model = build_model(f"resnet{depth}")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # The paper rounds to two significant figures (0.27M, 0.85M, 1.7M).
    assert round(trainable / 1e6, 2 if depth < 100 else 1) == PAPER_PARAMS_M[depth]
    weighted = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)]
    assert len(weighted) == depth == get_model_info(f"resnet{depth}").weight_layers
    assert model.output_shape == (None, 10)


def test_stages_are_16_32_64_filters_on_32_16_8_maps():
    model = build_model("resnet20")
    shapes = {name: model.get_layer(name).output.shape[1:] for name in (
        "conv2_block3_out", "conv3_block1_out", "conv4_block3_out")}
    assert shapes == {"conv2_block3_out": (32, 32, 16), "conv3_block1_out": (16, 16, 32),
                      "conv4_block3_out": (8, 8, 64)}
    assert all(not layer.use_bias for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D))


def test_option_a_shortcut_subsamples_and_pads_zero_channels():
    x = keras.Input((8, 8, 16))
    model = keras.Model(x, identity_shortcut(x, 32, 2, "s"))
    data = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    out = np.asarray(model(data))
    assert out.shape == (2, 4, 4, 32)
    np.testing.assert_array_equal(out[..., :16], data[:, ::2, ::2, :])
    np.testing.assert_array_equal(out[..., 16:], 0)
    assert model.count_params() == 0


def test_plain_twin_has_the_same_weights_and_no_additions():
    residual, plain = build_model("resnet56"), build_model("plain56")
    assert [w.shape for w in residual.weights] == [w.shape for w in plain.weights]
    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    assert sum(isinstance(layer, keras.layers.Add) for layer in residual.layers) == 27
    assert get_model_info("plain56").description.startswith("CIFAR Plain-56")


def test_unknown_depth_is_refused():
    with pytest.raises(ValueError, match="20, 32, 44, 56, 110"):
        CifarResNet(50)


def test_saved_model_loads_in_a_process_without_tlkit(tmp_path):
    model = build_model("resnet20", classes=3)
    path = tmp_path / "resnet20.keras"
    model.save(path)
    data = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", data)
    np.save(tmp_path / "y.npy", np.asarray(model(data, training=False)))
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"y = np.asarray(m(np.load({str(tmp_path / 'x.npy')!r}), training=False))\n"
        f"np.testing.assert_allclose(y, np.load({str(tmp_path / 'y.npy')!r}), atol=1e-5)\n"
        "assert not [k for k in sys.modules if k.startswith('tlkit')]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_stride_2_conv_is_centred_on_the_pixel_the_shortcut_keeps():
    """With only its centre tap, the first conv of conv3 computes the shortcut's subsample."""
    model = build_model("resnet20", include_top=False, input_shape=(33, 33, 3))
    conv = model.get_layer("conv3_block1_1_conv")
    kernel = np.zeros(conv.kernel.shape, "float32")
    kernel[1, 1, np.arange(16), np.arange(16)] = 1.0
    conv.kernel.assign(kernel)
    x = model.get_layer("conv2_block3_out").output
    probe = keras.Model(model.inputs, [x, conv.output, model.get_layer("conv3_block1_0_pad").output])
    data = np.random.default_rng(2).uniform(size=(1, 33, 33, 3)).astype("float32")
    feature, convolved, shortcut = (np.asarray(t) for t in probe(data))
    np.testing.assert_allclose(convolved[..., :16], feature[:, ::2, ::2, :], atol=1e-6)
    np.testing.assert_allclose(shortcut[..., :16], feature[:, ::2, ::2, :], atol=1e-6)
