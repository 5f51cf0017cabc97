"""Trainer hooks: NaN guard, best model, progress, learning rate, early stopping, checkpoints,
history and TensorBoard.

A hook is a ``keras.callbacks.Callback``: the trainer calls ``on_train_begin``,
``on_epoch_begin``, ``on_train_batch_begin``, ``on_train_batch_end``, ``on_epoch_end`` and
``on_train_end`` on every hook in order, under ``Model.fit`` and under the multi-worker custom
loop alike, so any Keras callback can be a hook too. tlkit's hooks subclass :class:`Hook`,
which also gets ``on_stage_begin`` and the :class:`~tlkit.train.trainer.Trainer` it serves
(``self.trainer``): its ``state`` (:class:`~tlkit.train.state.TrainState`, what a resumed run
continues from), ``plan``, ``stage``, ``steps_done`` in the current epoch, ``run_dir``,
``chief``, ``log``, and ``commit``, ``save_model`` and ``diverged``.

The epoch-end order matters and is :func:`standard_hooks`' order: nothing is committed after a
NaN; the best model is known before the progress line and the plateau and early-stopping
decisions; the checkpoint commits all of their state at once.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from typing import IO, Any

import keras
import tensorflow as tf

from tlkit.evaluation.tables import write_history_csv
from tlkit.rundir import RunDir
from tlkit.train.schedules import PlateauState, learning_rate_at


class Hook(keras.callbacks.Callback):
    """A Keras callback that knows the trainer it runs in (``self.trainer``)."""

    def __init__(self):
        super().__init__()
        self.trainer: Any = None

    def bind(self, trainer) -> None:
        self.trainer = trainer

    def on_stage_begin(self, stage_index: int) -> None:
        """Called after a stage is compiled (and a checkpoint restored), before its epochs."""


def weights_are_finite(model) -> bool:
    """True when no weight of ``model`` (trainable or not) holds a NaN or infinity."""
    checks = [
        tf.reduce_all(tf.math.is_finite(w.value))
        for w in model.weights
        if w.dtype in ("float16", "bfloat16", "float32", "float64")
    ]
    return bool(tf.reduce_all(tf.stack(checks))) if checks else True


class NaNGuard(Hook):
    """Stop at the first non-finite loss, and at weights that became NaN or infinite.

    Raises the trainer's :class:`~tlkit.train.trainer.TrainingDivergedError` (exit code 1)
    before anything of the bad step or epoch is committed.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            epoch = self.trainer.state.epoch + 1
            raise self.trainer.diverged(f"the training loss became {float(loss)} in epoch {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", float("nan")))
        if not math.isfinite(loss):
            raise self.trainer.diverged(f"the training loss became {loss} in epoch {epoch + 1}")
        if not weights_are_finite(self.trainer.model):
            raise self.trainer.diverged(
                f"the weights became NaN or infinite in epoch {epoch + 1}"
            )


class BestModel(Hook):
    """Track the monitored value; the chief saves the model at every improvement."""

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        state, plan = t.state, t.plan
        value = (logs or {}).get(plan.monitor)
        if value is None or not math.isfinite(value):
            return
        better = state.best is None or (
            value > state.best if plan.mode == "max" else value < state.best
        )
        if better:
            state.best, state.best_epoch = float(value), state.epoch
            state.epochs_without_improvement = 0
            if t.chief:
                t.save_model()
        else:
            state.epochs_without_improvement += 1


