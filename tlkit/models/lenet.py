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
group of the conv layer before them (``c1`` holds C1 and S2, ``c3`` holds C3 and S4).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from tlkit.errors import UserError
from tlkit.models._common import (
    check_top_args,
    global_pool,
    load_weights_arg,
    model_from,
    model_input,
)
from tlkit.models.registry import FreezeGroup, ModelInfo, register

PAPER = "LeCun, Bottou, Bengio & Haffner, Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 1998"

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


@keras.saving.register_keras_serializable(package="tlkit")
class PartialConv2D(layers.Layer):
    """A convolution whose output maps each see only some input maps (LeNet-5's C3).

    Only the connected kernels are weights (``kernel`` has shape ``(k, k, connections)``),
    so the parameter count is the paper's: C3 has 60 * 25 + 16 = 1,516. The full kernel is
    assembled with a constant 0/1 matrix, so unconnected maps contribute exactly nothing.

    Args:
        connections: For each output map, the indices of the input maps it is connected to.
        kernel_size: Kernel side.
        activation: Activation applied after the bias.
        padding: "valid" or "same".
        kernel_initializer: Initializer evaluated on the full kernel shape, of which the
            connected entries are kept (fan-in and fan-out as for a full convolution).
        bias_initializer: Initializer of the bias.
    """

    def __init__(
        self,
        connections,
        kernel_size: int = 5,
        activation=None,
        padding: str = "valid",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.connections = tuple(tuple(int(i) for i in maps) for maps in connections)
        self.filters = len(self.connections)
        self.kernel_size = int(kernel_size)
        self.activation = keras.activations.get(activation)
        self.padding = padding
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        pairs = [(i, j) for j, maps in enumerate(self.connections) for i in maps]
        if not pairs or max(i for i, _ in pairs) >= channels:
            raise ValueError(f"{self.name}: connections refer to maps beyond {channels} inputs")
        flat = [i * self.filters + j for i, j in pairs]
        scatter = np.zeros((len(pairs), channels * self.filters), dtype="float32")
        scatter[np.arange(len(pairs)), flat] = 1.0
        self._scatter = scatter
        self._in_channels = channels
        k = self.kernel_size
        full_shape = (k, k, channels, self.filters)

        def init(shape, dtype=None):
            full = ops.reshape(self.kernel_initializer(full_shape, dtype=dtype), (k, k, -1))
            return ops.take(full, np.array(flat), axis=2)

        self.kernel = self.add_weight(name="kernel", shape=(k, k, len(pairs)), initializer=init)
        self.bias = self.add_weight(
            name="bias", shape=(self.filters,), initializer=self.bias_initializer
        )

    def full_kernel(self):
        """The equivalent dense ``(k, k, in, out)`` kernel, zero where maps are unconnected."""
        k = self.kernel_size
        kernel = ops.convert_to_tensor(self.kernel)
        scatter = ops.cast(self._scatter, kernel.dtype)
        flat = ops.matmul(ops.reshape(kernel, (k * k, -1)), scatter)
        return ops.reshape(flat, (k, k, self._in_channels, self.filters))

    def call(self, inputs):
        x = ops.conv(inputs, self.full_kernel(), strides=1, padding=self.padding)
        return self.activation(x + self.bias)

    def count_macs(self, input_shape, output_shape) -> int:
        """Multiply-adds of the connected kernels only (tlkit.models.summary asks for this)."""
        connected = sum(len(maps) for maps in self.connections)
        return int(output_shape[0] * output_shape[1] * connected * self.kernel_size**2)

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1:3]
        if self.padding == "valid":
            h = None if h is None else h - self.kernel_size + 1
            w = None if w is None else w - self.kernel_size + 1
        return (input_shape[0], h, w, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "connections": [list(maps) for maps in self.connections],
            "kernel_size": self.kernel_size,
            "activation": keras.activations.serialize(self.activation),
            "padding": self.padding,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="tlkit")
