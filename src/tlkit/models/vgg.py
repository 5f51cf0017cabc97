"""VGG configurations A, A-LRN, B, C, D and E as rows of one table, and one builder.

Reference: K. Simonyan and A. Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", ICLR 2015 (arXiv:1409.1556), Table 1 (configurations) and Table 2
(parameters: 133, 133, 133, 134, 138 and 144 million).

Configurations D and E have exactly keras.applications.VGG16/VGG19's weighted layers (names,
order, shapes), so keras' official ImageNet ``.h5`` files load into them. The table and the
registry's facts are plain data in :mod:`tlkit.models.facts.vgg`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.errors import UnknownNameError, UserError
from tlkit.layers import LocalResponseNormalization
from tlkit.models._common import application_args, build_backbone, fc_top
from tlkit.models.facts.vgg import (
    CONFIGS,
    DEFAULT_SIZE,
    MIN_SIZE,
    OFFICIAL_WEIGHTS,
    WIDTHS,
    VGGConfig,
)


def _config(config: str) -> VGGConfig:
    key = str(config).strip().upper().replace("_", "-")
    if key not in CONFIGS:
        raise UnknownNameError("VGG config", config, CONFIGS)
    return CONFIGS[key]


def vgg_block(x, filters: int, kernels: tuple[int, ...], *, lrn: bool = False, name: str):
    """Conv layers (ReLU, 'same' padding) then a 2x2/2 max pool: ``{name}_conv{i}``, ``{name}_pool``.

    Args:
        x: Input feature map.
        filters: Output channels of every conv layer.
        kernels: Kernel side of each conv layer, in order.
        lrn: Insert LRN (``{name}_lrn``) after the first conv layer (configuration A-LRN).
        name: Block name, e.g. ``block3``.
    """
    for i, k in enumerate(kernels, start=1):
        x = layers.Conv2D(
            filters, (k, k), activation="relu", padding="same", name=f"{name}_conv{i}"
        )(x)
        if lrn and i == 1:
            x = LocalResponseNormalization(name=f"{name}_lrn")(x)
    return layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"{name}_pool")(x)


def VGG(
    config: str = "D",
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
    dropout: float = 0.0,
    width: float = 1.0,
) -> keras.Model:
    """Build a VGG network from a row of the paper's Table 1.

    Layer names follow keras.applications (``block1_conv1``..., ``flatten``, ``fc1``, ``fc2``,
    ``predictions``). Configuration C's 1x1 convs are named by position (``block3_conv3``).

    Args:
        config: ``"A"``, ``"A-LRN"``, ``"B"``, ``"C"``, ``"D"`` (VGG16) or ``"E"`` (VGG19).
        include_top: Add the three fully connected layers.
        weights: None, ``"imagenet"`` (D and E only) or a path to a weights file.
        input_tensor: Optional Keras tensor to build on.
        input_shape: Optional ``(height, width, 3)``; sides of at least 32.
        pooling: None, ``"avg"`` or ``"max"`` global pooling when ``include_top=False``.
        classes: Number of classes of the top.
        classifier_activation: Activation of ``predictions``.
        name: Model name; defaults to the configuration's id (``vgg16``).
        dropout: Rate of the paper's dropout after fc1 and fc2 (``fc1_dropout``,
            ``fc2_dropout``; the paper trains with 0.5). The default 0 adds no layers, so the
            model is layer for layer keras.applications' VGG; dropout has no weights, so
            either way the same weight files load and inference outputs are identical.
        width: Multiplier of every layer's width (conv filters 64...512, fc 4096), rounded,
            at least 1. The paper's networks are 1.0 (the only width the ImageNet weights
            fit); ``0.25`` keeps each configuration's depth and layout at 1/16 of the
            computation, for small-scale studies (docs/paper-claims.md).

    Returns:
        A functional ``keras.Model``.
    """
    cfg = _config(config)
    if not width > 0:
        raise UserError(f"VGG width must be positive, got {width!r}")

    def scaled(units: int) -> int:
        return max(1, round(units * width))

    official = OFFICIAL_WEIGHTS.get(cfg.model_id)
    if include_top and weights == "imagenet" and official and input_shape is not None:
        if tuple(input_shape[:2]) != (DEFAULT_SIZE, DEFAULT_SIZE):
            raise UserError(
                f"weights='imagenet' with include_top=True needs input_shape "
                f"({DEFAULT_SIZE}, {DEFAULT_SIZE}, 3), got {tuple(input_shape)}"
            )

    def body(x):
        for i, (filters, kernels) in enumerate(zip(WIDTHS, cfg.blocks, strict=True), start=1):
            x = vgg_block(
                x, scaled(filters), kernels, lrn=cfg.lrn and i == 1, name=f"block{i}"
            )
        return x

    return build_backbone(
        body,
        fc_top({"fc1": scaled(4096), "fc2": scaled(4096)}, dropout=dropout),
        model_id=cfg.model_id,
        name=name or cfg.model_id,
        **application_args(locals()),
        default_size=DEFAULT_SIZE,
        min_size=MIN_SIZE,
        official=official,
    )


def _entry(config: str, model_name: str, doc: str):
    def build(
        include_top: bool = True,
        weights: Any = None,
        input_tensor: Any = None,
        input_shape: tuple | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation: str | None = "softmax",
        name: str = model_name,
        dropout: float = 0.0,
        width: float = 1.0,
    ) -> keras.Model:
        return VGG(
            config,
            **application_args(locals()),
            name=name,
            dropout=dropout,
            width=width,
        )

    build.__name__ = build.__qualname__ = model_name.upper()
    build.__doc__ = f"{doc} Same arguments as :func:`VGG` (keras.applications' signature)."
    return build


VGG11 = _entry("A", "vgg11", "VGG configuration A (11 weight layers).")
VGG13 = _entry("B", "vgg13", "VGG configuration B (13 weight layers).")
VGG16 = _entry("D", "vgg16", "VGG configuration D (16 weight layers), as keras.applications.")
VGG19 = _entry("E", "vgg19", "VGG configuration E (19 weight layers), as keras.applications.")
