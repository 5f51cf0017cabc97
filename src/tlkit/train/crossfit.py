"""A frozen backbone's head fitted on every labelled image, judged out of fold.

On a small folder, holding a fifth of the images out to choose the head's L2 strength and to
score the run costs accuracy (the head sees 8 images per class instead of 10) and gives noisy
choices (one image of twenty is five points). :func:`cross_fit_linear_head` does both jobs by
k-fold cross-validation instead:

1. the labelled images (the run's training and validation splits together) are dealt into
   ``k`` stratified folds (k = 5, fewer when a class has fewer images);
2. for every L2 strength ``C`` of the grid, and, when the run mirrors, with and without the
   mirrored images as extra examples, each fold is predicted by a head fitted on the other
   folds: out-of-fold logits for every image; the pair with the lowest out-of-fold log loss
   after temperature scaling is kept (a smooth score; accuracy moves in steps of one image),
   ties to no mirroring and the stronger regularisation;
3. a temperature is fitted on those out-of-fold logits of all images, not on a fifth of them
   (it scores the grid); the run then decides on the same out-of-fold probabilities whether to
   keep one, as for any run (:func:`tlkit.evaluation.calibration.choose_temperature`);
4. the head that is kept is fitted on all images with that ``C``; the run puts the temperature
   it kept into the model as it does any calibration (``calibration.json`` says where it was
   fitted).

The out-of-fold predictions are the run's honest scores: every image is predicted by a head
that never saw it. A run reports them for its validation images (so ``metrics.json`` and the
report keep their meaning) and over all images, with a standard error.

Costs ``k x len(grid)`` solver fits on cached features, each fold's grid one warm-started path
(:func:`tlkit.train.probe.solve_path`; 2-3 s on 200 images of 1,280 features, measured on a
loaded 2-core machine).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from tlkit.train.probe import HeadFit, _solve, calibrate_temperature, solve_path, standardiser

#: The L2 strengths tried (scikit-learn's C: larger is weaker regularisation).
CROSS_FIT_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 10.0)
FOLDS = 5


@dataclass
class CrossFit:
    """A head fitted on all labelled features, and its out-of-fold evidence.

    Attributes:
        head: The head kept (fitted on every image; its ``temperature`` is not applied to it).
        logits: ``[N, classes]`` out-of-fold logits before the temperature, in input order.
        labels: ``[N]``.
        folds: Folds used.
        scores: ``{(C, mirrored): (out-of-fold log loss after temperature, out-of-fold
            accuracy)}``.
        mirrored: The kept head was fitted with the mirrored images as extra examples.
        mirror_offered: Mirrored features were given (the run mirrors).
    """

    head: HeadFit
    logits: np.ndarray
    labels: np.ndarray
    folds: int
    scores: dict[tuple[float, bool], tuple[float, float]] = field(default_factory=dict)
    mirrored: bool = False
    mirror_offered: bool = False

    @property
    def probabilities(self) -> np.ndarray:
        """Calibrated out-of-fold probabilities (the temperature applied)."""
        return _softmax(self.logits / self.head.temperature)

    def probabilities_before(self) -> np.ndarray:
        """Out-of-fold probabilities before the temperature."""
        return _softmax(self.logits)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.probabilities.argmax(axis=1) == self.labels))

    @property
    def accuracy_se(self) -> float:
        """Standard error of :attr:`accuracy` over the images (Agresti-Coull: two successes
        and two failures added, so 48 of 48 right is not "± 0")."""
        n = len(self.labels) + 4
        p = (self.accuracy * len(self.labels) + 2) / n
        return math.sqrt(p * (1 - p) / n)

    def losses(self) -> np.ndarray:
        """Per-image out-of-fold log loss."""
        picked = self.probabilities[np.arange(len(self.labels)), self.labels]
        return -np.log(np.clip(picked, 1e-12, 1.0))

    def describe(self) -> str:
        mirror = ""
        if self.mirror_offered:
            mirror = " and with" if self.mirrored else " and without"
            mirror += " the mirrored images"
        return (
            f"head fitted on all {len(self.labels)} labelled images (train and val) by "
            f"{self.head.solver}: C={self.head.c:g}{mirror} and temperature "
            f"{self.head.temperature:.2g} chosen by {self.folds}-fold cross-validation; "
            f"out-of-fold accuracy {self.accuracy:.3f} ± {self.accuracy_se:.3f}, log loss "
            f"{self.losses().mean():.3f}; {self.head.seconds:.1f}s"
        )

    def summary(self) -> dict:
        out = self.head.summary()
        out.update(
            fitted_on="all labelled images (train and val)",
            folds=self.folds,
            images=int(len(self.labels)),
            out_of_fold_accuracy=self.accuracy,
            out_of_fold_accuracy_se=self.accuracy_se,
            out_of_fold_log_loss=float(self.losses().mean()),
            mirrored=self.mirrored,
            cross_validation=[{"C": c, "mirrored": m, "log_loss": s[0], "accuracy": s[1]}
                              for (c, m), s in self.scores.items()],
        )
        return out


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold index per example: each class dealt round-robin over ``folds`` after a seeded
    shuffle, so every fold holds every class (when it has ``folds`` examples or more)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)  # the next class starts where this one stopped: balanced folds
    return fold


def cross_fit_linear_head(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    flipped: np.ndarray | None = None,
    class_weight: dict[int, float] | None = None,
    folds: int = FOLDS,
    seed: int = 0,
    cs: tuple[float, ...] = CROSS_FIT_CS,
) -> CrossFit | None:
    """Fit the head on all ``features`` with C and temperature from k-fold cross-validation.

    Args:
        features: ``[N, D]`` pooled features of every labelled image.
        labels: ``[N]`` class indices.
        num_classes: Classes of the head.
        flipped: Features of the mirrored images (extra training examples, never scored).
        class_weight: ``{class: weight}`` as per-example weights.
        folds: Folds at most (fewer when a class has fewer images).
        seed: Seeds the folds.
        cs: The L2 strengths tried.

    Returns:
        The :class:`CrossFit`, or None when a class has fewer than two images (nothing can be
        held out).
    """
    started = time.perf_counter()
    y = np.asarray(labels, np.int64)
    counts = np.bincount(y, minlength=num_classes)
    present = counts[counts > 0]
    k = int(min(folds, present.min())) if len(present) else 0
    if k < 2:
        return None
    x = np.asarray(features, np.float64)
    standard, unstandard = standardiser(x)
    sx = standard(x)
    sf = standard(flipped) if flipped is not None else None
    fold = stratified_folds(y, k, seed)

    def training_set(mask, mirrored: bool):
        xs, ys = sx[mask], y[mask]
        if mirrored:
            xs, ys = np.concatenate([xs, sf[mask]]), np.concatenate([ys, ys])
        w = np.array([class_weight.get(int(c), 1.0) for c in ys]) if class_weight else None
        return xs, ys, w

    # mirroring is a choice too: a mirrored digit is another digit (measured: -3.7 points on
    # scikit-learn's digits), a mirrored shirt is a shirt
    variants = (False, True) if sf is not None else (False,)
    scores: dict[tuple[float, bool], tuple[float, float]] = {}
    logits: dict[tuple[float, bool], np.ndarray] = {}
    temperatures: dict[tuple[float, bool], float] = {}
    for mirrored in variants:
        outs = {c: np.zeros((len(y), num_classes)) for c in cs}
        for f in range(k):  # every C of a fold in one warm-started path (probe.solve_path)
            held = fold == f
            xs, ys, w = training_set(~held, mirrored)
            for c, (coef, bias, _) in solve_path(xs, ys, cs, w, num_classes, tol=1e-4).items():
                outs[c][held] = sx[held] @ coef.T + bias
        for c in cs:
            out = outs[c]
            t = calibrate_temperature(out, y)
            logits[c, mirrored], temperatures[c, mirrored] = out, t
            scores[c, mirrored] = (_log_loss(out / t, y), float(np.mean(out.argmax(axis=1) == y)))
    # the lowest out-of-fold log loss; ties to no mirroring, then the strongest regularisation
    chosen = min(scores, key=lambda key: (round(scores[key][0], 6), key[1], key[0]))
    temperature = temperatures[chosen]
    xs, ys, w = training_set(np.ones(len(y), bool), chosen[1])
    coef, bias, converged = _solve(xs, ys, chosen[0], w, num_classes)
    train_accuracy = float(np.mean(np.argmax(sx @ coef.T + bias, axis=1) == y))
    kernel, raw_bias = unstandard(coef, bias)  # the run appends the temperature (calibration)
    head = HeadFit(
        kernel=kernel, bias=raw_bias, c=float(chosen[0]),
        holdout_accuracy=scores[chosen][1], train_accuracy=train_accuracy,
        scores={c: s[1] for (c, m), s in scores.items() if m == chosen[1]}, converged=converged,
        seconds=time.perf_counter() - started, temperature=temperature,
    )
    return CrossFit(head, logits[chosen], y, k, scores, mirrored=chosen[1],
                    mirror_offered=sf is not None)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    p = _softmax(logits)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))
