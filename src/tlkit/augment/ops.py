"""Augmentation operations as pure TensorFlow graph ops with stateless seeds: seeds and the
geometric ops (mirror, crops, scale jitter, rotation, shear, warp); colour and mixing ops are in
:mod:`tlkit.augment.pixels`.

Every function takes a ``seed`` (an int, a pair, or an int ``[2]`` tensor as tf.random's
stateless ops use): the same seed gives the same output, inside ``tf.data.Dataset.map``,
``tf.function`` or eagerly. Images are ``[H, W, C]`` or batches ``[B, H, W, C]``, pixel values in
0..255; batched ops draw their parameters per image. Flip and crop keep the input dtype (they move
pixels); the other ops return float32 and do not clip (the augmenter clips once at the end).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import tensorflow as tf

from tlkit.imageops import mirror_if, resize_square


def as_seed(seed) -> tf.Tensor:
    """An int64 ``[2]`` stateless seed from an int, a pair or a tensor."""
    if isinstance(seed, numbers.Integral):
        return tf.constant([int(seed), 0], tf.int64)
    return tf.cast(tf.reshape(seed, [2]), tf.int64)


def split_seed(seed, num: int) -> tf.Tensor:
    """``num`` independent seeds ``[num, 2]`` derived from ``seed``."""
    return tf.random.experimental.stateless_split(as_seed(seed), num=num)


def _batched(fn):
    """Let an op written for ``[B, H, W, C]`` also take one image ``[H, W, C]``."""

    @functools.wraps(fn)
    def wrapper(images, *args, **kwargs):
        images = tf.convert_to_tensor(images)
        if images.shape.rank == 3:
            return fn(images[tf.newaxis], *args, **kwargs)[0]
        return fn(images, *args, **kwargs)

    return wrapper


def _float(images: tf.Tensor) -> tf.Tensor:
    return images if images.dtype == tf.float32 else tf.cast(images, tf.float32)


def _uniform(shape, seed, low, high) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed=as_seed(seed), minval=low, maxval=high)


def _size_pair(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


# --- geometric ---------------------------------------------------------------------------------


@_batched
def flip_left_right(images, p: float = 0.5, seed=0) -> tf.Tensor:
    """Mirror each image horizontally with probability ``p`` (AlexNet, VGG)."""
    flip = tf.cast(_uniform([tf.shape(images)[0]], seed, 0.0, 1.0) < p, tf.int32)
    # partition + stitch moves whole images and reverses only the flipped ones, several times
    # faster on CPU than a broadcast tf.where over the batch
    parts = tf.dynamic_partition(images, flip, 2)
    positions = tf.dynamic_partition(tf.range(tf.shape(images)[0]), flip, 2)
    return tf.dynamic_stitch(positions, [parts[0], tf.reverse(parts[1], axis=[2])])


def flip_draw(p: float, seed) -> tf.Tensor:
    """One mirror decision (a scalar bool), True with probability ``p``."""
    return _uniform([], seed, 0.0, 1.0) < p


def flip_one(image, p: float, seed) -> tf.Tensor:
    """Mirror one ``[H, W, C]`` image with probability ``p`` (reverses only when drawn)."""
    return mirror_if(image, flip_draw(p, seed))


def crop_offsets(image_shape, size, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """Top-left corners ``(oy[B], ox[B])`` of random ``size`` windows inside ``[B, H, W, C]``."""
    height, width = _size_pair(size)
    sides = tf.cast(tf.stack([image_shape[1], image_shape[2]]), tf.float32)
    room = sides - tf.constant([height - 1.0, width - 1.0])
    return _window_offsets(tf.broadcast_to(room, tf.stack([image_shape[0], 2])), seed)


def _window_offsets(room, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """Integer offsets uniform in ``[0, room)`` for a ``[B, 2]`` float ``room``."""
    draws = tf.random.stateless_uniform(tf.shape(room), seed=as_seed(seed))
    offsets = tf.minimum(tf.floor(draws * room), room - 1.0)
    offsets = tf.cast(offsets, tf.int32)
    return offsets[:, 0], offsets[:, 1]


def random_crop(images, size: int | Sequence[int], seed=0) -> tf.Tensor:
    """A random ``size`` window of each image (uniform position, per image; exact pixels).

    Raises:
        tf.errors.InvalidArgumentError: an image smaller than ``size``.
    """
    images = tf.convert_to_tensor(images)
    single = images.shape.rank == 3
    height, width = _size_pair(size)
    known = single and images.shape.is_fully_defined()
    if known and images.shape[0] >= height and images.shape[1] >= width:
        # one image of known size (the pipeline's cached images): the same draw and window
        # from constants, a third of the ops (tf.data pays for each one, per image)
        h, w, c = images.shape
        oy, ox = _window_offsets(tf.constant([[h - height + 1.0, w - width + 1.0]]), seed)
        window = tf.slice(images, tf.stack([oy[0], ox[0], 0]), [height, width, c])
        return tf.ensure_shape(window, [height, width, c])
    batch = images[tf.newaxis] if single else images
    shape = tf.shape(batch)
    static = batch.shape[1:3]
    if None in static or static[0] < height or static[1] < width:  # else known to fit
        tf.debugging.assert_greater_equal(
            shape[1:3], tf.constant([height, width]), message=f"image smaller than crop {size}"
        )
    oy, ox = crop_offsets(shape, (height, width), seed)
    channels = shape[3]

    @tf.autograph.experimental.do_not_convert
    def window(args):
        return tf.slice(
            args[0], tf.stack([args[1], args[2], 0]), tf.stack([height, width, channels])
        )

    if single:
        out = window((images, oy[0], ox[0]))
    else:  # one slice per image copies whole rows: far faster than a gather on CPU
        out = tf.map_fn(window, (batch, oy, ox), fn_output_signature=images.dtype)
    return tf.ensure_shape(out, [*([] if single else [None]), height, width, images.shape[-1]])


def crop_window(source_hw, virtual_size, size: int, seed=0) -> tuple[tf.Tensor, tf.Tensor]:
    """Where a random ``size`` window of a ``virtual_size`` view of an image lies in the image.

    The view is the ``source_hw`` image resized (per axis) to ``virtual_size``; the window's
    position is drawn as :func:`random_crop` draws it at ``virtual_size`` (the same seed gives
    the same window) and mapped back to whole source pixels. A source already at
    ``virtual_size`` gives the exact window. The decoder can then read only this region
    (``tf.io.decode_and_crop_jpeg``).

    Returns:
        int32 ``start [2]`` (top, left) and ``extent [2]`` (height, width) in the source.
    """
    source = tf.cast(tf.reshape(source_hw, [2]), tf.int32)
    virtual = tf.cast(tf.reshape(virtual_size, [2]), tf.int32)
    top, left = _window_offsets(tf.cast(virtual - (size - 1), tf.float32)[None], seed)
    start_v = tf.cast(tf.stack([top[0], left[0]]), tf.float32)
    scale = tf.cast(source, tf.float32) / tf.cast(virtual, tf.float32)
    extent = tf.maximum(tf.cast(tf.round(size * scale), tf.int32), 1)
    extent = tf.minimum(extent, source)
    start = tf.cast(tf.round(start_v * scale), tf.int32)
    return tf.clip_by_value(start, 0, source - extent), extent


def resize_window(window, size: int, *, flip=None, antialias: bool | None = None) -> tf.Tensor:
    """One ``[h, w, C]`` window to ``[size, size, C]`` float32, mirrored when ``flip``.

    One bilinear pass (``tf.image.resize``; a window already at ``size`` keeps its exact
    pixels), antialiased when ``antialias`` or, by default, when the window is more than twice
    ``size`` on a side (plain bilinear would skip pixels there; at 2x it averages pixel pairs).
    The mirror runs after the resize, on the smaller float image: bilinear resampling with
    half-pixel centres commutes with it.
    """
    window = tf.convert_to_tensor(window)
    x = resize_square(window, size, antialias)
    return tf.ensure_shape(mirror_if(x, flip), [size, size, window.shape[-1]])


def resized_crop(images, virtual_size, size: int, seed=0, *, flip=None) -> tf.Tensor:
    """A random ``size`` window of each image as if it had first been resized to
    ``virtual_size``, without building the resized image.

    The window is mapped to the source image (:func:`crop_window`), cut out (whole source
    pixels), resized once to ``size`` with ``tf.image.resize`` (bilinear) and mirrored if asked
    (:func:`resize_window`): one resampling pass where resize-then-crop takes two, and no more
    work than resizing the whole image to ``size``. An image already at ``virtual_size`` gives
    its exact sub-window. Used for crops from raw decoded images and for scale jittering.

    Args:
        images: ``[H, W, C]`` or ``[B, H, W, C]``, any size and dtype.
        virtual_size: ``(Hv, Wv)`` for every image, or ``[B, 2]`` per image; sides >= size.
        size: The output side.
        seed: Seeds the window positions.
        flip: Optional boolean (``[B]`` for a batch): mirror those windows.

    Returns:
        float32 ``[size, size, C]`` (or ``[B, size, size, C]``).
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank == 4:
        n = tf.shape(images)[0]
        virtual = tf.reshape(tf.cast(virtual_size, tf.int32), [-1, 2]) * tf.ones([n, 1], tf.int32)
        flips = tf.zeros([n], tf.bool) if flip is None else tf.reshape(flip, [-1])
        base = as_seed(seed)

        @tf.autograph.experimental.do_not_convert
        def one(args):
            image_seed = tf.random.experimental.stateless_fold_in(base, tf.cast(args[2], tf.int64))
            return resized_crop(args[0], args[1], size, image_seed, flip=args[3])

        elements = (images, virtual, tf.range(n), flips)
        return tf.map_fn(one, elements, fn_output_signature=tf.float32)
    start, extent = crop_window(tf.shape(images)[:2], virtual_size, size, seed)
    window = tf.slice(images, tf.concat([start, [0]], 0), tf.concat([extent, [-1]], 0))
    return resize_window(window, size, flip=flip)


