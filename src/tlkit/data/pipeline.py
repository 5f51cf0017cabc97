"""tf.data pipelines: decode, resize, cache, shuffle, augment, batch, weight, prefetch.

Images leave the pipeline as raw RGB in 0..255, float32 or (``image_dtype="uint8"``, what
``tlkit finetune`` uses) uint8, a quarter of the bytes to batch and to copy to an accelerator;
the model casts them and its own preprocessing (a Rescaling layer or the backbone's mode) maps
them further. Between decode and augmentation they are kept as uint8, so the cache and the
shuffle buffer take a quarter of the memory, and a cached and an uncached pipeline yield the
same pixels.

Augmented training from files that are not cached takes the fused path: the augmenter draws the
crop window from the image's size and decodes only that window
(:meth:`tlkit.augment.Augmenter.decode_per_image`), so decoding, resizing and augmenting cost
about what decoding and resizing alone do (benchmarks/augment_throughput.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from tlkit.contract import Contract
from tlkit.data.bundle import Split
from tlkit.imageops import decode_rgb, seed_stream, square_region, view_region

AUTOTUNE = tf.data.AUTOTUNE
#: Memory for the shuffle buffer after the cache, which holds already decoded images.
SHUFFLE_BUFFER_BYTES = 256 * 2**20


def make_dataset(
    split: Split,
    *,
    num_classes: int,
    image_size: int,
    batch_size: int,
    training: bool,
    seed: int,
    augmenter: Any = None,
    class_weight: dict[int, float] | None = None,
    cache: str = "auto",
    cache_limit_mb: int = 2048,
    load_size: int | None = None,
    num_parallel_calls: int | None = None,
    drop_remainder: bool = False,
    image_dtype: str = "float32",
    contract: Any = None,
) -> tf.data.Dataset:
    """A batched dataset of ``(images, one-hot labels[, sample weights])``.

    Files are read and decoded in parallel (``tf.io.decode_image``, 3 channels, first frame),
    in-memory images are gathered by index; both are shaped by the preprocessing ``contract``
    (:class:`tlkit.contract.Contract`): for training with random crops, fitted by its resize
    policy to the load size ``L`` (``load_size`` or ``augmenter.load_size(image_size)``);
    otherwise its evaluation view (fitted to ``eval_size``, the centre ``image_size`` square).
    They are cached in memory when ``cache`` says so ("auto": when ``N * L * L * 3`` bytes fit
    in ``cache_limit_mb``). Training shuffles (seeded, a new order every epoch), then applies
    ``augmenter.per_image(image, seed)`` per example with a per-example, per-epoch seed, batches,
    and applies ``augmenter.per_batch(images, labels, seed)`` (which may mix labels). Without
    ``training``: no shuffle, no augmentation, the split's order. Uncached files with an
    augmenter that has ``decode_per_image`` (and ``fuses_decode``) skip the separate decode and
    resize: ``decode_per_image(file bytes, seed)`` decodes only the crop window.

    Class weights become per-example sample weights, ``labels @ weights``, computed after
    ``per_batch`` so a mixed label gets the mixed weight; Keras' ``class_weight`` argument does
    not work with every dataset structure and strategy, sample weights do.

    Args:
        split: The examples.
        num_classes: Width of the one-hot labels.
        image_size: Side of the square images the model sees.
        batch_size: Examples per batch.
        training: Shuffle and augment.
        seed: Seed of the shuffle and of the augmentation seeds.
        augmenter: Object with ``per_image(image, seed)``, ``per_batch(images, labels, seed)``
            and ``load_size(image_size)``; used only when ``training``.
        class_weight: ``{class index: weight}`` to add sample weights, or ``None``.
        cache: ``auto``, ``memory`` or ``none``.
        cache_limit_mb: Budget for ``auto``.
        load_size: Side images are decoded to before augmentation.
        num_parallel_calls: Parallel map calls; ``None`` lets tf.data tune.
        drop_remainder: Drop a last, smaller batch.
        image_dtype: ``float32`` or ``uint8`` (rounded) images.
        contract: The run's preprocessing contract; default squash to ``image_size``
            (:meth:`Contract.legacy`), what tlkit did before contracts.

    Returns:
        ``tf.data.Dataset`` of ``(image_dtype [B, S, S, 3] in 0..255, float32 [B, num_classes])``,
        plus float32 ``[B]`` weights with ``class_weight``.
    """
    dtype = tf.as_dtype(image_dtype)
    if dtype not in (tf.float32, tf.uint8):
        raise ValueError(f"image_dtype must be 'float32' or 'uint8', got {image_dtype!r}")
    if len(split) and int(split.labels.max()) >= num_classes:
        raise ValueError(f"label {int(split.labels.max())} out of range for {num_classes} classes")
    contract = contract or Contract.legacy(image_size)
    if contract.input_size != image_size:
        raise ValueError(f"contract is for {contract.input_size}px, image_size is {image_size}")
    augmenter = augmenter if training else None
    size = image_size if augmenter is None else load_size or int(augmenter.load_size(image_size))
    calls = num_parallel_calls or AUTOTUNE
    cached = cache == "memory" or (
        cache == "auto" and len(split) * size * size * 3 <= cache_limit_mb * 2**20)
    ds = _examples(split, contract, image_size, size, training=training, seed=seed,
                   cached=cached, augmenter=augmenter, dtype=dtype, calls=calls)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda images, labels: (images, tf.one_hot(labels, num_classes, dtype=tf.float32)))
    return _batch_steps(ds, augmenter, class_weight, num_classes, seed=seed, dtype=dtype,
                        calls=calls).prefetch(AUTOTUNE)


def _examples(split: Split, contract, image_size: int, size: int, *, training: bool, seed: int,
              cached: bool, augmenter, dtype, calls) -> tf.data.Dataset:
    """``(image, label)`` examples of :func:`make_dataset`: read, decoded and fitted to
    ``size`` (random crops from a larger square) or the evaluation view, cached, shuffled and
    augmented per image (``augmenter``: None when not training)."""
    n = len(split)
    augment = augmenter is not None
    crops = size > image_size  # random crops from a larger square; else the evaluation view
    prepare = (lambda image: contract.fit(image, size)) if crops else contract.view
    fused = (
        augment
        and not cached
        and not split.in_memory
        and contract.resize != "pad"
        and getattr(augmenter, "fuses_decode", False)
        and hasattr(augmenter, "decode_per_image")
    )
    if crops:
        region = lambda hw: square_region(hw, contract.resize)  # noqa: E731
    else:
        region = lambda hw: view_region(hw, contract.resize, contract.eval_size, image_size)  # noqa: E731
    ds = _keyed(split)
    if training:
        ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=not cached)
    if fused:  # read the bytes; the augmenter decodes only its crop window
        seeds = seed_stream(seed + 2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda example, s: (
                _as_dtype(
                    augmenter.decode_per_image(tf.io.read_file(example[0]), s, region=region),
                    dtype,
                ),
                example[1],
            ),
            num_parallel_calls=calls,
        )
        ds = ds.ignore_errors(log_warning=True)
    else:
        ds = ds.map(_loader(split, prepare), num_parallel_calls=calls)
        if not split.in_memory:
            ds = ds.ignore_errors(log_warning=True)
    if cached:
        ds = ds.cache()
        if training:
            buffer = min(max(n, 1), max(1024, SHUFFLE_BUFFER_BYTES // (size * size * 3)))
            ds = ds.shuffle(buffer, seed=seed + 1, reshuffle_each_iteration=True)
    if augment and not fused:
        seeds = seed_stream(seed + 2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda example, s: (
                _per_image(augmenter, example[0], s, image_size, dtype),
                example[1],
            ),
            num_parallel_calls=calls,
        )
    elif not augment:
        ds = ds.map(lambda image, label: (_as_dtype(image, dtype), label))
    return ds


def _batch_steps(ds, augmenter, class_weight, num_classes: int, *, seed: int, dtype,
                 calls) -> tf.data.Dataset:
    """The augmenter's per-batch step (which may mix labels), then class weights as sample
    weights, ``labels @ weights``, so a mixed label gets the mixed weight."""
    per_batch = getattr(augmenter, "per_batch", None) if augmenter is not None else None
    if not getattr(augmenter, "has_batch_ops", True):
        per_batch = None  # nothing to do per batch: skip the step
    if per_batch is not None:
        seeds = seed_stream(seed + 3)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda batch, s: _batch_as_dtype(per_batch(batch[0], batch[1], s), dtype),
            num_parallel_calls=calls,
        )
    if class_weight:
        table = tf.constant(
            [float(class_weight.get(c, 1.0)) for c in range(num_classes)], tf.float32
        )
        ds = ds.map(lambda images, labels: (images, labels, tf.linalg.matvec(labels, table)))
    return ds


def iterate_images(
    split: Split, image_size: int, batch_size: int = 32, contract: Any = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of ``(float32 images [B, S, S, 3] in 0..255, int labels [B])`` in split order.

    For evaluation and prediction helpers: no shuffle, no augmentation, no cache; the
    ``contract``'s evaluation view (default :meth:`Contract.legacy`).
    """
    contract = contract or Contract.legacy(image_size)
    ds = _keyed(split).map(_loader(split, contract.view), num_parallel_calls=AUTOTUNE)
    if not split.in_memory:
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.map(lambda image, label: (tf.cast(image, tf.float32), label))
    yield from ds.batch(batch_size).prefetch(AUTOTUNE).as_numpy_iterator()


