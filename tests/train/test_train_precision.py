"""Mixed precision and XLA: the trainer and the custom loop build, step and resume a tiny model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from train_helpers import tiny_data, tiny_recipe, tiny_trainer

from tlkit.train.custom_loop import CustomLoop


@pytest.fixture
def policy():
    """Set a global dtype policy for one test; always restore float32."""

    def set_policy(name: str) -> None:
        keras.config.set_dtype_policy(name)

    yield set_policy
    keras.config.set_dtype_policy("float32")


def _finite(model) -> bool:
    return all(np.isfinite(np.asarray(w)).all() for w in model.weights)


class Killed(Exception):
    """Stands in for a kill right after a checkpoint was committed."""


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_with_float32_predictions_and_resumes(tmp_path, policy, precision):
    policy(precision)
    recipe = tiny_recipe(precision=precision, epochs=2, optimizer={"name": "sgd", "lr": 0.01})
    trainer = tiny_trainer(tmp_path, recipe)
    model = trainer.model
    compute = "float16" if precision == "mixed_float16" else "bfloat16"
    assert model.get_layer("c1").compute_dtype == compute
    assert model.get_layer("c1").variable_dtype == "float32"  # master weights stay float32
    before = [np.array(w) for w in model.trainable_weights]
    commit = trainer.commit

    def commit_then_die(*args, **kwargs):
        commit(*args, **kwargs)
        raise Killed

    trainer.commit = commit_then_die
    with pytest.raises(Killed):
        trainer.run()
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")  # loss scaling only where float16 needs it
    assert any(
        not np.array_equal(b, np.array(w))
        for b, w in zip(before, model.trainable_weights, strict=True)
    )
    x, _ = tiny_data(4)
    assert model(x).dtype == "float32" and _finite(model)
    best = keras.models.load_model(tmp_path / "model.keras")
    assert best.predict(x, verbose=0).dtype == np.float32
    # Resuming restores the optimizer, loss-scale variables included, and runs epoch 2 only.
    resumed = tiny_trainer(tmp_path, recipe)
    state = resumed.run()
    assert state.finished and state.epoch == 2 and len(state.history) == 2
    assert all(np.isfinite(h["loss"]) for h in state.history)
    assert int(resumed.model.optimizer.iterations) == 2 * 3  # 3 steps per epoch, both epochs


def test_custom_loop_scales_the_loss_and_unscales_the_gradients_under_mixed_float16(policy):
    policy("mixed_float16")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="d"),
            keras.layers.Activation("softmax", dtype="float32"),
        ]
    )
    opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    opt.build(model.trainable_variables)
    loop = CustomLoop(model, opt, 0.0, tf.distribute.get_strategy())
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    kernel = np.array(model.get_layer("d").kernel)
    # The float32 gradient of the same loss, for comparison.
    policy("float32")
    reference = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Activation("softmax")]
    )
    reference.set_weights(model.get_weights())
    with tf.GradientTape() as tape:
        loss = keras.losses.categorical_crossentropy(y, reference(x))
        loss = tf.reduce_mean(loss)
    expected = kernel - 0.1 * tape.gradient(loss, reference.trainable_variables[0]).numpy()
    assert float(opt.scale_loss(tf.constant(1.0))) > 1.0  # a real loss scale (2**15 at start)
    loop._train_step((x, y))
    np.testing.assert_allclose(np.array(model.get_layer("d").kernel), expected, atol=2e-3)


def test_jit_compile_reaches_compile_and_the_custom_loop(tmp_path):
    recipe = tiny_recipe(jit_compile=True)
    trainer = tiny_trainer(tmp_path, recipe)
    trainer.prepare_stage(0, trainer.stages[0])
    assert trainer.model.jit_compile is True
    loop = CustomLoop(
        trainer.model, trainer.model.optimizer, 0.0, trainer.strategy, jit_compile=True
    )
    assert loop._gradients._jit_compile and loop._evaluate._jit_compile
    ds = tf.data.Dataset.from_tensor_slices(tiny_data(16)).batch(8)
    logs, ran = loop.run_epoch(ds, ds)
    assert ran == 2 and np.isfinite(logs["loss"]) and 0 <= logs["val_accuracy"] <= 1
    off = tiny_trainer(tmp_path / "off", tiny_recipe(jit_compile=False))
    off.prepare_stage(0, off.stages[0])
    assert off.model.jit_compile is False
    assert not CustomLoop(off.model, off.model.optimizer, 0.0, off.strategy)._gradients._jit_compile
