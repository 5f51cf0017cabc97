"""RandAugment and TrivialAugment: presets, per-image draws, value range, both devices, cache."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from tlkit.augment import AugmentationLayer, augment_preset, build_augmenter, with_augmentation
from tlkit.augment import policies as P
from tlkit.cli.augment import augment
from tlkit.errors import UserError
from tlkit.train.routes import cacheable_augmentation

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos():
    """Two real photos (the cat and the astronaut), uint8 ``(2, 40, 40, 3)``."""
    images = [skimage_data.chelsea(), skimage_data.astronaut()]
    return np.stack(
        [np.asarray(Image.fromarray(i).resize((40, 40), Image.BILINEAR)) for i in images]
    )


def test_presets_are_flip_crop_and_the_policy():
    rand = augment_preset("randaugment")
    assert rand.enabled_ops == ["crop", "rand_augment", "mirror"]
    assert (rand.rand_augment.num_ops, rand.rand_augment.magnitude) == (2, 9)
    assert augment_preset("trivialaugment").enabled_ops == ["crop", "trivial_augment", "mirror"]
    assert not augment_preset("light").rand_augment.enabled  # off by default
    assert (
        augment_preset("randaugment", rand_augment={"magnitude": 15}).rand_augment.magnitude == 15
    )


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"rand_augment": {"n": 3}}, "n"),
        ({"rand_augment": {"magnitude": 31}}, "less than or equal to 30"),
        ({"rand_augment": {"num_ops": 0}}, "greater than or equal to 1"),
        ({"trivial_augment": {"enabled": True}}, "enable one of them"),
        (
            {"backend": "albumentations", "albumentations": ["HorizontalFlip"]},
            "set backend: tf",
        ),
    ],
)
def test_bad_policy_settings_are_user_errors(overrides, fragment):
    with pytest.raises(UserError, match=fragment):
        augment_preset("randaugment", **overrides)


@pytest.mark.parametrize("preset", ["randaugment", "trivialaugment"])
def test_policies_keep_the_feature_cache_off(preset):
    assert cacheable_augmentation(augment_preset(preset))[0] is False
    only_policy = augment_preset(preset, mirror={"enabled": False}, crop={"enabled": False})
    cacheable, _, why = cacheable_augmentation(only_policy)
    assert not cacheable and preset.replace("aug", "_aug") in why


@pytest.mark.parametrize("preset", ["randaugment", "trivialaugment"])
def test_pipeline_draws_per_image_keeps_range_and_repeats(photos, preset):
    aug = build_augmenter(augment_preset(preset, crop={"enabled": False}), image_size=32, seed=3)
    same = np.repeat(photos[:1], 8, axis=0)  # one photo eight times in one batch
    ds = tf.data.Dataset.from_tensor_slices((same, tf.one_hot(np.zeros(8, int), 2)))
    batch = next(iter(aug.apply(ds, batch_size=8)))[0].numpy()
    assert batch.shape == (8, 32, 32, 3) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 255.0
    distinct = {np.round(image, 3).tobytes() for image in batch}
    assert len(distinct) >= 5  # a per-batch draw would give (up to a mirror) one result
    again = next(iter(aug.apply(ds, batch_size=8)))[0].numpy()
    assert np.array_equal(batch, again)  # seeded: the same run repeats
    other = next(iter(aug.apply(ds, batch_size=8, seed=4)))[0].numpy()
    assert not np.allclose(batch, other)


def test_trivial_augment_is_exactly_one_drawn_op(photos):
    image = tf.constant(photos[0], tf.float32)
    ops, levels = set(), set()
    for i in range(60):
        seed = tf.constant([11, i], tf.int64)
        index, level, sign = P.trivial_augment_draw(seed)
        expected = P.apply_op(image, index, level, sign, P.TRIVIAL_AUGMENT_SPACE)
        assert np.array_equal(P.trivial_augment(image, seed), expected)
        ops.add(int(index))
        levels.add(int(level))
    assert len(ops) >= 10 and min(levels) >= 0 and max(levels) <= 30 and len(levels) >= 15
    assert np.array_equal(P.apply_op(image, 0, 30, 1.0), image)  # identity is one of the ops


def test_rand_augment_applies_num_ops_at_magnitude(photos):
    image = tf.constant(photos[1], tf.float32)
    for i in range(5):
        seed = tf.constant([5, i], tf.int64)
        index, sign = P.rand_augment_draw(3, seed)
        expected = image
        for k in range(3):
            expected = P.apply_op(expected, index[k], 12, sign[k], P.RAND_AUGMENT_SPACE)
        assert np.array_equal(P.rand_augment(image, 3, 12, seed), expected)


@pytest.mark.parametrize("name", P.POLICY_OPS)
def test_every_op_keeps_shape_and_range(photos, name):
    image = tf.constant(photos[0], tf.float32)
    index = P.POLICY_OPS.index(name)
    for level, sign in ((0, 1.0), (30, -1.0), (30, 1.0)):
        out = P.apply_op(image, index, level, sign, P.TRIVIAL_AUGMENT_SPACE).numpy()
        assert out.shape == image.shape and 0.0 <= out.min() and out.max() <= 255.0
    if name not in ("identity", "auto_contrast", "equalize", "posterize"):
        assert np.allclose(P.apply_op(image, index, 0, 1.0, P.TRIVIAL_AUGMENT_SPACE), image)


@pytest.mark.parametrize("preset", ["randaugment", "trivialaugment"])
def test_device_model_layer_inside_a_model(photos, preset):
    config = augment_preset(preset, device="model", crop={"enabled": False})
    image = tf.constant(photos[0, :32, :32], tf.float32)
    pipeline = build_augmenter(config, image_size=32)
    assert np.array_equal(pipeline.per_image(image, [1, 2]), image)  # the layer runs the policy
    layer = AugmentationLayer(config, image_size=32, seed=1)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, layer(inputs))
    x = np.repeat(photos[:1, :32, :32].astype("float32"), 6, axis=0)
    assert np.array_equal(model(x, training=False), x)
    out = model(x, training=True).numpy()
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 255.0
    assert len({np.round(image, 3).tobytes() for image in out}) >= 4  # drawn per image

    head = keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    head_in = keras.Input((32, 32, 3))
    trainer = with_augmentation(keras.Model(head_in, head(head_in)), layer)
    trainer.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    history = trainer.fit(x / 1.0, np.eye(2)[[0, 1] * 3], epochs=1, batch_size=3, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_fused_decode_runs_the_policy(photos):
    aug = build_augmenter(augment_preset("trivialaugment"), image_size=32, seed=0)
    assert aug.fuses_decode
    png = tf.io.encode_png(photos[0])
    outs = [aug.decode_per_image(png, tf.constant([2, i], tf.int64)).numpy() for i in range(6)]
    assert all(o.shape == (32, 32, 3) and 0 <= o.min() and o.max() <= 255 for o in outs)
    plain = build_augmenter(augment_preset("light"), image_size=32, seed=0)
    crops = [plain.decode_per_image(png, tf.constant([2, i], tf.int64)).numpy() for i in range(6)]
    assert any(not np.allclose(o, c, atol=1.0) for o, c in zip(outs, crops, strict=True))


def test_cli_preview_on_a_photo_folder(tmp_path, photos):
    for name, image in zip(("cat", "astronaut"), photos, strict=True):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(image).save(tmp_path / "data" / name / "0.png")
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(
        augment,
        ["preview", "--data", str(tmp_path / "data"), "--preset", "randaugment", "--out", str(out)]
        + ["--n", "2", "--columns", "3", "--image-size", "32"],
    )
    assert result.exit_code == 0, result.output
    assert "rand_augment" in result.output
    with Image.open(out) as png:
        assert png.format == "PNG"
