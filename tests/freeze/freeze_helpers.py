"""Helpers of the freeze tests: fine-tune models built as the integrator builds them, and a
one-step trainer. (A uniquely named module, so tests can import it next to other conftests.)"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tlkit.models import FreezeGroup, ModelInfo, get_model_info

SIZE = 32
CLASSES = 3


def build_finetune_model(model_id: str) -> keras.Model:
    """raw input -> preprocess -> backbone (include_top=False) -> head_* -> predictions."""
    info = get_model_info(model_id)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    backbone = info.build(include_top=False, input_tensor=x)
    y = keras.layers.GlobalAveragePooling2D(name="head_pool")(backbone.output)
    y = keras.layers.Dense(8, activation="relu", name="head_dense")(y)
    y = keras.layers.BatchNormalization(name="head_bn")(y)
    y = keras.layers.Dense(CLASSES, name="predictions")(y)
    return keras.Model(inputs, y, name=f"{model_id}_finetune")


def snapshot(model: keras.Model) -> dict[str, np.ndarray]:
    return {w.path: np.array(w.numpy()) for w in model.weights}


def train_one_step(model: keras.Model, lr: float = 1e-3, seed: int = 0) -> None:
    """One SGD step with ``training=True`` (what fit does), eagerly to stay quick."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, CLASSES, 4)
    optimizer = keras.optimizers.SGD(lr)
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        loss = tf.reduce_mean(loss)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    for w in model.weights:  # a diverged step would make "changed" meaningless
        assert np.isfinite(w.numpy()).all(), f"{w.path} is not finite after the step"


def changed_layers(model: keras.Model, before: dict[str, np.ndarray]) -> set[str]:
    """Names of the layers any of whose weights (moving statistics included) moved."""
    out = set()
    for layer in model.layers:
        for w in layer.weights:
            if not np.array_equal(before[w.path], w.numpy(), equal_nan=True):
                out.add(layer.name)
    return out


TINY = ModelInfo(
    id="tiny",
    family="tiny",
    builder=None,
    paper="",
    default_size=8,
    min_size=8,
    preprocessing="none",
    feature_size=4,
    weight_layers=2,
    freeze_groups=(FreezeGroup("block1", r"^block1_"), FreezeGroup("block2", r"^block2_")),
)
"""A registry-style entry (not registered) for small hand-built models."""
