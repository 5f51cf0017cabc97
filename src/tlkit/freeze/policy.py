"""Freeze policies: ``all``, ``none``, ``N``, a block/group/unit name, and ``auto``.

The engine only sets ``layer.trainable``; it never compiles. Recompile after every call
(Keras collects the trainable variables at compile time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras

from tlkit.errors import UnknownNameError, UserError
from tlkit.freeze.config import KEYWORD_POLICIES, AutoThresholds, FreezeConfig, parse_policy
from tlkit.freeze.groups import (
    HEAD,
    freeze_groups,
    freeze_units,
    has_weights,
    is_batch_norm,
    is_weight_layer,
    layer_depths,
    model_layers,
)
from tlkit.models.registry import ModelInfo


@dataclass
class FreezeDecision:
    """What a policy froze, and why.

    Attributes:
        requested: The policy as given (``auto``, ``12``, ``block4``...).
        policy: The policy applied: ``all``, ``none``, ``N`` after moving the boundary to a
            block's end, or a group/unit name (what ``auto`` chose).
        frozen_weight_layers: Conv/dense layers frozen, counted from the input as the
            architecture's name counts them.
        backbone_weight_layers: Conv/dense layers before the head in this model.
        message: One line for the user (printed before training).
        frozen_layers: Layers with weights that do not train (BatchNorm kept frozen by
            ``bn: frozen`` included), topological order.
        trainable_layers: Layers with weights that train.
        frozen_groups: Groups the policy froze entirely.
        bn: The BatchNorm mode applied (``frozen`` or ``train``; ``auto`` resolved).
        snapped_from: The N asked for when it fell inside a residual/inception block.
    """

    requested: str
    policy: str
    frozen_weight_layers: int
    backbone_weight_layers: int
    message: str
    frozen_layers: list[str] = field(default_factory=list)
    trainable_layers: list[str] = field(default_factory=list)
    frozen_groups: list[str] = field(default_factory=list)
    bn: str = "frozen"
    snapped_from: int | None = None
    _frozen_by_policy: frozenset[str] = field(default=frozenset(), repr=False)

    def __str__(self) -> str:
        return self.message


class _Structure:
    """Groups, units and depths of one model, as the policies see them."""

    def __init__(self, model: keras.Model, info: ModelInfo):
        self.info = info
        self.layers = model_layers(model)
        self.depths = layer_depths(model)
        self.groups = freeze_groups(model, info)
        self.group_of = {layer.name: g.name for g in self.groups for layer in g.layers}
        self.backbone = [g for g in self.groups if g.name != HEAD and g.depths]
        self.max_depth = max((g.depths[1] for g in self.backbone), default=0)
        self.units: dict[str, tuple[int, int]] = {}
        for unit, layers in freeze_units(model, info).items():
            weight = [self.depths[layer.name] for layer in layers if is_weight_layer(layer)]
            if weight:
                self.units[unit] = (min(weight), max(weight))

    def names(self) -> list[str]:
        return [g.name for g in self.groups if g.name != HEAD] + list(self.units)

    def snap(self, n: int) -> tuple[int, str | None]:
        """Move ``n`` to the end of the unit it falls inside; returns (n, that unit)."""
        first_unit = None
        moved = True
        while moved:
            moved = False
            for unit, (lo, hi) in self.units.items():
                if lo <= n < hi:
                    n, moved, first_unit = hi, True, first_unit or unit
        return n, first_unit

    def boundary_of(self, name: str) -> int:
        """The depth of the last weight layer of group or unit ``name``."""
        if name == HEAD:
            raise UserError("the head always trains; 'all' freezes everything before it")
        for group in self.groups:
            if group.name == name:
                if group.depths:
                    return group.depths[1]
                return max(self.depths[layer.name] for layer in group.layers)
        if name in self.units:
            return self.units[name][1]
        if name in {g.name for g in self.info.freeze_groups}:
            present = ", ".join(g.name for g in self.backbone)
            raise UserError(
                f"freeze group {name!r} of {self.info.id} has no layers in this model "
                f"(groups here: {present})"
            )
        raise UnknownNameError("freeze block", name, [*KEYWORD_POLICIES, *self.names()])

    def through(self, boundary: int) -> str:
        """What the frozen region ends with: a unit name or the last weight layer's name."""
        for unit, (_, hi) in self.units.items():
            if hi == boundary:
                return unit
        for layer in self.layers:
            if (
                is_weight_layer(layer)
                and self.depths[layer.name] == boundary
                and self.group_of[layer.name] != HEAD
            ):
                return layer.name
        return f"layer {boundary}"


def learns(layer) -> bool:
    """Whether ``layer`` has weights that training would change (a Normalization layer's
    mean and variance, in the preprocessing group, never do)."""
    return any(getattr(w, "trainable", True) for w in layer.weights)


def _count(images: float) -> str:
    return f"{images:,.0f}" if float(images).is_integer() else f"{images:,.1f}"


