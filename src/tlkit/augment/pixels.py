"""Colour and mixing augmentation ops: RGB and brightness offsets, contrast, saturation,
AlexNet's PCA colour (from dataset statistics, one offset per image), mixup and cutmix.

Pure TensorFlow graph ops with stateless seeds, as :mod:`tlkit.augment.ops`; they return float32
and do not clip (the augmenter clips once at the end, :func:`clip_pixels`).
"""

from __future__ import annotations

import tensorflow as tf

from tlkit.augment.ops import _batched, _float, _uniform, as_seed, split_seed

_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as tf.image.rgb_to_grayscale


# --- colour ------------------------------------------------------------------------------------


def add_channel_offsets(images, offsets) -> tf.Tensor:
    """``images [B, H, W, C] + offsets [B, C]`` (or one image ``[H, W, C] + [C]``).

    Adds along rows of ``W * C`` values with the offsets tiled across them: the same sum as a
    broadcast over the channel axis, about four times faster on CPU (a channel axis of 3 does
    not vectorise).
    """
    images = _float(images)
    shape = tf.shape(images)
    if images.shape.rank == 3:
        rows = tf.reshape(images, tf.stack([shape[0], shape[1] * shape[2]]))
        return tf.reshape(rows + tf.tile(offsets, shape[1:2]), shape)
    rows = tf.reshape(images, tf.stack([shape[0], shape[1], shape[2] * shape[3]]))
    pattern = tf.tile(offsets, tf.stack([1, shape[2]]))[:, None, :]
    return tf.reshape(rows + pattern, shape)


def rgb_offsets(n, max_offset: float, seed) -> tf.Tensor:
    """Per-image, per-channel offsets ``[n, 3]`` uniform in ``[-max_offset, max_offset]``."""
    return _uniform([n, 3], seed, -float(max_offset), float(max_offset))


def brightness_offsets(n, brightness: float, seed) -> tf.Tensor:
    """Per-image offsets ``[n, 1]`` uniform in ``[-brightness, brightness] * 255``."""
    return _uniform([n, 1], seed, -float(brightness), float(brightness)) * 255.0


@_batched
def random_contrast(images, contrast: float, seed=0) -> tf.Tensor:
    """Scale each image about its per-channel mean by a factor in ``[1 - c, 1 + c]``."""
    images = _float(images)
    factor = _uniform([tf.shape(images)[0], 1, 1, 1], seed, 1 - contrast, 1 + contrast)
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return (images - mean) * factor + mean


@_batched
def random_saturation(images, saturation: float, seed=0) -> tf.Tensor:
    """Blend each image with its grey version: ``grey + f * (rgb - grey)``, f in ``[1-s, 1+s]``."""
    images = _float(images)
    factor = _uniform([tf.shape(images)[0], 1, 1, 1], seed, 1 - saturation, 1 + saturation)
    grey = tf.reduce_sum(images * tf.constant(_GREY), axis=-1, keepdims=True)
    return grey + factor * (images - grey)


@_batched
def colour_shift(
    images,
    max_offset: float = 20.0,
    seed=0,
    *,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
) -> tf.Tensor:
    """Colour shifting: per-channel RGB offsets in ``[-max_offset, max_offset]`` per image.

    Options, applied first: ``contrast`` and ``saturation`` factors in ``[1 - x, 1 + x]``; then
    one ``brightness`` offset (fraction of 255) shared by the channels. Not clipped.
    """
    images = _float(images)
    n = tf.shape(images)[0]
    seeds = split_seed(seed, 4)
    if contrast:
        images = random_contrast(images, contrast, seeds[2])
    if saturation:
        images = random_saturation(images, saturation, seeds[3])
    offsets = rgb_offsets(n, max_offset, seeds[0])
    if brightness:
        offsets += brightness_offsets(n, brightness, seeds[1])
    return add_channel_offsets(images, offsets)


def pca_alpha(n, sigma: float, seed) -> tf.Tensor:
    """AlexNet's per-image ``alpha ~ N(0, sigma)``, ``[n, 3]``."""
    return tf.random.stateless_normal([n, 3], seed=as_seed(seed), stddev=float(sigma))


def pca_offsets(n, eigvals, eigvecs, sigma: float, seed, value_range: float = 255.0) -> tf.Tensor:
    """Per-image RGB offsets ``[n, 3]`` = ``value_range * eigvecs @ (alpha * eigvals)``."""
    eigvals = tf.constant(eigvals, tf.float32) if not tf.is_tensor(eigvals) else eigvals
    eigvecs = tf.constant(eigvecs, tf.float32) if not tf.is_tensor(eigvecs) else eigvecs
    weights = pca_alpha(n, sigma, seed) * eigvals[None, :]
    # a [n, 3] x [3, 3] product as a broadcast sum: tf.matmul's call overhead is larger than
    # the arithmetic here, and this runs once per image in the pipeline
    return tf.reduce_sum(weights[:, None, :] * eigvecs[None, :, :], axis=-1) * value_range


@_batched
def pca_colour(
    images, eigvals, eigvecs, sigma: float = 0.1, seed=0, value_range: float = 255.0
) -> tf.Tensor:
    """AlexNet's PCA colour augmentation (Krizhevsky et al. 2012, section 4.1).

    Adds ``eigvecs @ (alpha * eigvals)`` to every pixel of each image, ``alpha ~ N(0, sigma)``
    per image, so pixels move only along the training set's principal colour axes. ``eigvals``
    and ``eigvecs`` describe pixels in 0..1 (see :func:`tlkit.augment.compute_pca_stats`);
    the offset is multiplied by ``value_range`` to match 0..255 images. Not clipped.
    """
    images = _float(images)
    offsets = pca_offsets(tf.shape(images)[0], eigvals, eigvecs, sigma, seed, value_range)
    return add_channel_offsets(images, offsets)


