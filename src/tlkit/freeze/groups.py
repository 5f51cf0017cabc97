"""Freeze groups, residual/inception units and weight-layer depths of a fine-tune model.

A fine-tune model is a flat functional model: input -> ``preprocess*`` layer -> the backbone's
layers (named as the registry family names them) -> a head whose layers start with ``head_``
and end with ``predictions``. Each layer belongs to the first of ``ModelInfo.freeze_groups``
whose pattern matches its name; everything else (preprocessing, the new head) is ``head``.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import keras

from tlkit.errors import TlkitError
from tlkit.models.registry import ModelInfo

HEAD = "head"
"""The group of every layer matching none of the architecture's freeze groups."""


def has_weights(layer) -> bool:
    return bool(layer.weights)


def is_weight_layer(layer) -> bool:
    """True for the layers an architecture's name counts: convolutions and dense layers."""
    return has_weights(layer) and any(
        hasattr(layer, attr) for attr in ("kernel", "depthwise_kernel", "pointwise_kernel")
    )


def is_batch_norm(layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def model_layers(model: keras.Model) -> list:
    """The model's layers (topological order) without input layers; refuses nested models."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model) and has_weights(layer):
            raise TlkitError(
                f"the freeze engine needs a flat model, but layer {layer.name!r} is a nested "
                "model; build the backbone on the preprocessing output (input_tensor=...) and "
                "the head on the backbone's output so that every layer sits in one graph"
            )
        out.append(layer)
    return out


def _parents(model: keras.Model) -> dict[str, set[str]]:
    """Layer name -> names of the layers feeding it, over the nodes of ``model`` only.

    The dict is in topological order (every layer after the layers feeding it). Read from
    Keras' private ``Functional._nodes_by_depth`` (the per-model graph: right also for layers
    that another model shares); where that is missing or not what tlkit reads, from the public
    ``operations`` and ``input``/``output`` tensors, with a warning that says so.
    """
    if isinstance(model, keras.Sequential) and getattr(model, "_functional", None) is None:
        return _chain(model)  # an unbuilt Sequential: a chain by definition, no graph yet
    graph = getattr(model, "_functional", None) or model  # a built Sequential wraps a Functional
    nodes_by_depth = getattr(graph, "_nodes_by_depth", None)
    if nodes_by_depth is None:
        why = "has no Functional._nodes_by_depth"
    else:
        try:
            parents = _parents_from_nodes(nodes_by_depth)
        except (AttributeError, TypeError, KeyError) as exc:
            why = f"has a Functional._nodes_by_depth that tlkit cannot read ({exc!r})"
        else:
            missing = [la.name for la in model_layers(model) if la.name not in parents]
            if not missing:
                return parents
            why = f"has a Functional._nodes_by_depth without the layers {missing[:3]}"
    if not hasattr(graph, "operations") or not hasattr(graph, "inputs"):
        raise TlkitError(
            f"Keras {keras.__version__} {why}, and {type(model).__name__} {model.name!r} is not "
            "a functional model whose graph tlkit can read otherwise: the freeze groups' depths "
            "(--freeze N) need the graph. tlkit is tested on Keras >= 3.15.1"
        )
    warnings.warn(
        f"tlkit: Keras {keras.__version__} {why} (tlkit is tested on Keras >= 3.15.1); the "
        "freeze depths of this model are read from its public operations and their input/"
        "output tensors instead",
        RuntimeWarning,
        stacklevel=3,
    )
    return _parents_from_tensors(graph)


def _chain(model: keras.Model) -> dict[str, set[str]]:
    parents: dict[str, set[str]] = {}
    previous = None
    for layer in model_layers(model):
        parents[layer.name] = {previous} if previous else set()
        previous = layer.name
    return parents


def _parents_from_nodes(nodes_by_depth) -> dict[str, set[str]]:
    """:func:`_parents` from Keras' private ``Functional._nodes_by_depth``."""
    parents: dict[str, set[str]] = {}
    for depth in sorted(nodes_by_depth, reverse=True):  # Keras depth 0 is the output
        for node in nodes_by_depth[depth]:
            op = node.operation
            if op is None or isinstance(op, keras.layers.InputLayer):
                continue
            names = {p.operation.name for p in node.parent_nodes if p.operation is not None}
            parents.setdefault(op.name, set()).update(names)
    return parents