class RandomWeightsFrozenError(UserError):
    """A policy that would freeze layers holding random weights (exit code 2)."""


def resolve_bn(bn: str, pretrained: bool) -> str:
    """``freeze.bn`` with ``auto`` resolved: ``frozen`` for pretrained weights, else ``train``."""
    if bn == "auto":
        return "frozen" if pretrained else "train"
    return bn


def rule_policy(
    model: keras.Model, info: ModelInfo, images: float | None, auto: AutoThresholds
) -> tuple[str, str]:
    """The image-count rule's policy for ``images`` training images per class, and why."""
    return _auto(_Structure(model, info), images, auto)


def search_candidates(model: keras.Model, info: ModelInfo) -> list[str]:
    """The freeze points ``auto`` searches over: ``all``, the end of each backbone group but
    the last (deepest first), and ``none``."""
    s = _Structure(model, info)
    return ["all", *[g.name for g in reversed(s.backbone[:-1])], "none"]


def _auto(s: _Structure, images: float | None, auto: AutoThresholds) -> tuple[str, str]:
    """The policy ``auto`` picks for ``images`` training images per class, and why."""
    if images is None:
        raise UserError(
            "freeze policy 'auto' decides from the number of training images per class, and "
            "none was given; pass train_images_per_class or choose a policy such as 'all'"
        )
    n = _count(images)
    if images < auto.small_per_class:
        return (
            "all",
            f"auto: {n} images per class < {auto.small_per_class} -> freeze all but the head",
        )
    if images >= auto.large_per_class:
        return (
            "none",
            f"auto: {n} images per class >= {auto.large_per_class} -> fine-tune everything",
        )
    target = max(1, math.ceil(auto.medium_frozen_fraction * s.max_depth - 1e-9))
    index = next((i for i, g in enumerate(s.backbone) if g.depths[1] >= target), 0)
    index = min(index, len(s.backbone) - 2)  # always train at least one backbone group
    reason = f"auto: {n} images per class in [{auto.small_per_class}, {auto.large_per_class})"
    if index < 0:
        return "all", f"{reason} -> freeze all but the head (one backbone group only)"
    frozen, trained = s.backbone[index].name, [g.name for g in s.backbone[index + 1 :]]
    return frozen, (
        f"{reason} -> freeze the early groups through {frozen} (the group holding weight "
        f"layer {target} of {s.max_depth}, the {auto.medium_frozen_fraction:.0%} mark), "
        f"train {', '.join(trained)} and the head"
    )


def plan_freeze(
    model: keras.Model,
    info: ModelInfo,
    policy: str | int | None = None,
    *,
    train_images_per_class: float | None = None,
    config: FreezeConfig | None = None,
    pretrained: bool = True,
) -> FreezeDecision:
    """Decide what ``policy`` freezes in ``model`` without changing anything.

    See :func:`apply_freeze` for the arguments; ``frozen_layers`` and ``trainable_layers``
    describe the state :func:`apply_freeze` would set.
    """
    config = config or FreezeConfig()
    try:
        requested = parse_policy(config.policy if policy is None else policy)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    s = _Structure(model, info)
    resolved, notes = requested, []
    bn = resolve_bn(config.bn, pretrained)
    if requested == "auto" and not pretrained:
        resolved = "none"
        notes.append(
            f"auto: no pretrained weights -> train everything, BatchNorm included (bn: {bn}); "
            "frozen random features are never useful"
        )
    elif requested == "auto":
        resolved, note = _auto(s, train_images_per_class, config.auto)
        notes.append(note)

    snapped_from = None
    total = s.max_depth
    if resolved == "all":
        boundary = total
        what = f"froze the whole backbone ({total} weight layers); only the head trains"
    elif resolved == "none":
        boundary = 0
        what = f"froze nothing: all {total} backbone weight layers and the head train"
    elif resolved.isdigit():
        asked = int(resolved)
        if asked > total:
            raise UserError(
                f"freeze policy {asked} is more than the {total} weight layers of "
                f"{info.id}'s backbone in this model; use 0 to {total} (or 'all')"
            )
        boundary, unit = s.snap(asked)
        if unit is not None:
            snapped_from = asked
            notes.append(
                f"layer {asked} is inside {unit}; moved the boundary to the end of the block "
                f"(layer {boundary})"
            )
        resolved = str(boundary)
        if boundary == 0:
            what = "froze nothing (0 weight layers): every layer trains"
        else:
            what = f"froze the first {boundary} weight layers (through {s.through(boundary)})"
    else:
        boundary = s.boundary_of(resolved)
        what = f"froze through {resolved} (the first {boundary} of {total} weight layers)"

    frozen = {
        layer.name
        for layer in s.layers
        if s.group_of[layer.name] != HEAD
        and (resolved == "all" or s.depths[layer.name] <= boundary)
    }
    if not pretrained and any(
        learns(layer) for layer in s.layers if layer.name in frozen
    ):
        raise RandomWeightsFrozenError(
            f"freeze policy {requested!r} would freeze randomly initialised layers: this run "
            f"has no pretrained weights for {info.id}, so frozen layers would stay random "
            "forever. Use --freeze none (or auto), or start from pretrained weights: "
            "--weights PATH_OR_RUN_DIR (a previous tlkit run, e.g. from `tlkit pretrain`; see "
            "docs/transfer.md)"
        )
    bn_kept = {
        layer.name
        for layer in s.layers
        if is_batch_norm(layer)
        and bn == "frozen"
        and s.group_of[layer.name] != HEAD
        and layer.name not in frozen
    }
    if bn_kept and not pretrained:
        raise RandomWeightsFrozenError(
            f"freeze.bn 'frozen' would keep {len(bn_kept)} BatchNorm layers of {info.id} at "
            "their initial statistics (mean 0, variance 1): this run has no pretrained weights. "
            "Use freeze.bn auto or train (--set freeze.bn=train)"
        )
    if bn_kept:
        what += "; BatchNorm layers stay in inference mode (bn: frozen)"
    weighted = [layer for layer in s.layers if has_weights(layer)]
    return FreezeDecision(
        requested=requested,
        policy=resolved,
        frozen_weight_layers=boundary,
        backbone_weight_layers=total,
        message="; ".join([*notes, what]),
        frozen_layers=[la.name for la in weighted if la.name in frozen | bn_kept],
        trainable_layers=[la.name for la in weighted if la.name not in frozen | bn_kept],
        frozen_groups=[
            g.name for g in s.backbone if all(layer.name in frozen for layer in g.weighted_layers)
        ],
        bn=bn,
        snapped_from=snapped_from,
        _frozen_by_policy=frozenset(frozen),
    )


