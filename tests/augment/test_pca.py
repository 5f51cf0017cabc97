import json

import numpy as np
import pytest
import tensorflow as tf

from tlkit.augment import IMAGENET_PCA, PCAStats, compute_pca_stats
from tlkit.errors import UserError


def _correlated_images(n=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    mix = np.array([[1.0, 0.6, 0.2], [0.0, 0.8, 0.5], [0.0, 0.0, 0.4]])
    pixels = rng.normal(size=(n * size * size, 3)) @ mix * 40 + np.array([120, 100, 90])
    return np.clip(pixels, 0, 255).reshape(n, size, size, 3).astype(np.uint8)


def _numpy_reference(images):
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    cov = np.cov(pixels, rowvar=False)
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    return eigvals[order], eigvecs[:, order], pixels.mean(axis=0), cov


def _assert_matches(stats, images):
    eigvals, eigvecs, mean, cov = _numpy_reference(images)
    assert np.allclose(stats.eigvals, eigvals, rtol=1e-9, atol=1e-15)
    assert np.all(np.diff(stats.eigvals) <= 0)
    for i in range(3):  # eigenvectors are defined up to sign
        assert np.isclose(abs(stats.eigvecs[:, i] @ eigvecs[:, i]), 1.0, atol=1e-9)
    assert np.allclose(stats.mean, mean, atol=1e-12)
    rebuilt = stats.eigvecs @ np.diag(stats.eigvals) @ stats.eigvecs.T
    assert np.allclose(rebuilt, cov, atol=1e-12)
    assert stats.count == images.shape[0] * images.shape[1] * images.shape[2]


def test_matches_numpy_covariance_and_eigh():
    images = _correlated_images()
    _assert_matches(compute_pca_stats(images), images)


def test_streaming_over_batches_equals_one_pass():
    images = _correlated_images(n=9)
    batches = [images[:2], images[2:7], images[7:]]
    _assert_matches(compute_pca_stats(iter(batches)), images)
    _assert_matches(compute_pca_stats([img for img in images]), images)  # single images


def test_reads_a_tf_dataset_of_batches_with_labels():
    images = _correlated_images(n=8)
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(8))).batch(3)
    _assert_matches(compute_pca_stats(ds), images)
    sample = compute_pca_stats(ds, max_batches=1)
    assert sample.count == 3 * 16 * 16


def test_round_trip_through_json():
    stats = compute_pca_stats(_correlated_images())
    again = PCAStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert np.allclose(again.eigvals, stats.eigvals) and np.allclose(again.eigvecs, stats.eigvecs)
    assert again.count == stats.count


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="RGB"):
        compute_pca_stats(np.zeros([2, 4, 4, 1]))
    with pytest.raises(UserError, match="empty"):
        compute_pca_stats([])


def test_imagenet_constants_are_orthonormal():
    assert np.allclose(IMAGENET_PCA.eigvecs.T @ IMAGENET_PCA.eigvecs, np.eye(3), atol=2e-3)
