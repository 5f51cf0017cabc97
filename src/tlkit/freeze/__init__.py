"""Freeze groups per architecture, freeze policies (N, block, all, none, auto), BatchNorm
handling and per-group learning-rate multipliers.

Typical use (the trainer recompiles after every change)::

    from tlkit.freeze import FreezeConfig, apply_freeze, freeze_table
    decision = apply_freeze(model, info, "auto", train_images_per_class=250, config=cfg)
    print(decision.message)
    print(freeze_table(model, info).format())
    model.compile(...)

``tlkit.freeze.config`` (the recipe section) is importable without Keras; the rest is loaded
on first use so that importing the recipe schema stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from tlkit.freeze.config import AutoThresholds, FreezeConfig, Stage, parse_policy

_LAZY = {
    "HEAD": "tlkit.freeze.groups",
    "Group": "tlkit.freeze.groups",
    "FreezeTable": "tlkit.freeze.groups",
    "freeze_groups": "tlkit.freeze.groups",
    "freeze_units": "tlkit.freeze.groups",
    "freeze_table": "tlkit.freeze.groups",
    "layer_depths": "tlkit.freeze.groups",
    "weight_layer_depths": "tlkit.freeze.groups",
    "Freezer": "tlkit.freeze.freezer",
    "FreezeDecision": "tlkit.freeze.policy",
    "apply_freeze": "tlkit.freeze.policy",
    "plan_freeze": "tlkit.freeze.policy",
    "freeze_through": "tlkit.freeze.policy",
    "variable_multipliers": "tlkit.freeze.lr",
    "scale_gradients": "tlkit.freeze.lr",
    "apply_lr_multipliers": "tlkit.freeze.lr",
}

__all__ = ["AutoThresholds", "FreezeConfig", "Stage", "parse_policy", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tlkit.freeze' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
