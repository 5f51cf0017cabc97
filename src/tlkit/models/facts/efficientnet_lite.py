"""EfficientNet-Lite's facts: the stages and variants it is scaled from, its blocks, where its
ImageNet weights come from, and its registry entries.

Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019
(arXiv:1905.11946), and Google's EfficientNet-Lite (tensorflow/tpu,
``models/official/efficientnet/lite``). Built by :mod:`tlkit.models.efficientnet_lite`; the
weights' converters are :mod:`tlkit.models.efficientnet_lite_weights`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tlkit.models.efficientnet_lite_weights import imagenet_weights
from tlkit.models.info import FreezeGroup, ModelInfo

PAPER = (
    "Tan & Le, EfficientNet, ICML 2019 (arXiv:1905.11946); EfficientNet-Lite, "
    "tensorflow/tpu models/official/efficientnet/lite"
)
TOP_FILTERS = 1280
DEPTH_DIVISOR = 8
MIN_SIZE = 32


@dataclass(frozen=True)
class Stage:
    """One row of EfficientNet-B0's Table 1 (stages 2-8): MBConv blocks of one kind.

    Attributes:
        kernel: Depthwise kernel side.
        repeats: Blocks in the stage (before depth scaling).
        filters_in, filters_out: Channels in and out (before width scaling).
        expand_ratio: Channels of the expansion 1x1 conv over the input's (MBConv1, MBConv6).
        strides: Stride of the stage's first block.
    """

    kernel: int
    repeats: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int


STAGES = (
    Stage(3, 1, 32, 16, 1, 1),
    Stage(3, 2, 16, 24, 6, 2),
    Stage(5, 2, 24, 40, 6, 2),
    Stage(3, 3, 40, 80, 6, 2),
    Stage(5, 3, 80, 112, 6, 1),
    Stage(5, 4, 112, 192, 6, 2),
    Stage(3, 1, 192, 320, 6, 1),
)


@dataclass(frozen=True)
class LiteSpec:
    """One EfficientNet-Lite variant, with tensorflow/tpu's published figures.

    Attributes:
        width, depth: Width and depth multipliers (``efficientnet_lite_params``).
        resolution: Input side it was trained at.
        dropout: Dropout before the classifier.
        params_m: Published parameters, millions (BatchNorm statistics not counted).
        madds: Published multiply-adds.
        top1: Published ImageNet top-1, float32 (%).
        top1_int8: Published ImageNet top-1 after int8 post-training quantisation (%).
    """

    width: float
    depth: float
    resolution: int
    dropout: float
    params_m: float
    madds: str
    top1: float
    top1_int8: float


LITE_SPECS: dict[int, LiteSpec] = {
    0: LiteSpec(1.0, 1.0, 224, 0.2, 4.7, "407M", 75.1, 74.4),
    1: LiteSpec(1.0, 1.1, 240, 0.2, 5.4, "631M", 76.7, 75.9),
    2: LiteSpec(1.1, 1.2, 260, 0.3, 6.1, "899M", 77.6, 77.0),
    3: LiteSpec(1.2, 1.4, 280, 0.3, 8.2, "1.44B", 79.8, 79.3),
    4: LiteSpec(1.4, 1.8, 300, 0.3, 13.0, "2.64B", 81.5, 80.2),
}


def round_filters(filters: int, width: float) -> int:
    """Channels after width scaling, a multiple of 8 never more than 10% below the product
    (tensorflow/tpu's ``round_filters``)."""
    scaled = filters * width
    rounded = max(DEPTH_DIVISOR, int(scaled + DEPTH_DIVISOR / 2) // DEPTH_DIVISOR * DEPTH_DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += DEPTH_DIVISOR
    return int(rounded)


def stage_repeats(index: int, depth: float) -> int:
    """Blocks in stage ``index`` (0-6) after depth scaling; Lite keeps the first and last."""
    repeats = STAGES[index].repeats
    if index in (0, len(STAGES) - 1):
        return repeats
    return int(math.ceil(depth * repeats))


@dataclass(frozen=True)
class BlockPlan:
    """One MBConv block of a variant, scaled: what the builder and the converters share."""

    name: str
    stage: int
    kernel: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int

    @property
    def expands(self) -> bool:
        return self.expand_ratio != 1

    @property
    def adds(self) -> bool:
        return self.strides == 1 and self.filters_in == self.filters_out


def block_plans(variant: int) -> list[BlockPlan]:
    """Every block of EfficientNet-Lite``variant``, input to output (``block1a``, ``block2a``,
    ``block2b``...)."""
    spec = LITE_SPECS[variant]
    plans = []
    for index, stage in enumerate(STAGES):
        filters_in = round_filters(stage.filters_in, spec.width)
        filters_out = round_filters(stage.filters_out, spec.width)
        for j in range(stage_repeats(index, spec.depth)):
            plans.append(
                BlockPlan(
                    name=f"block{index + 1}{chr(ord('a') + j)}",
                    stage=index + 1,
                    kernel=stage.kernel,
                    filters_in=filters_in if j == 0 else filters_out,
                    filters_out=filters_out,
                    expand_ratio=stage.expand_ratio,
                    strides=stage.strides if j == 0 else 1,
                )
            )
    return plans


#: Where each variant's ImageNet weights come from (see :mod:`tlkit.models.efficientnet_lite`).
IMAGENET_WEIGHTS = {v: imagenet_weights(v, block_plans(v)) for v in LITE_SPECS}

FREEZE_GROUPS = (
    FreezeGroup("stem", r"^stem_"),
    *(FreezeGroup(f"block{i}", rf"^block{i}[a-z]_") for i in range(1, len(STAGES) + 1)),
    FreezeGroup("top", r"^top_(conv|bn|activation)$"),
)
UNIT_PATTERN = r"^(block\d[a-z])_"


def description(variant: int) -> str:
    """One line on EfficientNet-Lite``variant`` (listings, the builder's docstring)."""
    spec = LITE_SPECS[variant]
    return (
        f"EfficientNet-Lite{variant} (width {spec.width}, depth {spec.depth}, "
        f"{spec.resolution}px; ImageNet top-1 {spec.top1}%, int8 {spec.top1_int8}%)."
    )


MODELS = tuple(
    ModelInfo(
        id=f"efficientnet_lite{variant}",
        family="efficientnet_lite",
        builder=f"tlkit.models.efficientnet_lite:EfficientNetLite{variant}",
        paper=PAPER,
        default_size=spec.resolution,
        min_size=MIN_SIZE,
        preprocessing="none",
        preprocessing_inside="rescaling: (x - 127) / 128",
        feature_size=TOP_FILTERS,
        weight_layers=1 + sum(3 if p.expands else 2 for p in block_plans(variant)) + 2,
        freeze_groups=FREEZE_GROUPS,
        unit_pattern=UNIT_PATTERN,
        official_weights=IMAGENET_WEIGHTS[variant],
        # tlkit's transfer models leave stochastic depth out: a frozen block would
        # still drop its branch in training, so a frozen backbone's features would be
        # noisy (and could not be cached); EfficientNetLite0() keeps the paper's 0.2
        kwargs={"drop_connect_rate": 0.0},
        aliases=(f"efficientnet-lite{variant}", f"efficientnetlite{variant}",
                 f"lite{variant}"),
        description=description(variant),
    )
    for variant, spec in LITE_SPECS.items()
)
