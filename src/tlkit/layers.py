"""tlkit's custom Keras layers, in one module: importing it registers every one of them.

Loading a tlkit ``.keras`` file needs exactly this (``keras.saving.load_model`` finds the
classes by their registered names, ``tlkit>Preprocessing`` and so on). The layers use
``keras`` and ``keras.ops`` only, so they work on every Keras 3 backend, and this module imports
nothing else of tlkit.

* :func:`preprocessing`: keras.applications' ``preprocess_input`` built from Keras' own
  ``Rescaling`` (and ``ops.take`` for BGR), so a transfer model's ``model.keras`` loads with
  plain ``keras.models.load_model`` in a process that never imported tlkit;
* :class:`Preprocessing`: the same as one tlkit layer, kept so that models saved before
  :func:`preprocessing` existed still load (``import tlkit`` registers it);
* :class:`LocalResponseNormalization`: AlexNet's LRN (also in ZFNet, VGG A-LRN, GoogLeNet);
* :class:`PartialConv2D`, :class:`Subsampling2D`, :class:`EuclideanRBF`: LeNet-5's C3
  connection table, trainable subsampling and RBF output.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
BGR = [2, 1, 0]  # channel order of keras.applications' caffe mode
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def preprocessing(x, mode: str, name: str = "preprocess"):
    """keras.applications' ``preprocess_input`` for ``mode`` on raw RGB ``x`` in 0..255.

    Built from Keras' own layers and ops only: ``caffe`` is ``ops.take`` of channels 2, 1, 0
    (BGR; not ``ops.flip``: in int8 LiteRT, ``REVERSE_V2`` then the mean's ``ADD`` came out
    with 85 % relative error, ``GATHER`` then ``ADD`` with 1.6 %), then a
    ``Rescaling`` that subtracts the ImageNet BGR mean; ``tf`` a ``Rescaling(1/127.5, -1)``;
    ``torch`` a per-channel ``Rescaling`` equal to ``(x / 255 - mean) / std``; ``none`` a
    ``Rescaling(1)`` (the identity, kept so that every transfer model has a ``preprocess``
    layer). None of them has weights, so freezing never touches them.

    Args:
        x: Symbolic ``[N, H, W, 3]`` input (any dtype; ``Rescaling`` casts).
        mode: ``caffe``, ``tf``, ``torch`` or ``none``.
        name: Name of the ``Rescaling`` layer.
    """
    if mode == "caffe":
        x = ops.take(x, BGR, axis=-1)
        return layers.Rescaling(1.0, offset=[-m for m in _CAFFE_MEAN_BGR], name=name)(x)
    if mode == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name=name)(x)
    if mode == "torch":
        scale = [1.0 / (255.0 * s) for s in _TORCH_STD]
        offset = [-m / s for m, s in zip(_TORCH_MEAN, _TORCH_STD, strict=True)]
        return layers.Rescaling(scale, offset=offset, name=name)(x)
    if mode == "none":
        return layers.Rescaling(1.0, name=name)(x)
    raise ValueError(f"unknown preprocessing mode {mode!r}")


@keras.saving.register_keras_serializable(package="tlkit")
class Preprocessing(keras.layers.Layer):
    """keras.applications' ``preprocess_input`` as a layer, on raw RGB in 0..255.

    Modes: ``caffe`` (RGB to BGR, ImageNet mean subtracted; VGG and ResNet's official
    weights), ``tf`` (scaled to -1..1), ``torch`` (0..1, ImageNet mean/std), ``none`` (as is).
    """

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "torch", "none"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.take(x, BGR, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR, self.compute_dtype)
        elif self.mode == "tf":
            x = x / 127.5 - 1.0
        elif self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, self.compute_dtype)
            std = ops.convert_to_tensor(_TORCH_STD, self.compute_dtype)
            x = (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="tlkit")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (Krizhevsky et al. 2012, section 3.3).

    ``b = a / (k + alpha * sum_{j in window} a_j^2) ** beta`` over ``depth_radius * 2 + 1``
    neighbouring channels. The paper's values are the defaults (k=2, n=5, alpha=1e-4,
    beta=0.75); note that alpha multiplies the sum, as in the paper (Caffe divides it by n).

    Args:
        depth_radius: Half the window; the paper's n=5 is ``depth_radius=2``.
        bias: k.
        alpha: alpha.
        beta: beta.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs):
        squared = ops.square(inputs)
        r = self.depth_radius
        channels = inputs.shape[-1]
        padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[r, r]])
        window = padded[..., 0:channels]
        for i in range(1, 2 * r + 1):
            window = window + padded[..., i : i + channels]
        return inputs / ops.power(self.bias + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }


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
