"""Properties of the graph ops: rates, bounds, directions, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from tlkit.augment import ops, pixels


def test_flip_rate_matches_p():
    n, p = 4000, 0.3
    images = np.tile(np.array([0, 1], np.uint8).reshape(1, 1, 2, 1), (n, 1, 1, 1))
    out = ops.flip_left_right(images, p, seed=7).numpy()
    flipped = out[:, 0, 0, 0] == 1
    # exact mirrors or untouched, nothing else
    assert np.array_equal(out[flipped], images[flipped][:, :, ::-1])
    assert np.array_equal(out[~flipped], images[~flipped])
    sd = np.sqrt(p * (1 - p) / n)
    assert abs(flipped.mean() - p) < 5 * sd
    assert ops.flip_left_right(images[:50], 0.0, 1).numpy()[:, 0, 0, 0].sum() == 0
    assert ops.flip_left_right(images[:50], 1.0, 1).numpy()[:, 0, 0, 0].sum() == 50


def test_flip_single_image_keeps_dtype():
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    out = ops.flip_left_right(image, 1.0, seed=0)
    assert out.dtype == tf.uint8
    assert np.array_equal(out.numpy(), image[:, ::-1])


def test_crops_are_in_bounds_sub_windows(coord_images):
    images = coord_images(n=64, height=12, width=10)
    out = ops.random_crop(images, (5, 4), seed=3).numpy()
    assert out.shape == (64, 5, 4, 3)
    tops, lefts = out[:, 0, 0, 0], out[:, 0, 0, 1]
    for b in range(64):
        oy, ox = tops[b], lefts[b]
        assert 0 <= oy <= 12 - 5 and 0 <= ox <= 10 - 4
        assert np.array_equal(out[b], images[b, oy : oy + 5, ox : ox + 4])
    # positions are drawn per image over the whole valid range
    assert tops.min() == 0 and tops.max() == 7
    assert lefts.min() == 0 and lefts.max() == 6


def test_crop_single_image_and_too_small(coord_images):
    image = coord_images(n=1)[0].astype(np.uint8)
    out = ops.random_crop(image, 8, seed=1)
    assert out.shape == (8, 8, 3) and out.dtype == tf.uint8
    with pytest.raises(tf.errors.InvalidArgumentError):
        ops.random_crop(image, 11, seed=1)


def test_scale_jitter_draws_s_in_range():
    sizes = np.array([int(ops.scale_jitter_size([5, i], 256, 512)) for i in range(300)])
    assert sizes.min() >= 256 and sizes.max() <= 512
    assert sizes.min() < 270 and sizes.max() > 498  # the whole range is used
    assert len(set(sizes)) > 100
    assert all(int(ops.scale_jitter_size([1, i], 384, 384)) == 384 for i in range(5))


def test_rescale_shortest_side_is_isotropic():
    image = tf.zeros([30, 60, 3])
    out = ops.rescale_shortest_side(image, 45)
    assert out.shape == (45, 90, 3)
    out = ops.rescale_shortest_side(tf.zeros([50, 20, 3], tf.uint8), tf.constant(30))
    assert out.shape == (75, 30, 3)


def test_scale_jitter_output(coord_images):
    image = tf.random.uniform([64, 64, 3], 0, 255, seed=1)
    out = ops.scale_jitter(image, 40, 80, 32, seed=[1, 2])
    assert out.shape == (32, 32, 3)
    assert np.isfinite(out.numpy()).all()


def test_colour_offsets_stay_within_max_offset():
    images = np.full([500, 4, 4, 3], 128.0, np.float32)
    out = pixels.colour_shift(images, 20.0, seed=11).numpy()
    delta = out - images
    # one offset per image and channel, the same at every pixel
    assert np.allclose(delta, delta[:, :1, :1, :], atol=1e-4)
    offsets = delta[:, 0, 0, :]
    assert np.abs(offsets).max() <= 20.0 + 1e-4
    assert np.abs(offsets).max() > 19.0  # the range is used
    assert abs(np.corrcoef(offsets[:, 0], offsets[:, 1])[0, 1]) < 0.15  # channels independent


def test_brightness_contrast_saturation_bounds():
    images = np.full([300, 4, 4, 3], 128.0, np.float32)
    out = pixels.colour_shift(images, 0.0, seed=2, brightness=0.1).numpy() - 128.0
    assert np.abs(out).max() <= 25.5 + 1e-3
    assert np.allclose(out, out[..., :1], atol=1e-4)  # the same for every channel
    # contrast keeps the mean; saturation keeps grey pixels grey
    random = tf.random.uniform([8, 6, 6, 3], 0, 255, seed=3)
    contrasted = pixels.random_contrast(random, 0.5, seed=1)
    assert np.allclose(
        tf.reduce_mean(contrasted, [1, 2]), tf.reduce_mean(random, [1, 2]), atol=1e-3
    )
    grey = tf.tile(tf.random.uniform([8, 6, 6, 1], 0, 255, seed=4), [1, 1, 1, 3])
    assert np.allclose(pixels.random_saturation(grey, 0.5, seed=1), grey, atol=1e-3)


def _random_rotation(seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q


def test_pca_colour_adds_eigvecs_times_alpha_eigvals_to_every_pixel():
    eigvecs = _random_rotation(1)
    eigvals = np.array([0.05, 0.01, 0.002])
    images = tf.random.uniform([64, 8, 8, 3], 60, 190, seed=5)
    out = pixels.pca_colour(images, eigvals, eigvecs, sigma=0.1, seed=[4, 2]).numpy()
    delta = out - images.numpy()
    assert np.allclose(delta, delta[:, :1, :1, :], atol=1e-3)  # constant across pixels
    alpha = pixels.pca_alpha(64, 0.1, [4, 2]).numpy()
    expected = 255.0 * (eigvecs @ (alpha * eigvals).T).T
    assert np.allclose(delta[:, 0, 0, :], expected, atol=1e-3)


def test_pca_colour_moves_pixels_only_along_the_eigenvectors():
    # statistics of a set whose colours vary along one direction only
    direction = np.array([0.8, 0.5, 0.33])
    direction /= np.linalg.norm(direction)
    t = np.random.default_rng(0).uniform(-60, 60, size=(2000, 1))
    colours = 128 + t * direction
    from tlkit.augment import compute_pca_stats

    stats = compute_pca_stats(colours.reshape(1, 2000, 1, 3))
    images = np.full([300, 3, 3, 3], 128.0, np.float32)
    delta = pixels.pca_colour(images, stats.eigvals, stats.eigvecs, 0.1, seed=9).numpy() - images
    delta = delta[:, 0, 0, :]
    assert np.abs(delta).max() > 0.05
    residual = delta - np.outer(delta @ direction, direction)
    assert np.abs(residual).max() < 1e-3 * np.abs(delta).max() + 1e-5
    # and the magnitudes follow alpha ~ N(0, 0.1) times the eigenvalue (in 0..255 units)
    alpha = (delta @ stats.eigvecs[:, 0]) / (255.0 * stats.eigvals[0])
    assert 0.09 < alpha.std() < 0.11
    assert abs(alpha.mean()) < 0.02


def test_same_seed_same_result_different_seed_different():
    images = tf.random.uniform([8, 16, 16, 3], 0, 255, seed=1)

    def chain(seed):
        x = ops.flip_left_right(images, 0.5, seed)
        x = ops.random_crop(x, 12, seed)
        x = pixels.colour_shift(x, 20.0, seed)
        return pixels.pca_colour(x, [0.2, 0.02, 0.004], np.eye(3), 0.1, seed).numpy()

    assert np.array_equal(chain([1, 2]), chain([1, 2]))
    assert not np.array_equal(chain([1, 2]), chain([1, 3]))
    graph = tf.function(lambda s: pixels.colour_shift(images, 20.0, s))
    assert np.allclose(graph(tf.constant([1, 2])), pixels.colour_shift(images, 20.0, [1, 2]))


def test_affine_and_warp_identity_at_zero_and_bounded():
    images = tf.random.uniform([4, 20, 20, 3], 0, 255, seed=2)
    assert np.allclose(ops.random_affine(images, 0.0, 0.0, seed=1), images, atol=1e-3)
    assert np.allclose(ops.local_warp(images, 0.0, 4, seed=1), images, atol=1e-3)
    for out in (
        ops.rotate(images, 30.0, seed=1),
        ops.shear(images, 0.3, seed=1),
        ops.local_warp(images, 0.1, 4, seed=1),
    ):
        values = out.numpy()
        assert values.shape == (4, 20, 20, 3)
        assert values.min() >= -1e-3 and values.max() <= 255 + 1e-3
        assert not np.allclose(values, images.numpy(), atol=1.0)


def test_affine_transform_geometry():
    image = tf.random.uniform([1, 9, 7, 3], 0, 255, seed=3)
    half_turn = ops.affine_transforms([np.pi], [0.0], [0.0], 9, 7)
    out = ops.apply_transforms(image, half_turn)
    assert np.allclose(out[0], image[0, ::-1, ::-1], atol=1e-3)  # point reflection
    # a horizontal shear moves row r by shear * (r - centre) columns
    grid = np.tile(np.arange(7, dtype=np.float32)[None, :, None], (9, 1, 3))[None]
    sheared = ops.apply_transforms(grid, ops.affine_transforms([0.0], [0.25], [0.0], 9, 7))
    assert np.allclose(sheared[0, 8, 2:5, 0], np.arange(2, 5) + 0.25 * 4, atol=1e-3)


def test_mixup_and_cutmix_mix_labels_consistently():
    n = 16
    images = np.stack([np.full([8, 8, 3], 10.0 * i, np.float32) for i in range(n)])
    labels = tf.one_hot(tf.range(n), n)
    mixed, mixed_labels = pixels.mixup(images, labels, 0.4, seed=1)
    assert np.allclose(tf.reduce_sum(mixed_labels, 1), 1.0)
    # each mixed image is constant: lam * own + (1 - lam) * partner, with the label weights
    values = mixed.numpy()[:, 0, 0, 0]
    expected = mixed_labels.numpy() @ (10.0 * np.arange(n))
    assert np.allclose(values, expected, atol=1e-3)

    cut, cut_labels = pixels.cutmix(images, labels, 1.0, seed=2)
    own = cut_labels.numpy()[np.arange(n), np.arange(n)]
    pixels_kept = (cut.numpy()[..., 0] == images[..., 0]).mean(axis=(1, 2))
    partner_same = cut_labels.numpy().max(axis=1) == 1.0  # paired with itself or no box
    assert np.allclose(own[~partner_same], pixels_kept[~partner_same], atol=1e-6)
    assert np.allclose(tf.reduce_sum(cut_labels, 1), 1.0)

    with pytest.raises(ValueError, match="one-hot"):
        pixels.mixup(images, tf.range(n), 0.2, seed=1)


def test_resized_crop_is_resize_then_crop_in_one_pass():
    rows, cols = np.meshgrid(np.arange(300), np.arange(280), indexing="ij")
    ramp = np.stack([rows * 0.5, cols * 0.5, (rows + cols) * 0.25], -1).astype(np.float32)
    for seed in range(3):
        fused = ops.resized_crop(ramp, (256, 256), 224, [seed, 1])
        two_pass = ops.random_crop(tf.image.resize(ramp, [256, 256]), 224, [seed, 1])
        # the same window, sampled within a source pixel of the two-pass positions
        assert np.abs(fused - two_pass).max() < 0.5
        exact = ops.resized_crop(ramp, (300, 280), 224, [seed, 1])  # no resize: a sub-window
        assert np.array_equal(exact, ops.random_crop(ramp, 224, [seed, 1]))
        mirrored = ops.resized_crop(ramp, (300, 280), 224, [seed, 1], flip=tf.constant(True))
        assert np.array_equal(mirrored, exact[:, ::-1])
    upsampled = ops.resized_crop(ramp[:100, :120], (256, 256), 224, 0)
    assert (
        np.abs(
            upsampled - ops.random_crop(tf.image.resize(ramp[:100, :120], [256, 256]), 224, 0)
        ).max()
        < 0.5
    )
    batch = ops.resized_crop(np.stack([ramp, ramp]), [[256, 300], [400, 380]], 224, 0)
    assert batch.shape == (2, 224, 224, 3)


def test_add_channel_offsets_equals_broadcast():
    images = tf.random.uniform([3, 5, 7, 3], 0, 255, seed=8)
    offsets = tf.random.uniform([3, 3], -20, 20, seed=9)
    expected = images + offsets[:, None, None, :]
    assert np.allclose(pixels.add_channel_offsets(images, offsets), expected)
    assert np.allclose(pixels.add_channel_offsets(images[1], offsets[1]), expected[1])
