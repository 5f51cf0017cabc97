"""The trainer: the stages of a :class:`~tlkit.train.plan.TrainPlan`, epoch by epoch, resumable.

For each stage the trainer asks its :class:`~tlkit.freeze.freezer.Freezer` to apply the stage's
policy, builds the optimizer and compiles; then it runs the stage's epochs, each with
``Model.fit`` for one epoch (or, under MultiWorkerMirroredStrategy, tlkit's own ``tf.function``
step under ``strategy.run``, see :mod:`tlkit.train.custom_loop`). What happens around the steps
and epochs (the learning rate, the NaN guard, the best model, early stopping, checkpoints,
history, TensorBoard, the progress line) is done by hooks (:mod:`tlkit.train.hooks`).

``state.json`` is the commit point (:mod:`tlkit.train.state`): re-running on the same run
directory continues from the last checkpoint, at the step where it was taken.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tlkit.errors import TlkitError, UserError
from tlkit.freeze.lr import apply_lr_multipliers
from tlkit.interrupts import STOP
from tlkit.io import atomic_path
from tlkit.models.heads import inference_model as main_output_model
from tlkit.rundir import RunDir
from tlkit.train.custom_loop import CustomLoop
from tlkit.train.hooks import standard_hooks, weights_are_finite
from tlkit.train.optim import build_optimizer
from tlkit.train.plan import Stage, TrainPlan
from tlkit.train.state import (
    TrainState,
    prune_checkpoints,
    restore_checkpoint,
    restore_random_state,
    save_checkpoint,
)
from tlkit.train.strategy import build_from_first_replica, describe_strategy
from tlkit.train.workers import ChiefAgreement

BEST_MODEL = RunDir.MODEL


class TrainingDivergedError(TlkitError):
    """The loss became NaN or infinite (exit code 1)."""


@dataclass
class Datasets:
    """``tf.data`` datasets of ``(inputs, one-hot labels[, sample weights])``, batched by the
    global batch size; ``val`` may be None."""

    train: tf.data.Dataset
    val: tf.data.Dataset | None = None


class Trainer:
    """Runs a plan's stages on a built model.

    Every worker checkpoints into its own ``run_dir`` (MultiWorkerMirroredStrategy's rule: all
    workers save, non-chief ones into their own folder); only the chief writes the best model
    and the history.

    Args:
        model: The model to fit (built inside ``strategy.scope()``).
        plan: What to train and how.
        datasets: Training and validation data for ``model``.
        run_dir: Where checkpoints, state and the best model go.
        hooks: Callbacks run around steps and epochs, in order; default
            :func:`~tlkit.train.hooks.standard_hooks`.
        strategy: A ``tf.distribute`` strategy (default: the current one).
        freezer: Applies each stage's freeze policy (a :class:`~tlkit.freeze.Freezer`); without
            one, the model trains as its ``trainable`` flags are.
        inference_model: Returns the model to save as ``model.keras`` (default: ``model``
            without auxiliary outputs).
        chief: Whether this process writes the run's outputs (multi-worker: worker 0 only).
        log: Where messages go.
    """

    def __init__(
        self,
        model: keras.Model,
        plan: TrainPlan,
        datasets: Datasets,
        run_dir: str | Path,
        hooks: Sequence[keras.callbacks.Callback] | None = None,
        *,
        strategy=None,
        freezer=None,
        inference_model: Callable[[], keras.Model] | None = None,
        chief: bool = True,
        log: Callable[[str], None] = print,
    ):
        self.model, self.plan, self.run_dir = model, plan, Path(run_dir)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.freezer, self.chief, self.log = freezer, chief, log
        self.inference_model = inference_model or (lambda: main_output_model(model))
        self.outputs = len(model.outputs)
        self.train_ds = _repeat_labels(datasets.train, self.outputs)
        self.val_ds = _repeat_labels(datasets.val, self.outputs)
        self.hooks = list(standard_hooks() if hooks is None else hooks)
        for hook in self.hooks:
            hook.set_model(model)
            if hasattr(hook, "bind"):
                hook.bind(self)
        self.used_custom_loop = isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)
        self.replicas = int(self.strategy.num_replicas_in_sync)
        self.decisions: list[Any] = []
        self.state = TrainState(recipe_digest=plan.digest)
        self.stage_index, self.stage = 0, plan.stages[0]
        self.ema = None  # keras.callbacks.SwapEMAWeights when train.ema is on (prepare_stage)
        self.steps_done = 0  # steps of the current epoch, a resumed epoch's skipped ones included
        self.stop_training = False
        # multi-worker resume: some worker's checkpoint differed from the chief's, so the chief
        # sends its variables to all after restoring (adopted: this worker is one of those)
        self.weights_from_chief = self.adopted = False

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.plan.stages

    # ----------------------------------------------------------------- public

    def run(self, resume: bool = True) -> TrainState:
        """Train every stage; continue from ``state.json`` when ``resume`` and it exists."""
        state = self.state = self._initial_state(resume)
        if state.finished:
            self.log(f"{self.run_dir}: training already finished ({state.epoch} epochs)")
            return state
        self.log(describe_strategy(self.strategy, self.plan.batch_size))
        self._call("on_train_begin")
        # Ctrl-C / SIGTERM stop at a step boundary with a checkpoint there. Not for one worker
        # of several: it would stop alone, and the others wait for it in a collective.
        with STOP.armed_while() if not self.used_custom_loop else contextlib.nullcontext():
            self._run_stages(state)
        state.finished = True
        state.save(self.run_dir)
        self._call("on_train_end")
        return state

    def _run_stages(self, state: TrainState) -> None:
        restored = not state.checkpoint  # a fresh run has its weights in memory already
        for index in range(state.stage, len(self.stages)):
            self.prepare_stage(index, self.stages[index])
            if state.checkpoint and not restored:
                same_stage = state.stage == index and (state.stage_epoch or state.step_in_epoch)
                self._restore(state, with_optimizer=bool(same_stage))
                self._advance_shuffles(state.epoch)
                restored = True
            for hook in self.hooks:
                getattr(hook, "on_stage_begin", lambda i: None)(index)
            while state.stage_epoch < self.stage.epochs and not self.stop_training:
                self._run_epoch()
            state.stage, state.stage_epoch, state.plateau = index + 1, 0, {}
            if self.stop_training:
                break

    def _advance_shuffles(self, epochs: int) -> None:
        """Put the data's shuffles where an uninterrupted run has them after ``epochs`` epochs:
        a reshuffling ``shuffle`` draws an order per iterator made, afresh in a new process, and
        every epoch makes one, so ``epochs`` iterators made unread give the next epoch its order
        (checked bit for bit in tests/reliability/test_kill_points.py)."""
        for _ in range(epochs):
            iter(self.train_ds)

    def commit(self, name: str, when: str, check: bool = True) -> None:
        """Checkpoint model and optimizer, then point ``state.json`` at it (the commit point)."""
        if check and not weights_are_finite(self.model):
            raise self.diverged(f"the weights became NaN or infinite {when}")
        save_checkpoint(self.run_dir, name, self.model, self.model.optimizer)
        self.state.checkpoint = name
        self.state.save(self.run_dir)
        prune_checkpoints(self.run_dir, keep=name)

    def save_model(self) -> None:
        """Write the inference model to ``model.keras`` atomically (with ``train.ema``, the
        weights' average)."""
        with self.averaged_weights(), atomic_path(self.run_dir / BEST_MODEL) as tmp:
            self.inference_model().save(tmp)

    @contextlib.contextmanager
    def averaged_weights(self):
        """With ``train.ema``: the model holds the weights' moving average inside the block,
        its trained weights again after it (else nothing changes)."""
        if self.ema is None:
            yield
            return
        self.ema.on_test_begin()  # Keras' SwapEMAWeights: swap in (its validation hook)
        try:
            yield
        finally:
            self.ema.on_test_end()  # swap back

    def diverged(self, what: str) -> TrainingDivergedError:
        """The error for a run that diverged, saying what is kept and what to change."""
        state = self.state
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

    # ----------------------------------------------------------------- start

    def _initial_state(self, resume: bool) -> TrainState:
        state = TrainState.load(self.run_dir) if resume else None
        problem = None
        if state is not None and state.recipe_digest not in (None, self.plan.digest):
            problem = UserError(
                f"{self.run_dir} holds an unfinished run of a different recipe (or one trained "
                "another way: on images or on cached features); pass --overwrite to start "
                "again there, or choose another --output"
            )
        if self.used_custom_loop:
            state = self._agree_with_chief(state, problem)
        elif problem is not None:
            raise problem
        if state is None:
            return TrainState(recipe_digest=self.plan.digest)
        if state.checkpoint and not state.finished:
            at_step = (
                f", step {state.step_in_epoch} of epoch {state.epoch + 1}"
                if state.step_in_epoch
                else ""
            )
            self.log(
                f"resuming {self.run_dir} after epoch {state.epoch}{at_step} "
                f"(stage {state.stage + 1} of {len(self.stages)}; checkpoint {state.checkpoint})"
            )
        return state

    def _agree_with_chief(self, state: TrainState | None, problem: Exception | None):
        """Multi-worker: every worker starts from the chief's progress (:mod:`.workers`)."""
        self.workers = ChiefAgreement(self.strategy, self.chief, self.run_dir, self.log)
        state = self.workers.agree(state, problem)
        self.weights_from_chief, self.adopted = self.workers.send_weights, self.workers.adopted
        return state

    # ----------------------------------------------------------------- stages

    def prepare_stage(self, index: int, stage: Stage):
        """Freeze, build the optimizer and compile for ``stage`` (the learning-rate range test
        calls it too, to train as the stage would)."""
        self.stage_index, self.stage = index, stage
        plan, multipliers = self.plan, {}
        with self.strategy.scope():
            if self.freezer is not None:
                decision = self.freezer.apply(stage.policy)
                self.decisions.append(decision)
                title = f"stage {index + 1}/{len(self.stages)}: " if len(self.stages) > 1 else ""
                self.log(f"{title}{decision.message}")
                self.log(self.freezer.table())
                multipliers = self.freezer.lr_multipliers()
            optimizer = build_optimizer(plan.optimizer, stage.lr, plan.ema_momentum)
            if multipliers:
                apply_lr_multipliers(optimizer, multipliers)
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=plan.label_smoothing)
            metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
            if int(self.model.outputs[0].shape[-1]) > 5:
                metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
            extra = {}
            if self.outputs > 1:
                loss = [loss] * self.outputs
                extra["loss_weights"] = [1.0] + [plan.aux_loss_weight] * (self.outputs - 1)
                metrics = [metrics] + [[] for _ in range(self.outputs - 1)]
            # Under mixed_float16 compile wraps the optimizer in a LossScaleOptimizer: from here
            # on, model.optimizer (not `optimizer`) is the one to step, save and restore.
            self.model.compile(
                optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=plan.jit_compile,
                **extra,
            )
            self.model.optimizer.build(self.model.trainable_variables)
        # The weights' average (train.ema) is swapped in to validate (before PreciseBatchNorm
        # recomputes the statistics, so they are the average's) and to save model.keras.
        self.ema = None
        if plan.ema_momentum is not None:
            self.ema = keras.callbacks.SwapEMAWeights()
            self.ema.set_model(self.model)
        if self.used_custom_loop:
            self._custom = CustomLoop(
                self.model,
                self.model.optimizer,
                plan.label_smoothing,
                self.strategy,
                loss_weights=extra.get("loss_weights"),
                jit_compile=plan.jit_compile,
            )
        elif self.replicas > 1:
            build_from_first_replica(self.model)
        return self.model.optimizer

    def _restore(self, state: TrainState, with_optimizer: bool) -> None:
        if self.adopted:  # multi-worker: this worker has not got the chief's checkpoint
            pass
        elif with_optimizer:
            restore_checkpoint(self.run_dir, state.checkpoint, self.model, self.model.optimizer)
        else:  # a new stage: its optimizer starts afresh, the file's one is not wanted
            folder = self.run_dir / RunDir.CHECKPOINTS / state.checkpoint
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Skipping variable loading for optim")
                self.model.load_weights(folder / "model.weights.h5")
            restore_random_state(folder, self.model)
        if self.weights_from_chief:
            self.workers.send_variables(self.model, with_optimizer)

    # ----------------------------------------------------------------- epochs

    def _call(self, event: str, *args) -> None:
        for hook in self.hooks:
            getattr(hook, event)(*args)

    def _run_epoch(self) -> dict[str, Any]:
        """One epoch (or what is left of it after a step checkpoint), then the epoch hooks."""
        state, steps = self.state, self.plan.steps_per_epoch
        skip = min(state.step_in_epoch, steps)
        self.steps_done = skip
        train_ds = self.train_ds.skip(skip) if skip else self.train_ds
        if skip:
            self.log(
                f"epoch {state.epoch + 1}: continuing from the step checkpoint, steps "
                f"{skip + 1}..{steps} of {steps}"
            )
        self._call("on_epoch_begin", state.epoch)
        relay = _StepRelay(self)
        callbacks = [relay] if self.ema is None else [self.ema, relay]
        if self.used_custom_loop:
            logs, _ = self._custom.run_epoch(train_ds, self.val_ds, callbacks=callbacks)
        else:
            logs = self._fit_epoch(train_ds, callbacks)
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        logs["steps"] = skip + relay.ran
        if skip:
            logs["resumed_at_step"] = skip
        state.epoch += 1
        state.stage_epoch += 1
        state.step_in_epoch = 0
        row = {"epoch": state.epoch, "stage": self.stage_index + 1, **logs}
        state.history.append(row)
        self._call("on_epoch_end", state.epoch - 1, row)
        if STOP.requested:
            self.stop_now()
        return row

    def stop_now(self) -> None:
        """After Ctrl-C or SIGTERM: checkpoint where the run is (mid-epoch: at this step) and
        raise the interrupt; the same command resumes from here."""
        state, done = self.state, self.steps_done
        if 0 < done < self.plan.steps_per_epoch:
            epoch = state.epoch + 1
            state.step_in_epoch = done
            self.commit(f"epoch-{epoch:04d}-step-{done:06d}", f"at step {done} of epoch {epoch}")
            where = f"at step {done} of epoch {epoch}"
        elif state.checkpoint is None:  # not one step yet: nothing to lose
            where = f"before the first step of epoch {state.epoch + 1}"
        else:  # the epoch-end checkpoint was just committed
            where = f"after epoch {state.epoch}"
        raise STOP.exception(
            f"{where} (checkpoint {state.checkpoint or 'none yet'}); run the same command "
            "again to resume from there"
        )

    def _fit_epoch(self, train_ds, callbacks: list) -> dict[str, float]:
        warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed")
        # File datasets have unknown cardinality; the end of one is the end of the epoch.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = self.model.fit(
            train_ds,
            validation_data=self.val_ds,
            epochs=self.state.epoch + 1,
            initial_epoch=self.state.epoch,
            callbacks=callbacks,
            verbose=0,
        )
        return _main_output_logs(
            {k: float(v[-1]) for k, v in history.history.items() if v},
            self.model.output_names[0] if self.outputs > 1 else None,
        )


class _StepRelay(keras.callbacks.Callback):
    """Passes each training step to the trainer's hooks and counts the steps."""

    def __init__(self, trainer: Trainer):
        super().__init__()
        self.trainer, self.ran = trainer, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.trainer._call("on_train_batch_begin", batch, logs)

    def on_test_begin(self, logs=None):  # validation in Model.fit (PreciseBatchNorm)
        self.trainer._call("on_test_begin", logs)

    def on_train_batch_end(self, batch, logs=None):
        self.ran += 1
        self.trainer.steps_done += 1
        self.trainer._call("on_train_batch_end", batch, logs)
        if STOP.requested and self.trainer.steps_done < self.trainer.plan.steps_per_epoch:
            self.trainer.stop_now()  # (after the epoch's last step: at its end, in _run_epoch)


def _repeat_labels(dataset, outputs: int):
    """``(x, y[, w])`` to ``(x, (y,) * outputs[, w])`` for a model with auxiliary outputs."""
    if dataset is None or outputs == 1:
        return dataset

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
