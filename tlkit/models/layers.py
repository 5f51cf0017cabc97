"""Custom layers the classic papers need, written with ``keras.ops`` for every backend."""

from __future__ import annotations

import keras
from keras import ops


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
