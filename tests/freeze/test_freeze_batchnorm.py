"""BatchNorm: frozen layers keep their moving statistics, checked directly after training with
``training=True`` (keras issue 20285: calling with training=False is not enough)."""

from __future__ import annotations

import keras
import numpy as np
from freeze_helpers import build_finetune_model, train_one_step

from tlkit.freeze import FreezeConfig, apply_freeze
from tlkit.models import get_model_info


def bn_stats(model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        layer.name: (layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }


def moved(before, after) -> set[str]:
    return {
        name
        for name, (mean, var) in before.items()
        if not (np.array_equal(mean, after[name][0]) and np.array_equal(var, after[name][1]))
    }


def test_fit_keeps_frozen_bn_statistics(finetune_model):
    """compile + fit (what the trainer does) with bn: frozen, ResNet-50 frozen through conv3."""
    model, info = build_finetune_model("resnet50"), get_model_info("resnet50")
    decision = apply_freeze(model, info, "conv3", config=FreezeConfig(bn="frozen"))
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, 4)
    kernels = {la.name: la.kernel.numpy().copy() for la in model.layers if hasattr(la, "kernel")}
    stats = bn_stats(model)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)

    assert moved(stats, bn_stats(model)) == {"head_bn"}  # every backbone BN stayed put
    changed = {n for n, k in kernels.items() if not np.array_equal(k, model.get_layer(n).kernel)}
    frozen_convs = {n for n in kernels if n.startswith(("conv1_", "conv2_", "conv3_"))}
    assert changed == set(kernels) - frozen_convs
    assert "conv4_block1_1_bn" in decision.frozen_layers  # unfrozen group, BN still frozen
    assert "BatchNorm layers stay in inference mode" in decision.message


def test_bn_train_updates_only_unfrozen_statistics(finetune_model):
    model, info = finetune_model("resnet50"), get_model_info("resnet50")
    decision = apply_freeze(model, info, "conv4_block6", config=FreezeConfig(bn="train"))
    stats = bn_stats(model)
    train_one_step(model)
    expected = {n for n in stats if n.startswith("conv5_")} | {"head_bn"}
    assert moved(stats, bn_stats(model)) == expected
    assert all(not model.get_layer(n).trainable for n in stats if n not in expected)
    assert "conv5_block1_1_bn" in decision.trainable_layers


def test_bn_frozen_everywhere_when_nothing_else_is(finetune_model):
    model, info = finetune_model("resnet50"), get_model_info("resnet50")
    apply_freeze(model, info, "none")  # default bn: frozen
    stats = bn_stats(model)
    train_one_step(model)
    assert moved(stats, bn_stats(model)) == {"head_bn"}
    assert model.get_layer("conv1_conv").trainable
