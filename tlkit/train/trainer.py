"""The trainer: freeze stages, compile, an epoch loop with checkpoints, resume and NaN guard.

Each epoch runs ``Model.fit`` for one epoch (or, under MultiWorkerMirroredStrategy, tlkit's own
``tf.function`` step under ``strategy.run``, see :mod:`tlkit.train.custom_loop`), then tlkit
records history, saves the best model, checkpoints model and optimizer atomically and commits
``state.json``; with ``train.checkpoint_every_steps`` it also commits inside the epoch.
Re-running on the same run directory continues from the last checkpoint. A NaN or infinite loss,
or weights that became so, stop the run before anything is committed.
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
    for key in ("verbose", "strategy", "jit_compile", "checkpoint_every_steps"):
        data["train"].pop(key, None)  # a run may resume on other hardware or checkpoint more often
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
        bare = key[len(prefix) :]
        if bare.startswith(main + "_"):
            out[prefix + bare[len(main) + 1 :]] = value
        elif bare == "loss" or "_" not in bare:
            out.setdefault(key, value)
        else:
            out[key] = value
    return out


class _StepHooks(keras.callbacks.Callback):
    """Per step under ``Model.fit``: set the learning rate, count, commit step checkpoints.

    Args:
        rate_at: Learning rate at a global step of the stage.
        first_step: Global step of the stage at which this epoch (or its remainder) starts.
        on_step: Called with the number of steps done in this process after each finite step.
    """

    def __init__(
        self,
        rate_at: Callable[[int], float],
        first_step: int,
        on_step: Callable[[int], None] | None = None,
    ):
        super().__init__()
        self.rate_at = rate_at
        self.step = first_step
        self.ran = 0
        self.on_step = on_step

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate_at(self.step))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self.ran += 1
        loss = (logs or {}).get("loss")
        if self.on_step is not None and loss is not None and math.isfinite(float(loss)):
            self.on_step(self.ran)


def _build_from_first_replica(model) -> None:
    """Work around Keras 3's first-batch reduce under MirroredStrategy.

    Before every ``fit``/``evaluate`` Keras' TensorFlow trainer averages the replicas' shards
    of the first batch (``strategy.reduce("MEAN", ...)``) only to learn its shapes; with a batch
    that does not split evenly (9 validation images on 2 replicas) that fails with "Inputs to
    operation AddN ... must have the same size and shape" (keras-team/keras#19246). Shapes are
    all it needs, so build from the first replica's shard instead.
    """
    import types

    import tensorflow as tf

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            local = self.distribute_strategy.experimental_local_results
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v,
                    batch,
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)


def weights_are_finite(model) -> bool:
    """True when no weight of ``model`` (trainable or not) holds a NaN or infinity."""
    import tensorflow as tf

    checks = [
        tf.reduce_all(tf.math.is_finite(w.value))
        for w in model.weights
        if w.dtype in ("float16", "bfloat16", "float32", "float64")
    ]
    return bool(tf.reduce_all(tf.stack(checks))) if checks else True


class Trainer:
    """Runs the stages of a recipe on a built model.

    Every worker checkpoints into its own ``run_dir`` (MultiWorkerMirroredStrategy's rule: all
    workers save, non-chief ones into their own folder); only the chief writes the best model and
    the history.

    Args:
        model: The transfer model (built inside ``strategy.scope()``).
        info: Registry entry of the backbone (freeze groups).
        recipe: The resolved recipe.
        strategy: A ``tf.distribute`` strategy.
        run_dir: Where checkpoints, state and the best model go.
        train_ds, val_ds: ``tf.data`` datasets of ``(images, one-hot labels[, weights])``,
            batched by the global batch size.
        steps_per_epoch: Batches in one training epoch.
        train_images_per_class: For the ``auto`` freeze policy.
        log: Where messages go.
        chief: Whether this process writes the run's outputs (multi-worker: worker 0 only).
        inference_model: Callable returning the model to save as ``model.keras``.
        callbacks: Extra Keras callbacks for ``Model.fit`` (not used by the multi-worker loop).
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
        callbacks: list[keras.callbacks.Callback] | None = None,
    ):
        self.model = model
        self.callbacks = list(callbacks or [])
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
            train_ds, val_ds = (
                _repeat_labels(train_ds, self.outputs),
                _repeat_labels(val_ds, self.outputs),
            )
            self.train_ds, self.val_ds = train_ds, val_ds
        self.stages = plan_stages(recipe)
        self.decisions: list[Any] = []
        self.used_custom_loop = self._needs_custom_loop()
        self.replicas = int(strategy.num_replicas_in_sync)

    # ----------------------------------------------------------------- public

    def run(self, resume: bool = True) -> TrainState:
        """Train every stage; continue from ``state.json`` when ``resume`` and it exists."""
        from tlkit.train.strategy import describe_strategy

        digest = recipe_digest(self.recipe)
        state = TrainState.load(self.run_dir) if resume else None
        problem = None
        if state is not None and state.recipe_digest not in (None, digest):
            problem = UserError(
                f"{self.run_dir} holds an unfinished run of a different recipe; pass "
                "--overwrite to start again there, or choose another --output"
            )
        if self.used_custom_loop:
            state = self._agree_with_chief(state, problem)
        elif problem is not None:
            raise problem
        if state is None:
            state = TrainState(recipe_digest=digest)
        elif state.finished:
            self.log(f"{self.run_dir}: this run already finished ({state.epoch} epochs)")
            return state
        elif state.checkpoint:
            at_step = (
                f", step {state.step_in_epoch} of epoch {state.epoch + 1}"
                if state.step_in_epoch
                else ""
            )
            self.log(
                f"resuming {self.run_dir} after epoch {state.epoch}{at_step} "
                f"(stage {state.stage + 1} of {len(self.stages)}; checkpoint {state.checkpoint})"
            )
        self.log(describe_strategy(self.strategy, self.recipe.train.batch_size))
        monitor = self.recipe.train.monitor
        mode = "max" if monitor.endswith("accuracy") else "min"
        restored = False
        for stage_index in range(state.stage, len(self.stages)):
            stage = self.stages[stage_index]
            self._prepare_stage(stage_index, stage)
            if state.checkpoint and not restored:
                same_stage = state.stage == stage_index and (
                    state.stage_epoch > 0 or state.step_in_epoch > 0
                )
                self._restore(state, with_optimizer=same_stage)
                restored = True
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
            # Under mixed_float16 compile wraps the optimizer in a LossScaleOptimizer: from here
            # on, model.optimizer (not `optimizer`) is the one to step, save and restore.
            self.model.compile(
                optimizer=optimizer,
                loss=loss,
                metrics=metrics,
                jit_compile=bool(self.recipe.train.jit_compile),
                **extra,
            )
            self.model.optimizer.build(self.model.trainable_variables)
        if self.used_custom_loop:
            from tlkit.train.custom_loop import CustomLoop

            self._custom = CustomLoop(
                self.model,
                self.model.optimizer,
                self.recipe.train.label_smoothing,
                self.strategy,
                loss_weights=extra.get("loss_weights"),
                jit_compile=bool(self.recipe.train.jit_compile),
            )
        elif self.replicas > 1:
            _build_from_first_replica(self.model)
        return self.model.optimizer

    def _restore(self, state: TrainState, with_optimizer: bool) -> None:
        if with_optimizer:
            restore_checkpoint(self.run_dir, state.checkpoint, self.model, self.model.optimizer)
        else:
            self.model.load_weights(
                self.run_dir / "checkpoints" / state.checkpoint / "model.weights.h5"
            )

    def _needs_custom_loop(self) -> bool:
        import tensorflow as tf

        return isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def _agree_with_chief(self, state: TrainState | None, problem: Exception | None):
        """Multi-worker: every worker must start from the chief's checkpoint, or all stop.

        A worker whose own progress differs from the chief's drops it when the chief starts
        afresh; otherwise every worker raises, so none waits forever in a collective.
        """
        import numpy as np
        import tensorflow as tf

        def progress(s):
            if s is None:
                return np.zeros(3, np.float32)
            return np.array([s.epoch, s.step_in_epoch, float(s.finished)], np.float32)

        try:
            local_replicas = max(1, len(self.strategy.extended.worker_devices))
        except RuntimeError:  # the default strategy has one replica and no device list
            local_replicas = 1

        @tf.function
        def total(values):
            per_replica = self.strategy.run(lambda: tf.identity(values / local_replicas))
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        mine = progress(state)
        chief = np.rint(total(tf.constant(mine if self.chief else np.zeros(3, np.float32))).numpy())
        if not np.array_equal(chief, mine):
            if not chief.any():
                if state is not None:
                    self.log(
                        f"{self.run_dir}: the chief starts afresh; this worker's earlier "
                        "progress is dropped"
                    )
                state, problem = None, None
            elif problem is None:
                problem = TlkitError(
                    f"this worker's checkpoint in {self.run_dir} (epoch {int(mine[0])}, step "
                    f"{int(mine[1])}) differs from the chief's (epoch {int(chief[0])}, step "
                    f"{int(chief[1])}); start again on every worker with --overwrite"
                )
        failed = float(total(tf.constant([float(problem is not None), 0.0, 0.0]))[0].numpy())
        if problem is not None:
            raise problem
        if failed > 0:
            raise TlkitError(
                "another worker cannot resume from the chief's checkpoint (see its "
                "log); stopping every worker"
            )
        return state

    # ----------------------------------------------------------------- epochs

    def _rate_fn(self, stage: Stage, plateau: PlateauState) -> Callable[[int], float]:
        cfg = self.recipe.train.schedule
        steps, epochs = self.steps_per_epoch, stage.epochs
        return lambda step: learning_rate_at(cfg, stage.lr, step, steps, epochs) * plateau.scale

    def _step_hook(self, state: TrainState, skip: int) -> Callable[[int], None] | None:
        every = self.recipe.train.checkpoint_every_steps
        if not every:
            return None

        def on_step(ran: int) -> None:
            done = skip + ran
            if done % every == 0 and done < self.steps_per_epoch:
                state.step_in_epoch = done
                self._commit(
                    state,
                    f"epoch-{state.epoch + 1:04d}-step-{done:06d}",
                    f"at step {done} of epoch {state.epoch + 1}",
                )

        return on_step

    def _run_epoch(self, state: TrainState, stage: Stage, plateau: PlateauState) -> dict:
        rate_at = self._rate_fn(stage, plateau)
        skip = min(state.step_in_epoch, self.steps_per_epoch)
        first_step = state.stage_epoch * self.steps_per_epoch + skip
        train_ds = self.train_ds.skip(skip) if skip else self.train_ds
        if skip:
            self.log(
                f"epoch {state.epoch + 1}: continuing from the step checkpoint, steps "
                f"{skip + 1}..{self.steps_per_epoch} of {self.steps_per_epoch}"
            )
        on_step = self._step_hook(state, skip)
        if self.used_custom_loop:
            logs, ran = self._custom.run_epoch(
                train_ds, self.val_ds, rate_at, first_step, state.epoch, self.log, on_step=on_step
            )
        else:
            verbose = self.recipe.train.verbose
            if verbose == 1 and not sys.stdout.isatty():
                verbose = 2
            warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")
            # File datasets have unknown cardinality; the end of one is the end of the epoch.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            hooks = _StepHooks(rate_at, first_step, on_step)
            history = self.model.fit(
                train_ds,
                validation_data=self.val_ds,
                epochs=state.epoch + 1,
                initial_epoch=state.epoch,
                callbacks=[keras.callbacks.TerminateOnNaN(), hooks, *self.callbacks],
                verbose=verbose,
            )
            ran = hooks.ran
            logs = _main_output_logs(
                {k: float(v[-1]) for k, v in history.history.items() if v},
                self.model.output_names[0] if self.outputs > 1 else None,
            )
        last = state.stage_epoch * self.steps_per_epoch + self.steps_per_epoch - 1
        logs["lr"] = float(rate_at(last))
        logs["steps"] = skip + ran
        if skip:
            logs["resumed_at_step"] = skip
        loss = logs.get("loss", float("nan"))
        if not math.isfinite(loss):
            raise self._diverged(
                state, f"the training loss became {loss} in epoch {state.epoch + 1}"
            )
        return logs

    def _diverged(self, state: TrainState, what: str) -> TrainingDivergedError:
        where = (
            f"the last good checkpoint ({state.checkpoint}) is kept"
            if state.checkpoint
            else "no checkpoint had been written yet"
        )
        best = f", and {BEST_MODEL} from epoch {state.best_epoch}" if state.best_epoch else ""
        return TrainingDivergedError(
            f"{what}; {where}{best} in {self.run_dir}. Lower the learning rate "
            "(train.optimizer.lr) or add gradient clipping (train.optimizer.clipnorm)."
        )

    def _commit(self, state: TrainState, name: str, when: str, check: bool = True) -> None:
        """Checkpoint model and optimizer, then point ``state.json`` at it (the commit point)."""
        if check and not weights_are_finite(self.model):
            raise self._diverged(state, f"the weights became NaN or infinite {when}")
        save_checkpoint(self.run_dir, name, self.model, self.model.optimizer)
        state.checkpoint = name
        state.save(self.run_dir)
        prune_checkpoints(self.run_dir, keep=name)

    def _after_epoch(self, state, stage_index, logs, plateau, monitor, mode) -> None:
        if not weights_are_finite(self.model):
            raise self._diverged(
                state, f"the weights became NaN or infinite in epoch {state.epoch + 1}"
            )
        state.epoch += 1
        state.stage_epoch += 1
        state.step_in_epoch = 0
        state.history.append({"epoch": state.epoch, "stage": stage_index + 1, **logs})
        value = logs.get(monitor)
        if value is not None and math.isfinite(value):
            better = state.best is None or (
                value > state.best if mode == "max" else value < state.best
            )
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
                if plateau.update(
                    value,
                    mode=mode,
                    factor=sched.factor,
                    patience=sched.patience,
                    min_scale=min_scale,
                ):
                    self.log(f"{monitor} stalled: learning rate x{plateau.scale:g}")
        state.plateau = plateau.as_dict()
        self._commit(state, f"epoch-{state.epoch:04d}", f"after epoch {state.epoch}", check=False)
        if self.chief:
            self.write_history(state)

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
        self._write_tensorboard(state.history[-1])

    def _write_tensorboard(self, row: dict) -> None:
        """Per-epoch scalars for TensorBoard (``tensorboard --logdir RUN/tensorboard``).

        Written when the ``tensorboard`` package is installed (``pip install tlkit[tensorboard]``;
        TensorFlow 2.21 no longer brings it); otherwise skipped with one note.
        """
        import importlib.util

        import tensorflow as tf

        if getattr(self, "_tb_writers", None) is False:
            return
        if importlib.util.find_spec("tensorboard") is None:
            self.log("TensorBoard logs skipped: the tensorboard package is not installed "
                     "(pip install 'tlkit[tensorboard]'); history.csv has the same numbers")
            self._tb_writers = False
            return
        if getattr(self, "_tb_writers", None) is None:
            root = self.run_dir / "tensorboard"
            self._tb_writers = {
                "train": tf.summary.create_file_writer(str(root / "train")),
                "validation": tf.summary.create_file_writer(str(root / "validation")),
            }
        step = int(row["epoch"])
        for key, value in row.items():
            if key in ("epoch", "stage") or not isinstance(value, (int, float)):
                continue
            split = "validation" if key.startswith("val_") else "train"
            name = key[4:] if key.startswith("val_") else key
            with self._tb_writers[split].as_default():
                tf.summary.scalar(name, float(value), step=step)
        for writer in self._tb_writers.values():
            writer.flush()