def _parents_from_tensors(graph) -> dict[str, set[str]]:
    """:func:`_parents` from public attributes: ``graph.operations`` (topological order) and
    each operation's ``input``/``output`` (the tensors of its first call, so an operation that
    another model called first cannot be placed: that is an error, not a guess)."""
    made_by = {id(t): "" for t in keras.tree.flatten(graph.inputs)}
    parents: dict[str, set[str]] = {}
    for op in graph.operations:
        if not isinstance(op, keras.layers.InputLayer):
            names = set()
            for tensor in keras.tree.flatten(op.input):
                if id(tensor) not in made_by:
                    raise TlkitError(
                        f"cannot place {op.name!r} in the graph of {graph.name!r} from public "
                        f"Keras {keras.__version__} attributes: its first input is not made in "
                        "this model (a layer shared with another model?)"
                    )
                names.add(made_by[id(tensor)])
            parents[op.name] = names - {""}
        for tensor in keras.tree.flatten(op.output):
            made_by[id(tensor)] = op.name
    return parents


def layer_depths(model: keras.Model) -> dict[str, int]:
    """Depth of every layer: weight layers counted along the deepest path from the input.

    A conv/dense layer's depth is 1 + the largest depth among its inputs; any other layer
    carries the largest depth of its inputs (a BatchNormalization has its conv's depth).
    """
    by_name = {layer.name: layer for layer in model_layers(model)}
    depths: dict[str, int] = {}
    for name, parents in _parents(model).items():  # topological order: parents come first
        base = max((depths.get(p, 0) for p in parents), default=0)
        layer = by_name.get(name)  # None for a bare op (ops.flip in caffe preprocessing)
        depths[name] = base + (1 if layer is not None and is_weight_layer(layer) else 0)
    return depths


def weight_layer_depths(model: keras.Model) -> dict[str, int]:
    """Depth of each conv/dense layer, counted as the architecture's name counts.

    VGG16: ``block1_conv1`` = 1 ... ``fc2`` = 15, ``predictions`` = 16. ResNet-50: ``conv1_conv``
    = 1, ``conv5_block3_3_conv`` = 49, ``predictions`` = 50; a projection shortcut gets its
    input's depth + 1. GoogLeNet: ``predictions`` = 22.
    """
    depths = layer_depths(model)
    return {
        layer.name: depths[layer.name] for layer in model_layers(model) if is_weight_layer(layer)
    }


@dataclass
class Group:
    """A freeze group of a built model.

    Attributes:
        name: Group name from the registry (``block4``, ``conv3``...) or ``head``.
        layers: Every layer of the group in topological order (weightless ones included).
        depths: (first, last) weight-layer depth, or None without conv/dense layers.
    """

    name: str
    layers: list = field(default_factory=list)
    depths: tuple[int, int] | None = None

    @property
    def weighted_layers(self) -> list:
        """The layers holding weights (convs, dense, BatchNorm...)."""
        return [layer for layer in self.layers if has_weights(layer)]

    @property
    def parameters(self) -> int:
        return sum(int(layer.count_params()) for layer in self.weighted_layers)

    @property
    def trainable_parameters(self) -> int:
        return sum(
            math.prod(w.shape) for layer in self.weighted_layers for w in layer.trainable_weights
        )

    @property
    def trainable(self) -> str:
        """``yes``, ``no``, ``partial``, or ``yes (BN frozen)`` from the layers' flags."""
        weighted = self.weighted_layers
        if not weighted:
            return "-"
        main = [layer for layer in weighted if not is_batch_norm(layer)] or weighted
        bns = [layer for layer in weighted if is_batch_norm(layer)]
        if all(layer.trainable for layer in main):
            if bns and not any(layer.trainable for layer in bns):
                return "yes (BN frozen)"
            return "yes" if all(layer.trainable for layer in weighted) else "partial"
        if not any(layer.trainable for layer in weighted):
            return "no"
        return "partial"


