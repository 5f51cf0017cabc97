"""The recipe's ``train:`` section: optimizer, schedule, epochs, strategy, precision, checkpoints.

Pure pydantic: importing it never imports TensorFlow. :class:`tlkit.train.plan.TrainPlan` is
what the trainer is given; it is derived from this section (and ``freeze``) once per run.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tlkit.section import Section

#: ``train.optimizer.lr: suggested`` (``--lr suggested``): the learning-rate range test picks
#: the rate before training (:mod:`tlkit.finetune.lr_find`).
SUGGESTED = "suggested"


class OptimizerConfig(Section):
    name: Literal["sgd", "adam", "adamw"] = "adam"
    lr: Annotated[float, Field(gt=0)] | Literal["suggested"] = Field(
        1e-3,
        description="Learning rate, or suggested: a learning-rate range test on the run's "
        "model, policy and data picks it before training (tlkit lr-find shows the curve).",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (the papers use 0.9).")
    nesterov: bool = False
    weight_decay: float = Field(
        0.0, ge=0, description="L2 weight decay on conv/dense kernels only (not BN, not biases)."
    )
    clipnorm: float | None = Field(None, gt=0, description="Clip each gradient to this norm.")


class ScheduleConfig(Section):
    name: Literal["constant", "plateau", "step", "cosine", "onecycle"] = "constant"
    factor: float = Field(0.1, gt=0, lt=1, description="plateau/step: multiply lr by this.")
    patience: int = Field(2, ge=1, description="plateau: epochs without improvement.")
    min_lr: float = Field(1e-6, ge=0)
    step_epochs: int = Field(10, ge=1, description="step: epochs between drops.")
    warmup_epochs: float = Field(0.0, ge=0, description="cosine/onecycle: linear warmup.")


class EMAConfig(Section):
    """An exponential moving average of the weights (Keras optimizers' ``use_ema``), used to
    validate, to pick the best epoch and in ``model.keras``; training continues on the raw
    weights."""

    enabled: bool = False
    momentum: float | None = Field(
        None, gt=0, lt=1,
        description="Weight of the old average per step; default from the run's length: "
        "1 - 1/max(10, steps per epoch), at most 0.999 (an average over about one epoch).",
    )


class TrainSection(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="Global batch (split across replicas).")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    early_stopping: int | None = Field(
        None, ge=1, description="Stop after this many epochs without validation improvement."
    )
    monitor: Literal["val_accuracy", "val_loss"] = Field(
        "val_accuracy", description="What picks the best epoch, plateau and early stopping."
    )
    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker", "tpu"] = Field(
        "auto",
        description="tf.distribute strategy; auto: mirrored for several GPUs, one device for one, "
        "default on CPU; multi_worker reads TF_CONFIG (docs/training.md).",
    )
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "float32",
        description="Mixed precision keeps the classifier output in float32; float16 scales the loss.",
    )
    jit_compile: bool = Field(False, description="Compile the train step with XLA.")
    aux_loss_weight: float = Field(
        0.3, ge=0, description="GoogLeNet auxiliary classifiers' loss weight (the paper's 0.3)."
    )
    checkpoint_every_steps: int | None = Field(
        None, ge=1,
        description="Also checkpoint every N steps (atomic); a resumed run continues at that step.",
    )
    keep_checkpoints: bool = Field(
        False,
        description="Keep the last checkpoint (weights and optimizer state) once the run has "
        "finished; by default it is removed when model.keras and the reports are written, since "
        "nothing reads it then (a ResNet-18's is 214 MB).",
    )
    feature_cache: Literal["auto", "off"] = Field(
        "auto",
        description="auto: when the backbone is frozen for the whole run and augmentation is "
        "off or mirroring only, compute its features once (cached in the run directory) and "
        "train the head on them; off: run the backbone in every training step.",
    )
    frozen_head: Literal["cross_fit", "train_split"] = Field(
        "cross_fit",
        description="A frozen backbone's linear head (the cached-feature route): cross_fit fits "
        "it on every labelled image, train and val, its L2 strength and temperature chosen by "
        "k-fold cross-validation, and scores val out of fold (no image is judged by a head that "
        "saw it); train_split fits it on the training split and scores val with it.",
    )
    verbose: int = Field(
        1, ge=0, le=2, description="0 silent, 1 progress bar (2 when not a terminal), 2 a line per epoch."
    )
