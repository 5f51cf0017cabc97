"""The training plan: what the trainer does, derived from the recipe once.

:class:`TrainPlan` holds everything :class:`~tlkit.train.trainer.Trainer` needs to know about a
run (stages, optimizer, schedule, loss, monitor, patience, checkpoint cadence, precision) and
nothing about where the data or the model came from. ``TrainPlan.from_recipe`` is the only
place that reads the recipe's ``train`` and ``freeze.stages`` keys for training.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Any

from tlkit.train.config import SUGGESTED, OptimizerConfig, ScheduleConfig

#: Recipe keys that do not change what a run learns: a run may resume on other hardware, with
#: other output settings or checkpointing more often.
_NOT_TRAINING = ("verbose", "strategy", "jit_compile", "checkpoint_every_steps", "keep_checkpoints")


@dataclass(frozen=True)
class Stage:
    """One freeze stage: a policy, how many epochs, and the learning rate."""

    policy: str
    epochs: int
    lr: float


@dataclass(frozen=True)
class TrainPlan:
    """What to train and how, for a model the trainer is handed.

    Attributes:
        stages: Freeze stages, run in order (recompiling between them).
        steps_per_epoch: Batches in one training epoch.
        batch_size: The global batch size (for the log).
        optimizer: Optimizer settings; each stage sets its own learning rate.
        schedule: Learning-rate schedule, per step within a stage (``plateau`` per epoch).
        label_smoothing: Of the categorical cross-entropy.
        monitor: ``val_accuracy`` or ``val_loss``: picks the best epoch, drives the plateau
            schedule and early stopping.
        early_stopping: Epochs without improvement before stopping; ``None`` never stops.
        checkpoint_every_steps: Also checkpoint inside an epoch every N steps.
        precision: Keras dtype policy name.
        jit_compile: Compile the train step with XLA.
        aux_loss_weight: Loss weight of auxiliary outputs (GoogLeNet).
        verbose: 0 silent, 1 a live progress line on a terminal (else 2), 2 a line per epoch.
        digest: Fingerprint of the recipe settings that determine training; a run directory
            only resumes a run with the same digest.
    """

    stages: tuple[Stage, ...]
    steps_per_epoch: int
    batch_size: int
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    label_smoothing: float = 0.0
    monitor: str = "val_accuracy"
    early_stopping: int | None = None
    checkpoint_every_steps: int | None = None
    precision: str = "float32"
    jit_compile: bool = False
    aux_loss_weight: float = 0.3
    verbose: int = 1
    digest: str = ""
    #: The weights' moving average's momentum (``train.ema``); None: no average.
    ema_momentum: float | None = None

    @property
    def mode(self) -> str:
        """``max`` for an accuracy monitor, ``min`` for a loss."""
        return "max" if self.monitor.endswith("accuracy") else "min"

    @property
    def lr_to_find(self) -> bool:
        """Some stage's rate is ``suggested`` (NaN here): the range test sets it before training."""
        return any(math.isnan(stage.lr) for stage in self.stages)

    def with_lr(self, lr: float) -> TrainPlan:
        """The plan with the ``suggested`` stages' rate set to ``lr`` (the others keep theirs)."""
        stages = tuple(replace(s, lr=float(lr)) if math.isnan(s.lr) else s for s in self.stages)
        return replace(self, stages=stages, optimizer=self.optimizer.model_copy(update={"lr": lr})
                       if self.optimizer.lr == SUGGESTED else self.optimizer)

    @property
    def epochs(self) -> int:
        """Epochs over all stages (fewer if early stopping ends the run)."""
        return sum(stage.epochs for stage in self.stages)

    def for_route(self, route: str) -> TrainPlan:
        """The plan as trained on ``route`` (``images``, ``cached features``).

        A checkpoint holds what the route fits (the whole model, or only its head), so the
        route is part of the digest that a resumed run must match.
        """
        digest = hashlib.sha1(f"{self.digest}:{route}".encode()).hexdigest()[:16]
        return replace(self, digest=digest)

    @classmethod
    def from_recipe(cls, recipe, *, train_images: int) -> TrainPlan:
        """The plan of ``recipe`` (a resolved :class:`~tlkit.recipes.schema.Recipe`) for a
        training split of ``train_images`` images."""
        train = recipe.train
        return cls(
            stages=plan_stages(recipe),
            steps_per_epoch=max(1, -(-int(train_images) // train.batch_size)),
            batch_size=train.batch_size,
            optimizer=train.optimizer,
            schedule=train.schedule,
            label_smoothing=train.label_smoothing,
            monitor=train.monitor,
            early_stopping=train.early_stopping,
            checkpoint_every_steps=train.checkpoint_every_steps,
            precision=train.precision,
            jit_compile=bool(train.jit_compile),
            aux_loss_weight=train.aux_loss_weight,
            verbose=train.verbose,
            digest=recipe_digest(recipe),
            ema_momentum=ema_momentum(train.ema, max(1, -(-int(train_images) // train.batch_size))),
        )


def ema_momentum(config, steps_per_epoch: int) -> float | None:
    """``train.ema``'s momentum: its own, else an average over about one epoch's steps
    (at least 10, so at most 0.999); None when the average is off."""
    if not config.enabled:
        return None
    if config.momentum is not None:
        return float(config.momentum)
    return min(1.0 - 1.0 / max(10, steps_per_epoch), 0.999)


def plan_stages(recipe) -> tuple[Stage, ...]:
    """Stages from ``freeze.stages`` or, without them, one stage of ``train.epochs``; a
    ``suggested`` rate is NaN until the range test sets it (:meth:`TrainPlan.with_lr`)."""
    base_lr = recipe.train.optimizer.lr
    base_lr = math.nan if base_lr == SUGGESTED else base_lr
    if recipe.freeze.stages:
        return tuple(
            Stage(str(s.policy), int(s.epochs), float(s.lr if s.lr is not None else base_lr))
            for s in recipe.freeze.stages
        )
    return (Stage(str(recipe.freeze.policy), int(recipe.train.epochs), float(base_lr)),)


def recipe_digest(recipe) -> str:
    """Fingerprint of what determines training (not where outputs go, not verbosity)."""
    data = recipe.model_dump(mode="json", exclude={"output": True, "description": True})
    for key in _NOT_TRAINING:
        data["train"].pop(key, None)
    pca = data.get("augment", {}).get("pca_colour")
    if isinstance(pca, dict):
        pca.pop("stats", None)  # computed by the run and stored in its recipe.yaml
    return hashlib.sha1(repr(sorted(_flatten(data))).encode()).hexdigest()[:16]


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        return [kv for k, v in data.items() for kv in _flatten(v, f"{prefix}{k}.")]
    return [(prefix, repr(data))]