def group_name_of(layer_name: str, info: ModelInfo) -> str:
    """The freeze group ``layer_name`` belongs to (``head`` when none matches)."""
    for group in info.freeze_groups:
        if re.search(group.pattern, layer_name):
            return group.name
    return HEAD


def freeze_groups(model: keras.Model, info: ModelInfo) -> list[Group]:
    """Assign each layer of ``model`` to a freeze group.

    Returns:
        The groups present in the model, in the registry's order (input to output), then
        ``head``. Groups without layers in this model (VGG's ``fc`` without the top) are left
        out.
    """
    depths = layer_depths(model)
    groups = {g.name: Group(g.name) for g in info.freeze_groups}
    groups[HEAD] = Group(HEAD)
    for layer in model_layers(model):
        groups[group_name_of(layer.name, info)].layers.append(layer)
    for group in groups.values():
        weight = [depths[layer.name] for layer in group.layers if is_weight_layer(layer)]
        group.depths = (min(weight), max(weight)) if weight else None
    return [g for g in groups.values() if g.layers]


def freeze_units(model: keras.Model, info: ModelInfo) -> dict[str, list]:
    """Residual/inception units (``ModelInfo.unit_pattern``) -> their layers, input first."""
    if not info.unit_pattern:
        return {}
    units: dict[str, list] = {}
    for layer in model_layers(model):
        match = re.search(info.unit_pattern, layer.name)
        if match:
            units.setdefault(match.group(1), []).append(layer)
    return units


def _span(depths: tuple[int, int] | None) -> str:
    if depths is None:
        return ""
    return str(depths[0]) if depths[0] == depths[1] else f"{depths[0]}-{depths[1]}"


@dataclass
class FreezeTable:
    """The freeze table printed before training: one row per group, with totals."""

    name: str
    groups: list[Group]
    total_parameters: int
    trainable_parameters: int

    def as_rows(self) -> list[dict[str, Any]]:
        """One dict per group: group, layers, weight_layers, parameters, trainable_parameters,
        trainable (``yes``/``no``/``partial``/``yes (BN frozen)``)."""
        return [
            {
                "group": g.name,
                "layers": len(g.weighted_layers),
                "weight_layers": _span(g.depths),
                "parameters": g.parameters,
                "trainable_parameters": g.trainable_parameters,
                "trainable": g.trainable,
            }
            for g in self.groups
        ]

    def format(self) -> str:
        """Render as text; ``weight layers`` are the depths ``--freeze N`` counts."""
        header = ("group", "layers", "weight layers", "parameters", "trainable params", "trains")
        body = [
            (
                r["group"],
                str(r["layers"]),
                r["weight_layers"],
                f"{r['parameters']:,}",
                f"{r['trainable_parameters']:,}",
                r["trainable"],
            )
            for r in self.as_rows()
        ]
        widths = [max(len(c) for c in col) for col in zip(header, *body, strict=True)]
        align = ["<", ">", ">", ">", ">", "<"]
        line = "  ".join(f"{{:{a}{w}}}" for a, w in zip(align, widths, strict=True))
        out = [f"freeze table: {self.name}", line.format(*header).rstrip()]
        out.append("  ".join("-" * w for w in widths))
        out += [line.format(*row).rstrip() for row in body]
        out.append(
            f"total: {self.total_parameters:,} parameters, {self.trainable_parameters:,} trainable"
        )
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


def freeze_table(model: keras.Model, info: ModelInfo) -> FreezeTable:
    """The current freeze state of ``model`` per group (call after :func:`apply_freeze`)."""
    groups = freeze_groups(model, info)
    return FreezeTable(
        name=model.name,
        groups=groups,
        total_parameters=int(model.count_params()),
        trainable_parameters=sum(math.prod(w.shape) for w in model.trainable_weights),
    )
