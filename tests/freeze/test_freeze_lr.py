"""Per-group learning-rate multipliers: per-variable table, optimizer wrapper, gradient scaling."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from freeze_helpers import TINY

from tlkit.errors import UnknownNameError
from tlkit.freeze import apply_lr_multipliers, scale_gradients, variable_multipliers


def tiny_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(5, activation="tanh", name="block1_dense")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x))


DATA = (np.random.default_rng(0).normal(size=(8, 6)).astype("float32"), np.arange(8) % 3)


def kernel_deltas(optimizer, multipliers=None) -> dict[str, float]:
    """Mean absolute kernel change of each layer after one fit step."""
    model = tiny_model()
    if multipliers is not None:
        apply_lr_multipliers(optimizer, variable_multipliers(model, TINY, multipliers))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = {la.name: la.kernel.numpy().copy() for la in model.layers[1:]}
    model.fit(*DATA, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return {
        n: float(np.abs(model.get_layer(n).kernel.numpy() - k).mean()) for n, k in before.items()
    }


def test_variable_multipliers_cover_the_group_variables():
    table = variable_multipliers(tiny_model(), TINY, {"block1": 0.1, "HEAD": 2})
    assert table == {
        "block1_dense/kernel": 0.1,
        "block1_dense/bias": 0.1,
        "predictions/kernel": 2.0,
        "predictions/bias": 2.0,
    }
    with pytest.raises(UnknownNameError, match="block1"):
        variable_multipliers(tiny_model(), TINY, {"blok1": 0.1})


@pytest.mark.parametrize(
    "make", [lambda: keras.optimizers.Adam(1e-2), lambda: keras.optimizers.SGD(0.1)]
)
def test_apply_lr_multipliers_scales_each_groups_update(make):
    plain = kernel_deltas(make())
    scaled = kernel_deltas(make(), {"block1": 0.25})
    assert scaled["block1_dense"] == pytest.approx(0.25 * plain["block1_dense"], rel=1e-3)
    assert scaled["predictions"] == pytest.approx(plain["predictions"], rel=1e-5)
    frozen = kernel_deltas(make(), {"block1": 0.0})
    assert frozen["block1_dense"] == 0.0 and frozen["predictions"] > 0


def test_apply_lr_multipliers_replaces_previous_multipliers():
    optimizer = keras.optimizers.SGD(0.1)
    model = tiny_model()
    apply_lr_multipliers(optimizer, variable_multipliers(model, TINY, {"block1": 0.0}))
    apply_lr_multipliers(optimizer, variable_multipliers(model, TINY, {"block1": 0.5}))
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(True))
    before = model.get_layer("block1_dense").kernel.numpy().copy()
    model.fit(*DATA, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert not np.array_equal(before, model.get_layer("block1_dense").kernel.numpy())


def test_scale_gradients_for_custom_steps():
    model = tiny_model()
    table = variable_multipliers(model, TINY, {"block1": 0.5})
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(DATA[0])))
    grads = tape.gradient(loss, model.trainable_variables)
    pairs = scale_gradients(zip(grads, model.trainable_variables, strict=True), table)
    for (scaled, var), grad in zip(pairs, grads, strict=True):
        factor = 0.5 if var.path.startswith("block1_") else 1.0
        np.testing.assert_allclose(np.asarray(scaled), factor * np.asarray(grad), rtol=1e-6)
    assert scale_gradients([(None, model.trainable_variables[0])], table)[0][0] is None
