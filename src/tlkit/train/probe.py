"""The head on frozen features, trained to convergence: a full-batch solver, not epochs.

A pooled head (``avg``/``max`` pooling, dropout, one dense softmax layer) on a frozen backbone
is multinomial logistic regression on the pooled features. That is a convex problem, which
scikit-learn's L-BFGS solver (:class:`sklearn.linear_model.LogisticRegression`) solves to
convergence in seconds, where a fixed number of mini-batch epochs stops wherever it happens
to be (45 optimizer steps, in the measurement that led here). The L2 strength ``C`` is chosen
on a held-out part of the training features, then the head is refitted on all of them.

Dropout has no place in a full-batch solve; the L2 penalty is the head's regulariser. The
solver works on centred features divided by one scale for all of them (their RMS standard
deviation), folded back into the dense layer's kernel and bias, so the saved model is the
plain image model. One scale, not one per feature: dividing by each feature's own spread
multiplied the weights of nearly-dead channels by up to 10^4, and the first fine-tuning step
on an augmented image then met logits in the hundreds (training loss 57 after a probe with
held-out accuracy 0.91, measured). Last, the logits get a temperature chosen on the held-out
part (the one that minimises its log loss), so the head's confidence is calibrated and the
fine-tuning that starts from it starts from moderate losses and gradients.

A head with hidden layers is not linear: :func:`fit_head_layers` trains it with Keras on the
features until the held-out loss stops improving (early stopping with the best weights
restored), with a generous epoch cap rather than the recipe's epoch count.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
from threadpoolctl import threadpool_limits

#: The L2 strengths tried (scikit-learn's C: larger is weaker regularisation).
DEFAULT_CS = (0.01, 0.1, 1.0, 10.0, 100.0)
#: Temperatures tried for the held-out calibration (logits are divided by it).
TEMPERATURES = tuple(float(t) for t in np.geomspace(0.25, 16.0, 25))
MAX_ITER = 2000


@dataclass
class HeadFit:
    """A fitted linear head and how it was chosen.

    Attributes:
        kernel: ``[features, classes]`` for the dense layer (raw, unstandardised features).
        bias: ``[classes]``.
        c: The chosen inverse L2 strength.
        temperature: What the solver's logits were divided by (calibrated on held-out data).
        holdout_accuracy: Accuracy of the chosen ``c`` on the held-out part (None without one).
        train_accuracy: Accuracy of the refitted head on all training features.
        scores: ``{c: held-out accuracy}`` for every ``c`` tried.
        converged: The solver met its tolerance (scikit-learn's ``n_iter_ < max_iter``).
        seconds: Wall time of the whole fit.
        solver: What fitted it.
    """

    kernel: np.ndarray
    bias: np.ndarray
    c: float
    holdout_accuracy: float | None
    train_accuracy: float
    scores: dict[float, float] = field(default_factory=dict)
    converged: bool = True
    seconds: float = 0.0
    solver: str = "lbfgs logistic regression"
    temperature: float = 1.0

    def summary(self) -> dict:
        """What a run records about the fit (no arrays)."""
        out = asdict(self)
        out.pop("kernel")
        out.pop("bias")
        out["scores"] = {str(k): v for k, v in self.scores.items()}
        return out

    def describe(self) -> str:
        held = (
            f", held-out accuracy {self.holdout_accuracy:.3f}"
            if self.holdout_accuracy is not None
            else ""
        )
        note = "" if self.converged else " (the solver hit its iteration cap)"
        return (
            f"head fitted on frozen features by {self.solver}: C={self.c:g} chosen on a "
            f"held-out part{held}, temperature {self.temperature:.2g}, train accuracy "
            f"{self.train_accuracy:.3f}, {self.seconds:.1f}s{note}"
        )


def holdout_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Stratified ``(fit indices, held-out indices)``: ``fraction`` of each class held out,
    at least one; None when a class has fewer than two examples."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            return None
        idx = rng.permutation(idx)
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        held.extend(idx[:k])
        fit.extend(idx[k:])
    return np.sort(np.array(fit)), np.sort(np.array(held))


def _solve(x, y, c, weight, num_classes, tol=1e-6):
    """One fit: ``(coef [K, D], bias [K], converged)``; see :func:`solve_path`."""
    return solve_path(x, y, (c,), weight, num_classes, tol)[c]


def solve_path(x, y, cs, weight, num_classes, tol=1e-6) -> dict[float, tuple]:
    """Multinomial logistic regression for every L2 strength of ``cs``: ``{C: (coef [K, D],
    bias [K], converged)}``.

    The fits run from the strongest regularisation to the weakest, each starting where the
    previous one stopped (a warm start: the solution moves little from one C to the next, so a
    fit takes a fraction of the steps of one from zero). With fewer examples than features (a
    small folder's pooled features: 200 rows of 1,280), the solver works in the examples' own
    row space (:func:`_row_space`), which gives the same optimum for a fraction of the work per
    step. Measured on Lite0's features of 200 images at 224 px, the cross-fitted head's 71
    fits, the old and the new code in one process on a loaded 2-core machine: 6.0-8.0 s
    before, 2.0-2.7 s with both (the optimum and the choices the same).
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=MAX_ITER, tol=tol, warm_start=True)
    out = {}
    # one BLAS thread: the solver's products are small, and OpenBLAS' threads beside
    # TensorFlow's made the same fit 11x slower on 2 cores (8.5 s against 0.76 s, measured on
    # 206 ResNet-50 features; benchmarks/frozen_finetune.py)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")  # ConvergenceWarning: reported through `converged`
        z, basis = _row_space(np.asarray(x, np.float64))
        for c in sorted(set(cs)):
            model.set_params(C=c)
            model.fit(z, y, sample_weight=weight)
            coef, bias = _coefficients(model, num_classes)
            converged = bool(np.all(np.asarray(model.n_iter_) < MAX_ITER))
            out[c] = (coef if basis is None else coef @ basis, bias, converged)
    return out


def _row_space(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(z, basis)`` with ``x = z @ basis`` and ``basis``'s rows orthonormal, when ``x`` has
    fewer rows than columns; else ``(x, None)``.

    An L2-penalised linear model's weights lie in the span of its examples (the gradient of
    the loss is a combination of them, so the optimum is too: the representer theorem), and
    for weights ``a @ basis`` both the logits (``x @ w.T = z @ a.T``) and the penalty
    (``|w| = |a|``) are the same. So fitting on ``z`` and mapping the weights back gives the
    same optimum, with ``min(N, D)`` columns instead of ``D``.
    """
    if x.shape[0] >= x.shape[1]:
        return x, None
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    return u * s, vt


def _coefficients(model, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted scikit-learn model's ``(coef [K, D], bias [K])`` over all ``num_classes``."""
    coef = np.zeros((num_classes, model.coef_.shape[1]))
    bias = np.zeros(num_classes)
    classes = model.classes_.astype(int)
    if len(classes) == 2 and model.coef_.shape[0] == 1:  # binary: one logit z = softmax of +-z/2
        coef[classes[0]], coef[classes[1]] = -model.coef_[0] / 2, model.coef_[0] / 2
        bias[classes[0]], bias[classes[1]] = -model.intercept_[0] / 2, model.intercept_[0] / 2
    else:
        coef[classes], bias[classes] = model.coef_, model.intercept_
        missing = np.setdiff1d(np.arange(num_classes), classes)
        bias[missing] = -1e3  # a class with no training example is never predicted
    return coef, bias


def standardiser(x: np.ndarray):
    """``(standard, unstandard)`` for features ``x``: ``standard(a)`` centres ``a`` on ``x``'s
    mean and divides by one scale (the RMS standard deviation; see the module doc);
    ``unstandard(coef, bias)`` folds that back into a dense layer's float32 ``(kernel, bias)``
    on raw features."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    std = float(np.sqrt(np.mean(x.var(axis=0)))) + 1e-6

    def standard(a):
        return (np.asarray(a, np.float64) - mean) / std

    def unstandard(coef, bias):
        kernel = (coef / std).T
        return kernel.astype(np.float32), (bias - (coef @ mean) / std).astype(np.float32)

    return standard, unstandard


def _accuracy(x, y, coef, bias) -> float:
    return float(np.mean(np.argmax(x @ coef.T + bias, axis=1) == y)) if len(y) else 0.0


def _choose_c(fitted, held_x, held_y, cs, num_classes: int) -> tuple[float, dict[float, float]]:
    """The ``C`` of ``cs`` with the best held-out accuracy (ties: the smallest, the strongest
    regularisation), and every ``C``'s score; ``fitted`` is ``(x, y, weights)``."""
    # choosing C by held-out accuracy: a looser tolerance (5-10x fewer steps)
    path = solve_path(*fitted[:2], cs, fitted[2], num_classes, tol=1e-4)
    scores = {c: _accuracy(held_x, held_y, *path[c][:2]) for c in cs}
    best = max(scores.values())
    return min(c for c, s in scores.items() if s == best), scores


def fit_linear_head(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    flipped: np.ndarray | None = None,
    class_weight: dict[int, float] | None = None,
    holdout: float = 0.25,
    seed: int = 0,
    cs: tuple[float, ...] = DEFAULT_CS,
    holdout_data: tuple[np.ndarray, np.ndarray] | None = None,
) -> HeadFit:
    """Multinomial logistic regression on ``features``, its L2 strength chosen on held-out data.

    Args:
        features: ``[N, D]`` pooled features of the training images.
        labels: ``[N]`` class indices.
        num_classes: Classes of the head.
        flipped: Features of the mirrored images (training with mirroring): added as
            examples, kept on the same side of the held-out split as their originals.
        class_weight: ``{class: weight}`` as per-example weights.
        holdout: Fraction of each class held out to choose ``C``.
        seed: Seeds the held-out split.
        cs: The ``C`` values tried.
        holdout_data: ``(features, labels)`` to choose ``C`` on instead of a split of
            ``features`` (the freeze search passes its own held-out part); the fit then uses
            all of ``features``.
    """
    started = time.perf_counter()
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.int64)
    standard, unstandard = standardiser(x)  # one scale: see the module doc

    def with_mirror(index):
        xs, ys = standard(x[index]), y[index]
        if flipped is not None:
            xs, ys = np.concatenate([xs, standard(flipped[index])]), np.concatenate([ys, ys])
        w = None
        if class_weight:
            w = np.array([class_weight.get(int(c), 1.0) for c in ys])
        return xs, ys, w

    everything = np.arange(len(y))
    if holdout_data is not None:
        fit_index, held_x, held_y = everything, standard(holdout_data[0]), holdout_data[1]
    else:
        split = holdout_split(y, holdout, seed) if len(cs) > 1 else None
        fit_index = split[0] if split else everything
        held_x, held_y = (standard(x[split[1]]), y[split[1]]) if split else (None, None)
    scores: dict[float, float] = {}
    best_c = 1.0 if 1.0 in cs else cs[len(cs) // 2]
    if held_x is not None and len(held_y):
        best_c, scores = _choose_c(with_mirror(fit_index), held_x, held_y, cs, num_classes)
    ax, ay, aw = with_mirror(everything)
    coef, bias, converged = _solve(ax, ay, best_c, aw, num_classes)
    temperature = 1.0
    if held_x is not None and len(held_y):
        fx, fy, fw = with_mirror(fit_index)
        held_coef, held_bias, _ = (
            _solve(fx, fy, best_c, fw, num_classes) if holdout_data is None else (coef, bias, 0)
        )
        temperature = calibrate_temperature(held_x @ held_coef.T + held_bias, held_y)
    coef, bias = coef / temperature, bias / temperature
    kernel, raw_bias = unstandard(coef, bias)
    return HeadFit(
        kernel=kernel,
        bias=raw_bias,
        c=float(best_c),
        holdout_accuracy=scores.get(best_c),
        train_accuracy=_accuracy(ax, ay, coef, bias),
        scores=scores,
        converged=converged,
        seconds=time.perf_counter() - started,
        temperature=temperature,
    )


def calibrate_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (from :data:`TEMPERATURES`) minimising the log loss of
    ``softmax(logits / T)`` on ``labels``; ties go to the one nearest 1."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)

    def nll(t):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-np.mean(logp[np.arange(len(labels)), labels]))

    return min(TEMPERATURES, key=lambda t: (round(nll(t), 9), abs(np.log(t))))


