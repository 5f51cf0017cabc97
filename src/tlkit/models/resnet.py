"""ResNet-18/34/50/101/152 and their plain (shortcut-free) twins.

He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385). Every depth is a row of :data:`RESNET_SPECS` (block type, blocks per
stage), built by one builder, :func:`ResNet`.

ResNet-50/101/152 are layer-for-layer identical to ``keras.applications.ResNet50/101/152``
(ResNet v1 as Keras ships it: the stride of a stage sits in the first 1x1 conv of its first
block, every conv has a bias, BatchNormalization with ``epsilon=1.001e-5``): same names, same
weighted layers in the same order, so Keras' official ImageNet ``.h5`` files load into them.
ResNet-18/34 use the paper's basic block with the same naming grammar
(``conv3_block1_1_conv``, ``conv3_block1_2_conv``, projection ``conv3_block1_0_conv``).

The tables and the registry's facts are plain data in :mod:`tlkit.models.facts.resnet`.

The ``PlainNet*`` builders are the plain baselines of the paper's degradation experiment
(section 4.1, Table 2, Fig. 4): the same conv/BN/ReLU stack with no shortcut additions and no
1x1 projection convs.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.errors import UnknownNameError
from tlkit.models._common import application_args, build_backbone
from tlkit.models.facts.resnet import (
    BOTTLENECK_EXPANSION,
    OFFICIAL_WEIGHTS,
    RESNET_SPECS,
    STAGE_FILTERS,
    ResNetSpec,
    builder_name,
    description,
)
from tlkit.models.facts.resnet import model_id as _model_id

BN_EPSILON = 1.001e-5
BN_AXIS = 3


def _conv_bn(x, filters: int, kernel_size: int, strides: int, name: str, relu: bool = True):
    """Conv (with bias, as keras.applications' v1) -> BN -> optional ReLU, named ``name_*``."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid" if kernel_size == 1 else "same",
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(axis=BN_AXIS, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def _merge(x, shortcut, name: str):
    """Add the shortcut (when there is one) and apply the block's final ReLU."""
    if shortcut is not None:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def bottleneck_block(
    x, filters: int, stride: int = 1, projection: bool = False, shortcuts: bool = True, *, name: str
):
    """Bottleneck block 1x1 -> 3x3 -> 1x1 (x4), as keras.applications' ``residual_block_v1``.

    Args:
        x: Input tensor.
        filters: Filters of the 1x1 reduce and 3x3 convs; the output has ``4 * filters``.
        stride: Stride of the first 1x1 conv (and of the projection).
        projection: Use a 1x1 conv + BN projection shortcut (``{name}_0_conv``).
        shortcuts: False builds the plain twin: no shortcut, no projection, no Add.
        name: Block name, e.g. ``conv3_block1``.
    """
    shortcut = None
    if shortcuts:
        shortcut = x
        if projection:
            shortcut = _conv_bn(
                x, BOTTLENECK_EXPANSION * filters, 1, stride, f"{name}_0", relu=False
            )
    x = _conv_bn(x, filters, 1, stride, f"{name}_1")
    x = _conv_bn(x, filters, 3, 1, f"{name}_2")
    x = _conv_bn(x, BOTTLENECK_EXPANSION * filters, 1, 1, f"{name}_3", relu=False)
    return _merge(x, shortcut, name)


def basic_block(
    x, filters: int, stride: int = 1, projection: bool = False, shortcuts: bool = True, *, name: str
):
    """Basic block 3x3 -> 3x3 of ResNet-18/34 (paper Fig. 2 left), stride in the first conv.

    Args:
        x: Input tensor.
        filters: Filters of both 3x3 convs.
        stride: Stride of the first conv (and of the projection).
        projection: Use a 1x1 conv + BN projection shortcut (``{name}_0_conv``).
        shortcuts: False builds the plain twin: no shortcut, no projection, no Add.
        name: Block name, e.g. ``conv3_block1``.
    """
    shortcut = None
    if shortcuts:
        shortcut = x
        if projection:
            shortcut = _conv_bn(x, filters, 1, stride, f"{name}_0", relu=False)
    x = _conv_bn(x, filters, 3, stride, f"{name}_1")
    x = _conv_bn(x, filters, 3, 1, f"{name}_2", relu=False)
    return _merge(x, shortcut, name)


_BLOCKS = {"bottleneck": bottleneck_block, "basic": basic_block}


def residual_stage(x, spec: ResNetSpec, stage: int, shortcuts: bool = True):
    """One stage (``conv{stage+2}_x``) of ``spec``: its blocks, stride 2 except for conv2."""
    filters = STAGE_FILTERS[stage]
    block = _BLOCKS[spec.block]
    out_channels = filters * (BOTTLENECK_EXPANSION if spec.block == "bottleneck" else 1)
    stride = 1 if stage == 0 else 2
    # Project where the shape changes: every stage's first bottleneck block (64 -> 256 in conv2
    # too, as keras.applications), but only conv3-conv5's first basic block.
    projection = stride != 1 or x.shape[-1] != out_channels
    prefix = f"conv{stage + 2}"
    x = block(x, filters, stride, projection, shortcuts, name=f"{prefix}_block1")
    for i in range(2, spec.blocks[stage] + 1):
        x = block(x, filters, 1, False, shortcuts, name=f"{prefix}_block{i}")
    return x


def ResNet(
    depth: int,
    shortcuts: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
) -> keras.Model:
    """Build ResNet-``depth`` (He et al. 2016), or its plain twin with ``shortcuts=False``.

    Args:
        depth: 18, 34, 50, 101 or 152 (a row of :data:`RESNET_SPECS`).
        shortcuts: False drops every shortcut addition and projection conv (the paper's
            plain network); the conv/BN/ReLU layers and their names are otherwise unchanged.
        include_top: Add global average pooling and the ``predictions`` layer.
        weights: None, ``"imagenet"`` (ResNet-50/101/152 only) or a weights file path.
        input_tensor: Optional Keras tensor to build on.
        input_shape: Optional ``(height, width, 3)``; sides of at least 32.
        pooling: None, ``"avg"`` or ``"max"`` when ``include_top`` is False.
        classes: Number of classes of the top.
        classifier_activation: Activation of ``predictions`` (None for logits).
        name: Model name; defaults to the registry id (``resnet50``, ``plain34``).

    Returns:
        A functional ``keras.Model``.
    """
    if depth not in RESNET_SPECS:
        raise UnknownNameError("ResNet depth", str(depth), [str(d) for d in RESNET_SPECS])
    spec = RESNET_SPECS[depth]
    model_id = _model_id(depth, shortcuts)

    def body(x):
        x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
        x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
        x = layers.BatchNormalization(axis=BN_AXIS, epsilon=BN_EPSILON, name="conv1_bn")(x)
        x = layers.Activation("relu", name="conv1_relu")(x)
        x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
        for stage in range(len(spec.blocks)):
            x = residual_stage(x, spec, stage, shortcuts)
        return x

    def top(x, classes, classifier_activation):
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return layers.Dense(classes, activation=classifier_activation, name="predictions")(x)

    return build_backbone(
        body,
        top,
        model_id=model_id,
        name=name or model_id,
        **application_args(locals()),
        default_size=224,
        min_size=32,
        official=OFFICIAL_WEIGHTS.get(depth) if shortcuts else None,
    )


def _entry_point(depth: int, shortcuts: bool):
    model_id = _model_id(depth, shortcuts)

    def builder(
        include_top: bool = True,
        weights: str | None = None,
        input_tensor: Any = None,
        input_shape: tuple | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation: str | None = "softmax",
        name: str = model_id,
    ) -> keras.Model:
        return ResNet(
            depth,
            shortcuts=shortcuts,
            **application_args(locals()),
            name=name,
        )

    builder.__name__ = builder.__qualname__ = builder_name(depth, shortcuts)
    builder.__doc__ = (
        f"{description(depth, shortcuts)}\n\nSame arguments as keras.applications' builders; "
        "see :func:`ResNet`."
    )
    return builder


ResNet18 = _entry_point(18, True)
ResNet34 = _entry_point(34, True)
ResNet50 = _entry_point(50, True)
ResNet101 = _entry_point(101, True)
ResNet152 = _entry_point(152, True)
PlainNet18 = _entry_point(18, False)
PlainNet34 = _entry_point(34, False)
PlainNet50 = _entry_point(50, False)
PlainNet101 = _entry_point(101, False)
PlainNet152 = _entry_point(152, False)
