import numpy as np
import pytest
import tensorflow as tf

from tlkit.augment import (
    IMAGENET_PCA,
    AugmentConfig,
    augment_preset,
    augmentation_layer,
    build_augmenter,
    compute_pca_stats,
)
from tlkit.errors import UserError


def _everything():
    return AugmentConfig.model_validate(
        {
            "preset": "strong",
            "pca_colour": {"enabled": True, "stats": "imagenet"},
            "warp": {"enabled": True},
            "cutmix": {"enabled": True},
        }
    )


def test_nothing_enabled_gives_none():
    assert build_augmenter(augment_preset("none"), image_size=32) is None


def test_load_sizes():
    assert build_augmenter(augment_preset("light"), image_size=224).load_size(224) == 256
    light = augment_preset("light", crop={"enabled": True, "load_size": 40})
    assert build_augmenter(light, image_size=32).load_size() == 40
    vgg = build_augmenter(augment_preset("paper_vgg"), image_size=224)
    assert vgg.load_size() == 512 and vgg.scale_range == (256, 512)
    small = build_augmenter(augment_preset("paper_vgg"), image_size=32)
    assert small.load_size() == 73 and small.scale_range == (37, 73)
    mirror_only = AugmentConfig.model_validate({"mirror": {"enabled": True}})
    assert build_augmenter(mirror_only, image_size=64).load_size() == 64


def test_size_and_stats_problems_are_user_errors():
    with pytest.raises(UserError, match="below the image size"):
        build_augmenter(
            augment_preset("light", crop={"enabled": True, "load_size": 20}), image_size=32
        )
    absolute = augment_preset(
        "paper_vgg", scale_jitter={"relative": False, "s_min": 16, "s_max": 64}
    )
    with pytest.raises(UserError, match="S must cover the crop"):
        build_augmenter(absolute, image_size=32)
    with pytest.raises(UserError, match="compute_pca_stats"):
        build_augmenter(augment_preset("paper_alexnet"), image_size=32)


def test_per_image_and_per_batch_shapes_and_range():
    aug = build_augmenter(_everything(), image_size=24, seed=3)
    side = aug.load_size()
    image = tf.random.uniform([side, side, 3], 0, 255, seed=1)
    out = aug.per_image(image, tf.constant([1, 2]))
    assert out.shape == (24, 24, 3) and out.dtype == tf.float32
    batch = tf.stack([aug.per_image(image, [1, i]) for i in range(6)])
    images, labels = aug.per_batch(batch, tf.one_hot([0, 1, 2, 0, 1, 2], 3), [5, 6])
    assert images.shape == (6, 24, 24, 3)
    assert float(tf.reduce_min(images)) >= 0 and float(tf.reduce_max(images)) <= 255
    assert np.allclose(tf.reduce_sum(labels, 1), 1.0)


def test_scale_jitter_crop_comes_from_an_image_rescaled_to_s():
    config = AugmentConfig.model_validate(
        {"scale_jitter": {"enabled": True, "s_min": 224, "s_max": 224}}
    )
    aug = build_augmenter(config, image_size=16, seed=0)
    assert aug.scale_range == (16, 16)
    image = tf.random.uniform([aug.load_size(), aug.load_size(), 3], 0, 255, seed=2)
    # S == image side: the crop is the whole image
    assert np.allclose(aug.per_image(image, [0, 1]), image, atol=1e-3)


def test_same_seed_same_batch_different_seed_different():
    aug = build_augmenter(_everything(), image_size=16, seed=1)
    side = aug.load_size()
    images = tf.random.uniform([4, side, side, 3], 0, 255, seed=4)
    labels = tf.one_hot([0, 1, 2, 3], 4)

    def run(seed):
        per_image = tf.stack([aug.per_image(images[i], [seed, i]) for i in range(4)])
        return aug.per_batch(per_image, labels, [seed, 99])[0].numpy()

    assert np.array_equal(run(7), run(7))
    assert not np.allclose(run(7), run(8))
    other = build_augmenter(_everything(), image_size=16, seed=2)  # the run seed folds in
    assert not np.allclose(aug.per_image(images[0], [1, 1]), other.per_image(images[0], [1, 1]))


