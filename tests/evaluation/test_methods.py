"""The papers' evaluation methods against hand-computed references, and ensembles."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from tlkit.contract import Contract
from tlkit.data import Split
from tlkit.errors import UserError
from tlkit.evaluation.dense import dense_model
from tlkit.evaluation.loading import LoadedModel
from tlkit.evaluation.methods import evaluate_methods, run_method
from tlkit.imageops import fit_square


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _gap_model(size=8, classes=3, seed=0):
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def _vgg_style(size=8, classes=3, seed=1):
    """conv, pool, then FC layers on the flattened map: what dense evaluation converts."""
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(6, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="fc2")(x))


def _images(n=3, shape=(12, 16, 3), seed=0):
    return [np.random.default_rng(seed + i).integers(0, 256, shape, dtype=np.uint8)
            for i in range(n)]


def _loaded(model, contract, classes=("a", "b", "c")):
    return LoadedModel(model, list(classes), contract.input_size, Path("m.keras"), contract)


def test_ten_crop_is_alexnets_ten_patches():
    model, contract = _gap_model(), Contract(8, "centre_crop", 10)
    images = _images()
    split = Split(labels=np.array([0, 1, 2]), images=images)
    probs, labels, scales, views = run_method(_loaded(model, contract), split, "10crop")
    assert (scales, views, labels.tolist()) == ([10], 10, [0, 1, 2])
    for image, got in zip(images, probs, strict=True):
        square = fit_square(image, 10, "centre_crop").numpy().astype("float32")
        patches = [square[y : y + 8, x : x + 8] for y, x in ((0, 0), (0, 2), (2, 0), (2, 2), (1, 1))]
        patches += [p[:, ::-1] for p in patches]
        expected = np.asarray(model(np.stack(patches))).mean(axis=0)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_single_and_flip_average_the_contract_view_and_its_mirror():
    model, contract = _gap_model(), Contract(8, "squash", 12)
    images = _images(2)
    split = Split(labels=np.array([0, 1]), images=images)
    single = run_method(_loaded(model, contract), split, "single")[0]
    flipped = run_method(_loaded(model, contract), split, "flip")[0]
    for image, one, two in zip(images, single, flipped, strict=True):
        view = contract.view(image).numpy().astype("float32")
        np.testing.assert_allclose(one, np.asarray(model(view[None]))[0], atol=1e-6)
        both = np.asarray(model(np.stack([view, view[:, ::-1]]))).mean(axis=0)
        np.testing.assert_allclose(two, both, atol=1e-6)


def test_dense_model_equals_a_hand_computed_sliding_classifier():
    """At 12x12 the 8x8-trained FC classifier sees a 3x3 grid of 4x4 windows of the 6x6 map."""
    model = _vgg_style()
    x = np.random.default_rng(5).uniform(0, 255, (2, 12, 12, 3)).astype("float32")
    fcn = dense_model(model, 12)
    assert [type(layer).__name__ for layer in fcn.layers if layer.name == "fc1"] == ["Conv2D"]
    features = keras.Model(model.inputs, model.get_layer("pool").output)
    conv, pool = model.get_layer("conv"), model.get_layer("pool")
    fmap = np.asarray(pool(conv(keras.layers.Rescaling(1 / 255)(x))))
    assert fmap.shape == (2, 6, 6, 4) and features.output.shape[1:] == (4, 4, 4)
    w1, b1 = model.get_layer("fc1").get_weights()
    w2, b2 = model.get_layer("fc2").get_weights()
    expected = np.zeros((2, 3))
    for i in range(3):
        for j in range(3):
            window = fmap[:, i : i + 4, j : j + 4, :].reshape(2, -1)
            expected += _softmax(np.maximum(window @ w1 + b1, 0) @ w2 + b2) / 9
    np.testing.assert_allclose(np.asarray(fcn(x)), expected, atol=1e-5)


def test_dense_conversion_of_a_trained_vgg_gives_its_scores_at_the_training_size():
    from tlkit.models import build_transfer_model, get_model_info
    from tlkit.models.heads import HeadConfig

    keras.utils.set_random_seed(0)
    model = build_transfer_model(get_model_info("vgg11"), 4, image_size=32,
                                 head=HeadConfig(type="paper"))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 4, 16), 4)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # trained weights, not initial ones
    fcn = dense_model(model, 32)
    assert "Conv2D" in [type(layer).__name__ for layer in fcn.layers if layer.name == "fc1"]
    np.testing.assert_allclose(np.asarray(fcn(x)), np.asarray(model(x)), atol=1e-5)
    bigger = dense_model(model, 64)  # 2x2 score map, averaged
    assert bigger.get_layer("predictions").output.shape[1:3] == (2, 2)
    assert np.allclose(np.asarray(bigger(np.zeros((1, 64, 64, 3)))).sum(), 1.0, atol=1e-5)


def test_dense_and_multiscale_average_whole_squares_and_mirrors():
    model, contract = _vgg_style(), Contract(8, "centre_crop", 10)
    images = _images(2)
    split = Split(labels=np.array([0, 1]), images=images)
    probs, _, scales, views = run_method(_loaded(model, contract), split, "multiscale",
                                         scales=[8, 12])
    assert (scales, views) == ([8, 12], 4)
    for image, got in zip(images, probs, strict=True):
        total = 0
        for q in (8, 12):
            square = fit_square(image, q, "centre_crop").numpy().astype("float32")
            pair = np.stack([square, square[:, ::-1]])
            total = total + np.asarray(dense_model(model, q)(pair)).mean(axis=0)
        np.testing.assert_allclose(got, total / 2, atol=1e-5)


def test_multicrop_counts_googlenets_crops():
    model, contract = _gap_model(), Contract(8, "centre_crop", 10)
    split = Split(labels=np.array([0]), images=_images(1, (12, 20, 3)))
    _, _, scales, views = run_method(_loaded(model, contract), split, "multicrop",
                                     scales=[9, 10, 11, 12])
    assert (scales, views) == ([9, 10, 11, 12], 144)  # 4 scales x 3 squares x 6 crops x 2
    with pytest.raises(UserError, match="below the input size"):
        run_method(_loaded(model, contract), split, "multicrop", scales=[6])


def test_an_ensemble_averages_its_members_and_matches_classes_by_name():
    contract = Contract(8, "squash")
    first = _loaded(_gap_model(seed=0), contract)
    second = _loaded(_gap_model(seed=3), contract, classes=("c", "a", "b"))  # another order
    split = Split(labels=np.array([0, 1, 2, 0]), images=_images(4))
    results = evaluate_methods([first, second], ["one", "two"], split, ["a", "b", "c"],
                               ["single"])
    assert [r.model for r in results] == ["one", "two", "ensemble of 2"]
    one, two, both = (r.probabilities for r in results)
    raw = run_method(second, split, "single")[0]
    np.testing.assert_allclose(two, raw[:, [1, 2, 0]], atol=1e-7)  # reordered to a, b, c
    np.testing.assert_allclose(both, (one + two) / 2, atol=1e-7)
    with pytest.raises(UserError, match="unknown evaluation method"):
        evaluate_methods([first], ["one"], split, ["a", "b", "c"], ["144crop"])
