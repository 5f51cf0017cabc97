"""The CIFAR-10 ResNets (20, 32, 44, 56, 110 layers) of He et al. 2016, and their plain twins.

He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385), section 4.2: the networks of the degradation experiment on CIFAR-10
(Fig. 6, Table 6). The facts are in :mod:`tlkit.models.facts.resnet_cifar`.

As the paper: 3x3 convs without bias, each followed by BatchNormalization (and ReLU except
before an addition), He-normal initialisation, identity shortcuts everywhere (option A: where
a stage halves the map and doubles the filters, the shortcut takes every other pixel and pads
the new channels with zeros). A stride-2 conv pads one pixel on every side, as the paper's
Torch code, so that its output pixel i is centred on the input pixel 2i the shortcut keeps. The shortcut is made of Keras' own layers (a 1x1/2 max pool, a
``Rescaling(0)`` for the zeros and a ``Concatenate``), so the model saves and loads without
custom objects. Layer names follow :mod:`tlkit.models.resnet` (``conv3_block1_1_conv``).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.models._common import application_args, build_backbone
from tlkit.models.facts.resnet_cifar import (
    STAGE_FILTERS,
    blocks_per_stage,
    builder_name,
    description,
)
from tlkit.models.facts.resnet_cifar import model_id as _model_id

INITIALIZER = "he_normal"


def _conv_bn(x, filters: int, strides: int, name: str, relu: bool = True):
    if strides != 1:
        # One pixel on every side, as the paper's Torch (Keras' "same" would pad only the
        # bottom and right at stride 2, centring output i on input 2i + 1): output i is
        # centred on input 2i, the pixel the identity shortcut keeps.
        x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    x = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=False,
        kernel_initializer=INITIALIZER,
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def identity_shortcut(x, filters: int, stride: int, name: str):
    """Option A: ``x`` itself, or every ``stride``-th pixel with zero channels up to ``filters``."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    if stride != 1:
        x = layers.MaxPooling2D(pool_size=1, strides=stride, name=f"{name}_0_subsample")(x)
    extra = filters - x.shape[-1]
    if extra:
        if extra != x.shape[-1]:
            raise ValueError(f"option A doubles the channels; got {x.shape[-1]} -> {filters}")
        zeros = layers.Rescaling(0.0, name=f"{name}_0_zeros")(x)
        x = layers.Concatenate(name=f"{name}_0_pad")([x, zeros])
    return x


def cifar_block(x, filters: int, stride: int, shortcuts: bool, *, name: str):
    """Basic block 3x3 -> 3x3 with an identity shortcut (none when ``shortcuts`` is False)."""
    shortcut = identity_shortcut(x, filters, stride, name) if shortcuts else None
    x = _conv_bn(x, filters, stride, f"{name}_1")
    x = _conv_bn(x, filters, 1, f"{name}_2", relu=False)
    if shortcut is not None:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def CifarResNet(
    depth: int,
    shortcuts: bool = True,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 10,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
) -> keras.Model:
    """Build the CIFAR ResNet of ``depth`` = 6n + 2 layers, or its plain twin.

    Args:
        depth: 20, 32, 44, 56 or 110 (the paper's Table 6).
        shortcuts: False drops every shortcut (the plain network of Fig. 6); the weights are
            the same either way.
        include_top: Add global average pooling and the ``predictions`` layer.
        weights: None or a weights file path (there are no official weights).
        input_tensor: Optional Keras tensor to build on.
        input_shape: Optional ``(height, width, 3)``; the paper's is 32x32, sides of at least 8.
        pooling: None, ``"avg"`` or ``"max"`` when ``include_top`` is False.
        classes: Number of classes of the top (the paper's 10).
        classifier_activation: Activation of ``predictions`` (None for logits).
        name: Model name; defaults to the registry id (``resnet20``, ``plain56``).

    Returns:
        A functional ``keras.Model``.
    """
    n = blocks_per_stage(depth)
    model_id = _model_id(depth, shortcuts)

    def body(x):
        x = _conv_bn(x, STAGE_FILTERS[0], 1, "conv1")
        for stage, filters in enumerate(STAGE_FILTERS):
            for i in range(1, n + 1):
                stride = 2 if stage > 0 and i == 1 else 1
                x = cifar_block(x, filters, stride, shortcuts, name=f"conv{stage + 2}_block{i}")
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
        default_size=32,
        min_size=8,
    )


def _entry_point(depth: int, shortcuts: bool):
    model_id = _model_id(depth, shortcuts)

    def builder(
        include_top: bool = True,
        weights: str | None = None,
        input_tensor: Any = None,
        input_shape: tuple | None = None,
        pooling: str | None = None,
        classes: int = 10,
        classifier_activation: str | None = "softmax",
        name: str = model_id,
    ) -> keras.Model:
        return CifarResNet(depth, shortcuts=shortcuts, **application_args(locals()), name=name)

    builder.__name__ = builder.__qualname__ = builder_name(depth, shortcuts)
    builder.__doc__ = (
        f"{description(depth, shortcuts)}\n\nSame arguments as keras.applications' builders "
        "(10 classes by default); see :func:`CifarResNet`."
    )
    return builder


ResNet20 = _entry_point(20, True)
ResNet32 = _entry_point(32, True)
ResNet44 = _entry_point(44, True)
ResNet56 = _entry_point(56, True)
ResNet110 = _entry_point(110, True)
PlainNet20 = _entry_point(20, False)
PlainNet32 = _entry_point(32, False)
PlainNet44 = _entry_point(44, False)
PlainNet56 = _entry_point(56, False)
PlainNet110 = _entry_point(110, False)