class LearningRate(Hook):
    """The learning rate of every step from the plan's schedule, computed from the step, so a
    resumed run continues exactly; ``plateau`` also divides it when the monitor stalls."""

    def __init__(self):
        super().__init__()
        self.plateau = PlateauState()

    def on_stage_begin(self, stage_index):
        saved = self.trainer.state.plateau
        self.plateau = PlateauState(**saved) if saved else PlateauState()

    def rate(self, step: int) -> float:
        t = self.trainer
        cfg, stage = t.plan.schedule, t.stage
        base = learning_rate_at(cfg, stage.lr, step, t.plan.steps_per_epoch, stage.epochs)
        return base * self.plateau.scale

    def on_train_batch_begin(self, batch, logs=None):
        t = self.trainer
        step = t.state.stage_epoch * t.plan.steps_per_epoch + t.steps_done
        t.model.optimizer.learning_rate.assign(self.rate(step))

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        cfg, value = t.plan.schedule, (logs or {}).get(t.plan.monitor)
        if cfg.name == "plateau" and value is not None and math.isfinite(value):
            min_scale = cfg.min_lr / max(t.stage.lr, 1e-12)
            if self.plateau.update(
                value, mode=t.plan.mode, factor=cfg.factor, patience=cfg.patience,
                min_scale=min_scale,
            ):
                t.log(f"{t.plan.monitor} stalled: learning rate x{self.plateau.scale:g}")
        t.state.plateau = self.plateau.as_dict()


class EarlyStopping(Hook):
    """End the run after ``plan.early_stopping`` epochs without improvement."""

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        patience = t.plan.early_stopping
        if patience and t.state.epochs_without_improvement >= patience:
            t.log(
                f"early stopping: no improvement in {patience} epochs "
                f"(best {t.state.best:.4f} at epoch {t.state.best_epoch})"
            )
            t.state.stopped_early = True
            t.stop_training = True


class Checkpoint(Hook):
    """Commit model, optimizer and state after every epoch, and every
    ``plan.checkpoint_every_steps`` steps inside one (see :meth:`Trainer.commit`)."""

    def on_train_batch_end(self, batch, logs=None):
        t = self.trainer
        every, done = t.plan.checkpoint_every_steps, t.steps_done
        if every and done % every == 0 and done < t.plan.steps_per_epoch:
            epoch = t.state.epoch + 1
            t.state.step_in_epoch = done
            t.commit(f"epoch-{epoch:04d}-step-{done:06d}", f"at step {done} of epoch {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        n = self.trainer.state.epoch
        self.trainer.commit(f"epoch-{n:04d}", f"after epoch {n}", check=False)


class HistoryFile(Hook):
    """``history.csv``, rewritten atomically after every epoch (chief only)."""

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        if t.chief:
            write_history_csv(t.run_dir / RunDir.HISTORY, t.state.history)


class TensorBoard(Hook):
    """Per-epoch scalars for TensorBoard (``tensorboard --logdir RUN/tensorboard``), chief only.

    Written when the ``tensorboard`` package is installed (``pip install tlkit[tensorboard]``;
    TensorFlow 2.21 no longer brings it); otherwise skipped with one note. Keras' own
    ``TensorBoard`` callback is not used because a resumed run would restart its step count.
    """

    def __init__(self):
        super().__init__()
        self.writers: dict[str, Any] | None = None
        self.available = importlib.util.find_spec("tensorboard") is not None

    def on_train_begin(self, logs=None):
        t = self.trainer
        if not t.chief or self.writers is not None:
            return
        if not self.available:
            t.log(
                "TensorBoard logs skipped: the tensorboard package is not installed "
                "(pip install 'tlkit[tensorboard]'); history.csv has the same numbers"
            )
            self.writers = {}
            return
        root = t.run_dir / "tensorboard"
        self.writers = {
            split: tf.summary.create_file_writer(str(root / split))
            for split in ("train", "validation")
        }

    def on_epoch_end(self, epoch, logs=None):
        if not self.writers:
            return
        row = logs or {}
        step = int(row.get("epoch", epoch + 1))
        for key, value in row.items():
            if key in ("epoch", "stage") or not isinstance(value, (int, float)):
                continue
            split = "validation" if key.startswith("val_") else "train"
            with self.writers[split].as_default():
                tf.summary.scalar(key.removeprefix("val_"), float(value), step=step)
        for writer in self.writers.values():
            writer.flush()


_NOT_SHOWN = ("epoch", "stage", "steps", "resumed_at_step")
_ORDER = ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "lr")


