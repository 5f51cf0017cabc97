"""Temperature scaling lowers the calibration error of an over-confident model, and is not
kept where the validation images cannot support it."""

from __future__ import annotations

import keras
import numpy as np

from tlkit.evaluation.calibration import (
    MIN_IMAGES,
    choose_temperature,
    expected_calibration_error,
    fit_temperature,
    is_calibrated,
    nll,
    rescale,
    with_temperature,
)


def _overconfident(n=2000, classes=5, accuracy=0.7, scale=8.0, seed=0):
    """Probabilities whose argmax is right 70% of the time, but with logits 8x too large."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    right = rng.random(n) < accuracy
    winner = np.where(right, labels, (labels + rng.integers(1, classes, n)) % classes)
    logits[np.arange(n), winner] += 1.5
    z = scale * logits
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), labels


def test_temperature_scaling_lowers_ece_and_keeps_the_argmax():
    probs, labels = _overconfident()
    before = expected_calibration_error(probs, labels)
    t = fit_temperature(probs, labels)
    after_probs = rescale(probs, t)
    after = expected_calibration_error(after_probs, labels)
    assert t > 3 and before > 0.15 and after < before / 3
    assert nll(after_probs, labels) < nll(probs, labels)
    np.testing.assert_array_equal(after_probs.argmax(1), probs.argmax(1))


def test_ece_of_a_perfectly_calibrated_predictor_is_near_zero():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 20000)
    labels = (rng.random(20000) >= confidence).astype(int)  # class 0 right with p = confidence
    probs = np.stack([confidence, 1 - confidence], axis=1)
    assert expected_calibration_error(probs, labels) < 0.02


def test_the_temperature_travels_inside_the_model(tmp_path):
    inputs = keras.Input((4,), name="image")
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(inputs)
    model = keras.Model(inputs, outputs)
    calibrated = with_temperature(model, 2.5)
    assert is_calibrated(calibrated) and not is_calibrated(model)
    x = np.random.default_rng(0).normal(0, 3, (6, 4)).astype("float32")
    expected = rescale(np.asarray(model(x)), 2.5)
    calibrated.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again(x)), expected, atol=1e-5)


def _calibrated(n, rng, classes=10):
    """Probabilities that are calibrated by construction: labels drawn from them."""
    z = rng.normal(0, 1, (n, classes))
    z[np.arange(n), rng.integers(0, classes, n)] += 3.0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=q) for q in p])
    return p, labels


def test_an_already_calibrated_model_is_left_alone_on_twenty_images():
    # the fit by NLL alone (the old rule) made 500 test images' ECE worse in most draws
    worse_fit, worse_choice = 0, 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        val, test = _calibrated(20, rng), _calibrated(500, rng)
        base = expected_calibration_error(*test)
        worse_fit += expected_calibration_error(rescale(test[0], fit_temperature(*val)),
                                                test[1]) > base + 0.002
        t = choose_temperature(*val)["temperature"]
        worse_choice += expected_calibration_error(rescale(test[0], t), test[1]) > base + 0.002
    assert worse_fit >= 20 and worse_choice <= 2


def test_an_overconfident_model_keeps_its_temperature_and_says_why():
    probs, labels = _overconfident(n=200)
    choice = choose_temperature(probs, labels)
    oos = choice["out_of_sample"]
    assert choice["kept"] and choice["temperature"] > 3 and choice["folds"] == 5
    assert oos["ece_after"] < oos["ece_before"] / 2 and oos["nll_gain"] > oos["nll_gain_se"]
    assert "kept" in choice["reason"] and oos["ece_se"] > 0


def test_a_perfect_validation_split_cannot_make_every_probability_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 40)
    z = rng.normal(0, 1, (40, 5))
    z[np.arange(40), labels] += 4.0
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert (probs.argmax(1) == labels).all() and fit_temperature(probs, labels) < 0.26
    t = choose_temperature(probs, labels)["temperature"]
    # 40 of 40 right is evidence of about 41/42, not of certainty
    assert t >= 0.25 and rescale(probs, t).max(1).mean() <= 41 / 42 + 1e-6


def test_too_few_images_fit_nothing():
    probs, labels = _overconfident(n=MIN_IMAGES - 1)
    choice = choose_temperature(probs, labels)
    assert choice["temperature"] == 1.0 and not choice["kept"] and "too few" in choice["reason"]


def test_the_temperature_divides_the_logits_before_one_softmax():
    # not softmax, log, rescale, softmax: in int8 the first softmax's output would be quantised
    for activation in ("dense", "layer"):
        inputs = keras.Input((4,))
        if activation == "dense":
            outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(inputs)
        else:
            logits = keras.layers.Dense(3, name="logits")(inputs)
            outputs = keras.layers.Activation("softmax", name="predictions")(logits)
        model = keras.Model(inputs, outputs)
        calibrated = with_temperature(model, 2.0)
        softmaxes = [layer for layer in calibrated.layers
                     if isinstance(layer, keras.layers.Softmax)
                     or getattr(layer, "activation", None) is keras.activations.softmax]
        assert [layer.name for layer in softmaxes] == ["calibrated"]
        x = np.random.default_rng(0).normal(0, 3, (6, 4)).astype("float32")
        np.testing.assert_allclose(np.asarray(calibrated(x)), rescale(np.asarray(model(x)), 2.0),
                                   atol=1e-5)
        assert model.layers[-1].get_config()["activation"] == "softmax"  # the original untouched
