"""``train.ema``: the weights' moving average validates, picks and is saved; training goes on
with the trained weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from train_helpers import tiny_data, tiny_recipe, tiny_trainer

from tlkit.recipes.schema import Recipe
from tlkit.train.optim import build_optimizer
from tlkit.train.plan import TrainPlan, ema_momentum
from tlkit.train.state import TrainState, restore_checkpoint


def _averages(trainer):
    optimizer = trainer.model.optimizer
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return [np.array(v) for v in optimizer._model_variables_moving_average]


def test_the_momentum_defaults_to_about_one_epoch_of_steps():
    on = Recipe.model_validate({"train": {"ema": {"enabled": True}, "batch_size": 10}})
    assert TrainPlan.from_recipe(on, train_images=1000).ema_momentum == pytest.approx(0.99)
    assert TrainPlan.from_recipe(on, train_images=40).ema_momentum == pytest.approx(0.9)  # >= 10
    assert TrainPlan.from_recipe(on, train_images=10**6).ema_momentum == pytest.approx(0.999)
    off = Recipe.model_validate({"train": {"batch_size": 10}})
    assert TrainPlan.from_recipe(off, train_images=1000).ema_momentum is None
    own = Recipe.model_validate({"train": {"ema": {"enabled": True, "momentum": 0.5}}})
    assert ema_momentum(own.train.ema, 3) == 0.5


def test_fit_does_not_overwrite_the_weights_with_their_average():
    """Keras' fit ends with finalize_variable_values (weights := average): tlkit fits one epoch
    per call, so its EMA optimizer must not."""
    x, y = tiny_data(16)
    cfg = Recipe.model_validate({"train": {"optimizer": {"lr": 0.05}}}).train.optimizer
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=build_optimizer(cfg, ema_momentum=0.9), loss="categorical_crossentropy")
    model.fit(x / 255, y, epochs=2, batch_size=4, verbose=0)
    weights = [np.array(v) for v in model.trainable_variables]
    average = [np.array(v) for v in model.optimizer._model_variables_moving_average]
    assert model.optimizer.use_ema
    assert not np.allclose(weights[0], average[0])  # still the trained weights


def test_validation_and_model_keras_use_the_average(tmp_path):
    recipe = tiny_recipe(epochs=3, ema={"enabled": True, "momentum": 0.8},
                         optimizer={"name": "sgd", "lr": 0.05}, monitor="val_loss")
    trainer = tiny_trainer(tmp_path, recipe)
    state = trainer.run()
    average, trained = _averages(trainer), [np.array(v) for v in trainer.model.trainable_variables]
    assert not np.allclose(average[0], trained[0])  # the model trains on its own weights
    saved = keras.models.load_model(tmp_path / "model.keras")
    if state.best_epoch == 3:  # the last epoch's average is what model.keras holds
        for got, want in zip(saved.trainable_variables, average, strict=True):
            np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-6)
    # the logged validation loss of the best epoch is the saved (average's) model's, which
    # differs from the trained weights' loss
    x, y = tiny_data(24)
    best_row = state.history[state.best_epoch - 1]
    loss = keras.losses.CategoricalCrossentropy()
    saved_loss = float(loss(y[:8], saved.predict(x[:8], verbose=0)))
    assert saved_loss == pytest.approx(best_row["val_loss"], rel=1e-4)
    if state.best_epoch == 3:
        trained_loss = float(loss(y[:8], trainer.model.predict(x[:8], verbose=0)))
        assert abs(trained_loss - saved_loss) > 1e-4


def test_without_ema_nothing_is_swapped(tmp_path):
    trainer = tiny_trainer(tmp_path, tiny_recipe(epochs=1))
    trainer.run()
    assert trainer.ema is None and not trainer.model.optimizer.use_ema
    saved = keras.models.load_model(tmp_path / "model.keras")
    for got, want in zip(saved.trainable_variables, trainer.model.trainable_variables, strict=True):
        np.testing.assert_array_equal(np.array(got), np.array(want))


def test_the_checkpoint_holds_the_average(tmp_path):
    """The average is optimizer state: a checkpoint holds it, so a resumed run goes on
    averaging from where it was, not from the trained weights."""
    recipe = tiny_recipe(epochs=1, ema={"enabled": True, "momentum": 0.8},
                         optimizer={"name": "sgd", "lr": 0.05})
    first = tiny_trainer(tmp_path, recipe)
    first.run()
    average = _averages(first)
    again = tiny_trainer(tmp_path / "again", recipe)
    again.prepare_stage(0, again.stages[0])
    assert not np.allclose(_averages(again)[0], average[0])
    restore_checkpoint(tmp_path, TrainState.load(tmp_path).checkpoint, again.model,
                       again.model.optimizer)
    for got, want in zip(_averages(again), average, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