def apply_freeze(
    model: keras.Model,
    info: ModelInfo,
    policy: str | int | None = None,
    *,
    train_images_per_class: float | None = None,
    config: FreezeConfig | None = None,
    pretrained: bool = True,
) -> FreezeDecision:
    """Set ``trainable`` on every layer of a fine-tune model according to a freeze policy.

    Policies (``policy``, default ``config.policy``):

    * ``all``: freeze every layer outside the head; ``none``: everything trains.
    * ``N``: freeze the conv/dense layers of depth 1..N counted from the input as the
      architecture's name counts them (:func:`weight_layer_depths`) and the layers between
      them (BatchNorm...). A boundary inside a residual or inception block moves to the
      block's end, and the message says so. N above the backbone's weight layers is an error.
    * a group (``block4``, ``conv4``, ``inception4``) or unit (``conv4_block2``,
      ``inception4c``) name: freeze from the input through that group's or unit's last layer.
    * ``auto``: from ``train_images_per_class`` (mean images per class in the training split)
      and ``config.auto``: below ``small_per_class`` -> ``all``; ``large_per_class`` or more ->
      ``none``; in between, freeze the first ``medium_frozen_fraction`` of the backbone's weight
      layers with the boundary moved to the end of its freeze group, training at least the
      last group (see :class:`~tlkit.freeze.config.AutoThresholds`).

    Without pretrained weights (``pretrained=False``) ``auto`` is ``none`` and a policy that
    freezes any layer with weights raises :class:`RandomWeightsFrozenError`.

    BatchNorm layers in the frozen region get ``trainable=False``, which in Keras 3 keeps them
    in inference mode (moving statistics fixed, even in ``fit``). With ``config.bn`` ``frozen``
    (``auto`` with pretrained weights) the backbone's other BatchNorm layers are frozen too;
    the head's never are.
    The head (layers matching no freeze group) always trains. Nothing is compiled: recompile
    the model afterwards.

    Args:
        model: A flat functional fine-tune model (see :mod:`tlkit.freeze.groups`).
        info: The backbone's registry entry.
        policy: ``auto``, ``all``, ``none``, an int / digit string N, or a group/unit name.
        train_images_per_class: Needed by ``auto``.
        config: The recipe's freeze section (BN mode, auto thresholds).
        pretrained: Whether the backbone's weights are pretrained (not random).

    Returns:
        A :class:`FreezeDecision` whose ``message`` is meant to be printed.

    Raises:
        UserError: a bad policy, N out of range, ``auto`` without an image count.
        UnknownNameError: an unknown block name (the message lists the valid ones).
    """
    decision = plan_freeze(
        model, info, policy, train_images_per_class=train_images_per_class, config=config,
        pretrained=pretrained,
    )
    frozen = set(decision.frozen_layers) | decision._frozen_by_policy
    model.trainable = True
    for layer in model_layers(model):
        layer.trainable = layer.name not in frozen
    return decision


def freeze_through(
    model: keras.Model, info: ModelInfo, block: str | int, *, config: FreezeConfig | None = None
) -> FreezeDecision:
    """Freeze ``model`` from the input through ``block`` (a group/unit name or a layer count)."""
    return apply_freeze(model, info, block, config=config)
