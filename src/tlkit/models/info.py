"""What the registry knows about an architecture (:class:`ModelInfo`), as plain data.

Nothing here imports Keras: the facts of every architecture (:mod:`tlkit.models.facts`) are
made of these classes, so ``tlkit recipes``, ``tlkit models`` and recipe validation read them
without TensorFlow. An entry names its builder by reference (``"tlkit.models.vgg:VGG"``), and
the builder's module, with Keras, is imported the first time the builder is called.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tlkit.errors import UserError
from tlkit.weights import ImageNetWeights

PREPROCESSING_MODES = ("caffe", "tf", "torch", "none")


@dataclass(frozen=True)
class FreezeGroup:
    """A named, ordered group of layers: ``pattern`` is a regex matched against layer names."""

    name: str
    pattern: str


def resolve(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names, importing the module.

    The attribute may be a dotted path, whose steps are attributes or keys of a mapping
    (``"tlkit.models.applications:BUILDERS.EfficientNetB0"``).
    """
    module, _, path = reference.partition(":")
    target: Any = importlib.import_module(module)
    for step in path.split("."):
        target = target[step] if isinstance(target, Mapping) else getattr(target, step)
    return target


@dataclass(frozen=True)
class BuilderRef:
    """A builder named by ``"module:attribute"``, imported (with Keras) when first called.

    It stands for the builder itself: calling it calls the builder, and its ``__name__`` and
    other attributes are the builder's.
    """

    reference: str

    def resolve(self) -> Callable[..., Any]:
        return resolve(self.reference)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # the builder's own attributes; other dunders (copy, pickle) stay the reference's
        if name.startswith("__") and name not in ("__name__", "__qualname__", "__wrapped__"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)


@dataclass(frozen=True)
class ModelInfo:
    """Facts about one registered architecture.

    Attributes:
        id: Lower-case id used in recipes and on the command line.
        family: Family id (``vgg``, ``resnet``...).
        builder: keras.applications-style builder (``include_top, weights, input_tensor,
            input_shape, pooling, classes, classifier_activation, name``). Given as a
            ``"module:attribute"`` reference it is a :class:`BuilderRef`, which imports the
            builder's module when first called.
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
            files (:class:`~tlkit.weights.OfficialWeights`) or a checkpoint converted into
            Keras' cache (:class:`~tlkit.weights.ConvertedWeights`).
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

    def __post_init__(self):
        if isinstance(self.builder, str):
            object.__setattr__(self, "builder", BuilderRef(self.builder))

    def builder_parameters(self) -> Mapping[str, inspect.Parameter]:
        """The builder's parameters by name (imports the builder, and Keras)."""
        builder = self.builder.resolve() if isinstance(self.builder, BuilderRef) else self.builder
        return inspect.signature(builder).parameters

    def with_args(self, args: Mapping[str, Any]) -> ModelInfo:
        """This entry with ``args`` added to its builder arguments (``model.backbone_args``).

        Imports the builder (and Keras) to check the names against its signature.

        Raises:
            UserError: an argument the builder does not take, naming the ones it does.
        """
        params = self.builder_parameters()
        unknown = sorted(set(args) - set(params))
        if unknown:
            own = sorted(set(params) - {"include_top", "weights", "input_tensor", "input_shape",
                                        "pooling", "classes", "classifier_activation", "name"})
            raise UserError(
                f"model.backbone_args: {self.id}'s builder takes no {', '.join(unknown)}; its own "
                f"arguments are: {', '.join(own) or 'none'}"
            )
        fixed = sorted(set(args) & set(self.kwargs))
        if fixed:
            raise UserError(
                f"model.backbone_args: {', '.join(fixed)} is what makes {self.id} itself; pick "
                "another backbone id (tlkit models) instead"
            )
        return dataclasses.replace(self, kwargs={**dict(self.kwargs), **dict(args)})

    def build(self, **kwargs: Any):
        """Build the model with ``kwargs`` on top of the entry's own builder arguments."""
        return self.builder(**{**dict(self.kwargs), **kwargs})

    @property
    def default_input_shape(self) -> tuple[int, int, int]:
        return (self.default_size, self.default_size, self.channels)