def test_in_tf_data_reproducible_and_epochs_differ():
    config = augment_preset("light", colour_shift={"enabled": True})
    aug = build_augmenter(config, image_size=16, seed=5)
    images = np.random.default_rng(0).integers(0, 256, [10, 30, 30, 3], dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, tf.one_hot(np.arange(10) % 2, 2)))

    def epoch(dataset):
        return np.concatenate([x.numpy() for x, _ in dataset])

    augmented = aug.apply(ds, batch_size=4)
    first, second = epoch(augmented), epoch(augmented)
    assert first.shape == (10, 16, 16, 3)
    assert not np.allclose(first, second)  # a new draw every epoch
    assert np.array_equal(first, epoch(aug.apply(ds, batch_size=4)))  # the same run repeats


def test_per_image_mirror_rate_and_colour_bounds():
    config = AugmentConfig.model_validate(
        {"mirror": {"enabled": True, "p": 0.25}, "colour_shift": {"enabled": True}}
    )
    aug = build_augmenter(config, image_size=2, seed=0)
    image = tf.constant([[[100.0] * 3, [150.0] * 3]] * 2)
    run = tf.function(aug.per_image)
    outs = np.stack([run(image, tf.constant([3, i])).numpy() for i in range(600)])
    flipped = outs[:, 0, 0, 0] > outs[:, 0, 1, 0]
    assert abs(flipped.mean() - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 600)
    original = np.where(flipped[:, None, None, None], image.numpy()[:, ::-1], image.numpy())
    delta = outs - original
    assert np.allclose(delta, delta[:, :1, :1], atol=1e-3)  # one offset per image and channel
    assert np.abs(delta).max() <= 20 + 1e-3


def test_pixel_ops_per_batch_option():
    config = AugmentConfig.model_validate(
        {"mirror": {"enabled": True, "p": 1.0}, "colour_shift": {"enabled": True}}
    )
    aug = build_augmenter(config, image_size=8, pixel_ops="per_batch")
    images = tf.random.uniform([4, 8, 8, 3], 30, 220, seed=1)
    assert np.array_equal(aug.per_image(images[0], [1, 1]), images[0])  # geometric only
    out, labels = aug.per_batch(images, tf.one_hot([0, 1, 0, 1], 2), [1, 2])
    delta = out.numpy() - images.numpy()[:, :, ::-1]  # p=1: every image mirrored
    assert np.allclose(delta, delta[:, :1, :1], atol=1e-3)
    assert np.abs(delta).max() <= 20 + 1e-3 and np.abs(delta).max() > 0


def test_device_model_leaves_pixel_ops_to_the_layer():
    config = AugmentConfig.model_validate(
        {"mirror": {"enabled": True}, "mixup": {"enabled": True}, "device": "model"}
    )
    aug = build_augmenter(config, image_size=8)
    assert not aug.pixel_ops_per_image
    image = tf.random.uniform([8, 8, 3], 0, 255, seed=1)
    assert np.array_equal(aug.per_image(image, [1, 1]), image)  # no mirror here: the layer
    images = tf.random.uniform([4, 8, 8, 3], 0, 255, seed=1)
    labels = tf.one_hot([0, 1, 0, 1], 2)
    mixed, _ = aug.per_batch(images, labels, [1, 1])
    seeds = tf.random.experimental.stateless_split(aug._fold([1, 1]), 2)
    expected, _ = aug.mix_batch(images, labels, seeds[1], fold=False)
    assert np.allclose(mixed, expected)
    assert augmentation_layer(aug) is not None
    assert augmentation_layer(build_augmenter(augment_preset("light"), image_size=8)) is None


def test_pca_from_config_or_argument():
    config = augment_preset("paper_alexnet", pca_colour={"enabled": True, "stats": "imagenet"})
    assert build_augmenter(config, image_size=8).pca is IMAGENET_PCA
    stats = compute_pca_stats(np.random.default_rng(1).integers(0, 255, [2, 8, 8, 3]))
    config = augment_preset("paper_alexnet").with_pca_stats(stats)
    assert np.allclose(build_augmenter(config, image_size=8).pca.eigvals, stats.eigvals)