def scale_jitter_size(seed, s_min: int, s_max: int) -> tf.Tensor:
    """VGG's training scale S for one image: uniform integer in ``[s_min, s_max]`` (int32)."""
    if s_min == s_max:
        return tf.constant(s_min, tf.int32)
    return tf.random.stateless_uniform(
        [], seed=as_seed(seed), minval=s_min, maxval=s_max + 1, dtype=tf.int32
    )


def shortest_side_size(hw, side) -> tf.Tensor:
    """``[2]`` int32 size of an ``hw`` image isotropically rescaled to shortest side ``side``."""
    shape = tf.cast(hw, tf.float32)
    side = tf.cast(side, tf.int32)
    scaled = tf.round(shape * tf.cast(side, tf.float32) / tf.reduce_min(shape))
    return tf.maximum(tf.cast(scaled, tf.int32), side)


def rescale_shortest_side(image, side) -> tf.Tensor:
    """Isotropic rescale of one ``[H, W, C]`` image so its shortest side is ``side``."""
    new = shortest_side_size(tf.shape(image)[:2], side)
    return tf.image.resize(_float(image), new, method="bilinear", antialias=True)


def scale_jitter(image, s_min: int, s_max: int, size: int, seed=0) -> tf.Tensor:
    """VGG scale jittering of one image: shortest side to S ~ U[s_min, s_max], then crop ``size``.

    Simonyan & Zisserman (2015), section 3.1: single-scale training when ``s_min == s_max``
    (S = 256 or 384), multi-scale when S is drawn per image from [256, 512].
    """
    seeds = split_seed(seed, 2)
    rescaled = rescale_shortest_side(image, scale_jitter_size(seeds[0], s_min, s_max))
    return random_crop(rescaled, size, seeds[1])


