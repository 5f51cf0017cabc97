"""The test-time views of one image that each evaluation method averages over.

All take a decoded uint8 ``[H, W, 3]`` image and the run's preprocessing contract and return
uint8 ``[V, S, S, 3]`` (TensorFlow graph code, for ``tf.data.Dataset.map``):

* :func:`single`: the contract's view (fitted to ``eval_size``, its centre ``input_size``);
* :func:`flip`: that and its mirror image;
* :func:`ten_crop`: AlexNet (Krizhevsky et al. 2012, section 4.1): "five 224x224 patches (the
  four corner patches and the center patch) as well as their horizontal reflections" of the
  ``eval_size`` square;
* :func:`squares`: the whole ``eval_size``-style square at scale ``q`` and its mirror, for dense
  evaluation (:mod:`tlkit.evaluation.dense`);
* :func:`multi_crop`: GoogLeNet (Szegedy et al. 2015, section 7): the image resized to several
  shorter sides, "the left, center and right squares" (top, centre and bottom for portrait
  images), of each the four corners, the centre and the square resized to the input size, and
  their mirrors: 4 x 3 x 6 x 2 = 144 crops with the paper's four scales.
"""

from __future__ import annotations

import tensorflow as tf

from tlkit.imageops import centre_square, fit_square, resize_uint8


def _mirror(stack):
    return tf.concat([stack, tf.reverse(stack, axis=[2])], 0)


def single(image, contract) -> tf.Tensor:
    return contract.view(image)[tf.newaxis]


def flip(image, contract) -> tf.Tensor:
    return _mirror(single(image, contract))


def _five(square, size: int) -> tf.Tensor:
    """Four corners and the centre ``size`` crops of a square ``[L, L, 3]``."""
    side = tf.shape(square)[0]
    far = side - size
    corners = [square[y : y + size, x : x + size] for y, x in ((0, 0), (0, far), (far, 0), (far, far))]
    return tf.stack([*corners, centre_square(square, size)])


def ten_crop(image, contract) -> tf.Tensor:
    square = fit_square(image, contract.eval_size, contract.resize)
    return _mirror(_five(square, contract.input_size))


def squares(image, contract, q: int) -> tf.Tensor:
    """The image fitted to a ``q x q`` square by the contract's policy, and its mirror."""
    return _mirror(fit_square(image, q, contract.resize)[tf.newaxis])


def _shorter_side(image, side: int) -> tf.Tensor:
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new = tf.cast(tf.round(hw * side / tf.reduce_min(hw)), tf.int32)
    resized = tf.image.resize(image, tf.maximum(new, side), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def multi_crop(image, contract, scales: tuple[int, ...]) -> tf.Tensor:
    """GoogLeNet's crops at shorter sides ``scales``: ``len(scales) * 36`` views."""
    size = contract.input_size
    crops = []
    for q in scales:
        scaled = _shorter_side(image, q)
        h, w = tf.shape(scaled)[0], tf.shape(scaled)[1]
        for k in range(3):  # left/top, centre, right/bottom squares
            y = tf.where(h > w, (h - q) * k // 2, 0)
            x = tf.where(h > w, 0, (w - q) * k // 2)
            square = tf.ensure_shape(scaled[y : y + q, x : x + q], [q, q, 3])
            crops.append(_five(square, size))
            crops.append(resize_uint8(square, size)[tf.newaxis])
    return _mirror(tf.concat(crops, 0))


def googlenet_scales(contract) -> tuple[int, ...]:
    """GoogLeNet's shorter sides 256, 288, 320, 352 for 224, scaled to the contract's size."""
    return tuple(round(contract.input_size * s / 224) for s in (256, 288, 320, 352))


def vgg_scales(contract) -> tuple[int, ...]:
    """VGG's test scales {S - 32, S, S + 32} (S the evaluation size), scaled for small nets."""
    step = max(1, round(32 * contract.input_size / 224))
    return (contract.eval_size - step, contract.eval_size, contract.eval_size + step)