class Subsampling2D(layers.Layer):
    """LeNet-5's S layers: 2x2 average, times a trainable coefficient, plus a bias, per map.

    (The paper sums the four inputs; averaging only rescales the coefficient.) Two weights
    per map: S2 has 12, S4 has 32.

    Args:
        pool_size: Side of the non-overlapping pooling window.
        activation: Squashing function applied last (the paper's sigmoid; tanh here).
    """

    def __init__(self, pool_size: int = 2, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.coefficient = self.add_weight(
            name="coefficient", shape=(channels,), initializer="ones"
        )
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        p = self.pool_size
        pooled = ops.average_pool(inputs, pool_size=p, strides=p, padding="valid")
        return self.activation(pooled * self.coefficient + self.bias)

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1:3]
        p = self.pool_size
        return (
            input_shape[0],
            None if h is None else h // p,
            None if w is None else w // p,
            input_shape[-1],
        )

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "activation": keras.activations.serialize(self.activation),
        }


@keras.saving.register_keras_serializable(package="tlkit")
class EuclideanRBF(layers.Layer):
    """LeNet-5's output layer: one Euclidean RBF unit per class (paper eq. 7).

    Unit i computes the squared distance ``sum_j (x_j - w_ij)^2`` between its input and its
    centre. The layer returns the *negative* distance, so the nearest centre has the largest
    value: argmax picks the paper's class, and a softmax on top gives ``exp(-y_i)`` posteriors.
    ``units * input_dim`` weights, no bias (840 for 84 -> 10).

    Args:
        units: Number of classes.
        activation: Applied to the negative distances (e.g. softmax).
        centers_initializer: Initial centres (the paper used fixed +-1 bitmaps).
    """

    def __init__(self, units: int, activation=None, centers_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        if centers_initializer is None:
            centers_initializer = keras.initializers.RandomUniform(-1.0, 1.0)
        self.centers_initializer = keras.initializers.get(centers_initializer)

    def build(self, input_shape):
        self.centers = self.add_weight(
            name="centers",
            shape=(int(input_shape[-1]), self.units),
            initializer=self.centers_initializer,
        )

    def call(self, inputs):
        sq = ops.sum(ops.square(inputs), axis=-1, keepdims=True)
        cross = ops.matmul(inputs, self.centers)
        dist = sq - 2.0 * cross + ops.sum(ops.square(self.centers), axis=0)
        return self.activation(-dist)

    def count_macs(self, input_shape, output_shape) -> int:
        """One multiply-add per centre coordinate, as a dense layer of the same size."""
        return int(input_shape[-1]) * self.units

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "centers_initializer": keras.initializers.serialize(self.centers_initializer),
        }


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
    check_top_args(weights, include_top, classes, has_official=False)
    img_input = model_input(
        input_tensor, input_shape, default_size=32, min_size=32, channels=1, model_name=name
    )
    x = layers.Conv2D(6, 5, activation="tanh", name="c1")(img_input)
    x = _subsample(x, subsampling, "s2")
    if partial_c3:
        x = PartialConv2D(C3_CONNECTIONS, 5, activation="tanh", name="c3")(x)
    else:
        x = layers.Conv2D(16, 5, activation="tanh", name="c3")(x)
    x = _subsample(x, subsampling, "s4")
    x = layers.Conv2D(120, 5, activation="tanh", name="c5")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(84, activation="tanh", name="f6")(x)
        if output == "rbf":
            x = EuclideanRBF(classes, activation=classifier_activation, name="predictions")(x)
        else:
            x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = global_pool(x, pooling)
    model = model_from(img_input, input_tensor, x, name)
    load_weights_arg(model, model_id, weights, include_top)
    return model


_PAPER_OPTIONS = {"partial_c3": True, "subsampling": "trainable", "output": "rbf"}

for _id, _kwargs, _description in (
    ("lenet5", {}, "LeNet-5, modern form: average pooling, full C3, softmax (61,706 params)"),
    (
        "lenet5_paper",
        _PAPER_OPTIONS,
        "LeNet-5 as the paper: C3 table, trainable subsampling, RBF output (60,840 params)",
    ),
):
    register(
        ModelInfo(
            id=_id,
            family="lenet",
            builder=LeNet5,
            paper=PAPER,
            default_size=32,
            min_size=32,
            channels=1,
            preprocessing="tf",
            feature_size=120,
            weight_layers=5,
            freeze_groups=(
                FreezeGroup("c1", r"^(c1|s2)$"),
                FreezeGroup("c3", r"^(c3|s4)$"),
                FreezeGroup("c5", r"^c5$"),
                FreezeGroup("f6", r"^(flatten|f6)$"),
            ),
            kwargs=_kwargs,
            description=_description,
        )
    )
