"""tf.data pipelines: shapes, one-hot labels, seeds, shuffling, augmentation, sample weights."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from data_testlib import make_class_folder

from tlkit.data import DataConfig, Split, iterate_images, load_data, make_dataset


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = make_class_folder(tmp_path_factory.mktemp("pipe") / "d", {"cat": 8, "dog": 8, "fox": 8})
    return load_data(DataConfig(source=str(root), val_split=0.25), seed=0)


def _batches(ds, n=None):
    return [tuple(t.numpy() for t in batch) for batch in (ds.take(n) if n else ds)]


def _make(split, **kw):
    args = dict(num_classes=3, image_size=16, batch_size=6, training=False, seed=0)
    return make_dataset(split, **{**args, **kw})


class FakeAugmenter:
    """Marks what it touched: per_image writes the seed into the image, per_batch adds 1000."""

    def __init__(self):
        self.calls = {"per_image": 0, "per_batch": 0}

    def load_size(self, image_size):
        return image_size + 4

    def per_image(self, image, seed):
        self.calls["per_image"] += 1  # counts traces, not elements
        assert image.dtype == tf.uint8  # the pipeline hands over the decoded bytes as they are
        crop = tf.cast(image[2:-2, 2:-2, :], tf.float32)
        marker = tf.cast(tf.math.floormod(seed[0], 97), tf.float32)
        return tf.concat([crop[:, :, :2], tf.fill(tf.shape(crop[:, :, 2:]), marker)], axis=-1)

    def per_batch(self, images, labels, seed):
        self.calls["per_batch"] += 1
        mixed = 0.5 * labels + 0.5 * tf.roll(labels, 1, axis=0)
        return images + 1000.0, mixed


def test_shapes_dtypes_and_one_hot(bundle):
    images, labels = _batches(_make(bundle.train), 1)[0]
    assert images.shape == (6, 16, 16, 3) and images.dtype == np.float32
    assert labels.shape == (6, 3) and labels.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 1
    assert np.array_equal(labels.sum(axis=1), np.ones(6))
    assert np.array_equal(labels.argmax(axis=1), bundle.train.labels[:6])
    total = sum(len(b[0]) for b in _batches(_make(bundle.train, drop_remainder=True)))
    assert total == len(bundle.train) // 6 * 6


def test_eval_is_deterministic_and_training_shuffles(bundle):
    eval_ds = _make(bundle.train)
    first, second = _batches(eval_ds), _batches(eval_ds)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, second, strict=True))
    order = np.concatenate([b[1].argmax(1) for b in first])
    assert np.array_equal(order, bundle.train.labels)

    one = _batches(_make(bundle.train, training=True, seed=7), 1)[0]
    same = _batches(_make(bundle.train, training=True, seed=7), 1)[0]
    other = _batches(_make(bundle.train, training=True, seed=8), 1)[0]
    assert np.array_equal(one[0], same[0]) and np.array_equal(one[1], same[1])
    assert not np.array_equal(one[0], other[0])
    assert not np.array_equal(one[0], first[0][0])  # not the split's order

    train = _make(bundle.train, training=True, seed=7, batch_size=18)
    epoch1, epoch2 = _batches(train), _batches(train)
    assert not np.array_equal(epoch1[0][0], epoch2[0][0])  # a new order every epoch
    pixels = np.sort(np.concatenate([b[0] for b in epoch1]).reshape(18, -1), axis=0)
    reference = np.sort(np.concatenate([b[0] for b in first]).reshape(18, -1), axis=0)
    assert np.array_equal(pixels, reference)  # same images, other order


def test_cache_does_not_change_pixels(bundle):
    cached = _batches(_make(bundle.val, cache="memory"))
    uncached = _batches(_make(bundle.val, cache="none"))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(cached, uncached, strict=True))
    tiny_budget = _batches(_make(bundle.val, cache="auto", cache_limit_mb=0))
    assert np.array_equal(tiny_budget[0][0], cached[0][0])


def test_augmenter_applies_only_in_training(bundle):
    augmenter = FakeAugmenter()
    images, labels = _batches(_make(bundle.train, augmenter=augmenter), 1)[0]
    assert images.max() <= 255 and labels.max() == 1.0
    assert augmenter.calls == {"per_image": 0, "per_batch": 0}

    train = _make(bundle.train, augmenter=augmenter, training=True, seed=3)
    images, labels = _batches(train, 1)[0]
    assert images.shape == (6, 16, 16, 3)
    assert images.min() >= 1000  # per_batch ran
    markers = images[:, 0, 0, 2] - 1000
    assert len(set(markers.tolist())) > 1  # a different seed per element
    assert np.allclose(labels.sum(1), 1.0) and (labels == 0.5).any()  # mixed labels
    again = _batches(train, 1)[0][0][:, 0, 0, 2]
    assert not np.array_equal(again, images[:, 0, 0, 2])  # new seeds each epoch
    assert augmenter.calls["per_image"] >= 1 and augmenter.calls["per_batch"] >= 1


def test_sample_weights(bundle):
    weights = {0: 0.5, 1: 2.0, 2: 1.0}
    images, labels, w = _batches(_make(bundle.train, class_weight=weights), 1)[0]
    assert w.shape == (6,) and w.dtype == np.float32
    assert np.allclose(w, [weights[c] for c in labels.argmax(1)])
    mixed = _make(
        bundle.train, class_weight=weights, augmenter=FakeAugmenter(), training=True, seed=1
    )
    _, labels, w = _batches(mixed, 1)[0]
    assert np.allclose(w, labels @ np.array([0.5, 2.0, 1.0]))  # weights follow mixed labels


def test_in_memory_digits_and_load_size():
    digits = load_data("builtin:digits", seed=0)
    ds = make_dataset(
        digits.val, num_classes=10, image_size=12, batch_size=32, training=True, seed=0
    )
    images, labels = _batches(ds, 1)[0]
    assert images.shape == (32, 12, 12, 3) and labels.shape == (32, 10)
    ds = make_dataset(
        digits.val, num_classes=10, image_size=12, batch_size=32, training=False, seed=0,
        load_size=20,
    )  # fmt: skip
    assert _batches(ds, 1)[0][0].shape == (32, 12, 12, 3)


def test_ragged_in_memory_images():
    images = [np.full((4 + i, 5, 3), 10 * i, np.uint8) for i in range(4)]
    split = Split(labels=[0, 1, 0, 1], images=images, origins=[f"m#{i}" for i in range(4)])
    ((batch, labels),) = _batches(
        make_dataset(split, num_classes=2, image_size=6, batch_size=4, training=False, seed=0)
    )
    assert batch.shape == (4, 6, 6, 3)
    assert np.allclose(batch[:, 0, 0, 0], [0, 10, 20, 30])


def test_iterate_images(bundle):
    batches = list(iterate_images(bundle.val, 16, batch_size=4))
    labels = np.concatenate([b[1] for b in batches])
    assert np.array_equal(labels, bundle.val.labels)
    assert batches[0][0].shape == (4, 16, 16, 3) and batches[0][0].dtype == np.float32
