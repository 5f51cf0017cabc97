"""What the trainer calls before compiling a stage: apply its freeze policy to the model.

The trainer knows stages, not architectures: a :class:`Freezer` holds the model whose layers
the policy names (the full transfer model, also when only its head is fitted on cached
features, since the head model shares those layer objects), the registry entry and the
recipe's ``freeze`` section.
"""

from __future__ import annotations

import keras

from tlkit.freeze.config import FreezeConfig
from tlkit.freeze.groups import freeze_groups, freeze_table
from tlkit.freeze.lr import variable_multipliers
from tlkit.freeze.policy import (
    FreezeDecision,
    apply_freeze,
    plan_freeze,
    rule_policy,
    search_candidates,
)
from tlkit.models.registry import ModelInfo


class Freezer:
    """Freeze policies for one transfer model.

    Args:
        model: The flat transfer model the policies refer to.
        info: Its backbone's registry entry (freeze groups).
        config: The recipe's ``freeze`` section (BatchNorm mode, ``auto`` thresholds,
            learning-rate multipliers).
        train_images_per_class: For the ``auto`` policy.
        pretrained: Whether the weights the run starts from are pretrained: without, ``auto``
            freezes nothing, BatchNorm trains (``bn: auto``) and freezing anything is an error.
    """

    def __init__(
        self,
        model: keras.Model,
        info: ModelInfo,
        config: FreezeConfig | None = None,
        *,
        train_images_per_class: float | None = None,
        pretrained: bool = True,
    ):
        self.model = model
        self.info = info
        self.config = config or FreezeConfig()
        self.train_images_per_class = train_images_per_class
        self.pretrained = pretrained

    def plan(self, policy: str) -> FreezeDecision:
        """What ``policy`` would freeze, changing nothing."""
        return plan_freeze(
            self.model,
            self.info,
            policy,
            train_images_per_class=self.train_images_per_class,
            config=self.config,
            pretrained=self.pretrained,
        )

    def apply(self, policy: str) -> FreezeDecision:
        """Set ``trainable`` on the model's layers as ``policy`` says (recompile afterwards)."""
        return apply_freeze(
            self.model,
            self.info,
            policy,
            train_images_per_class=self.train_images_per_class,
            config=self.config,
            pretrained=self.pretrained,
        )

    def rule(self) -> tuple[str, str]:
        """The image-count rule's policy (``auto``'s prior) and why."""
        return rule_policy(self.model, self.info, self.train_images_per_class, self.config.auto)

    def candidates(self) -> list[str]:
        """The freeze points ``auto``'s search tries (``all``, group ends, ``none``)."""
        return search_candidates(self.model, self.info)

    def groups(self):
        """The model's freeze groups (input to head)."""
        return freeze_groups(self.model, self.info)

    def table(self) -> str:
        """The freeze table of the model as it is now."""
        return freeze_table(self.model, self.info).format()

    def lr_multipliers(self) -> dict[str, float]:
        """``{variable path: multiplier}`` from ``freeze.lr_multipliers`` and, with pretrained
        weights, ``freeze.pretrained_lr`` for every other backbone group (empty without)."""
        groups = dict(self.config.lr_multipliers)
        if self.pretrained and self.config.pretrained_lr != 1.0:
            for group in self.groups():
                if group.name != "head" and group.name not in groups:
                    groups[group.name] = self.config.pretrained_lr
        if not groups:
            return {}
        return variable_multipliers(self.model, self.info, groups)
