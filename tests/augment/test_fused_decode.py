"""Fused decode + augment: JPEG crop windows, DCT-scaled decodes, and the pipeline's fast path."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tlkit.augment import IMAGENET_PCA, augment_preset, build_augmenter, ops
from tlkit.data import Split, make_dataset
from tlkit.imageops import decode_rgb, decode_window, jpeg_ratio_index, whole_image


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colours with a little noise: decodes like a photo."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (1, 6, 6, 3)).astype(np.float32)
    smooth = tf.image.resize(coarse, [height, width], method="bicubic").numpy()[0]
    return np.clip(smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)


def _encode(image: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {}) | kwargs)
    return buf.getvalue()


def _fixed(start, extent):
    return lambda hw: (tf.constant(start, tf.int32), tf.constant(extent, tf.int32))


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_window_is_the_full_decode_sliced(progressive):
    data = tf.constant(_encode(_photo(120, 160), progressive=progressive))
    full = tf.io.decode_jpeg(data, channels=3).numpy().astype(int)
    window = decode_window(data, _fixed([17, 23], [61, 90])).numpy().astype(int)
    assert window.shape == (61, 90, 3)
    diff = np.abs(window - full[17:78, 23:113])
    assert diff.mean() < 0.05 and diff.max() <= 3  # libjpeg's chroma upsampling at the edges


def test_other_formats_are_decoded_whole_and_sliced():
    image = _photo(40, 50)
    window = decode_window(tf.constant(_encode(image, "PNG")), _fixed([5, 7], [20, 30]))
    assert np.array_equal(window.numpy(), image[5:25, 7:37])
    assert np.array_equal(decode_rgb(tf.constant(_encode(image, "PNG"))).numpy(), image)


def test_dct_ratio_keeps_the_window_at_least_the_output_size():
    assert [
        int(jpeg_ratio_index(tf.constant(extent), 224))
        for extent in ([224, 300], [447, 900], [448, 448], [900, 1000], [1792, 1800], [9000, 9000])
    ] == [0, 0, 1, 2, 3, 3]
    image = _photo(600, 800)
    data = tf.constant(_encode(image))
    window = decode_window(data, _fixed([40, 60], [500, 700]), min_side=224).numpy()
    assert window.shape == (250, 350, 3)  # ratio 2: 500 // 2 >= 224, 500 // 4 < 224
    full = tf.io.decode_jpeg(data, channels=3)[40:540, 60:760]
    reference = tf.image.resize(tf.cast(full, tf.float32), [250, 350], antialias=True).numpy()
    assert np.abs(window - reference).mean() < 2.0  # the scaled IDCT is a proper downscale
    whole = decode_window(data, whole_image, min_side=100).numpy()
    assert whole.shape == (150, 200, 3)  # ratio 4 over the whole image (150 // 8 < 100)


def test_crop_window_is_the_resized_crop_window():
    image = tf.constant(_photo(30, 30))
    start, extent = ops.crop_window([30, 30], [30, 30], 16, [3, 4])
    window = tf.slice(image, tf.concat([start, [0]], 0), tf.concat([extent, [3]], 0))
    assert np.array_equal(
        ops.resized_crop(image, [30, 30], 16, [3, 4]), tf.cast(window, tf.float32)
    )
    for seed in range(20):
        start, extent = ops.crop_window([300, 450], [40, 60], 32, [seed, 1])
        assert (start >= 0).numpy().all() and (start + extent <= [300, 450]).numpy().all()
        assert np.allclose(extent.numpy(), [240, 240], atol=1)  # 32 * 300/40 by 32 * 450/60


def _augmenter(preset="paper_alexnet", **kwargs):
    config = augment_preset(preset).with_pca_stats(IMAGENET_PCA)
    return build_augmenter(config, image_size=32, **kwargs)


@pytest.mark.parametrize("preset", ["paper_alexnet", "paper_vgg", "light"])
def test_decode_per_image_matches_per_image_on_the_decoded_file(preset):
    aug = _augmenter(preset, output_dtype="uint8")
    assert aug.fuses_decode
    data = tf.constant(_encode(_photo(90, 120)))
    decoded = tf.io.decode_jpeg(data, channels=3)
    for seed in range(6):
        fused = aug.decode_per_image(data, [seed, 2])
        assert fused.shape == (32, 32, 3) and fused.dtype == tf.uint8
        fused = fused.numpy().astype(int)
        reference = aug.per_image(decoded, [seed, 2]).numpy().astype(int)
        other = aug.per_image(decoded, [seed + 10, 2]).numpy().astype(int)
        # the same window, mirror and colour draws; only the resampling differs (a DCT-scaled
        # decode and one bilinear pass against a full decode and an antialiased resize)
        same = np.abs(fused - reference).mean()
        assert same < 5.0 and same < 0.3 * np.abs(fused - other).mean()
        assert np.corrcoef(fused.ravel(), reference.ravel())[0, 1] > 0.99
    again = aug.decode_per_image(data, [5, 2])
    assert np.array_equal(again, aug.decode_per_image(data, [5, 2]))
    assert not np.array_equal(again, aug.decode_per_image(data, [6, 2]))


def test_decode_per_image_uses_dct_scaling_for_large_photos_and_still_matches():
    aug = _augmenter(output_dtype="float32")
    data = tf.constant(_encode(_photo(400, 520)))  # window ~ 32 * 400/37: ratio 8 fits
    fused = aug.decode_per_image(data, [1, 1]).numpy()
    reference = aug.per_image(tf.io.decode_jpeg(data, channels=3), [1, 1]).numpy()
    assert fused.dtype == np.float32 and fused.shape == (32, 32, 3)
    assert np.abs(fused - reference).mean() < 4.0


def test_rotation_and_albumentations_fall_back_to_whole_decodes():
    rotating = build_augmenter(
        augment_preset("light", rotation={"enabled": True, "max_degrees": 10}), image_size=16
    )
    assert not rotating.fuses_decode
    data = tf.constant(_encode(_photo(30, 40)))
    out = rotating.decode_per_image(data, [1, 2])
    assert np.allclose(out, rotating.per_image(tf.io.decode_jpeg(data, channels=3), [1, 2]))


class CountingAugmenter:
    """Wraps a real augmenter and records which entry point the pipeline traced."""

    def __init__(self, inner):
        self.inner, self.traced = inner, set()
        self.fuses_decode = inner.fuses_decode

    def load_size(self, image_size=None):
        return self.inner.load_size(image_size)

    def per_image(self, image, seed):
        self.traced.add("per_image")
        return self.inner.per_image(image, seed)

    def decode_per_image(self, contents, seed, region=None):
        self.traced.add("decode_per_image")
        return self.inner.decode_per_image(contents, seed, region=region)

    def per_batch(self, images, labels, seed):
        return self.inner.per_batch(images, labels, seed)


@pytest.fixture()
def jpeg_split(tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(_encode(_photo(50 + 10 * i, 70, seed=i)))
        paths.append(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    png = tmp_path / "extra.png"
    png.write_bytes(_encode(_photo(45, 45, seed=9), "PNG"))
    return Split(labels=np.array([0, 1, 0, 1, 0, 1, 0, 1]), paths=[*paths, broken, png])


def test_uncached_training_takes_the_fused_path_and_skips_bad_files(jpeg_split):
    aug = CountingAugmenter(_augmenter(output_dtype="uint8"))
    ds = make_dataset(
        jpeg_split, num_classes=2, image_size=32, batch_size=4, training=True, seed=1,
        augmenter=aug, cache="none", image_dtype="uint8",
    )  # fmt: skip
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    assert aug.traced == {"decode_per_image"}
    assert sum(len(x) for x, _ in batches) == 7  # the broken file is skipped, not fatal
    assert all(x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3) for x, _ in batches)

    cached = CountingAugmenter(_augmenter())
    ds = make_dataset(
        jpeg_split, num_classes=2, image_size=32, batch_size=4, training=True, seed=1,
        augmenter=cached, cache="memory",
    )  # fmt: skip
    images = np.concatenate([x.numpy() for x, _ in ds])
    assert cached.traced == {"per_image"} and images.dtype == np.float32 and len(images) == 7


def test_image_dtype_uint8_without_augmentation(jpeg_split):
    floats = make_dataset(
        jpeg_split, num_classes=2, image_size=24, batch_size=8, training=False, seed=0
    )
    bytes_ = make_dataset(
        jpeg_split, num_classes=2, image_size=24, batch_size=8, training=False, seed=0,
        image_dtype="uint8",
    )  # fmt: skip
    (a, _), (b, _) = next(iter(floats)), next(iter(bytes_))
    assert b.dtype == tf.uint8 and np.array_equal(a.numpy(), b.numpy().astype(np.float32))
    with pytest.raises(ValueError, match="image_dtype"):
        make_dataset(jpeg_split, num_classes=2, image_size=24, batch_size=8, training=False,
                     seed=0, image_dtype="float16")  # fmt: skip


@pytest.mark.parametrize("shape", [(60, 80), (400, 520)])  # full scale; a 1/4 DCT scale
def test_decode_window_resizes_and_mirrors_inside_the_decode(shape):
    data = tf.constant(_encode(_photo(*shape)))
    window = _fixed([4, 6], [shape[0] - 8, shape[1] - 10])
    plain = decode_window(data, window, min_side=24, resize_to=24)
    assert plain.dtype == tf.float32 and plain.shape == (24, 24, 3)
    flipped = decode_window(data, window, min_side=24, resize_to=24, flip=tf.constant(True))
    kept = decode_window(data, window, min_side=24, resize_to=24, flip=tf.constant(False))
    assert np.allclose(flipped.numpy(), plain.numpy()[:, ::-1], atol=1e-3)
    assert np.array_equal(kept, plain)
    png = tf.constant(_encode(_photo(*shape), "PNG"))
    assert np.allclose(
        decode_window(png, window, resize_to=24, flip=tf.constant(True)).numpy(),
        decode_window(png, window, resize_to=24).numpy()[:, ::-1],
        atol=1e-3,
    )
    with pytest.raises(ValueError, match="flip needs resize_to"):
        decode_window(data, window, flip=tf.constant(True))
