"""LeNet-5 (LeCun et al. 1998), as the paper built it or in its common modern form.

Reference: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-Based Learning Applied to
Document Recognition", Proc. IEEE 86(11), 1998, section II.B, Table I and Fig. 2.

C1 6@5x5 -> S2 2x2 -> C3 16@5x5 -> S4 2x2 -> C5 120@5x5 -> F6 84 -> output, on 32x32x1.
The paper's pieces are options: C3's partial connection table (``partial_c3``), trainable
subsampling (``subsampling="trainable"``) and the Euclidean RBF output (``output="rbf"``).
With all three the model has the paper's 60,840 parameters (id ``lenet5_paper``); the plain
form (average pooling, full C3, dense softmax) has 61,706 (id ``lenet5``).

``weight_layers`` is 5: C1, C3, C5, F6 and the output, the layers with convolution or
connection weights, counted as VGG and AlexNet count theirs. S2 and S4 have no weights in the
plain form and only a scale and bias per map in the paper's form; they belong to the freeze
group of the conv layer before them (``c1`` holds C1 and S2, ``c3`` holds C3 and S4). The
registry's facts are plain data in :mod:`tlkit.models.facts.lenet`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.errors import UserError
from tlkit.layers import EuclideanRBF, PartialConv2D, Subsampling2D
from tlkit.models._common import application_args, build_backbone

C3_TABLE = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)
"""The paper's Table I: row i is S2 map i, column j is C3 map j, ``X`` a connection."""

C3_CONNECTIONS = tuple(
    tuple(i for i, row in enumerate(C3_TABLE) if row[j] == "X") for j in range(len(C3_TABLE[0]))
)
"""For each C3 map, the S2 maps it sees (3, 4 or all 6; 60 connections in all)."""




def _subsample(x, mode: str, name: str):
    if mode == "avg":
        return layers.AveragePooling2D(2, name=name)(x)
    return Subsampling2D(2, activation="tanh", name=name)(x)


def LeNet5(
    include_top: bool = True,
    weights: Any = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 10,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
    partial_c3: bool = False,
    subsampling: str = "avg",
    output: str = "softmax",
) -> keras.Model:
    """LeNet-5 on 32x32x1 (tanh units); layers ``c1, s2, c3, s4, c5, flatten, f6, predictions``.

    Args:
        include_top: Add F6 and the output. Without it the model ends at C5 (120 maps,
            1x1 at 32x32), the paper's feature layer.
        weights: None or a path to a weights file (there are no official weights).
        input_tensor: Optional Keras tensor to build on.
        input_shape: Optional ``(height, width, channels)``; sides of at least 32 (C5's 5x5
            kernel needs S4 to be 5x5).
        pooling: None, ``"avg"`` or ``"max"`` global pooling when ``include_top=False``.
        classes: Number of classes (10 digits by default, which the paper's counts assume).
        classifier_activation: Activation of ``predictions`` (applied to the RBF's negative
            distances when ``output="rbf"``).
        name: Model name; ``lenet5`` or, with all three paper options, ``lenet5_paper``.
        partial_c3: Connect C3 by the paper's Table I (1,516 parameters instead of 2,416).
        subsampling: ``"avg"`` (average pooling) or ``"trainable"`` (paper: coefficient and
            bias per map, then tanh).
        output: ``"softmax"`` (dense layer) or ``"rbf"`` (paper's Euclidean RBF units).

    Returns:
        A functional ``keras.Model``.
    """
    if subsampling not in ("avg", "trainable"):
        raise UserError(f"subsampling must be 'avg' or 'trainable', got {subsampling!r}")
    if output not in ("softmax", "rbf"):
        raise UserError(f"output must be 'softmax' or 'rbf', got {output!r}")
    paper = partial_c3 and subsampling == "trainable" and output == "rbf"
    model_id = "lenet5_paper" if paper else "lenet5"
    name = name or model_id

    def body(x):
        x = layers.Conv2D(6, 5, activation="tanh", name="c1")(x)
        x = _subsample(x, subsampling, "s2")
        if partial_c3:
            x = PartialConv2D(C3_CONNECTIONS, 5, activation="tanh", name="c3")(x)
        else:
            x = layers.Conv2D(16, 5, activation="tanh", name="c3")(x)
        x = _subsample(x, subsampling, "s4")
        return layers.Conv2D(120, 5, activation="tanh", name="c5")(x)

    def top(x, classes, classifier_activation):
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(84, activation="tanh", name="f6")(x)
        if output == "rbf":
            return EuclideanRBF(classes, activation=classifier_activation, name="predictions")(x)
        return layers.Dense(classes, activation=classifier_activation, name="predictions")(x)

    return build_backbone(
        body,
        top,
        model_id=model_id,
        name=name or model_id,
        **application_args(locals()),
        default_size=32,
        min_size=32,
        channels=1,
    )
