"""Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for a class lies.

The feature map is the model's last spatial one, found from the graph, not from layer names:
the last layer (in topological order) whose output is a 4-D ``[N, h, w, channels]`` tensor
with more than one channel and more than one position, which for every architecture in the zoo is
the input of its pooling or flattening head (:func:`last_feature_map`). The map for class ``c``
is ``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``d log p_c / d A_k``,
resized (bilinear) to the input size and scaled to 0..1.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tlkit.models.heads import single_input


def last_feature_map(model: keras.Model):
    """The layer whose output is the model's last spatial feature map."""
    chosen = wide = None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # a layer used more than once
            continue
        if len(shape) == 4 and shape[1] and shape[2] and (shape[3] or 0) > 1:
            chosen = layer
            if shape[1] * shape[2] > 1:  # a 1x1 map (a small input) says nothing of where
                wide = layer
    chosen = wide or chosen
    if chosen is None:
        raise ValueError(f"{model.name} has no spatial feature map")
    return chosen


def grad_cam(model: keras.Model, images: np.ndarray, classes=None) -> np.ndarray:
    """Heat maps ``[N, H, W]`` in 0..1 for ``classes`` (default: each image's prediction)."""
    layer = last_feature_map(model)
    probe = keras.Model(single_input(model), [layer.output, model.outputs[0]])
    x = tf.convert_to_tensor(np.asarray(images, np.float32))
    with tf.GradientTape() as tape:
        fmap, probs = probe(x, training=False)
        tape.watch(fmap)
        picked = tf.argmax(probs, axis=1) if classes is None else tf.constant(classes, tf.int64)
        score = tf.math.log(tf.gather(probs, picked, axis=1, batch_dims=1) + 1e-12)
    grads = tape.gradient(score, fmap)
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=[1, 2], keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(fmap, tf.float32), axis=-1))
    cam = tf.image.resize(cam[..., tf.newaxis], x.shape[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    return np.asarray(tf.math.divide_no_nan(cam, peak))


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``image`` (uint8 RGB) with the heat map blended on top (matplotlib's ``jet``)."""
    from matplotlib import colormaps

    heat = colormaps["jet"](cam)[..., :3] * 255.0
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat, 0, 255).astype(np.uint8)
