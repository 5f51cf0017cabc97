"""Pieces every builder shares: :func:`build_backbone` (keras.applications' argument handling,
input, top or pooling, weights) and :func:`fc_top`, the classic fully connected classifier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from tlkit.errors import InputSizeError, UserError
from tlkit.weights import OfficialWeights, load_builder_weights


def model_input(
    input_tensor: Any,
    input_shape: tuple | None,
    *,
    default_size: int,
    min_size: int,
    channels: int = 3,
    model_name: str,
):
    """Return the model's input tensor, validating the shape as keras.applications does.

    Args:
        input_tensor: Optional Keras tensor to build on (as in keras.applications).
        input_shape: Optional ``(height, width, channels)``; height/width may be None.
        default_size: Side used when neither tensor nor shape is given.
        min_size: Smallest side the architecture accepts.
        channels: Default number of channels.
        model_name: Name used in error messages.

    Raises:
        InputSizeError: a side below ``min_size``, naming the minimum.
    """
    if input_shape is None:
        if input_tensor is not None:
            input_shape = tuple(input_tensor.shape[1:])
        else:
            input_shape = (default_size, default_size, channels)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise UserError(
            f"{model_name}: input_shape must be (height, width, channels), got {input_shape}"
        )
    for side in input_shape[:2]:
        if side is not None and side < min_size:
            raise InputSizeError(
                f"{model_name} needs inputs of at least {min_size}x{min_size} pixels; "
                f"got {input_shape[0]}x{input_shape[1]}. Resize your images or pick a "
                f"larger input size (the paper uses {default_size}x{default_size})."
            )
    if input_tensor is None:
        return keras.Input(shape=input_shape, name="input_layer")
    if not keras.backend.is_keras_tensor(input_tensor):
        return keras.Input(tensor=input_tensor, shape=input_shape, name="input_layer")
    return input_tensor


def model_from(img_input, input_tensor, outputs, name: str) -> keras.Model:
    """Wrap ``outputs`` in a functional model, honouring a user-supplied ``input_tensor``."""
    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    return keras.Model(inputs, outputs, name=name)


def global_pool(x, pooling: str | None):
    """Apply ``pooling`` (None, "avg" or "max") to a feature map, as keras.applications."""
    if pooling is None:
        return x
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    raise UserError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")


def check_top_args(weights: Any, include_top: bool, classes: int, has_official: bool) -> None:
    """Validate the ``weights``/``classes`` combination the way keras.applications does."""
    if weights == "imagenet" and not has_official:
        raise UserError(
            "no official ImageNet weights exist for this architecture; use weights=None "
            "(train from scratch) or a path to your own weights file"
        )
    if weights == "imagenet" and include_top and classes != 1000:
        raise UserError(
            f"weights='imagenet' with include_top=True needs classes=1000, got {classes}"
        )
    if classes < 1:
        raise UserError(f"classes must be a positive integer, got {classes}")


#: keras.applications' builder arguments: every tlkit builder takes them and passes them on.
APPLICATION_ARGS = (
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "pooling",
    "classes",
    "classifier_activation",
)


def application_args(scope: dict[str, Any]) -> dict[str, Any]:
    """The keras.applications arguments out of a builder's ``locals()``, to pass them on."""
    return {name: scope[name] for name in APPLICATION_ARGS}


def fc_top(units: dict[str, int], dropout: float = 0.0) -> Callable:
    """The classic fully connected classifier (VGG's fc1-fc2, AlexNet's and ZFNet's fc6-fc7).

    ``flatten``, then a ReLU ``Dense`` per ``{name: width}`` of ``units``, each followed by
    ``{name}_dropout``
    when ``dropout`` (none is added at 0, so the layers are keras.applications' exactly), then
    ``predictions``. Returns a ``top(x, classes, classifier_activation)`` for
    :func:`build_backbone`.
    """

    def top(x, classes: int, classifier_activation):
        x = layers.Flatten(name="flatten")(x)
        for name, width in units.items():
            x = layers.Dense(width, activation="relu", name=name)(x)
            if dropout:
                x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
        return layers.Dense(classes, activation=classifier_activation, name="predictions")(x)

    return top


def build_backbone(
    body: Callable,
    top: Callable,
    *,
    model_id: str,
    name: str,
    include_top: bool,
    weights: Any,
    input_tensor: Any,
    input_shape: tuple | None,
    pooling: str | None,
    classes: int,
    classifier_activation: str | None,
    default_size: int,
    min_size: int,
    channels: int = 3,
    official: OfficialWeights | None = None,
) -> keras.Model:
    """What every builder does around its own layers, as keras.applications does it.

    Checks the ``weights``/``classes`` combination, makes the input (validating its size),
    runs ``body``, then ``top`` (with ``include_top``) or the global ``pooling``, wraps the
    model and loads ``weights``.

    Args:
        body: ``input tensor -> feature map``, or ``-> (feature map, [extra outputs])`` for
            extra training outputs (GoogLeNet's auxiliary classifiers).
        top: ``(feature map, classes, classifier_activation) -> predictions``.
        model_id: Registry id (for messages and weights).
        name: The model's name.
        default_size, min_size, channels: The architecture's input facts.
        official: Its official ImageNet files, if any.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation: keras.applications' arguments.
    """
    check_top_args(weights, include_top, classes, official is not None)
    img_input = model_input(
        input_tensor,
        input_shape,
        default_size=default_size,
        min_size=min_size,
        channels=channels,
        model_name=name,
    )
    x = body(img_input)
    x, extra = x if isinstance(x, tuple) else (x, [])
    x = top(x, classes, classifier_activation) if include_top else global_pool(x, pooling)
    model = model_from(img_input, input_tensor, [x, *extra] if extra else x, name)
    if weights is not None:
        load_builder_weights(
            model, weights, official=official, model_id=model_id, include_top=include_top
        )
    return model
