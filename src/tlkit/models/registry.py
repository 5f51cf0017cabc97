"""The model registry: one entry per architecture with every fact the rest of tlkit needs.

Builders register themselves (see ``register``) when their family module is imported, and
importing this module imports the ``tlkit.models`` package, which imports every family: the
registry is complete whenever it can be asked. Nothing elsewhere in tlkit branches on an
architecture id. Entries are looked up by lower-case id (``vgg16``, ``resnet50``, ``googlenet``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tlkit.errors import UnknownNameError
from tlkit.weights import ImageNetWeights

PREPROCESSING_MODES = ("caffe", "tf", "torch", "none")


@dataclass(frozen=True)
class FreezeGroup:
    """A named, ordered group of layers: ``pattern`` is a regex matched against layer names."""

    name: str
    pattern: str


@dataclass(frozen=True)
class ModelInfo:
    """Facts about one registered architecture.

    Attributes:
        id: Lower-case id used in recipes and on the command line.
        family: Family id (``vgg``, ``resnet``...).
        builder: keras.applications-style builder (``include_top, weights, input_tensor,
            input_shape, pooling, classes, classifier_activation, name``).
        paper: Short citation of the paper.
        default_size: Side of the paper's input (e.g. 224).
        min_size: Smallest input side the backbone (``include_top=False``) accepts.
        channels: Input channels of the default input.
        preprocessing: ``caffe``, ``tf``, ``torch`` or ``none``: keras.applications' mode, put
            before the backbone by the transfer model (``none`` when the backbone has its own).
        preprocessing_inside: The normalisation the builder puts inside the model itself, for
            backbones that take raw 0..255 RGB as keras.applications' EfficientNet does
            (empty when there is none). Those layers have no weights and join no freeze group.
        feature_size: Channels of the backbone's last feature map.
        weight_layers: Depth counted as the name counts it (VGG16: 16, ResNet-50: 50).
        freeze_groups: Ordered groups, input to output; unmatched layers belong to the head.
        unit_pattern: Regex whose group 1 names the block (residual unit, inception module)
            a layer belongs to; ``--freeze N`` never splits a block.
        official_weights: Where its ImageNet weights come from, if anywhere: keras.applications'
            files (:class:`OfficialWeights`) or a checkpoint converted into Keras' cache
            (:class:`~tlkit.weights.ConvertedWeights`).
        kwargs: Extra keyword arguments for ``builder`` (e.g. a VGG config letter).
        aliases: Other accepted ids (``vgg_d`` for ``vgg16``).
        aux_min_size: Set when the builder takes ``aux_classifiers=True`` (auxiliary outputs for
            training, as GoogLeNet's): the smallest input they work at.
        description: One line for listings.
    """

    id: str
    family: str
    builder: Callable[..., Any]
    paper: str
    default_size: int
    min_size: int
    preprocessing: str
    feature_size: int
    weight_layers: int
    freeze_groups: tuple[FreezeGroup, ...]
    channels: int = 3
    unit_pattern: str | None = None
    preprocessing_inside: str = ""
    official_weights: ImageNetWeights | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    aux_min_size: int | None = None
    description: str = ""

    def build(self, **kwargs: Any):
        """Build the model with ``kwargs`` on top of the entry's own builder arguments."""
        return self.builder(**{**dict(self.kwargs), **kwargs})

    @property
    def default_input_shape(self) -> tuple[int, int, int]:
        return (self.default_size, self.default_size, self.channels)


_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}


def register(info: ModelInfo) -> ModelInfo:
    """Add ``info`` to the registry (ids are unique and lower case)."""
    if info.id != info.id.lower():
        raise ValueError(f"model ids are lower case: {info.id!r}")
    if info.id in _REGISTRY:
        raise ValueError(f"model id registered twice: {info.id!r}")
    if info.preprocessing not in PREPROCESSING_MODES:
        raise ValueError(f"{info.id}: preprocessing must be one of {PREPROCESSING_MODES}")
    _REGISTRY[info.id] = info
    for alias in info.aliases:
        _ALIASES[alias] = info.id
    return info


def get_model_info(model_id: str) -> ModelInfo:
    """Return the registry entry for ``model_id``.

    Raises:
        UnknownNameError: with the closest valid ids (exit code 2 on the CLI).
    """
    key = str(model_id).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        # "VGG-16", "ResNet50", "vgg_16": compare without separators
        squashed = {_squash(k): k for k in [*_REGISTRY, *_ALIASES]}
        key = _ALIASES.get(squashed.get(_squash(key), key), squashed.get(_squash(key), key))
    if key not in _REGISTRY:
        raise UnknownNameError("model", model_id, _REGISTRY)
    return _REGISTRY[key]


def _squash(name: str) -> str:
    return name.replace("_", "").replace("-", "")


def model_ids() -> list[str]:
    """All registered ids, in registration order."""
    return list(_REGISTRY)


def build_model(model_id: str, **kwargs: Any):
    """Build a registered architecture by id (``build_model("vgg16", include_top=False)``)."""
    return get_model_info(model_id).build(**kwargs)
