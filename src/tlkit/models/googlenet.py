"""GoogLeNet (Inception v1).

Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke and Rabinovich, "Going Deeper
with Convolutions", CVPR 2015 (arXiv:1409.4842). The nine inception modules are the rows of
:data:`INCEPTION_MODULES`, with the filters of the paper's Table 1; a 3x3/2 max pool sits
between stages 3, 4 and 5. All convs and pools use ``"same"`` padding so the feature maps are
Table 1's 112, 56, 28, 14 and 7 at 224x224.

With ``aux_classifiers=True`` the model also has the paper's two auxiliary classifiers (after
inception4a and inception4d), whose losses are added with weight :data:`AUX_LOSS_WEIGHT` during
training; :func:`strip_auxiliary_classifiers` gives the one-output model for inference and
export. The table and the registry's facts are plain data in :mod:`tlkit.models.facts.googlenet`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.errors import InputSizeError, UserError
from tlkit.layers import LocalResponseNormalization
from tlkit.models._common import application_args, build_backbone
from tlkit.models.facts.googlenet import AUX_MIN_SIZE, INCEPTION_MODULES, InceptionModule

AUX_LOSS_WEIGHT = 0.3
"""Weight of each auxiliary classifier's loss in the total training loss (paper section 5)."""
AUX_HEADS = {"4a": "aux1", "4d": "aux2"}
"""Module after which each auxiliary classifier branches off."""

# bvlc_googlenet (the Caffe reference model) uses local_size 5, alpha 1e-4 and k=1 with
# Caffe's alpha / n convention; the paper does not give LRN constants.
_LRN = {"depth_radius": 2, "bias": 1.0, "alpha": 1e-4 / 5, "beta": 0.75}


def _conv(x, filters: int, kernel_size: int, name: str, strides: int = 1, batch_norm=False):
    """Conv ("same") -> optional BN -> ReLU, named ``{name}_conv``, ``_bn``, ``_relu``."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=not batch_norm,
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        x = layers.BatchNormalization(axis=3, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def inception_module(x, spec: InceptionModule, batch_norm: bool = False, *, name: str):
    """An inception module with dimension reductions (paper Fig. 2b).

    Args:
        x: Input tensor.
        spec: The module's filters (a row of Table 1).
        batch_norm: Add BatchNormalization after each conv (not in the paper).
        name: Module name, e.g. ``inception3a``.
    """
    branch1 = _conv(x, spec.conv1x1, 1, f"{name}_1x1", batch_norm=batch_norm)
    branch3 = _conv(x, spec.reduce3x3, 1, f"{name}_3x3_reduce", batch_norm=batch_norm)
    branch3 = _conv(branch3, spec.conv3x3, 3, f"{name}_3x3", batch_norm=batch_norm)
    branch5 = _conv(x, spec.reduce5x5, 1, f"{name}_5x5_reduce", batch_norm=batch_norm)
    branch5 = _conv(branch5, spec.conv5x5, 5, f"{name}_5x5", batch_norm=batch_norm)
    pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    pool = _conv(pool, spec.pool_proj, 1, f"{name}_pool_proj", batch_norm=batch_norm)
    return layers.Concatenate(axis=3, name=f"{name}_concat")([branch1, branch3, branch5, pool])


def auxiliary_classifier(
    x, classes: int, classifier_activation: Any, batch_norm: bool = False, *, name: str
):
    """An auxiliary classifier (paper section 5): 5x5/3 avg pool, 1x1 conv 128, FC 1024,
    dropout 0.7 and a ``classes``-way classifier named ``{name}_predictions``."""
    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_avg_pool")(x)
    x = _conv(x, 128, 1, f"{name}_1x1", batch_norm=batch_norm)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return layers.Dense(classes, activation=classifier_activation, name=f"{name}_predictions")(x)


def _check_aux_input(img_input, include_top: bool) -> None:
    if not include_top:
        raise UserError("aux_classifiers=True needs include_top=True")
    height, width = img_input.shape[1:3]
    if height is None or width is None:
        raise InputSizeError(
            "googlenet: the auxiliary classifiers end in fully connected layers and need a "
            "fixed input size; give input_shape=(height, width, 3)"
        )
    if min(height, width) < AUX_MIN_SIZE:
        raise InputSizeError(
            f"googlenet with aux_classifiers=True needs inputs of at least "
            f"{AUX_MIN_SIZE}x{AUX_MIN_SIZE} pixels (a 5x5 map after inception4a for the "
            f"auxiliary heads' 5x5 pool); got {height}x{width}. Use a larger input (the paper "
            "uses 224x224) or aux_classifiers=False."
        )


def GoogLeNet(
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    aux_classifiers: bool = False,
    batch_norm: bool = False,
    name: str = "googlenet",
) -> keras.Model:
    """Build GoogLeNet / Inception v1 (Szegedy et al. 2015, Table 1).

    Args:
        include_top: Add global average pooling, dropout 0.4 and ``predictions``.
        weights: None or the path to a weights file (there are no official weights).
        input_tensor: Optional Keras tensor to build on.
        input_shape: Optional ``(height, width, 3)``; sides of at least 32 (at least
            :data:`AUX_MIN_SIZE` with auxiliary classifiers).
        pooling: None, ``"avg"`` or ``"max"`` when ``include_top`` is False.
        classes: Number of classes of the top (and of the auxiliary classifiers).
        classifier_activation: Activation of the classifiers (None for logits).
        aux_classifiers: Add the two auxiliary classifiers; the model then has three
            outputs ``[predictions, aux1_predictions, aux2_predictions]``.
        batch_norm: Add BatchNormalization after every conv (not in the paper).
        name: Model name.

    Returns:
        A functional ``keras.Model``.
    """

    def body(img_input):
        if aux_classifiers:
            _check_aux_input(img_input, include_top)
        x = _conv(img_input, 64, 7, "conv1_7x7", strides=2, batch_norm=batch_norm)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_3x3")(x)
        x = LocalResponseNormalization(**_LRN, name="norm1_lrn")(x)
        x = _conv(x, 64, 1, "conv2_3x3_reduce", batch_norm=batch_norm)
        x = _conv(x, 192, 3, "conv2_3x3", batch_norm=batch_norm)
        x = LocalResponseNormalization(**_LRN, name="norm2_lrn")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2_3x3")(x)
        aux_outputs = []
        stage = INCEPTION_MODULES[0].stage
        for spec in INCEPTION_MODULES:
            if spec.stage != stage:
                x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{stage}_3x3")(x)
                stage = spec.stage
            x = inception_module(x, spec, batch_norm, name=f"inception{spec.name}")
            if aux_classifiers and spec.name in AUX_HEADS:
                aux_outputs.append(
                    auxiliary_classifier(
                        x, classes, classifier_activation, batch_norm, name=AUX_HEADS[spec.name]
                    )
                )
        return x, aux_outputs

    def top(x, classes, classifier_activation):
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.4, name="dropout")(x)
        return layers.Dense(classes, activation=classifier_activation, name="predictions")(x)

    return build_backbone(
        body,
        top,
        model_id="googlenet",
        name=name,
        **application_args(locals()),
        default_size=224,
        min_size=32,
    )


def strip_auxiliary_classifiers(model: keras.Model) -> keras.Model:
    """Return the single-output inference model of a GoogLeNet built with aux classifiers.

    The returned model shares its layers (and so its weights) with ``model`` and ends at
    ``predictions``; a model without auxiliary outputs is returned unchanged.
    """
    if len(model.outputs) == 1:
        return model
    main = model.get_layer("predictions").output
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, main, name=model.name)
