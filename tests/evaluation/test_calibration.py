"""Temperature scaling lowers the calibration error of an over-confident model."""

from __future__ import annotations

import keras
import numpy as np

from tlkit.evaluation.calibration import (
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
