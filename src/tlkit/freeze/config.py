"""The recipe's ``freeze:`` section (pure pydantic: importing it never imports TensorFlow)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tlkit.section import Section

KEYWORD_POLICIES = ("auto", "all", "none")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
POLICY_HELP = (
    "'auto', 'all' (train only the head), 'none' (fine-tune everything), a number N of weight "
    "layers to freeze counted from the input (0 or more), or a block/group name to freeze "
    "through (e.g. 'block4', 'conv4', 'conv4_block2', 'inception4c')"
)


def parse_policy(value: Any) -> str:
    """Normalize a freeze policy: keywords and names lower case, N as a digit string.

    Raises:
        ValueError: for anything that is not a keyword, a non-negative integer or a name.
    """
    if isinstance(value, bool):
        raise ValueError(f"freeze policy must be {POLICY_HELP}; got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"freeze policy N must be 0 or more; got {value}")
        return str(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return str(int(value))
    if not isinstance(value, str):
        raise ValueError(f"freeze policy must be {POLICY_HELP}; got {value!r}")
    text = value.strip().lower()
    if text.isdigit():
        return str(int(text))
    if text.startswith("-") and text[1:].isdigit():
        raise ValueError(f"freeze policy N must be 0 or more; got {value!r}")
    if text in KEYWORD_POLICIES or _NAME.match(text):
        return text
    raise ValueError(f"freeze policy must be {POLICY_HELP}; got {value!r}")


class AutoThresholds(Section):
    """How ``policy: auto`` decides from the mean number of training images per class.

    * fewer than ``small_per_class``: ``all`` (freeze the whole backbone, train the head);
    * from ``small_per_class`` up to ``large_per_class``: freeze the first
      ``medium_frozen_fraction`` of the backbone's weight layers, with the boundary moved to
      the end of the freeze group containing it, and train the groups after it (VGG16: through
      block4, train block5; ResNet-50: through conv4, train conv5; GoogLeNet: through
      inception4, train inception5);
    * ``large_per_class`` or more: ``none`` (fine-tune everything).

    That rule is only the prior. With pretrained weights, ``search: evidence`` (the default)
    compares the frozen backbone (its head cross-fitted on every labelled image) with
    fine-tuning, from ``finetune_from`` images per class, and keeps the rule's choice unless
    the other wins on validation by ``margin_se`` standard errors (:mod:`tlkit.finetune.freeze_choice`);
    ``search: grid`` tries every freeze point on a held-out part of the training split
    (:mod:`tlkit.train.search`). Without pretrained weights ``auto`` is always ``none``: frozen
    random features are never what a user wants.
    """

    small_per_class: int = Field(
        100, ge=0, description="Below this many training images per class, train only the head."
    )
    large_per_class: int = Field(
        1000, ge=0, description="From this many training images per class, fine-tune everything."
    )
    medium_frozen_fraction: float = Field(
        0.67,
        gt=0.0,
        lt=1.0,
        description="Between the thresholds: fraction of the backbone's weight layers to freeze; "
        "the boundary moves to the end of the freeze group that contains it.",
    )
    search: Literal["evidence", "grid", "off"] = Field(
        "evidence",
        description="With pretrained weights: 'evidence' fits the frozen backbone's head on every "
        "labelled image by cross-validation and, from finetune_from images per class, also "
        "fine-tunes (the rule's policy, or 'none' where the rule says 'all') and keeps the one "
        "whose validation log loss is better by more than margin_se standard errors, the rule's "
        "choice otherwise; 'grid' tries every freeze point on a held-out part of the training "
        "split (tlkit 0.1's search); 'off' (or false) takes the image-count rule as it is.",
    )
    finetune_from: int = Field(
        50,
        ge=0,
        description="evidence: below this many training images per class no fine-tuning is "
        "tried where the rule says 'all': a validation split of 2-4 images per class cannot "
        "tell it from the frozen backbone, and it lost on most tasks there "
        "(benchmarks/defaults_suite.py, docs/defaults-suite.md).",
    )
    margin_se: float = Field(
        2.0,
        ge=0,
        description="evidence: how many standard errors of the paired per-image difference in "
        "validation log loss the policy the rule did not choose must win by.",
    )

    @field_validator("search", mode="before")
    @classmethod
    def _search(cls, value: Any) -> Any:
        if isinstance(value, bool):  # tlkit 0.1's search: true|false
            return "evidence" if value else "off"
        return value

    holdout: float = Field(
        0.25,
        gt=0.0,
        lt=1.0,
        description="Fraction of each class of the training split the search scores on.",
    )
    search_epochs: int | None = Field(
        None,
        ge=1,
        description="Epochs each candidate trains for in the search; default a third of the "
        "run's fine-tuning epochs (at least 2), which keeps the search about as long as the "
        "final training or shorter.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> AutoThresholds:
        if self.small_per_class > self.large_per_class:
            raise ValueError(
                f"small_per_class ({self.small_per_class}) must not exceed large_per_class "
                f"({self.large_per_class})"
            )
        return self


class Stage(Section):
    """One stage of gradual unfreezing: a freeze policy, trained for ``epochs``."""

    policy: str = Field(..., description=f"Freeze policy of this stage: {POLICY_HELP}.")
    epochs: int = Field(..., ge=1, description="Epochs trained in this stage.")
    lr: float | None = Field(
        None, gt=0, description="Learning rate of this stage; default the optimizer's."
    )

    @field_validator("policy", mode="before")
    @classmethod
    def _policy(cls, value: Any) -> str:
        return parse_policy(value)


class FreezeConfig(Section):
    """Which layers train: the policy, BatchNorm handling, stages and per-group learning rates."""

    policy: str = Field("auto", description=f"Freeze policy: {POLICY_HELP}.")
    auto: AutoThresholds = Field(default_factory=AutoThresholds)
    bn: Literal["auto", "frozen", "train"] = Field(
        "auto",
        description="BatchNorm layers of trained backbone groups: 'frozen' keeps them in "
        "inference mode (trainable=False, statistics fixed; the usual fine-tuning advice), "
        "'train' lets them train and update their statistics; 'auto': frozen when the weights "
        "are pretrained, train when they are not (statistics of random weights mean nothing). "
        "Frozen groups' BN is always frozen.",
    )
    linear_probe: bool = Field(
        True,
        description="Fine-tuning a pretrained backbone first fits the new head on its frozen "
        "features, to convergence, then unfreezes (linear probe, then fine-tune; Kumar et al., "
        "ICLR 2022). Not done when the recipe sets its own stages.",
    )
    stages: list[Stage] = Field(
        default_factory=list,
        description="Gradual unfreezing: stages run in order, each with its own policy, epochs "
        "and learning rate, recompiling between stages. Empty: one stage with 'policy' for "
        "train.epochs.",
    )
    lr_multipliers: dict[str, float] = Field(
        default_factory=dict,
        description="Freeze group name (e.g. block5, conv5, head) -> learning-rate multiplier.",
    )
    pretrained_lr: float = Field(
        0.1,
        ge=0,
        description="Learning-rate multiplier of the pretrained backbone groups that train "
        "(the new head trains at the full rate): fine-tuning at the head's rate wrecked the "
        "pretrained features in its first epoch (docs/freezing.md). Groups named in "
        "lr_multipliers keep theirs; 1 turns it off; ignored without pretrained weights.",
    )

    @field_validator("policy", mode="before")
    @classmethod
    def _policy(cls, value: Any) -> str:
        return parse_policy(value)

    @field_validator("lr_multipliers")
    @classmethod
    def _multipliers(cls, value: dict[str, float]) -> dict[str, float]:
        for group, multiplier in value.items():
            if multiplier < 0:
                raise ValueError(f"lr multiplier of {group!r} must be 0 or more; got {multiplier}")
        return {group.strip().lower(): m for group, m in value.items()}

    def effective_stages(self, epochs: int) -> list[Stage]:
        """The stages to run: ``stages``, or one stage of ``policy`` for ``epochs`` epochs."""
        if self.stages:
            return list(self.stages)
        return [Stage(policy=self.policy, epochs=epochs)]
