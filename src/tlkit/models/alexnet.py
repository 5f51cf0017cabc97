"""AlexNet (one or two towers) and ZFNet: five conv stages and three FC layers, as tables.

References:
    A. Krizhevsky, I. Sutskever and G. E. Hinton, "ImageNet Classification with Deep
    Convolutional Neural Networks", NIPS 2012 (section 3, Figure 2).
    M. D. Zeiler and R. Fergus, "Visualizing and Understanding Convolutional Networks",
    ECCV 2014 (Figure 3).

The paper's two GPU towers are ``Conv2D(groups=2)`` for conv2, conv4 and conv5 (the layers whose
kernels only see the maps on their own GPU); conv1 (each half sees the whole image), conv3 and
the FC layers are full. Keras' TensorFlow backend runs grouped convolutions on CPU through XLA.
The tables and the registry's facts are plain data in :mod:`tlkit.models.facts.alexnet`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.errors import UserError
from tlkit.layers import LocalResponseNormalization
from tlkit.models._common import application_args, build_backbone, fc_top
from tlkit.models.facts.alexnet import ALEXNET, ZFNET, ConvStage, Spec


def conv_stage(
    x, stage: ConvStage, *, towers: int, norm_before_pool: bool, name: str, pool_size: int = 3
):
    """Build one conv stage; ``name`` is its index as a string (``"2"`` gives conv2, norm2, pool2).

    ``pool_size`` is the side of the stride-2 max pooling: the paper's overlapping 3, or 2 for
    the non-overlapping pooling it compares against (section 3.4).
    """
    padding = stage.padding
    if isinstance(padding, int):
        if padding:
            x = layers.ZeroPadding2D(padding, name=f"conv{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(
        stage.filters,
        stage.kernel,
        strides=stage.strides,
        padding=padding,
        groups=towers if stage.grouped else 1,
        activation="relu",
        name=f"conv{name}",
    )(x)
    norm = LocalResponseNormalization(name=f"norm{name}") if stage.norm else None
    pool = None
    if stage.pool:
        pool = layers.MaxPooling2D(
            pool_size, strides=2, padding=stage.pool, name=f"pool{name}"
        )
    for layer in (norm, pool) if norm_before_pool else (pool, norm):
        if layer is not None:
            x = layer(x)
    return x


def _build(
    spec: Spec,
    model_id: str,
    *,
    towers: int,
    include_top: bool,
    weights: Any,
    input_tensor: Any,
    input_shape: tuple | None,
    pooling: str | None,
    classes: int,
    classifier_activation: str | None,
    name: str,
    dropout: float,
    pool_size: int = 3,
) -> keras.Model:
    if towers not in (1, 2):
        raise UserError(f"towers must be 1 or 2, got {towers!r}")

    def body(x):
        for i, stage in enumerate(spec.stages, start=1):
            x = conv_stage(
                x,
                stage,
                towers=towers,
                norm_before_pool=spec.norm_before_pool,
                name=str(i),
                pool_size=pool_size,
            )
        return x

    fc = {f"fc{i}": width for i, width in enumerate(spec.fc, start=len(spec.stages) + 1)}
    return build_backbone(
        body,
        fc_top(fc, dropout=dropout),
        model_id=model_id,
        name=name,
        **application_args(locals()),
        default_size=spec.default_size,
        min_size=spec.min_size,
    )


def AlexNet(
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
    towers: int = 1,
    dropout: float = 0.5,
    overlapping_pooling: bool = True,
) -> keras.Model:
    """AlexNet at 227x227x3 (Krizhevsky et al. 2012).

    conv1 96 11x11/4 (valid), LRN, pool 3x3/2; conv2 256 5x5 (pad 2), LRN, pool; conv3 384,
    conv4 384, conv5 256 (3x3, pad 1), pool; fc6 4096, fc7 4096 (each followed by dropout);
    ``predictions``. 62,378,344 parameters with one tower, 60,965,224 with two.

    Args:
        include_top: Add fc6, fc7 and ``predictions``.
        weights: None or a path to a weights file (there are no official weights).
        input_tensor: Optional Keras tensor to build on.
        input_shape: Optional ``(height, width, channels)``; sides of at least 67 (the
            smallest input for which pool5 still has an output).
        pooling: None, ``"avg"`` or ``"max"`` global pooling when ``include_top=False``.
        classes: Number of classes.
        classifier_activation: Activation of ``predictions``.
        name: Model name; ``alexnet`` or ``alexnet_2tower``.
        towers: 1, or 2 for the paper's two-GPU split (grouped conv2, conv4 and conv5). LRN
            then still spans all channels, where the paper normalized each GPU's half.
        dropout: Rate of the dropout after fc6 and fc7 (the paper's 0.5; 0 adds no layer).
        overlapping_pooling: The paper's 3x3/2 pooling (True), or the non-overlapping 2x2/2
            it was compared with (section 3.4: overlapping lowered top-1 error by 0.4 %). The
            map sides are the same either way (55 -> 27 -> 13 -> 6 at 227).

    Returns:
        A functional ``keras.Model``.
    """
    model_id = "alexnet" if towers == 1 else "alexnet_2tower"
    return _build(
        ALEXNET,
        model_id,
        towers=towers,
        **application_args(locals()),
        name=name or model_id,
        dropout=dropout,
        pool_size=3 if overlapping_pooling else 2,
    )


def ZFNet(
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "zfnet",
    dropout: float = 0.5,
) -> keras.Model:
    """ZFNet at 224x224x3 (Zeiler & Fergus 2014, Figure 3).

    conv1 96 7x7/2, pool 3x3/2, LRN; conv2 256 5x5/2, pool, LRN; conv3 384, conv4 384,
    conv5 256 (3x3, pad 1), pool; fc6, fc7 4096 with dropout; ``predictions`` (one tower).
    The padding reproduces the paper's map sides 110/55/26/13/6 at 224: conv1 pads 1 pixel on
    each side ((224 + 2 - 7) // 2 + 1 = 110); pool1 and pool2 use "same" padding (as Caffe's
    ceil-mode pooling on the even 110 and 26), pool5 none (13 -> 6); conv2 is unpadded
    ((55 - 5) // 2 + 1 = 26). The smallest input is 53x53. (The 512/1024/512 widths for
    conv3-5 quoted in some course notes are a variant from the paper's Table 2.)

    Args:
        include_top: Add fc6, fc7 and ``predictions``.
        weights: None or a path to a weights file (there are no official weights).
        input_tensor: Optional Keras tensor to build on.
        input_shape: Optional ``(height, width, channels)``; sides of at least 53.
        pooling: None, ``"avg"`` or ``"max"`` global pooling when ``include_top=False``.
        classes: Number of classes.
        classifier_activation: Activation of ``predictions``.
        name: Model name.
        dropout: Rate of the dropout after fc6 and fc7 (0 adds no layer).

    Returns:
        A functional ``keras.Model``.
    """
    return _build(
        ZFNET,
        "zfnet",
        towers=1,
        **application_args(locals()),
        name=name,
        dropout=dropout,
    )
