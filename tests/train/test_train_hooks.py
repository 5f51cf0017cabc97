"""The trainer's hooks: progress lines, Keras callbacks as hooks, and the plan they read."""

from __future__ import annotations

import csv
import io
import re

import keras
import pytest
from train_helpers import tiny_recipe, tiny_trainer

from tlkit.train.hooks import Hook, Progress, standard_hooks
from tlkit.train.plan import TrainPlan


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _lines(trainer):
    lines: list[str] = []
    trainer.log = lines.append
    return lines


def test_progress_prints_epoch_k_of_n_with_the_time_left(tmp_path):
    trainer = tiny_trainer(tmp_path, tiny_recipe(epochs=3, verbose=2))
    lines = _lines(trainer)
    trainer.run()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert all(re.search(r"loss \d\.\d{4}", line) and "val_accuracy" in line for line in epochs)
    assert "left in the run" in epochs[0] and "left in the run" in epochs[1]
    assert "left in the run" not in epochs[2]  # nothing is left after the last epoch


def test_progress_draws_a_live_line_only_on_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr(Progress, "REFRESH_S", 0.0)
    terminal = Terminal()
    trainer = tiny_trainer(
        tmp_path / "tty", tiny_recipe(epochs=2, verbose=1), hooks=standard_hooks(stream=terminal)
    )
    lines = _lines(trainer)
    trainer.run()
    live = terminal.getvalue()
    assert "\r\033[K" in live and "step 1/3" in live and "left in the epoch" in live
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/2", "2/2"]

    pipe = io.StringIO()  # not a terminal: epoch lines only, nothing drawn
    quiet = tiny_trainer(
        tmp_path / "pipe", tiny_recipe(epochs=1, verbose=1), hooks=standard_hooks(stream=pipe)
    )
    quiet_lines = _lines(quiet)
    quiet.run()
    assert pipe.getvalue() == ""
    assert any(line.startswith("epoch 1/1") for line in quiet_lines)


def test_verbose_0_prints_no_epoch_lines(tmp_path):
    trainer = tiny_trainer(tmp_path, tiny_recipe(epochs=1, verbose=0))
    lines = _lines(trainer)
    trainer.run()
    assert not [line for line in lines if line.startswith("epoch ")]


def test_a_keras_callback_is_a_hook(tmp_path):
    """Any keras.callbacks.Callback runs as a hook: here Keras' own CSVLogger."""
    path = tmp_path / "keras_log.csv"
    hooks = [*standard_hooks(), keras.callbacks.CSVLogger(str(path))]
    trainer = tiny_trainer(tmp_path, tiny_recipe(epochs=2), hooks=hooks)
    state = trainer.run()
    rows = list(csv.DictReader(path.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # the history row's epoch, from 1
    assert {"stage", "lr", "steps", "val_accuracy"} <= set(rows[0])
    assert [float(r["loss"]) for r in rows] == pytest.approx([h["loss"] for h in state.history])


def test_hooks_see_every_step_and_the_learning_rate_follows_the_schedule(tmp_path):
    class Steps(Hook):
        def __init__(self):
            super().__init__()
            self.rates: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            rate = self.trainer.model.optimizer.learning_rate
            self.rates.append(float(keras.ops.convert_to_numpy(rate)))

    recipe = tiny_recipe(epochs=2, schedule={"name": "step", "step_epochs": 1, "factor": 0.1})
    steps = Steps()
    trainer = tiny_trainer(tmp_path, recipe, hooks=[*standard_hooks(), steps])
    trainer.run()
    lr = recipe.train.optimizer.lr
    assert steps.rates == pytest.approx([lr] * 3 + [lr * 0.1] * 3)


def test_the_plan_is_derived_from_the_recipe_once():
    from tlkit.recipes.schema import Recipe

    recipe = Recipe.model_validate(
        {
            "freeze": {
                "stages": [
                    {"policy": "all", "epochs": 2, "lr": 0.01},
                    {"policy": "none", "epochs": 3},
                ]
            },
            "train": {"batch_size": 8, "monitor": "val_loss", "early_stopping": 2},
        }
    )
    plan = TrainPlan.from_recipe(recipe, train_images=20)
    stages = [(s.policy, s.epochs, s.lr) for s in plan.stages]
    assert stages == [("all", 2, 0.01), ("none", 3, 1e-3)]
    assert plan.epochs == 5 and plan.steps_per_epoch == 3 and plan.mode == "min"
    assert plan.early_stopping == 2
    again = TrainPlan.from_recipe(recipe.model_copy(update={"name": "other"}), train_images=20)
    assert again.digest != plan.digest  # the name is part of the recipe
    verbose = recipe.model_copy(update={"train": recipe.train.model_copy(update={"verbose": 0})})
    assert TrainPlan.from_recipe(verbose, train_images=20).digest == plan.digest
    assert plan.for_route("images").digest != plan.for_route("cached features").digest
