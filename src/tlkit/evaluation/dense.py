"""Dense evaluation: a trained classifier applied fully convolutionally to a larger image.

VGG (Simonyan & Zisserman 2015, section 3.2): "the fully-connected layers are first converted
to convolutional layers (the first FC layer to a 7x7 conv. layer, the last two FC layers to 1x1
conv. layers). The resulting fully-convolutional net is then applied to the whole
(uncropped) image. The result is a class score map ... spatially averaged (sum-pooled)".

:func:`dense_model` does exactly that to any tlkit model, by editing its Keras config:

* the input becomes ``size x size``;
* a ``Flatten`` becomes Keras' ``Identity``, and the first ``Dense`` after it (through any
  ``Dropout``) a ``Conv2D`` whose kernel covers what the ``Flatten`` saw at the training size,
  its weights reshaped (``[h*w*c, units] -> [h, w, c, units]``: Flatten is row-major, channels
  last); later ``Dense`` layers act on every position already, as 1x1 convolutions;
* the softmax score map is averaged over its positions.

For nets that end in global pooling (ResNet, NiN, the ``avg``/``max`` heads) the natural
equivalent is the same net at the larger size: the pooling averages the features of every
position before the classifier. Either way, at the training size the dense model gives the
original model's scores (tested).
"""

from __future__ import annotations

import copy

import keras
import numpy as np

PASS_THROUGH = ("Dropout", "SpatialDropout2D", "GaussianDropout", "AlphaDropout", "Identity")


def _producer(tensor):
    return tensor._keras_history.operation


def _first_dense_after_flatten(model: keras.Model) -> dict[str, tuple[str, tuple[int, int]]]:
    """``{dense name: (flatten name, (h, w))}`` for each Dense fed by a Flatten."""
    found = {}
    for layer in model.layers:
        if type(layer).__name__ != "Dense":
            continue
        source = _producer(layer.input)
        while type(source).__name__ in PASS_THROUGH:
            source = _producer(source.input)
        if type(source).__name__ == "Flatten":
            shape = tuple(source.input.shape[1:3])
            if len(source.input.shape) == 4 and None not in shape:
                found[layer.name] = (source.name, shape)
    return found


def dense_model(model: keras.Model, size: int) -> keras.Model:
    """``model`` applied fully convolutionally to ``size x size`` images (see the module doc).

    Returns:
        A model ``[N, size, size, 3] -> [N, classes]``: the class probabilities averaged over
        the score map's positions (one position at the training size).

    Raises:
        ValueError: ``size`` gives a score map of no positions (below the training size for a
            net with fully-connected layers), or the model has more than one input.
    """
    if len(model.inputs) != 1:
        raise ValueError("dense evaluation needs a model with one image input")
    converted = _first_dense_after_flatten(model)
    flattens = {flatten for flatten, _ in converted.values()}
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        entry.pop("build_config", None)  # the input size changes: build on the new shapes
        cls, cfg = entry["class_name"], entry["config"]
        if cls == "InputLayer":
            cfg["batch_shape"] = [None, size, size, cfg["batch_shape"][-1]]
        elif cls == "Flatten" and entry["name"] in flattens:
            entry.update(module="keras.layers", class_name="Identity", registered_name=None)
            entry["config"] = {k: cfg[k] for k in ("name", "trainable", "dtype") if k in cfg}
        elif cls == "Dense" and entry["name"] in converted:
            _, (h, w) = converted[entry["name"]]
            entry.update(module="keras.layers", class_name="Conv2D", registered_name=None)
            entry["config"] = {
                **{k: cfg[k] for k in ("name", "trainable", "dtype", "activation", "use_bias",
                                      "kernel_initializer", "bias_initializer") if k in cfg},
                "filters": cfg["units"], "kernel_size": [h, w], "strides": [1, 1],
                "padding": "valid",
            }
    try:
        fcn = keras.Model.from_config(config)
    except ValueError as exc:
        raise ValueError(f"cannot apply {model.name} to {size}x{size} images: {exc}") from None
    for layer in fcn.layers:
        weights = model.get_layer(layer.name).get_weights()
        if layer.name in converted and weights:
            weights = [np.reshape(weights[0], layer.get_weights()[0].shape), *weights[1:]]
        if weights:
            layer.set_weights(weights)
    output = fcn.outputs[0]
    if len(output.shape) == 4:
        if output.shape[1] == 0 or output.shape[2] == 0:
            raise ValueError(f"{size}x{size} is too small for {model.name}'s classifier")
        output = keras.layers.GlobalAveragePooling2D(name="score_map_mean", dtype="float32")(output)
    return keras.Model(fcn.inputs, output, name=f"{model.name}_dense{size}")