def decoded_images(split: Split) -> tf.data.Dataset:
    """``(uint8 image [H, W, 3], int label)`` of every example in split order, decoded and
    nothing else (each evaluation method shapes them its own way); unreadable files skipped."""
    ds = _keyed(split).map(_loader(split, tf.identity), num_parallel_calls=AUTOTUNE)
    return ds if split.in_memory else ds.ignore_errors(log_warning=True)


def _keyed(split: Split) -> tf.data.Dataset:
    labels = tf.constant(split.labels, tf.int64)
    if split.in_memory:
        return tf.data.Dataset.from_tensor_slices((tf.range(len(split), dtype=tf.int64), labels))
    # bytes, not str: a file name that is not valid UTF-8 (surrogates in Python) still opens
    paths = tf.constant([os.fsencode(p) for p in split.paths], tf.string)
    return tf.data.Dataset.from_tensor_slices((paths, labels))


def _loader(split: Split, prepare):
    """``(key, label) -> (prepare(uint8 image), label)`` for a path or an in-memory index."""
    if not split.in_memory:

        def load(path, label):
            return prepare(decode_rgb(tf.io.read_file(path))), label

        return load
    images = split.images
    if isinstance(images, np.ndarray):
        table = tf.constant(images, tf.uint8)

        def gather(index, label):
            return prepare(tf.gather(table, index)), label

        return gather

    def pick(index, label):
        image = tf.numpy_function(lambda i: images[int(i)], [index], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return prepare(image), label

    return pick


def _as_dtype(images, dtype) -> tf.Tensor:
    """float32 or uint8 (rounded, clipped) images."""
    images = tf.convert_to_tensor(images)
    if images.dtype == dtype:
        return images
    if dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(tf.cast(images, tf.float32)), 0.0, 255.0), dtype)
    return tf.cast(images, dtype)


def _batch_as_dtype(batch, dtype) -> tuple:
    images, *rest = batch
    return (_as_dtype(images, dtype), *rest)


def _per_image(augmenter, image, seed, image_size: int, dtype=tf.float32) -> tf.Tensor:
    """The augmenter's ``per_image`` on the uint8 image, in the pipeline's dtype."""
    image = _as_dtype(augmenter.per_image(image, seed), dtype)
    return tf.ensure_shape(image, [image_size, image_size, 3])
