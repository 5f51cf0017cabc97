"""Transfer models: raw pixels in, the backbone's own preprocessing, the backbone, a new head.

The model is flat (one functional graph, no nested backbone), so layers keep the backbone's
names: official weights load by name, freeze groups match by name, and the saved model takes
raw 0..255 RGB images because preprocessing is a layer inside it. Which layers are the head,
and the models cut from a transfer model at the head (the frozen feature extractor, the head
on a features input), are decided here too.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from tlkit.errors import InputSizeError, UserError
from tlkit.layers import preprocessing
from tlkit.models.head_config import HeadConfig  # noqa: F401 - tlkit.models.heads.HeadConfig too
from tlkit.models.info import ModelInfo


def build_transfer_model(
    info: ModelInfo,
    num_classes: int,
    *,
    image_size: int | None = None,
    head: Any = None,
    channels: int = 3,
    aux_classifiers: bool = False,
    augment_layer: Any = None,
) -> keras.Model:
    """Backbone ``info`` with a new classifier for ``num_classes`` classes.

    Args:
        info: Registry entry of the backbone.
        num_classes: Classes of the data.
        image_size: Square input side (default the architecture's).
        head: A ``HeadConfig`` (type avg|max|paper, dropout, hidden_units); default avg pooling
            with dropout 0.2.
        channels: Input channels (images are RGB in tlkit's pipelines).
        aux_classifiers: With ``head.type == "paper"`` on an architecture that has them
            (GoogLeNet), add the auxiliary classifiers as extra outputs for training; the saved
            inference model leaves them out (see :func:`inference_model`).
        augment_layer: A layer that augments raw images in training and is the identity at
            inference (``AugmentationLayer``, for ``augment.device: model``), put before the
            preprocessing so the batched ops run on the accelerator.

    Returns:
        A flat functional model: ``image`` (raw 0..255) -> ``preprocess`` -> backbone -> head,
        whose last layer is ``predictions`` (softmax, float32 even under mixed precision).
    """
    head_type = getattr(head, "type", "avg")
    dropout = float(getattr(head, "dropout", 0.2))
    hidden = list(getattr(head, "hidden_units", []) or [])
    size = image_size or info.default_size
    if size < info.min_size:
        raise InputSizeError(
            f"{info.id} needs images of at least {info.min_size}x{info.min_size}; "
            f"image_size is {size}"
        )
    inputs = keras.Input((size, size, channels), name="image")
    x = augment_layer(inputs) if augment_layer is not None else inputs
    x = preprocessing(x, info.preprocessing, name="preprocess")
    if head_type == "paper":
        # The architecture's own classifier (e.g. VGG's fc1, fc2 with dropout), resized.
        extra = {}
        if aux_classifiers:
            if info.aux_min_size is None:
                raise UserError(f"{info.id} has no auxiliary classifiers")
            if size < info.aux_min_size:
                raise InputSizeError(
                    f"{info.id}'s auxiliary classifiers need images of at least "
                    f"{info.aux_min_size}x{info.aux_min_size}; image_size is {size}"
                )
            extra["aux_classifiers"] = True
        if "dropout" not in info.kwargs and "dropout" in info.builder_parameters():
            extra["dropout"] = dropout  # VGG's, AlexNet's, ZFNet's own fc dropout
        base = info.build(include_top=True, weights=None, input_tensor=x, classes=num_classes,
                          **extra)
        for output in base.outputs:
            _float32_output(output._keras_history.operation)
        outputs = base.outputs if len(base.outputs) > 1 else base.outputs[0]
        return keras.Model(inputs, outputs, name=f"{info.id}_transfer")
    base = info.build(include_top=False, weights=None, input_tensor=x, pooling=head_type)
    y = base.output
    for i, units in enumerate(hidden, start=1):
        y = layers.Dense(units, activation="relu", name=f"head_dense{i}")(y)
        if dropout:
            y = layers.Dropout(dropout, name=f"head_dropout{i}")(y)
    if dropout and not hidden:
        y = layers.Dropout(dropout, name="head_dropout")(y)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(y)
    return keras.Model(inputs, outputs, name=f"{info.id}_transfer")


def _float32_output(layer) -> None:
    # Under mixed precision the softmax must run in float32 (Keras' mixed-precision guide).
    if layer.dtype_policy.compute_dtype != "float32":
        layer.dtype_policy = keras.DTypePolicy("float32")


def single_input(model: keras.Model):
    """``model``'s input as Keras records it for a one-input model: the tensor, not a list of
    one (a model built on the list warns "structure of `inputs` doesn't match" on every call
    with a plain array once saved and loaded)."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def inference_model(model: keras.Model) -> keras.Model:
    """The model to save, export and serve: only the main output (auxiliary classifiers left
    out), and a training-only augmentation layer (``augment.device: model``, the identity at
    inference) replaced by Keras' ``Identity``, so the file needs nothing of tlkit to load.

    The layers are shared with ``model``, not copied.
    """
    model = keras.Model(single_input(model), model.outputs[0], name=model.name)
    if not any(getattr(layer, "training_only", False) for layer in model.layers):
        return model

    def keep(layer):
        if getattr(layer, "training_only", False):
            return layers.Identity(name=layer.name)
        return layer

    return keras.models.clone_model(model, clone_function=keep)


# --------------------------------------------------------------------------- model surgery


def is_head_layer(name: str) -> bool:
    """Whether a layer belongs to the new head: ``head_*``, ``predictions`` and the auxiliary
    classifiers (``aux*``). The one place that decides it."""
    return name.startswith(("head_", "aux")) or name == "predictions"


#: The layers a run's calibration appends after ``predictions`` (tlkit.evaluation.calibration):
#: the temperature, not part of the head.
CALIBRATION_LAYERS = ("calibration", "calibrated")


def head_layers(model: keras.Model) -> list:
    """The head's layers, input to output: the tail of a flat transfer model (before the
    calibration a finished run's ``model.keras`` ends in).

    Raises:
        ValueError: the head is not a single chain at the end of the model (paper heads).
    """
    chain = [layer for layer in model.layers
             if not isinstance(layer, keras.layers.InputLayer)
             and layer.name not in CALIBRATION_LAYERS]
    start = next((i for i, layer in enumerate(chain) if is_head_layer(layer.name)), None)
    if start is None or not all(is_head_layer(layer.name) for layer in chain[start:]):
        raise ValueError(f"{model.name} does not end in a chain of head_* layers")
    return chain[start:]


def feature_extractor(model: keras.Model) -> keras.Model:
    """The frozen part of a transfer model: image -> the tensor feeding the head."""
    first = head_layers(model)[0]
    return keras.Model(single_input(model), first.input, name=f"{model.name}_features")


def build_head_model(model: keras.Model) -> keras.Model:
    """A model from a features input through ``model``'s own head layers (weights shared)."""
    chain = head_layers(model)
    features = keras.Input(tuple(chain[0].input.shape[1:]), name="features")
    x = features
    for layer in chain:
        x = layer(x)
    return keras.Model(features, x, name=f"{model.name}_head")
