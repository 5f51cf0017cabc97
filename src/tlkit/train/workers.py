"""Multi-worker resume: every worker continues from the chief's checkpoint.

Each worker checkpoints into its own run directory (on its own machine). After a crash they are
restarted with the same command and may disagree: a worker killed a moment before or after the
others committed an epoch is one commit behind or ahead. The chief's progress wins: a worker whose
own differs is sent the chief's ``state.json`` here, and, once the chief has restored its
checkpoint, the chief's model and optimizer variables (:meth:`ChiefAgreement.send_variables`).
Everything is sent with all-reduce sums in which the other workers contribute zeros, so every
worker calls the same collectives in the same order (a worker that skipped one would leave the
others waiting forever).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tlkit.errors import TlkitError
from tlkit.train.state import TrainState


class ChiefAgreement:
    """Where a multi-worker run continues, agreed by all workers at its start.

    Attributes (after :meth:`agree`):
        send_weights: Whether the chief sends its variables after restoring (on every worker:
            every worker takes part in the sending).
        adopted: Whether this worker took the chief's state instead of its own checkpoint.
    """

    def __init__(self, strategy, chief: bool, run_dir: Path, log: Callable[[str], None]):
        self.strategy, self.chief, self.run_dir, self.log = strategy, chief, run_dir, log
        self.send_weights = self.adopted = False

    def agree(self, state: TrainState | None, problem: Exception | None) -> TrainState | None:
        """The state to continue from. A worker drops its progress when the chief starts
        afresh; a worker whose checkpoint differs from the chief's takes the chief's; only a
        problem no worker can fix (``problem``: a different recipe) stops every worker, all at
        once."""
        mine = _progress(state)
        chief = np.rint(self._from_chief(mine).numpy())
        differs = not np.array_equal(chief, mine)
        if differs and not chief.any():
            if state is not None:
                self.log(
                    f"{self.run_dir}: the chief starts afresh; this worker's earlier progress "
                    "is dropped"
                )
            state, differs = None, False
        counts = self._sum_over_workers([float(problem is not None), float(differs)])
        if problem is not None:
            raise problem
        if counts[0] > 0:
            raise TlkitError(
                "another worker cannot resume from the chief's checkpoint (see its log); "
                "stopping every worker"
            )
        self.send_weights = bool(counts[1] > 0)
        if not self.send_weights:
            return state
        sent = _state_bytes(state) if self.chief else b""
        length = int(self._from_chief(np.array([len(sent)], np.float64)).numpy()[0])
        data = self._from_chief(
            np.frombuffer(sent, np.uint8).astype(np.float64) if self.chief
            else np.zeros(length, np.float64)
        )
        if differs:
            adopted = TrainState(**json.loads(bytes(np.rint(data.numpy()).astype(np.uint8))))
            self.log(
                f"{self.run_dir}: this worker's checkpoint (epoch {int(mine[0])}, step "
                f"{int(mine[1])}) differs from the chief's (epoch {adopted.epoch}, step "
                f"{adopted.step_in_epoch}); it continues from the chief's, weights sent by the "
                "chief"
            )
            self.adopted, state = True, adopted
        return state

    def send_variables(self, model: keras.Model, with_optimizer: bool) -> None:
        """Every worker takes the chief's model (and optimizer) variables. float64 carries
        float16/bfloat16/float32 values and integer counters below 2**53 exactly."""
        variables = list(model.weights)
        if with_optimizer:
            variables += list(model.optimizer.variables)
        flat = np.concatenate(
            [np.ravel(keras.ops.convert_to_numpy(v.value)).astype(np.float64) for v in variables]
        ) if variables else np.zeros(0, np.float64)
        received = self._from_chief(flat).numpy()
        offset = 0
        for v in variables:
            size = int(np.prod(v.shape))
            v.assign(received[offset:offset + size].reshape(v.shape).astype(v.dtype))
            offset += size

    # ------------------------------------------------------------- collectives

    def _local_replicas(self) -> int:
        try:
            return max(1, len(self.strategy.extended.worker_devices))
        except RuntimeError:  # the default strategy has one replica and no device list
            return 1

    def _sum_over_workers(self, values) -> np.ndarray:
        """The sum of ``values`` over the workers (each worker's replicas counted once)."""
        values = tf.constant(np.asarray(values, np.float64))
        local = float(self._local_replicas())

        @tf.function
        def total(v):
            per_replica = self.strategy.run(lambda: tf.identity(v / local))
            return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        return total(values).numpy()

    def _from_chief(self, values) -> tf.Tensor:
        """``values`` as the chief has them, on every worker (the others send zeros)."""
        values = np.asarray(values, np.float64)
        return tf.constant(self._sum_over_workers(values if self.chief else np.zeros_like(values)))


def _progress(state: TrainState | None) -> np.ndarray:
    if state is None:
        return np.zeros(3, np.float64)
    return np.array([state.epoch, state.step_in_epoch, float(state.finished)], np.float64)


def _state_bytes(state: TrainState | None) -> bytes:
    return json.dumps(dataclasses.asdict(state) if state else {}).encode()