def affine_transforms(angle, shear_x, shear_y, height, width) -> tf.Tensor:
    """``[B, 8]`` projective transforms rotating by ``angle`` (radians) and shearing, per image.

    ``A = R(angle) @ [[1, shear_x], [shear_y, 1]]`` maps each output pixel, taken about the image
    centre, to the input pixel it samples.
    """
    angle = tf.convert_to_tensor(angle, tf.float32)
    shear_x = tf.convert_to_tensor(shear_x, tf.float32)
    shear_y = tf.convert_to_tensor(shear_y, tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    a00, a01 = cos - sin * shear_y, cos * shear_x - sin
    a10, a11 = sin + cos * shear_y, sin * shear_x + cos
    cx, cy = (tf.cast(width, tf.float32) - 1) / 2, (tf.cast(height, tf.float32) - 1) / 2
    zeros = tf.zeros_like(angle)
    return tf.stack(
        [a00, a01, cx - a00 * cx - a01 * cy, a10, a11, cy - a10 * cx - a11 * cy, zeros, zeros],
        axis=1,
    )


def apply_transforms(images, transforms) -> tf.Tensor:
    """Resample ``[B, H, W, C]`` through ``[B, 8]`` transforms: bilinear, reflected borders."""
    images = _float(images)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )


@_batched
def random_affine(images, max_degrees: float = 0.0, max_shear: float = 0.0, seed=0) -> tf.Tensor:
    """Random rotation (degrees in ``[-max_degrees, max_degrees]``) and shear (factors in
    ``[-max_shear, max_shear]``) about the image centre, bilinear, reflected borders."""
    shape = tf.shape(images)
    seeds = split_seed(seed, 3)
    radians, shear_max = math.radians(max_degrees), float(max_shear)
    transforms = affine_transforms(
        _uniform([shape[0]], seeds[0], -radians, radians),
        _uniform([shape[0]], seeds[1], -shear_max, shear_max),
        _uniform([shape[0]], seeds[2], -shear_max, shear_max),
        shape[1],
        shape[2],
    )
    return apply_transforms(images, transforms)