class Progress(Hook):
    """``epoch k/N`` with the metrics and an estimate of the time left.

    On a terminal (and ``plan.verbose == 1``) a live line shows the step and the time left in
    the epoch and the run; otherwise, and always at the end of an epoch, one plain line per
    epoch. ``plan.verbose == 0`` prints nothing.

    Args:
        stream: Where the live line goes (default standard error); epoch lines go to the
            trainer's ``log``.
    """

    REFRESH_S = 0.25

    def __init__(self, stream: IO[str] | None = None):
        super().__init__()
        self.stream = stream
        self.epoch_times: list[float] = []
        self._started = self._shown = 0.0
        self._live = False

    def _out(self) -> IO[str]:
        return self.stream or sys.stderr

    @property
    def live(self) -> bool:
        verbose = self.trainer.plan.verbose
        return verbose == 1 and bool(getattr(self._out(), "isatty", lambda: False)())

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if not self.live or now - self._shown < self.REFRESH_S:
            return
        self._shown, t = now, self.trainer
        steps, done = t.plan.steps_per_epoch, t.steps_done
        per_step = (now - self._started) / max(1, done - t.state.step_in_epoch)
        epoch_left = per_step * max(0, steps - done)
        loss = (logs or {}).get("loss")
        text = (
            f"epoch {t.state.epoch + 1}/{t.plan.epochs}  step {done}/{steps}"
            + (f"  loss {float(loss):.4f}" if loss is not None else "")
            + f"  {_duration(epoch_left)} left in the epoch"
            + self._time_left(t.state.epoch + 1, epoch_left, per_step * steps)
        )
        self._out().write("\r\033[K" + text)
        self._out().flush()
        self._live = True

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        seconds = time.perf_counter() - self._started
        self.epoch_times.append(seconds)
        if self._live:
            self._out().write("\r\033[K")
            self._out().flush()
            self._live = False
        if t.plan.verbose == 0:
            return
        row = logs or {}
        stages = len(t.plan.stages)
        stage = f" (stage {t.stage_index + 1}/{stages})" if stages > 1 else ""
        shown = {
            k: v for k, v in row.items() if k not in _NOT_SHOWN and isinstance(v, (int, float))
        }
        order = [k for k in _ORDER if k in shown] + sorted(set(shown) - set(_ORDER))
        metrics = "  ".join(
            f"{key} {shown[key]:.4g}" if key == "lr" else f"{key} {shown[key]:.4f}"
            for key in order
        )
        best = "  (best)" if t.state.best_epoch == t.state.epoch else ""
        t.log(
            f"epoch {t.state.epoch}/{t.plan.epochs}{stage}  {metrics}  {_duration(seconds)}"
            f"{self._time_left(t.state.epoch)}{best}"
        )

    def _time_left(self, after: int, now_left: float = 0.0, estimate: float | None = None) -> str:
        """``, ~T left in the run`` once ``after`` epochs are done and ``now_left`` seconds of
        the current one remain (epochs timed so far, else ``estimate`` per epoch)."""
        remaining = max(0, self.trainer.plan.epochs - after)
        recent = self.epoch_times[-3:]
        per_epoch = sum(recent) / len(recent) if recent else estimate
        if per_epoch is None or not (remaining or now_left):
            return ""
        return f", ~{_duration(now_left + remaining * per_epoch)} left in the run"


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def standard_hooks(stream: IO[str] | None = None) -> list[Hook]:
    """The hooks every tlkit run uses, in the order they must run (see the module docstring);
    each reads its settings from the trainer's plan. ``stream``: see :class:`Progress`."""
    return [
        NaNGuard(),
        BestModel(),
        Progress(stream),
        LearningRate(),
        EarlyStopping(),
        Checkpoint(),
        HistoryFile(),
        TensorBoard(),
    ]
