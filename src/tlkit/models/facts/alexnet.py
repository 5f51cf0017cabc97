"""AlexNet's and ZFNet's facts: their layer tables and registry entries.

References:
    A. Krizhevsky, I. Sutskever and G. E. Hinton, "ImageNet Classification with Deep
    Convolutional Neural Networks", NIPS 2012 (section 3, Figure 2).
    M. D. Zeiler and R. Fergus, "Visualizing and Understanding Convolutional Networks",
    ECCV 2014 (Figure 3).

Built by :mod:`tlkit.models.alexnet`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlkit.models.info import FreezeGroup, ModelInfo

ALEXNET_PAPER = "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep CNNs, NIPS 2012"
ZFNET_PAPER = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014"


@dataclass(frozen=True)
class ConvStage:
    """One row of the conv part: ``conv{i}`` (+ ReLU), then optional LRN ``norm{i}``/pool ``pool{i}``.

    Attributes:
        filters: Output channels.
        kernel: Kernel side.
        strides: Stride.
        padding: Zero padding on each side (applied as ``conv{i}_pad`` when not "same").
        grouped: Split into the paper's two towers when ``towers=2``.
        norm: LRN after this stage.
        pool: 3x3/2 max pooling after this stage: None, "valid" or "same".
    """

    filters: int
    kernel: int
    strides: int = 1
    padding: int | str = "same"
    grouped: bool = False
    norm: bool = False
    pool: str | None = None


@dataclass(frozen=True)
class Spec:
    """A whole network: conv stages, LRN before or after pooling, FC widths, input sizes."""

    stages: tuple[ConvStage, ...]
    norm_before_pool: bool
    fc: tuple[int, ...]
    default_size: int
    min_size: int


ALEXNET = Spec(
    stages=(
        ConvStage(96, 11, 4, padding=0, norm=True, pool="valid"),
        ConvStage(256, 5, padding="same", grouped=True, norm=True, pool="valid"),
        ConvStage(384, 3),
        ConvStage(384, 3, grouped=True),
        ConvStage(256, 3, grouped=True, pool="valid"),
    ),
    norm_before_pool=True,
    fc=(4096, 4096),
    default_size=227,
    min_size=67,
)
"""227 -> conv1 55 -> pool1 27 -> conv2 27 -> pool2 13 -> conv3-5 13 -> pool5 6."""

ZFNET = Spec(
    stages=(
        ConvStage(96, 7, 2, padding=1, norm=True, pool="same"),
        ConvStage(256, 5, 2, padding=0, norm=True, pool="same"),
        ConvStage(384, 3),
        ConvStage(384, 3),
        ConvStage(256, 3, pool="valid"),
    ),
    norm_before_pool=False,
    fc=(4096, 4096),
    default_size=224,
    min_size=53,
)
"""224 -> pad 1, conv1 110 -> pool1 55 -> conv2 26 -> pool2 13 -> conv3-5 13 -> pool5 6."""


_FREEZE_GROUPS = tuple(
    FreezeGroup(f"conv{i}", rf"^(conv|norm|pool){i}(_|$)") for i in range(1, 6)
) + (FreezeGroup("fc", r"^(flatten|fc\d)"),)

MODELS = tuple(
    ModelInfo(
        id=model_id,
        family="alexnet",
        builder=f"tlkit.models.alexnet:{builder}",
        paper=paper,
        default_size=spec.default_size,
        min_size=spec.min_size,
        preprocessing="tf",
        feature_size=spec.stages[-1].filters,
        weight_layers=len(spec.stages) + len(spec.fc) + 1,
        freeze_groups=_FREEZE_GROUPS,
        kwargs=kwargs,
        description=description,
    )
    for model_id, builder, spec, paper, kwargs, description in (
        ("alexnet", "AlexNet", ALEXNET, ALEXNET_PAPER, {}, "AlexNet, one tower, 227x227"),
        (
            "alexnet_2tower",
            "AlexNet",
            ALEXNET,
            ALEXNET_PAPER,
            {"towers": 2},
            "AlexNet as the paper's two GPU towers (grouped conv2, conv4, conv5)",
        ),
        ("zfnet", "ZFNet", ZFNET, ZFNET_PAPER, {}, "ZFNet: AlexNet with a 7x7/2 first layer"),
    )
)
