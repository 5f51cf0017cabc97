"""The head on frozen features is fitted to convergence by a solver, its L2 chosen held out."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression

from tlkit.train.probe import (
    TEMPERATURES,
    fit_linear_head,
    holdout_split,
    is_linear_head,
    set_linear_head,
    solve_path,
)

#: One step of the temperature grid, in log T (``TEMPERATURES`` is geometric).
GRID_STEP = float(np.log(TEMPERATURES[1] / TEMPERATURES[0]))


def _blobs(n_per_class=40, classes=4, dim=16, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    y = np.repeat(np.arange(classes), n_per_class)
    x = np.abs(centres[y] + rng.normal(0, spread, (len(y), dim))) * 50  # large, positive: ReLU-ish
    return x.astype(np.float32), y


def test_holdout_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(3), [4, 8, 12])
    fit, held = holdout_split(y, 0.25, seed=1)
    assert set(fit) | set(held) == set(range(len(y))) and not set(fit) & set(held)
    assert [int((y[held] == c).sum()) for c in range(3)] == [1, 2, 3]
    assert np.array_equal(holdout_split(y, 0.25, seed=1)[1], held)
    assert holdout_split(np.array([0, 0, 1]), 0.25, seed=0) is None  # a class of one


def test_fit_converges_and_folds_the_scaling_into_the_dense_layer():
    x, y = _blobs()
    fit = fit_linear_head(x, y, 4, seed=0)
    assert fit.converged and fit.train_accuracy > 0.95
    assert fit.c in fit.scores and fit.holdout_accuracy == fit.scores[fit.c]
    # The raw-feature head predicts what the solver on centred, scaled features predicts.
    mean, std = x.mean(0), np.sqrt(np.mean(x.var(0)))
    reference = LogisticRegression(C=fit.c, max_iter=2000, tol=1e-6).fit((x - mean) / std, y)
    ours = np.argmax(x @ fit.kernel + fit.bias, axis=1)
    assert np.mean(ours == reference.predict((x - mean) / std)) > 0.99


def test_a_nearly_dead_feature_does_not_get_a_huge_weight():
    # Per-feature standardisation multiplied such a channel's weight by 1/std (10^4 here):
    # a fine-tuning step that wakes the channel up then met logits in the hundreds.
    x, y = _blobs()
    rng = np.random.default_rng(1)
    x = np.concatenate([x, (y[:, None] == 0) * 1e-4 + rng.normal(0, 1e-5, (len(y), 1))], 1)
    fit = fit_linear_head(x, y, 4, seed=0)
    assert fit.train_accuracy > 0.95
    woken = x.copy()
    woken[:, -1] = x[:, :-1].mean()  # the channel now fires like the others
    logits = woken @ fit.kernel + fit.bias
    assert np.abs(logits).max() < 100
    assert np.abs(fit.kernel[-1]).max() < 10 * np.abs(fit.kernel[:-1]).max()


def test_temperature_is_calibrated_on_the_held_out_part():
    from tlkit.train.probe import calibrate_temperature

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    true_logits = rng.normal(0, 1, (2000, 3))
    true_logits[np.arange(2000), y] += 1.5
    # Labels drawn from softmax(true_logits): logits 4x too large want T near 4.
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    t = calibrate_temperature(true_logits * 4, labels)
    assert 2.5 < t < 6.5
    assert 0.6 < calibrate_temperature(true_logits, labels) < 1.6
    # The grid's choice is the NLL optimum found without a grid, to within one grid step.
    for logits in (true_logits * 4, true_logits / 3):
        best = _nll_optimal_temperature(logits, labels)
        assert abs(np.log(calibrate_temperature(logits, labels) / best)) < GRID_STEP
    assert _nll_optimal_temperature(true_logits / 3, labels) < 0.5  # under-confident: T < 1


def _nll(logits, labels, t=1.0):
    z = np.asarray(logits, np.float64) / t
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


def _nll_optimal_temperature(logits, labels) -> float:
    """The temperature minimising the log loss, by a bounded scalar search over log T (scipy;
    no grid, nothing of tlkit's)."""
    found = minimize_scalar(lambda log_t: _nll(logits, labels, np.exp(log_t)),
                            bounds=(np.log(0.01), np.log(100.0)), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.exp(found.x))


def _gaussian_classes(n_per_class, rng, centres, spread):
    y = np.repeat(np.arange(len(centres)), n_per_class)
    return (centres[y] + rng.normal(0, spread, (len(y), centres.shape[1]))).astype(np.float32), y


@pytest.mark.parametrize("c, dim, spread, side", [
    (100.0, 32, 3.0, "over"),  # weak L2 on overlapping classes: over-confident, T* near 7
    (1.0, 64, 2.0, "under"),  # strong L2 on well separated classes: under-confident, T* near 0.35
])
def test_the_fitted_head_divides_its_logits_by_the_nll_optimal_temperature(c, dim, spread, side):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, dim))
    x, y = _gaussian_classes(20, rng, centres, spread)
    held_x, held_y = _gaussian_classes(200, rng, centres, spread)
    fit = fit_linear_head(x, y, 4, seed=0, cs=(c,), holdout_data=(held_x, held_y))
    head = held_x @ fit.kernel + fit.bias  # the saved head's logits: temperature applied
    raw = head * fit.temperature  # the solver's logits, before it
    best = _nll_optimal_temperature(raw, held_y)
    assert (best > 3.0) if side == "over" else (best < 0.5)  # the case is far from T = 1
    chosen = fit.temperature
    assert abs(np.log(chosen / best)) < GRID_STEP, f"T = {chosen:.3g}, the NLL optimum {best:.3g}"
    assert _nll(head, held_y) < _nll(raw, held_y) - 0.05  # better than T = 1
    # the saved head is calibrated: its own best temperature is 1, within a grid step
    assert abs(np.log(_nll_optimal_temperature(head, held_y))) < GRID_STEP
    assert np.array_equal(np.argmax(head, 1), np.argmax(raw, 1))  # a temperature only