def add_offsets_uint8(image, offsets) -> tf.Tensor:
    """One uint8 image ``[H, W, C]`` plus per-channel offsets, rounded and clipped, in uint8.

    ``offsets`` (float ``[C]``) are rounded half up to integers ``r``; the result is
    ``clip(image + r, 0, 255)``, exactly what adding the float offsets, clipping and rounding
    half up gives for integer pixels, computed without leaving uint8: clamp each channel to
    ``[max(-r, 0), 255 - max(r, 0)]``, then add ``r`` modulo 256 (the clamp keeps the sum in
    range, so the wrap-around add is exact). Three passes over one byte per value instead of
    a cast to float32, an add, a clip and a cast back (about 2x faster in tf.data on CPU;
    see benchmarks/augment_throughput.py).
    """
    image = tf.convert_to_tensor(image)
    static = image.shape
    shape = static.as_list() if static.is_fully_defined() else tf.shape(image)  # fewer ops
    r = tf.cast(tf.floor(tf.reshape(offsets, [-1]) + 0.5), tf.int32)
    low, high = tf.maximum(-r, 0), 255 - tf.maximum(r, 0)
    bounds = tf.cast(tf.stack([low, high, tf.bitwise.bitwise_and(r, 255)]), tf.uint8)
    # rows of W * C values with the per-channel pattern tiled along them (a channel axis of 3
    # does not vectorise), as add_channel_offsets
    pattern = tf.tile(bounds, [1, shape[1]])
    rows = tf.reshape(image, [shape[0], shape[1] * shape[2]])
    rows = tf.minimum(tf.maximum(rows, pattern[0]), pattern[1]) + pattern[2]
    return tf.reshape(rows, shape)


def clip_pixels(images, low: float = 0.0, high: float = 255.0) -> tf.Tensor:
    """Clip to the valid pixel range."""
    return tf.clip_by_value(_float(images), low, high)


# --- mixing (images and one-hot labels) ---------------------------------------------------------


def _beta(n, alpha: float, seed) -> tf.Tensor:
    seeds = split_seed(seed, 2)
    a = tf.random.stateless_gamma([n], seed=seeds[0], alpha=alpha)
    b = tf.random.stateless_gamma([n], seed=seeds[1], alpha=alpha)
    return a / tf.maximum(a + b, 1e-12)


def _partners(n, seed) -> tf.Tensor:
    return tf.argsort(_uniform([n], seed, 0.0, 1.0))


def _check_one_hot(labels, op: str) -> tf.Tensor:
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank is not None and labels.shape.rank < 2:
        raise ValueError(
            f"{op} mixes labels and needs one-hot labels [B, classes]; got shape {labels.shape}"
        )
    return _float(labels)


def mixup(images, labels, alpha: float = 0.2, seed=0) -> tuple[tf.Tensor, tf.Tensor]:
    """mixup (Zhang et al. 2018): ``lam * x + (1 - lam) * x[perm]``, labels alike, lam ~ Beta."""
    images, labels = _float(images), _check_one_hot(labels, "mixup")
    n = tf.shape(images)[0]
    seeds = split_seed(seed, 2)
    lam = _beta(n, alpha, seeds[0])
    perm = _partners(n, seeds[1])
    mixed = (
        images * lam[:, None, None, None] + tf.gather(images, perm) * (1 - lam)[:, None, None, None]
    )
    return mixed, labels * lam[:, None] + tf.gather(labels, perm) * (1 - lam)[:, None]


def cutmix(images, labels, alpha: float = 1.0, seed=0) -> tuple[tf.Tensor, tf.Tensor]:
    """CutMix (Yun et al. 2019): paste a random box of a partner image; labels mix by area."""
    images, labels = _float(images), _check_one_hot(labels, "cutmix")
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    seeds = split_seed(seed, 4)
    lam = _beta(n, alpha, seeds[0])
    perm = _partners(n, seeds[1])
    ratio = tf.sqrt(1.0 - lam)
    h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    cy = _uniform([n], seeds[2], 0.0, h_f)
    cx = _uniform([n], seeds[3], 0.0, w_f)
    y1 = tf.clip_by_value(cy - ratio * h_f / 2, 0.0, h_f)
    y2 = tf.clip_by_value(cy + ratio * h_f / 2, 0.0, h_f)
    x1 = tf.clip_by_value(cx - ratio * w_f / 2, 0.0, w_f)
    x2 = tf.clip_by_value(cx + ratio * w_f / 2, 0.0, w_f)
    rows = tf.range(h_f)[None, :] + 0.5
    cols = tf.range(w_f)[None, :] + 0.5
    in_rows = (rows >= y1[:, None]) & (rows < y2[:, None])
    in_cols = (cols >= x1[:, None]) & (cols < x2[:, None])
    box = in_rows[:, :, None] & in_cols[:, None, :]
    mixed = tf.where(box[..., None], tf.gather(images, perm), images)
    pasted = tf.reduce_mean(tf.cast(box, tf.float32), axis=[1, 2])
    labels = labels * (1 - pasted)[:, None] + tf.gather(labels, perm) * pasted[:, None]
    return mixed, labels
