"""Low-level image ops that the data pipeline and augmentation share: decode, resize, mirror,
seed streams.

:mod:`tlkit.data` and :mod:`tlkit.augment` both import this module and neither imports the
other: the pipeline calls an augmenter it is handed, and the augmenter decodes and resizes
with the functions here.

Decoding that reads only what training uses: JPEG crop windows and DCT-domain downscaling.

A random crop needs only its window of the image, and a large photo trained at 224 pixels
needs only a fraction of its resolution. For JPEG files, :func:`decode_window` asks libjpeg
(``tf.io.decode_and_crop_jpeg``) for just the window's rows and blocks, and, when the window
is at least twice the output size, for a 1/2, 1/4 or 1/8 scaled decode (libjpeg's scaled
inverse DCT, which also filters like a proper downscale). Other formats are decoded whole and
sliced. The window itself comes from the caller (``window_fn``), computed from the image's
size, which for JPEG is read from the header without decoding.

These are TensorFlow graph functions for ``tf.data.Dataset.map``.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

#: The scale denominators ``tf.io.decode_jpeg`` supports (its ``ratio`` attribute).
JPEG_RATIOS = (1, 2, 4, 8)

WindowFn = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def decode_rgb(contents) -> tf.Tensor:
    """Any image file's bytes as uint8 RGB ``[H, W, 3]`` (first frame of an animation)."""
    return tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)