def is_linear_head(head_layers: list) -> bool:
    """Pooling/dropout then one dense layer: the case the solver fits exactly."""
    dense = [layer for layer in head_layers if isinstance(layer, keras.layers.Dense)]
    return len(dense) == 1


def set_linear_head(head_layers: list, fit: HeadFit) -> None:
    """Put a :class:`HeadFit` into the head's dense layer."""
    (dense,) = [layer for layer in head_layers if isinstance(layer, keras.layers.Dense)]
    dense.set_weights([fit.kernel, fit.bias])


def fit_head_layers(
    head_model: keras.Model,
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    lr: float = 1e-3,
    holdout: float = 0.25,
    seed: int = 0,
    max_epochs: int = 500,
    patience: int = 20,
) -> dict:
    """Train a non-linear head (hidden layers) on features until its held-out loss stops
    improving; the best weights are kept. Returns what happened."""
    started = time.perf_counter()
    y = keras.utils.to_categorical(labels, num_classes)
    split = holdout_split(labels, holdout, seed)
    fit_index, held_index = split if split else (np.arange(len(labels)), None)
    head_model.compile(
        optimizer=keras.optimizers.Adam(lr), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    validation = (features[held_index], y[held_index]) if held_index is not None else None
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss" if validation else "loss", patience=patience, restore_best_weights=True
    )
    history = head_model.fit(
        features[fit_index], y[fit_index], validation_data=validation, epochs=max_epochs,
        batch_size=min(256, len(fit_index)), callbacks=[stop], verbose=0,
    )
    epochs = len(history.history["loss"])
    return {
        "solver": "adam with early stopping on the held-out loss",
        "epochs": epochs,
        "converged": epochs < max_epochs,
        "seconds": time.perf_counter() - started,
    }