def rotate(images, max_degrees: float, seed=0) -> tf.Tensor:
    """Random rotation in ``[-max_degrees, max_degrees]`` per image."""
    return random_affine(images, max_degrees=max_degrees, seed=seed)


def shear(images, max_shear: float, seed=0) -> tf.Tensor:
    """Random horizontal and vertical shear in ``[-max_shear, max_shear]`` per image."""
    return random_affine(images, max_shear=max_shear, seed=seed)


def _bilinear_sample(images, ys, xs) -> tf.Tensor:
    """Sample ``[B, H, W, C]`` at float coordinates ``ys, xs`` ``[B, h, w]`` (edges clamped)."""
    shape = tf.shape(images)
    ys = tf.clip_by_value(ys, 0.0, tf.cast(shape[1] - 1, tf.float32))
    xs = tf.clip_by_value(xs, 0.0, tf.cast(shape[2] - 1, tf.float32))
    y0, x0 = tf.floor(ys), tf.floor(xs)
    wy, wx = (ys - y0)[..., None], (xs - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    y1, x1 = tf.minimum(y0 + 1, shape[1] - 1), tf.minimum(x0 + 1, shape[2] - 1)

    def at(y, x):
        return tf.gather_nd(images, tf.stack([y, x], axis=-1), batch_dims=1)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


@_batched
def local_warp(images, magnitude: float = 0.03, grid: int = 4, seed=0) -> tf.Tensor:
    """Local (elastic-like) warping: each pixel moves by a smooth random displacement.

    Displacements are drawn on a ``grid x grid`` lattice, uniform in ``[-magnitude, magnitude]``
    times the image side, and upsampled bicubically to every pixel.
    """
    images = _float(images)
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    sides = tf.cast(tf.stack([height, width]), tf.float32)
    lattice = _uniform([n, grid, grid, 2], seed, -magnitude, magnitude) * sides
    field = tf.image.resize(lattice, [height, width], method="bicubic")
    ys, xs = tf.meshgrid(
        tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
    )
    return _bilinear_sample(images, ys[None] + field[..., 0], xs[None] + field[..., 1])