def seed_stream(seed: int) -> tf.data.Dataset:
    """An endless dataset of int64 ``[2]`` seeds: reproducible, and different every epoch."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def resize_uint8(image, size: int) -> tf.Tensor:
    """Bilinear, antialiased resize to ``size x size``, rounded back to uint8."""
    resized = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def jpeg_ratio_index(extent, min_side: int) -> tf.Tensor:
    """Index into :data:`JPEG_RATIOS` of the largest ratio that keeps ``extent // ratio`` at
    least ``min_side`` on both axes (so what follows is still a reduction, below 2x)."""
    smallest = tf.reduce_min(tf.cast(extent, tf.int32))
    fits = [tf.cast(smallest // r >= min_side, tf.int32) for r in JPEG_RATIOS[1:]]
    return tf.add_n(fits)


def _scaled_box(start, extent, hw, ratio: int) -> tf.Tensor:
    """The crop box ``[top, left, height, width]`` in a 1/``ratio`` scaled decode.

    libjpeg's scaled image is ``ceil(side / ratio)`` pixels; the box covers the source window
    (rounded outwards) and stays inside that image.
    """
    if ratio == 1:
        return tf.concat([start, extent], 0)
    dims = (hw + ratio - 1) // ratio
    top_left = start // ratio
    end = tf.minimum((start + extent + ratio - 1) // ratio, dims)
    return tf.concat([top_left, tf.maximum(end - top_left, 1)], 0)


def resize_square(image, size: int, antialias: bool | None = None) -> tf.Tensor:
    """``image`` to ``[size, size, C]`` float32 by one bilinear pass, antialiased when
    ``antialias`` or, by default, when a side shrinks more than 2x (plain bilinear would skip
    pixels there; at 2x it averages pixel pairs). A same-size resize is the identity."""
    if antialias is not None:
        return tf.image.resize(image, [size, size], antialias=antialias)
    large = tf.reduce_any(tf.shape(image)[:2] > 2 * size)
    return tf.cond(
        large,
        lambda: tf.image.resize(image, [size, size], antialias=True),
        lambda: tf.image.resize(image, [size, size]),
    )


def decode_window(
    contents,
    window_fn: WindowFn,
    min_side: int | None = None,
    resize_to: int | None = None,
    flip=None,
    then=None,
) -> tf.Tensor:
    """Decode only a window of an encoded image (and resize it).

    Args:
        contents: Scalar string tensor, the file's bytes (any format ``decode_image`` reads).
        window_fn: ``source [2] -> (start [2], extent [2])``, int32 (top, left) and (height,
            width) of the window in source pixels; it must lie inside the image.
        min_side: With a JPEG, decode at the smallest DCT scale (1/2, 1/4, 1/8) whose window is
            still at least this many pixels on both axes; ``None`` always decodes at full scale.
        resize_to: Also resize the window to this square side (:func:`resize_square`), inside
            the decode branch: one fewer conditional per image, which tf.data pays for.
        flip: With ``resize_to``, a scalar bool: mirror the resized window. For a JPEG the
            branch is chosen with the decode scale (eight static branches), so mirroring adds
            no conditional of its own.
        then: With ``resize_to``, a function applied to the resized window before the mirror
            (per-pixel work that commutes with it, such as colour offsets and the cast to uint8:
            the mirror then moves 1-byte pixels, not 4-byte floats).

    Returns:
        uint8 ``[h, w, 3]``: the window, or for a scaled JPEG decode the same region at
        ``1/ratio`` of its size (rounded outwards by at most one pixel); with ``resize_to``,
        float32 ``[resize_to, resize_to, 3]``.
    """
    contents = tf.convert_to_tensor(contents, tf.string)

    if flip is not None and resize_to is None:
        raise ValueError("decode_window: flip needs resize_to")

    def finish(window, ratio: int = 1, mirrored: bool | None = None):
        if resize_to is None:
            return window
        # after a DCT-scaled decode the window is below 2x the output unless the scale ran out
        antialias = None if ratio in (1, JPEG_RATIOS[-1]) else False
        x = resize_square(window, resize_to, antialias)
        if then is not None:
            x = then(x)
        if mirrored is None:  # decided at run time
            return mirror_if(x, flip)
        return tf.reverse(x, axis=[1]) if mirrored else x

    def jpeg():
        hw = tf.image.extract_jpeg_shape(contents)[:2]
        start, extent = window_fn(hw)
        if min_side is None:
            box = tf.concat([start, extent], 0)
            return finish(tf.io.decode_and_crop_jpeg(contents, box, channels=3))

        def branch(ratio, mirrored):
            def decode():
                box = _scaled_box(start, extent, hw, ratio)
                window = tf.io.decode_and_crop_jpeg(contents, box, channels=3, ratio=ratio)
                return finish(window, ratio, mirrored)

            return decode

        index = jpeg_ratio_index(extent, min_side)
        if flip is None:
            return tf.switch_case(index, [branch(r, False) for r in JPEG_RATIOS])
        index = 2 * index + tf.cast(tf.reshape(flip, []), tf.int32)
        branches = [branch(r, m) for r in JPEG_RATIOS for m in (False, True)]
        return tf.switch_case(index, branches)

    def other():
        image = decode_rgb(contents)
        start, extent = window_fn(tf.shape(image)[:2])
        window = tf.slice(image, tf.concat([start, [0]], 0), tf.concat([extent, [3]], 0))
        return finish(window)

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    side = [resize_to, resize_to] if resize_to else [None, None]
    return tf.ensure_shape(image, [*side, 3])


def mirror_if(image, flip) -> tf.Tensor:
    """``image [H, W, C]`` mirrored when the scalar bool ``flip`` (None: as is)."""
    if flip is None:
        return image
    return tf.cond(tf.reshape(flip, []), lambda: tf.reverse(image, axis=[1]), lambda: image)


def whole_image(hw) -> tuple[tf.Tensor, tf.Tensor]:
    """A ``window_fn`` for the whole image."""
    hw = tf.cast(tf.reshape(hw, [2]), tf.int32)
    return tf.zeros([2], tf.int32), hw


# --------------------------------------------------------------------------- geometry
#
# How an image of any shape becomes the square the model sees (the preprocessing contract's
# resize policies, tlkit.contract). One implementation for training, evaluation, prediction
# and the calibration data of exports.

#: ``squash``: the whole image resized to a square (aspect ratio not kept); ``centre_crop``:
#: the central square (shorter side) resized, as AlexNet and VGG evaluate; ``pad``: the whole
#: image with its longer side resized, padded to a square with black.
RESIZE_POLICIES = ("squash", "centre_crop", "pad")


def square_region(hw, policy: str) -> tuple[tf.Tensor, tf.Tensor]:
    """``(start [2], extent [2])``: the part of an ``hw`` image that :func:`fit_square` keeps
    (the whole image, or its central square for ``centre_crop``). Not defined for ``pad``."""
    hw = tf.cast(tf.reshape(hw, [2]), tf.int32)
    if policy == "squash":
        return tf.zeros([2], tf.int32), hw
    if policy == "centre_crop":
        side = tf.reduce_min(hw)
        return (hw - side) // 2, tf.stack([side, side])
    raise ValueError(f"no square region for resize policy {policy!r}")


def fit_square(image, side: int, policy: str) -> tf.Tensor:
    """uint8 ``[H, W, 3]`` (any size) to uint8 ``[side, side, 3]`` by ``policy``.

    Resizing is bilinear and antialiased, rounded back to 8 bits (:func:`resize_uint8`).
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize policy must be one of {RESIZE_POLICIES}, got {policy!r}")
    image = tf.convert_to_tensor(image)
    if policy == "pad":
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = side / tf.reduce_max(hw)
        new = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), 1)
        resized = tf.image.resize(image, new, method="bilinear", antialias=True)
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
        top, left = (side - new[0]) // 2, (side - new[1]) // 2
        padded = tf.pad(resized, [[top, side - new[0] - top], [left, side - new[1] - left], [0, 0]])
        return tf.ensure_shape(padded, [side, side, 3])
    start, extent = square_region(tf.shape(image)[:2], policy)
    region = tf.slice(image, tf.concat([start, [0]], 0), tf.concat([extent, [-1]], 0))
    return tf.ensure_shape(resize_uint8(region, side), [side, side, 3])


def centre_square(image, size: int) -> tf.Tensor:
    """The central ``size x size`` window of a square ``[S, S, C]`` image (``S >= size``)."""
    side = tf.shape(image)[0]
    offset = (side - size) // 2
    return image[offset : offset + size, offset : offset + size]


def view_region(hw, policy: str, eval_size: int, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The source window that ``centre_square(fit_square(image, eval_size), size)`` shows
    (for a decoder that reads only that window). Not defined for ``pad``."""
    start, extent = square_region(hw, policy)
    if eval_size == size:
        return start, extent
    offset = (eval_size - size) // 2
    scale = tf.cast(extent, tf.float32) / eval_size
    inner = tf.cast(tf.round(offset * scale), tf.int32)
    inner_extent = tf.maximum(tf.cast(tf.round(size * scale), tf.int32), 1)
    return start + inner, tf.minimum(inner_extent, extent - inner)
