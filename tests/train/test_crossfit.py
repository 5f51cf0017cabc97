"""The cross-fitted head: every image scored by a head that never saw it, C and temperature
from the out-of-fold predictions, and the head kept fitted on every image."""

from __future__ import annotations

import numpy as np
import pytest

from tlkit.train.crossfit import cross_fit_linear_head, stratified_folds


def _blobs(per_class=12, classes=3, dim=16, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    y = np.repeat(np.arange(classes), per_class)
    return centres[y] + rng.normal(0, spread, (len(y), dim)), y


def test_folds_are_stratified_and_balanced():
    y = np.repeat(np.arange(3), [7, 5, 10])
    fold = stratified_folds(y, 5, seed=1)
    assert sorted(np.bincount(fold).tolist()) == [4, 4, 4, 5, 5]
    for c in range(3):  # each class spread over the folds as evenly as it can be
        counts = np.bincount(fold[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_no_image_is_scored_by_a_head_that_saw_it():
    """Features that identify each image and carry no class signal: a head that saw an image
    recognises it, one that did not can only guess. Out-of-fold accuracy stays near chance
    while the kept head, fitted on every image, knows them all."""
    n, classes = 60, 3
    y = np.arange(n) % classes
    x = np.eye(n) * 10.0  # image i: its own feature, nothing shared
    fit = cross_fit_linear_head(x, y, classes, seed=0)
    assert fit.folds == 5 and fit.probabilities.shape == (n, classes)
    assert fit.accuracy <= 0.5  # chance is 1/3: nothing leaked from an image to its own score
    assert fit.head.train_accuracy == 1.0


def test_separable_classes_are_learnt_and_calibrated():
    x, y = _blobs(per_class=15, spread=0.8)
    fit = cross_fit_linear_head(x, y, 3, seed=0)
    assert fit.accuracy >= 0.95 and fit.accuracy_se < 0.05
    logits = x @ fit.head.kernel + fit.head.bias
    assert (logits.argmax(1) == y).mean() == 1.0
    assert fit.head.c in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 10.0)
    assert {c for c, _ in fit.scores} == {0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 10.0}
    # the temperature is the one that minimises the out-of-fold log loss of the chosen C
    losses = fit.losses()
    assert np.isfinite(losses).all()
    assert losses.mean() == pytest.approx(fit.scores[fit.head.c, False][0])
    summary = fit.summary()
    assert summary["images"] == 45 and summary["folds"] == 5
    assert "train and val" in summary["fitted_on"] and "5-fold" in fit.describe()


def test_the_out_of_fold_accuracy_is_what_new_images_get():
    """What the run reports is an estimate for images it never saw: on draws where the task is
    hard, the out-of-fold accuracy of 36 images lands within three standard errors of the
    accuracy on 3,000 fresh images of the same classes, and C is the grid's best by
    out-of-fold log loss."""
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 1.0, (3, 32))
    for seed in range(4):
        r = np.random.default_rng(seed)
        y, yt = np.arange(36) % 3, np.arange(3000) % 3
        x = centres[y] + r.normal(0, 2.0, (36, 32))
        xt = centres[yt] + r.normal(0, 2.0, (3000, 32))
        fit = cross_fit_linear_head(x, y, 3, seed=seed)
        fresh = np.mean((xt @ fit.head.kernel + fit.head.bias).argmax(1) == yt)
        assert 0.45 < fresh < 0.95  # neither trivial nor hopeless
        assert abs(fit.accuracy - fresh) <= 3 * fit.accuracy_se, (seed, fit.accuracy, fresh)
        best = min(loss for loss, _ in fit.scores.values())
        assert fit.scores[fit.head.c, fit.mirrored][0] == best


def test_mirroring_is_kept_only_where_it_helps():
    """Mirrored features that are the same class (a shirt) are taken; mirrored features that
    look like another class (a mirrored digit) are left out. Never scored either way."""
    x, y = _blobs(per_class=10, spread=2.0)
    same = x + np.random.default_rng(3).normal(0, 0.5, x.shape)
    fit = cross_fit_linear_head(x, y, 3, flipped=same, seed=0)
    assert fit.probabilities.shape == (30, 3) and len(fit.labels) == 30
    assert fit.mirror_offered and "mirrored images" in fit.describe()
    confusing = x[np.argsort((y + 1) % 3, kind="stable")]  # each one another class's image
    fit = cross_fit_linear_head(x, y, 3, flipped=confusing, seed=0)
    assert not fit.mirrored and "without the mirrored images" in fit.describe()


def test_too_few_images_to_hold_one_out_is_none():
    x, y = _blobs(per_class=3)
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1), np.flatnonzero(y == 2)[:1]]
    assert cross_fit_linear_head(x[keep], y[keep], 3) is None
    two = cross_fit_linear_head(*_blobs(per_class=2), 3)
    assert two is not None and two.folds == 2