def test_uint8_output_is_the_rounded_float_output():
    config = _everything()
    floats = build_augmenter(config, image_size=16, seed=4)
    bytes_ = build_augmenter(config, image_size=16, seed=4, output_dtype="uint8")
    side = floats.load_size()
    image = tf.cast(tf.random.uniform([side, side, 3], 0, 255, seed=6), tf.uint8)
    a, b = floats.per_image(image, [2, 3]), bytes_.per_image(image, [2, 3])
    assert b.dtype == tf.uint8
    assert np.abs(np.rint(a.numpy()) - b.numpy()).max() <= 1  # rounding at the half
    batch = tf.stack([b, b])
    images, _ = bytes_.per_batch(batch, tf.one_hot([0, 1], 2), [1, 1])
    assert images.dtype == tf.uint8


def test_raw_decoded_images_take_the_fused_path_with_the_same_result():
    aug = build_augmenter(
        augment_preset("paper_alexnet").with_pca_stats(IMAGENET_PCA), image_size=16
    )
    side = aug.load_size()
    image = tf.random.uniform([side, side, 3], 0, 255, seed=3)
    exact = aug.per_image(image, [4, 5])  # static [L, L]: slicing
    signature = [tf.TensorSpec([None, None, 3]), tf.TensorSpec([2], tf.int32)]
    dynamic = tf.function(aug.per_image, input_signature=signature)
    fused = dynamic(image, tf.constant([4, 5]))  # unknown size: crop_and_resize, mirror in box
    assert np.allclose(exact, fused, atol=1e-2)
    raw = tf.random.uniform([40, 27, 3], 0, 255, seed=4)  # any size, any aspect
    assert aug.per_image(raw, [1, 1]).shape == (16, 16, 3)
    vgg = build_augmenter(augment_preset("paper_vgg"), image_size=16)
    assert vgg.per_image(raw, [1, 1]).shape == (16, 16, 3)


@pytest.mark.parametrize("pca", [False, True])
def test_uint8_path_equals_the_float_path_exactly(pca):
    # crop, mirror, colour shift (and PCA colour): integer pixels in, integer pixels out; the
    # uint8 path must give the float path's result rounded half up, bit for bit
    config = augment_preset(
        "paper_alexnet",
        colour_shift={"enabled": True, "max_offset": 40},
        pca_colour={"enabled": pca, "stats": "imagenet", "sigma": 0.5},
    )
    floats = build_augmenter(config, image_size=24, seed=1)
    bytes_ = build_augmenter(config, image_size=24, seed=1, output_dtype="uint8")
    side = floats.load_size()
    rng = np.random.default_rng(3)
    for i in range(8):  # values near 0 and 255 so that the clip is exercised
        image = tf.constant(rng.choice([0, 1, 5, 128, 250, 254, 255], [side, side, 3]), tf.uint8)
        a = floats.per_image(image, [i, 7]).numpy()
        b = bytes_.per_image(image, [i, 7]).numpy()
        assert b.dtype == np.uint8
        assert np.array_equal(np.floor(a + 0.5).astype(np.uint8), b)


def test_the_per_batch_step_is_skipped_only_when_it_is_the_identity():
    config = augment_preset("paper_alexnet", pca_colour={"stats": "imagenet"})
    plain = build_augmenter(config, image_size=8)
    assert not plain.has_batch_ops
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, [4, 8, 8, 3]), tf.float32)
    labels = tf.one_hot([0, 1, 0, 1], 2)
    out, out_labels = plain.per_batch(images, labels, [1, 2])
    assert np.array_equal(out.numpy(), images.numpy())
    assert np.array_equal(out_labels.numpy(), labels.numpy())
    mixing = augment_preset(
        "paper_alexnet", pca_colour={"stats": "imagenet"}, mixup={"enabled": True}
    )
    assert build_augmenter(mixing, image_size=8).has_batch_ops
    config = augment_preset("paper_alexnet", pca_colour={"stats": "imagenet"})
    per_batch = build_augmenter(config, image_size=8, pixel_ops="per_batch")
    assert per_batch.has_batch_ops
    # apply() without the step still batches the per-image results
    ds = tf.data.Dataset.from_tensor_slices((images, tf.zeros([4])))
    batch, _ = next(iter(plain.apply(ds, 4, seed=3, resize=False)))
    assert batch.shape == (4, 8, 8, 3)
