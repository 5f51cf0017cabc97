"""The trainer: freeze stages, compile, an epoch loop with checkpoints, resume and NaN guard.

Each epoch runs ``Model.fit`` for one epoch (or, under MultiWorkerMirroredStrategy, tlkit's own
``tf.function`` step under ``strategy.run``, see :mod:`tlkit.train.custom_loop`), then tlkit
records history, saves the best model, checkpoints model and optimizer atomically and commits
``state.json``. Re-running on the same run directory continues from the last checkpoint.
"""

from __future__ import annotations

import hashlib
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from tlkit.errors import TlkitError, UserError
from tlkit.io import atomic_path
from tlkit.train.optim import build_optimizer
from tlkit.train.schedules import PlateauState, learning_rate_at
from tlkit.train.state import (
    TrainState,
    prune_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)

BEST_MODEL = "model.keras"


class TrainingDivergedError(TlkitError):
    """The loss became NaN or infinite (exit code 1)."""


@dataclass
class Stage:
    """One freeze stage: a policy, how many epochs, and the learning rate."""

    policy: str
    epochs: int
    lr: float


def plan_stages(recipe) -> list[Stage]:
    """Stages from ``freeze.stages`` or, without them, one stage of ``train.epochs``."""
    base_lr = recipe.train.optimizer.lr
    if recipe.freeze.stages:
        return [
            Stage(str(s.policy), int(s.epochs), float(s.lr if s.lr is not None else base_lr))
            for s in recipe.freeze.stages
        ]
    return [Stage(str(recipe.freeze.policy), int(recipe.train.epochs), float(base_lr))]


def recipe_digest(recipe) -> str:
    """Fingerprint of what determines training (not where outputs go, not verbosity)."""
    data = recipe.model_dump(mode="json", exclude={"output": True, "description": True})
    data["train"].pop("verbose", None)
    pca = data.get("augment", {}).get("pca_colour")
    if isinstance(pca, dict):
        pca.pop("stats", None)  # computed by the run and stored in its recipe.yaml
    return hashlib.sha1(repr(sorted(_flatten(data))).encode()).hexdigest()[:16]


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        return [kv for k, v in data.items() for kv in _flatten(v, f"{prefix}{k}.")]
    return [(prefix, repr(data))]


def _repeat_labels(dataset, outputs: int):
    """``(x, y[, w])`` to ``(x, (y,) * outputs[, w])`` for a model with auxiliary outputs."""
    if dataset is None:
        return None

    def repeat(x, y, *rest):
        return (x, tuple(y for _ in range(outputs)), *rest)

    return dataset.map(repeat)


def _main_output_logs(logs: dict[str, float], main: str | None) -> dict[str, float]:
    """Keras names a multi-output model's metrics ``<output>_accuracy``: keep the main ones."""
    if main is None:
        return logs
    out = {}
    for key, value in logs.items():
        prefix = "val_" if key.startswith("val_") else ""
        bare = key[len(prefix):]
        if bare.startswith(main + "_"):
            out[prefix + bare[len(main) + 1:]] = value
        elif bare == "loss" or "_" not in bare:
            out.setdefault(key, value)
        else:
            out[key] = value
    return out


class _LearningRate(keras.callbacks.Callback):
    """Sets the optimizer's rate before every batch from the global step and plateau scale."""

    def __init__(self, rate_at: Callable[[int], float], first_step: int):
        super().__init__()
        self.rate_at = rate_at
        self.step = first_step

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate_at(self.step))
        self.step += 1