def test_the_head_is_calibrated_on_its_own_held_out_split_too():
    # No held-out data given: the fit holds out a quarter of the images itself. Weak L2 on
    # overlapping classes is over-confident there as well.
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 32))
    x, y = _gaussian_classes(40, rng, centres, 3.0)
    fit = fit_linear_head(x, y, 4, seed=0, cs=(100.0, 1000.0))
    assert fit.temperature > 2.5, f"T = {fit.temperature:.3g}"


def test_regularisation_is_chosen_on_the_held_out_part():
    x, y = _blobs(n_per_class=10, spread=6.0, dim=64, seed=3)  # few, noisy, many features
    fit = fit_linear_head(x, y, 4, seed=0, cs=(1e-4, 1.0, 1e4))
    best = max(fit.scores.values())
    assert fit.scores[fit.c] == best
    assert fit.c == min(c for c, s in fit.scores.items() if s == best)  # ties: stronger L2


def test_binary_and_missing_classes():
    x, y = _blobs(classes=2)
    fit = fit_linear_head(x, y, 2, seed=0)
    assert fit.kernel.shape == (16, 2) and fit.train_accuracy > 0.95
    three = fit_linear_head(x, y, 3, seed=0, cs=(1.0,))  # class 2 has no example
    assert np.all(np.argmax(x @ three.kernel + three.bias, axis=1) != 2)


def test_mirrored_features_are_extra_examples():
    x, y = _blobs()
    flipped = x[:, ::-1].copy()
    fit = fit_linear_head(x, y, 4, flipped=flipped, seed=0)
    assert fit.train_accuracy > 0.9  # scored on originals and mirrors together


def test_set_linear_head_puts_the_fit_into_a_keras_head():
    x, y = _blobs()
    fit = fit_linear_head(x, y, 4, seed=0)
    inputs = keras.Input((16,))
    drop = keras.layers.Dropout(0.5)
    dense = keras.layers.Dense(4, activation="softmax")
    model = keras.Model(inputs, dense(drop(inputs)))
    assert is_linear_head([drop, dense])
    set_linear_head([drop, dense], fit)
    probs = model.predict(x, verbose=0)
    assert np.mean(np.argmax(probs, 1) == y) == pytest.approx(fit.train_accuracy, abs=1e-6)
    hidden = keras.layers.Dense(8)
    assert not is_linear_head([hidden, dense])


def test_solve_path_gives_each_c_the_optimum_of_a_fit_from_zero():
    """Fewer examples than features (a small folder's pooled features): the solver works in the
    examples' row space and warm-starts along the C grid; each C's weights are still the
    optimum of a plain fit on all the features (to a tight tolerance)."""
    x, y = _blobs(n_per_class=6, classes=3, dim=40, spread=2.0)  # 18 rows, 40 columns
    x = (x - x.mean(0)) / x.std(0)
    cs = (0.01, 1.0, 0.1)  # not in order: the path sorts them
    path = solve_path(x, y, cs, None, 3, tol=1e-10)
    assert list(path) == sorted(cs)
    for c in cs:
        plain = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(x.astype(np.float64), y)
        coef, bias, converged = path[c]
        assert converged and coef.shape == (3, 40)
        np.testing.assert_allclose(coef, plain.coef_, atol=1e-5 * np.abs(plain.coef_).max())
        np.testing.assert_allclose(bias, plain.intercept_, atol=1e-5 * np.abs(plain.coef_).max())
