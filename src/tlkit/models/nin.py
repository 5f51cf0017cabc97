"""Network in Network for ImageNet: four mlpconv blocks and global average pooling, no FC.

Reference: M. Lin, Q. Chen and S. Yan, "Network In Network", ICLR 2014 (mlpconv layers,
global average pooling as the classifier, dropout between mlpconv layers). The ImageNet layer
sizes are those of the authors' released Caffe model (``nin_imagenet``): 7,595,176 parameters.
The table and the registry's facts are plain data in :mod:`tlkit.models.facts.nin`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.models._common import application_args, build_backbone
from tlkit.models.facts.nin import BLOCKS, DEFAULT_SIZE, MIN_SIZE, MLPConv


def mlpconv_block(x, block: MLPConv, *, name: str):
    """``{name}_conv1`` (spatial), ``{name}_conv2``... (1x1), all ReLU; ``{name}_pool``."""
    x = layers.Conv2D(
        block.filters,
        block.kernel,
        strides=block.strides,
        padding=block.padding,
        activation="relu",
        name=f"{name}_conv1",
    )(x)
    for i in range(2, block.mlp + 2):
        x = layers.Conv2D(block.filters, 1, activation="relu", name=f"{name}_conv{i}")(x)
    if block.pool:
        x = layers.MaxPooling2D(3, strides=2, name=f"{name}_pool")(x)
    if block.dropout:
        x = layers.Dropout(block.dropout, name=f"{name}_dropout")(x)
    return x


def NiN(
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "nin",
) -> keras.Model:
    """Network in Network (ImageNet model) at 224x224x3.

    mlpconv1: 11x11/4 96, 1x1 96, 1x1 96, max pool 3x3/2; mlpconv2: 5x5 256 (pad 2) and two
    1x1 256, pool; mlpconv3: 3x3 384 (pad 1) and two 1x1 384, pool, dropout 0.5; mlpconv4:
    3x3 1024, 1x1 1024 and the classifier, a 1x1 conv to ``classes`` maps
    (``mlpconv4_conv3``), averaged over space (``avg_pool``) and passed to
    ``predictions`` (the activation). There are no FC layers.

    Pools are unpadded, so the maps are 54/26/12/5 at 224 (the Caffe model's ceil-mode
    pooling gives 54/27/13/6; at 227 these pools give 55/27/13/6). The classifier conv has no
    ReLU, unlike the Caffe model: rectified class scores can die and never recover.

    Args:
        include_top: Add the classifier conv, global average pooling and ``predictions``.
            Without it the model ends at ``mlpconv4_conv2`` (1024 maps).
        weights: None or a path to a weights file (there are no official weights).
        input_tensor: Optional Keras tensor to build on.
        input_shape: Optional ``(height, width, channels)``; sides of at least 67.
        pooling: None, ``"avg"`` or ``"max"`` global pooling when ``include_top=False``.
        classes: Number of classes.
        classifier_activation: Activation of ``predictions``.
        name: Model name.

    Returns:
        A functional ``keras.Model``.
    """

    def body(x):
        for i, block in enumerate(BLOCKS, start=1):
            x = mlpconv_block(x, block, name=f"mlpconv{i}")
        return x

    def top(x, classes, classifier_activation):
        # the classifier is a 1x1 conv to `classes` maps, averaged over space: no FC layers
        x = layers.Conv2D(classes, 1, name=f"mlpconv{len(BLOCKS)}_conv{BLOCKS[-1].mlp + 2}")(x)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return layers.Activation(classifier_activation, name="predictions")(x)

    return build_backbone(
        body,
        top,
        model_id="nin",
        name=name,
        **application_args(locals()),
        default_size=DEFAULT_SIZE,
        min_size=MIN_SIZE,
    )