class Trainer:
    """Runs the stages of a recipe on a built model.

    Args:
        model: The transfer model (built inside ``strategy.scope()``).
        info: Registry entry of the backbone (freeze groups).
        recipe: The resolved recipe.
        strategy: A ``tf.distribute`` strategy.
        run_dir: Where checkpoints, state and the best model go.
        train_ds, val_ds: ``tf.data`` datasets of ``(images, one-hot labels[, weights])``.
        steps_per_epoch: Batches in one training epoch.
        train_images_per_class: For the ``auto`` freeze policy.
        log: Where messages go.
        chief: Whether this process writes files (multi-worker: worker 0 only).
        inference_model: Callable returning the model to save as ``model.keras``.
    """

    def __init__(
        self,
        model,
        *,
        info,
        recipe,
        strategy,
        run_dir: Path,
        train_ds,
        val_ds,
        steps_per_epoch: int,
        train_images_per_class: float,
        log: Callable[[str], None] = print,
        chief: bool = True,
        inference_model: Callable[[], Any] | None = None,
    ):
        self.model = model
        self.info = info
        self.recipe = recipe
        self.strategy = strategy
        self.run_dir = Path(run_dir)
        self.train_ds = train_ds
        self.val_ds = val_ds
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.train_images_per_class = train_images_per_class
        self.log = log
        self.chief = chief
        from tlkit.models.heads import inference_model as main_output_model

        self.inference_model = inference_model or (lambda: main_output_model(model))
        self.outputs = len(model.outputs)
        if self.outputs > 1:  # auxiliary classifiers: the same labels for every output
            train_ds, val_ds = _repeat_labels(train_ds, self.outputs), _repeat_labels(
                val_ds, self.outputs)
            self.train_ds, self.val_ds = train_ds, val_ds
        self.stages = plan_stages(recipe)
        self.decisions: list[Any] = []
        self.used_custom_loop = self._needs_custom_loop()

    # ----------------------------------------------------------------- public

    def run(self, resume: bool = True) -> TrainState:
        """Train every stage; continue from ``state.json`` when ``resume`` and it exists."""
        digest = recipe_digest(self.recipe)
        state = TrainState.load(self.run_dir) if resume else None
        if state is not None and state.recipe_digest not in (None, digest):
            raise UserError(
                f"{self.run_dir} holds an unfinished run of a different recipe; pass "
                "--overwrite to start again there, or choose another --output"
            )
        if state is None:
            state = TrainState(recipe_digest=digest)
        elif state.finished:
            self.log(f"{self.run_dir}: this run already finished ({state.epoch} epochs)")
            return state
        elif state.checkpoint:
            self.log(
                f"resuming {self.run_dir} after epoch {state.epoch} "
                f"(stage {state.stage + 1} of {len(self.stages)})"
            )
        monitor = self.recipe.train.monitor
        mode = "max" if monitor.endswith("accuracy") else "min"
        for stage_index in range(state.stage, len(self.stages)):
            stage = self.stages[stage_index]
            optimizer = self._prepare_stage(stage_index, stage)
            if state.checkpoint:
                same_stage = state.stage == stage_index and state.stage_epoch > 0
                self._restore(state, optimizer, with_optimizer=same_stage)
            plateau = PlateauState(**state.plateau) if state.plateau else PlateauState()
            while state.stage_epoch < stage.epochs:
                logs = self._run_epoch(state, stage, plateau)
                self._after_epoch(state, stage_index, logs, plateau, monitor, mode)
                if self._early_stop(state):
                    break
            state.stage, state.stage_epoch, state.plateau = stage_index + 1, 0, {}
            if state.stopped_early:
                break
        state.finished = True
        if self.chief:
            state.save(self.run_dir)
        return state

    # ----------------------------------------------------------------- stages

    def _prepare_stage(self, index: int, stage: Stage):
        from tlkit.freeze import (
            apply_freeze,
            apply_lr_multipliers,
            freeze_table,
            variable_multipliers,
        )

        with self.strategy.scope():
            decision = apply_freeze(
                self.model,
                self.info,
                stage.policy,
                train_images_per_class=self.train_images_per_class,
                config=self.recipe.freeze,
            )
            self.decisions.append(decision)
            title = f"stage {index + 1}/{len(self.stages)}: " if len(self.stages) > 1 else ""
            self.log(f"{title}{decision.message}")
            self.log(freeze_table(self.model, self.info).format())
            optimizer = build_optimizer(self.recipe.train.optimizer, stage.lr)
            if self.recipe.freeze.lr_multipliers:
                apply_lr_multipliers(
                    optimizer,
                    variable_multipliers(self.model, self.info, self.recipe.freeze.lr_multipliers),
                )
            loss = keras.losses.CategoricalCrossentropy(
                label_smoothing=self.recipe.train.label_smoothing
            )
            classes = int(self.model.outputs[0].shape[-1])
            metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
            if classes > 5:
                metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
            extra = {}
            if self.outputs > 1:
                aux = self.recipe.train.aux_loss_weight
                loss = [loss] * self.outputs
                extra["loss_weights"] = [1.0] + [aux] * (self.outputs - 1)
                metrics = [metrics] + [[] for _ in range(self.outputs - 1)]
            self.model.compile(
                optimizer=optimizer,
                loss=loss,
                metrics=metrics,
                jit_compile=bool(self.recipe.train.jit_compile),
                **extra,
            )
            optimizer.build(self.model.trainable_variables)
        if self.used_custom_loop:
            from tlkit.train.custom_loop import CustomLoop

            self._custom = CustomLoop(
                self.model, self.model.optimizer, self.recipe.train.label_smoothing,
                self.strategy, loss_weights=extra.get("loss_weights"),
            )
        return optimizer

    def _restore(self, state: TrainState, optimizer, with_optimizer: bool) -> None:
        if with_optimizer:
            restore_checkpoint(self.run_dir, state.checkpoint, self.model, optimizer)
        else:
            self.model.load_weights(self.run_dir / "checkpoints" / state.checkpoint / "model.weights.h5")

    def _needs_custom_loop(self) -> bool:
        import tensorflow as tf

        return isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)

    # ----------------------------------------------------------------- epochs

    def _rate_fn(self, stage: Stage, plateau: PlateauState) -> Callable[[int], float]:
        cfg = self.recipe.train.schedule
        steps, epochs = self.steps_per_epoch, stage.epochs
        return lambda step: learning_rate_at(cfg, stage.lr, step, steps, epochs) * plateau.scale

    def _run_epoch(self, state: TrainState, stage: Stage, plateau: PlateauState) -> dict:
        rate_at = self._rate_fn(stage, plateau)
        first_step = state.stage_epoch * self.steps_per_epoch
        if self.used_custom_loop:
            logs = self._custom.run_epoch(
                self.train_ds, self.val_ds, rate_at, first_step, state.epoch, self.log
            )
        else:
            verbose = self.recipe.train.verbose
            if verbose == 1 and not sys.stdout.isatty():
                verbose = 2
            warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")
            # File datasets have unknown cardinality; the end of one is the end of the epoch.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            history = self.model.fit(
                self.train_ds,
                validation_data=self.val_ds,
                epochs=state.epoch + 1,
                initial_epoch=state.epoch,
                callbacks=[_LearningRate(rate_at, first_step), keras.callbacks.TerminateOnNaN()],
                verbose=verbose,
            )
            logs = _main_output_logs(
                {k: float(v[-1]) for k, v in history.history.items() if v},
                self.model.output_names[0] if self.outputs > 1 else None,
            )
        logs["lr"] = float(rate_at(first_step + self.steps_per_epoch - 1))
        if not math.isfinite(logs.get("loss", float("nan"))):
            where = (
                f"the last good checkpoint ({state.checkpoint}) is kept"
                if state.checkpoint
                else "no epoch had finished, so there is no checkpoint"
            )
            raise TrainingDivergedError(
                f"the training loss became {logs.get('loss')} in epoch {state.epoch + 1}; {where} "
                f"in {self.run_dir}. Lower the learning rate (train.optimizer.lr) or add "
                "gradient clipping (train.optimizer.clipnorm)."
            )
        return logs

    def _after_epoch(self, state, stage_index, logs, plateau, monitor, mode) -> None:
        state.epoch += 1
        state.stage_epoch += 1
        state.history.append({"epoch": state.epoch, "stage": stage_index + 1, **logs})
        value = logs.get(monitor)
        if value is not None and math.isfinite(value):
            better = state.best is None or (value > state.best if mode == "max" else value < state.best)
            if better:
                state.best, state.best_epoch = float(value), state.epoch
                state.epochs_without_improvement = 0
                if self.chief:
                    self.save_best()
            else:
                state.epochs_without_improvement += 1
            if self.recipe.train.schedule.name == "plateau":
                sched = self.recipe.train.schedule
                min_scale = sched.min_lr / max(self.stages[stage_index].lr, 1e-12)
                if plateau.update(value, mode=mode, factor=sched.factor,
                                  patience=sched.patience, min_scale=min_scale):
                    self.log(f"{monitor} stalled: learning rate x{plateau.scale:g}")
        state.plateau = plateau.as_dict()
        if self.chief:
            name = f"epoch-{state.epoch:04d}"
            save_checkpoint(self.run_dir, name, self.model, self.model.optimizer)
            state.checkpoint = name
            state.save(self.run_dir)
            prune_checkpoints(self.run_dir, keep=name)
            self.write_history(state)
        else:
            state.checkpoint = f"epoch-{state.epoch:04d}"

    def _early_stop(self, state: TrainState) -> bool:
        patience = self.recipe.train.early_stopping
        if patience and state.epochs_without_improvement >= patience:
            self.log(
                f"early stopping: no improvement in {patience} epochs "
                f"(best {state.best:.4f} at epoch {state.best_epoch})"
            )
            state.stopped_early = True
            return True
        return False

    # ----------------------------------------------------------------- outputs

    def save_best(self) -> None:
        with atomic_path(self.run_dir / BEST_MODEL) as tmp:
            self.inference_model().save(tmp)

    def write_history(self, state: TrainState) -> None:
        from tlkit.reports import write_history_csv

        write_history_csv(self.run_dir / "history.csv", state.history)
