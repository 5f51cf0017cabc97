"""Weight files: official-format loading, reports, and the offline message."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from tlkit.errors import WeightsError
from tlkit.models import VGG16, get_model_info
from tlkit.weights import load_weights_file, official_weights_path


def _legacy_h5(model, path):
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_missing_official_file_offline_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        official_weights_path(get_model_info("vgg16").official_weights, False, model_id="vgg16")
    message = str(err.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "models") in message


def test_official_file_in_cache_is_used_through_the_builder(tmp_path, monkeypatch):
    """A keras.applications file in the official layout, placed in Keras' cache, loads."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    fname, _ = get_model_info("vgg16").official_weights.notop
    target = tmp_path / "models" / fname
    target.parent.mkdir(parents=True)
    _legacy_h5(reference, target)
    # The hash of this locally written file is not the official one: tlkit must say so.
    with pytest.raises(WeightsError, match="corrupt"):
        VGG16(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    # Loading the same file by path goes through the same reader and gives keras' outputs.
    ours = VGG16(weights=str(target), include_top=False, input_shape=(32, 32, 3))
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(ours(x), reference(x), atol=1e-5)


def test_no_official_weights_for_googlenet():
    with pytest.raises(WeightsError, match="googlenet has no ImageNet weights"):
        official_weights_path(None, False, model_id="googlenet")


def test_report_lists_missing_and_mismatched(tmp_path):
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
                              keras.layers.Dense(2, name="b")])
    _legacy_h5(small, tmp_path / "w.h5")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
                              keras.layers.Dense(5, name="b"), keras.layers.Dense(2, name="c")])
    report = load_weights_file(other, tmp_path / "w.h5")
    assert report.loaded == ["a"]
    assert [m[0] for m in report.mismatched] == ["b"]
    assert report.missing == ["c"]
    assert not report.complete
    np.testing.assert_array_equal(other.get_layer("a").get_weights()[0], small.get_layer("a").get_weights()[0])


def test_keras3_weights_h5_loads_structurally_and_explains_misfit(tmp_path):
    a = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    a.save_weights(tmp_path / "m.weights.h5")
    b = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    assert load_weights_file(b, tmp_path / "m.weights.h5").complete
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    c = keras.Sequential([keras.Input((4,)), keras.layers.Dense(7)])
    with pytest.raises(WeightsError, match="same architecture"):
        load_weights_file(c, tmp_path / "m.weights.h5")


def test_backbone_weights_load_with_a_new_head_and_a_missing_layer_is_an_error(tmp_path):
    from tlkit.models.heads import build_transfer_model, is_head_layer
    from tlkit.weights import load_backbone_weights

    info = get_model_info("lenet5")
    previous = build_transfer_model(info, 3, image_size=32)  # a previous run: 3 classes
    previous.save(tmp_path / "model.keras")
    model = build_transfer_model(info, 5, image_size=32)  # the new data: 5 classes
    head = {layer.name for layer in model.layers if is_head_layer(layer.name)}
    kwargs = {"official": None, "model_id": "lenet5", "include_top": False, "head_layers": head}
    report = load_backbone_weights(model, str(tmp_path / "model.keras"), **kwargs)
    assert report.complete and "c5" in report.loaded and "predictions" not in report.loaded
    for name in ("c1", "c3", "c5"):
        for ours, theirs in zip(
            model.get_layer(name).get_weights(),
            previous.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(ours, theirs)

    partial = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(6, 5, name="c1")])
    _legacy_h5(partial, tmp_path / "c1_only.h5")
    with pytest.raises(WeightsError, match="left unloaded") as err:
        load_backbone_weights(model, str(tmp_path / "c1_only.h5"), **kwargs)
    assert "missing: c3, c5" in str(err.value)  # the report is in the message
    allowed = load_backbone_weights(
        model, str(tmp_path / "c1_only.h5"), allow_partial=True, **kwargs
    )
    assert allowed.loaded == ["c1"] and allowed.missing == ["c3", "c5"]
    with pytest.raises(WeightsError, match="not found"):
        load_backbone_weights(model, str(tmp_path / "nowhere.h5"), **kwargs)
