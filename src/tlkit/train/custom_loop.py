"""A ``tf.function`` train step under ``strategy.run``, for MultiWorkerMirroredStrategy.

With TensorFlow 2.21 / Keras 3.15, ``Model.fit`` under MultiWorkerMirroredStrategy fails on CPU
(a PerReplica conversion error in a cross-replica reduce, then in Keras' loss reduction). This
loop uses the same Keras model, loss and optimizer: per-example losses averaged over the global
batch with ``tf.nn.compute_average_loss``, the loss scaled by ``optimizer.scale_loss`` (a
LossScaleOptimizer under ``mixed_float16`` multiplies it by its dynamic scale, and its
``apply_gradients`` unscales the gradients and skips a step whose gradients are not finite),
gradients all-reduced by the Keras optimizer in replica context, metrics summed across workers
with ``strategy.reduce``.

``jit_compile`` compiles each replica's forward and backward pass with XLA; the gradient
all-reduce and the update stay outside XLA, where collectives work on every device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf


def distribute_options() -> tf.data.Options:
    """Shard by data (not files): in-memory and cached datasets have no files to shard."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


class CustomLoop:
    """Runs epochs of a compiled Keras model with a hand-written distributed step.

    Args:
        model: The Keras model (built and compiled inside ``strategy.scope()``).
        optimizer: ``model.optimizer`` (a LossScaleOptimizer under ``mixed_float16``).
        label_smoothing: For the categorical cross-entropy.
        strategy: The ``tf.distribute`` strategy.
        loss_weights: One weight per model output (auxiliary classifiers); default ``[1.0]``.
        jit_compile: Compile the per-replica forward/backward pass with XLA.
    """

    def __init__(
        self,
        model,
        optimizer,
        label_smoothing: float,
        strategy,
        loss_weights: list[float] | None = None,
        jit_compile: bool = False,
    ):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.loss_weights = loss_weights or [1.0]
        self.jit_compile = bool(jit_compile)
        self.per_example_loss = keras.losses.CategoricalCrossentropy(
            label_smoothing=label_smoothing, reduction=None
        )
        self._gradients = tf.function(self._replica_gradients, jit_compile=self.jit_compile)
        self._evaluate = tf.function(self._replica_eval_step, jit_compile=self.jit_compile)
        self._train_step = tf.function(self._distributed_train_step)
        self._eval_step = tf.function(self._distributed_eval_step)
        self._distributed: dict[int, tuple[object, object]] = {}

    # -------------------------------------------------------------- steps

    def _sums(self, y, pred, per_example):
        y_true = tf.argmax(y, axis=-1)
        correct = tf.cast(tf.equal(tf.argmax(pred, axis=-1), y_true), tf.float32)
        k = min(5, int(pred.shape[-1]))
        top = tf.cast(tf.math.in_top_k(y_true, tf.cast(pred, tf.float32), k), tf.float32)
        count = tf.cast(tf.shape(y)[0], tf.float32)
        return tf.stack(
            [tf.reduce_sum(per_example), tf.reduce_sum(correct), tf.reduce_sum(top), count]
        )

    def _outputs(self, x, training: bool):
        outputs = self.model(x, training=training)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return [tf.cast(o, tf.float32) for o in outputs]

    def _replica_gradients(self, batch):
        """Forward and backward on one replica's shard: (scaled gradients, metric sums)."""
        x, y = batch[0], batch[1]
        y = y[0] if isinstance(y, (list, tuple)) else y
        weights = batch[2] if len(batch) > 2 else None
        with tf.GradientTape() as tape:
            outputs = self._outputs(x, training=True)
            pred = outputs[0]
            per_example = self.per_example_loss(y, pred)
            total = tf.add_n(
                [
                    w * self.per_example_loss(y, o)
                    for w, o in zip(self.loss_weights, outputs, strict=False)
                ]
            )
            weighted = total * weights if weights is not None else total
            loss = tf.nn.compute_average_loss(weighted)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.model.trainable_variables)
        return grads, self._sums(y, pred, per_example)

    def _replica_train_step(self, batch):
        grads, sums = self._gradients(batch)
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return sums

    def _distributed_train_step(self, batch):
        per_replica = self.strategy.run(self._replica_train_step, args=(batch,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def _replica_eval_step(self, batch):
        x, y = batch[0], batch[1]
        y = y[0] if isinstance(y, (list, tuple)) else y
        pred = self._outputs(x, training=False)[0]
        return self._sums(y, pred, self.per_example_loss(y, pred))

    def _distributed_eval_step(self, batch):
        per_replica = self.strategy.run(self._evaluate, args=(batch,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    # -------------------------------------------------------------- epochs

    def _dist(self, dataset):
        # Keep the dataset itself alive next to its distributed version, so its id is not reused.
        key = id(dataset)
        if key not in self._distributed:
            distributed = self.strategy.experimental_distribute_dataset(
                dataset.with_options(distribute_options())
            )
            self._distributed[key] = (dataset, distributed)
        return self._distributed[key][1]

    @staticmethod
    def _logs(sums, prefix: str = "") -> dict[str, float]:
        loss, correct, top, count = (float(v) for v in sums)
        count = max(count, 1.0)
        return {
            f"{prefix}loss": loss / count,
            f"{prefix}accuracy": correct / count,
            f"{prefix}top5": top / count,
        }

    def run_epoch(
        self, train_ds, val_ds, callbacks: Sequence[keras.callbacks.Callback] = ()
    ) -> tuple[dict[str, float], int]:
        """One pass over ``train_ds`` then ``val_ds``.

        Args:
            train_ds, val_ds: Globally batched datasets (``val_ds`` may be None).
            callbacks: Keras callbacks whose ``on_train_batch_begin`` and
                ``on_train_batch_end`` run around every step, and ``on_test_begin`` and
                ``on_test_end`` around validation, as under ``Model.fit`` (the
                trainer's hooks set the learning rate, guard against NaN and checkpoint
                there); ``logs["loss"]`` is the epoch's mean loss so far.

        Returns:
            Keras-style logs and the number of steps run. A non-finite loss ends the epoch
            early; the logs then hold that loss.
        """
        totals = tf.zeros([4])
        ran = 0
        for batch in self._dist(train_ds):
            for callback in callbacks:
                callback.on_train_batch_begin(ran)
            sums = self._train_step(batch)
            totals += sums
            ran += 1
            loss = float(totals[0]) / max(float(totals[3]), 1.0)
            for callback in callbacks:
                callback.on_train_batch_end(ran - 1, {"loss": loss})
            if not math.isfinite(float(sums[0])):
                break
        logs = self._logs(totals.numpy())
        if val_ds is not None:
            for callback in callbacks:  # as Model.fit: the weights' average, BatchNorm
                callback.on_test_begin()
            val_totals = tf.zeros([4])
            for batch in self._dist(val_ds):
                val_totals += self._eval_step(batch)
            logs.update(self._logs(val_totals.numpy(), "val_"))
            for callback in callbacks:
                callback.on_test_end()
        return logs, ran
