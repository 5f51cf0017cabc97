"""Network in Network: sizes, parameters (the Caffe ImageNet model's 7,595,176), no FC."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from tlkit.errors import InputSizeError
from tlkit.models import nin
from tlkit.models.registry import get_model_info

# conv layers: (kernel, input channels, filters) of the Caffe nin_imagenet model.
CONVS = [
    (11, 3, 96), (1, 96, 96), (1, 96, 96),
    (5, 96, 256), (1, 256, 256), (1, 256, 256),
    (3, 256, 384), (1, 384, 384), (1, 384, 384),
    (3, 384, 1024), (1, 1024, 1024), (1, 1024, 1000),
]  # fmt: skip
TOTAL = sum(k * k * c * f + f for k, c, f in CONVS)


def test_parameters_and_sizes():
    assert TOTAL == 7_595_176
    model = nin.NiN()
    assert model.count_params() == TOTAL
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.kernel_size[0], c.kernel.shape[2], c.filters) for c in convs] == CONVS
    assert not any(isinstance(layer, keras.layers.Dense) for layer in model.layers)
    sides = {
        n: model.get_layer(n).output.shape[1]
        for n in (
            "mlpconv1_conv3",
            "mlpconv1_pool",
            "mlpconv2_pool",
            "mlpconv3_pool",
            "mlpconv4_conv3",
        )
    }
    assert sides == {
        "mlpconv1_conv3": 54,
        "mlpconv1_pool": 26,
        "mlpconv2_pool": 12,
        "mlpconv3_pool": 5,
        "mlpconv4_conv3": 5,
    }
    assert model.layers[-1].name == "predictions"
    assert model.output.shape == (None, 1000)


def test_without_top_drops_the_classifier_conv():
    model = nin.NiN(include_top=False)
    assert model.count_params() == TOTAL - (1024 * 1000 + 1000)
    assert model.output.shape == (None, 5, 5, 1024)
    assert model.layers[-1].name == "mlpconv4_conv2"


def test_small_forward_sums_to_one():
    model = nin.NiN(input_shape=(67, 67, 3), classes=7)
    y = model.predict(np.random.default_rng(0).uniform(-1, 1, (2, 67, 67, 3)), verbose=0)
    assert y.shape == (2, 7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)


def test_min_size():
    with pytest.raises(InputSizeError, match="67x67"):
        nin.NiN(include_top=False, input_shape=(66, 66, 3))
    assert nin.NiN(include_top=False, input_shape=(67, 67, 3)).output.shape[1:3] == (1, 1)


def test_registry_entry():
    info = get_model_info("nin")
    assert (info.default_size, info.min_size, info.preprocessing) == (224, 67, "tf")
    assert (info.feature_size, info.weight_layers) == (1024, 12)
    model = info.build(input_shape=(67, 67, 3), classes=3)
    for layer in model.layers[1:]:
        groups = [g.name for g in info.freeze_groups if re.search(g.pattern, layer.name)]
        head = layer.name in ("mlpconv4_conv3", "avg_pool", "predictions")
        assert len(groups) == (0 if head else 1), layer.name
