"""``freeze: auto`` with evidence: try the candidate freeze points, keep the best.

The image-count rule of the source notes (freeze all below 100 images per class, part of the
backbone up to 1,000, nothing above) is a prior, not a measurement. With pretrained weights
:func:`search_freeze` tries every candidate freeze point of the backbone (``all``, the end of
each freeze group, ``none``; :meth:`~tlkit.freeze.Freezer.candidates`) on a held-out part of
the training split and returns the best:

1. The training split is divided per class into a search part and a held-out part
   (``freeze.auto.holdout``, a quarter by default). The run's validation split is not used:
   it still picks the final run's best epoch and reports an unbiased score.
2. One pass of the frozen network over both parts gives the output of every group boundary
   (and the pooled features), so a candidate that freezes through ``conv3`` trains only
   ``conv4``, ``conv5`` and the head, on ``conv3``'s cached outputs.
3. ``all`` is the head fitted to convergence on the pooled features (:mod:`tlkit.train.probe`);
   that head is also where every other candidate starts (linear probe, then fine-tune, as the
   final run does). ``none`` trains on the images.
4. Each trained candidate gets the same short budget (``freeze.auto.search_epochs``, default
   a third of the run's fine-tuning epochs); its score is its best held-out accuracy, ties
   broken by the rule's choice, then the held-out loss (:func:`pick`).

No augmentation is used in the search: it compares freeze points, not augmentations, and
cached boundary features are what makes it cheap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import keras
import numpy as np

from tlkit.data.pipeline import iterate_images
from tlkit.freeze.lr import apply_lr_multipliers
from tlkit.models.heads import head_layers, single_input
from tlkit.train.optim import build_optimizer
from tlkit.train.probe import HeadFit, fit_linear_head, holdout_split, set_linear_head


@dataclass
class Candidate:
    """One freeze point tried by the search."""

    policy: str
    accuracy: float | None = None
    loss: float | None = None
    epochs: int = 0
    seconds: float = 0.0
    trainable_params: int = 0
    note: str = ""


@dataclass
class SearchResult:
    """What the search tried and chose."""

    chosen: str
    prior: str
    candidates: list[Candidate] = field(default_factory=list)
    search_images: int = 0
    holdout_images: int = 0
    epochs_each: int = 0
    seconds: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SearchResult:
        data = dict(data)
        data["candidates"] = [Candidate(**c) for c in data.get("candidates", [])]
        return cls(**data)

    def table(self) -> str:
        """The candidates, their scores and times, and the choice, as printed to the user."""
        lines = [
            f"freeze search: {len(self.candidates)} candidates, {self.search_images} images to "
            f"train, {self.holdout_images} held out, {self.epochs_each} epochs each",
            f"  {'policy':<10} {'held-out acc':>12} {'loss':>8} {'trains':>10} {'time':>7}",
        ]
        for c in self.candidates:
            acc = f"{c.accuracy:.3f}" if c.accuracy is not None else "-"
            loss = f"{c.loss:.3f}" if c.loss is not None else "-"
            mark = "  <- chosen" if c.policy == self.chosen else ""
            mark += "  (rule)" if c.policy == self.prior else ""
            note = f"  {c.note}" if c.note else ""
            lines.append(
                f"  {c.policy:<10} {acc:>12} {loss:>8} {c.trainable_params:>10,} "
                f"{c.seconds:>6.1f}s{mark}{note}"
            )
        lines.append(f"  chose {self.chosen} ({self.reason}); search took {self.seconds:.0f}s")
        return "\n".join(lines)


def default_search_epochs(finetune_epochs: int) -> int:
    """A third of the run's fine-tuning epochs, at least 2."""
    return max(2, math.ceil(finetune_epochs / 3))


def _arrays(split, image_size: int, batch_size: int, contract=None) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for images, labels in iterate_images(split, image_size, batch_size, contract):
        xs.append(images.astype(np.uint8))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def _boundary_output(model: keras.Model, freezer, group: str):
    """The output tensor of ``group``'s last layer (the input of what a freeze there trains)."""
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    members = [g for g in freezer.groups() if g.name == group][0].layers
    last = max(members, key=lambda layer: order.get(layer.name, -1))
    return last.output


def _score(history: dict) -> tuple[float, float, int]:
    """Best held-out accuracy, the loss at it, and how many epochs ran."""
    acc, loss = history["val_accuracy"], history["val_loss"]
    best = max(range(len(acc)), key=lambda i: (acc[i], -loss[i]))
    return float(acc[best]), float(loss[best]), len(acc)


def _probe(pooled, y, fit_i, held_i, num_classes: int) -> tuple[HeadFit, Candidate]:
    """The frozen backbone's candidate: the head by solver on the pooled features."""
    t = time.perf_counter()
    probe: HeadFit = fit_linear_head(
        pooled[fit_i], y[fit_i], num_classes, holdout_data=(pooled[held_i], y[held_i]),
    )
    probs = _softmax(pooled[held_i] @ probe.kernel + probe.bias)
    return probe, Candidate(
        "all", probe.holdout_accuracy, _log_loss(probs, y[held_i]), 0,
        time.perf_counter() - t, int(probe.kernel.size + probe.bias.size),
        f"head by solver, C={probe.c:g}",
    )


def _train_candidate(policy: str, sub, freezer, inputs, y_onehot, fit_i, held_i, *, optimizer,
                     lr: float, batch_size: int, epochs: int, seed: int) -> Candidate:
    """Train ``sub`` (the model from the freeze point on, ``freezer`` applied) on the search
    part and score it on the held-out part."""
    t = time.perf_counter()
    tuned = build_optimizer(optimizer, lr)
    multipliers = freezer.lr_multipliers()
    if multipliers:  # the final run's per-group rates (pretrained_lr)
        apply_lr_multipliers(tuned, multipliers)
    sub.compile(optimizer=tuned, loss="categorical_crossentropy", metrics=["accuracy"])
    keras.utils.set_random_seed(seed)
    history = sub.fit(
        inputs[fit_i], y_onehot[fit_i], validation_data=(inputs[held_i], y_onehot[held_i]),
        batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
    ).history
    acc, loss, ran = _score(history)
    params = int(sum(np.prod(v.shape) for v in sub.trainable_weights))
    return Candidate(policy, acc, loss, ran, time.perf_counter() - t, params)


def search_freeze(
    model: keras.Model,
    freezer,
    train_split,
    *,
    num_classes: int,
    image_size: int,
    batch_size: int,
    optimizer,
    lr: float,
    epochs: int,
    holdout: float,
    seed: int,
    contract=None,
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Try each candidate freeze point of ``model`` and return the best (see the module doc).

    The model's weights and ``trainable`` flags are as they were when this returns.

    Args:
        model: The transfer model with its pretrained backbone loaded.
        freezer: Its :class:`~tlkit.freeze.Freezer` (candidates, the rule, BatchNorm mode).
        train_split: The run's training split (a part of it is held out here).
        num_classes: Classes of the head.
        image_size: Model input side.
        batch_size: Batch size of the candidates' training.
        optimizer: The recipe's optimizer settings.
        lr: The fine-tuning learning rate.
        epochs: Epochs each trained candidate gets.
        holdout: Fraction of each class held out.
        seed: Seeds the split and the shuffles.
        contract: The run's preprocessing contract (the evaluation view of each image).
        log: Where messages go.
    """
    started = time.perf_counter()
    prior, _ = freezer.rule()
    x, y = _arrays(train_split, image_size, batch_size, contract)
    split = holdout_split(y, holdout, seed)
    if split is None:
        return SearchResult(
            prior, prior, reason="a class has fewer than two training images: nothing to hold "
            "out, so the rule decides", seconds=time.perf_counter() - started,
        )
    fit_i, held_i = split
    candidates = freezer.candidates()
    boundaries, feats = _boundary_features(model, freezer, candidates, x, batch_size)
    start_weights, head = model.get_weights(), head_layers(model)
    y_onehot = keras.utils.to_categorical(y, num_classes)
    result = SearchResult(
        "", prior, search_images=len(fit_i), holdout_images=len(held_i), epochs_each=epochs
    )
    probe, frozen = _probe(feats["pooled"], y, fit_i, held_i, num_classes)
    result.candidates.append(frozen)
    flags = {layer.name: layer.trainable for layer in model.layers}
    fit = {"optimizer": optimizer, "lr": lr, "batch_size": batch_size, "epochs": epochs,
           "seed": seed}
    try:
        for policy in candidates[1:]:
            model.set_weights(start_weights)
            set_linear_head(head, probe)
            freezer.apply(policy)
            try:
                sub, inputs = (model, x) if policy == "none" else (
                    keras.Model(boundaries[policy], model.outputs[0]), feats[policy])
            except ValueError as exc:  # a group whose output is not the only way forward
                result.candidates.append(Candidate(policy, note=f"skipped: {exc}"[:80]))
                continue
            result.candidates.append(
                _train_candidate(policy, sub, freezer, inputs, y_onehot, fit_i, held_i, **fit))
    finally:
        model.set_weights(start_weights)
        for layer in model.layers:
            layer.trainable = flags[layer.name]
    best = pick(result.candidates, prior)
    result.chosen = best.policy
    result.reason = f"best held-out accuracy {best.accuracy:.3f}" + (
        "; the rule's choice too" if best.policy == prior else f"; the rule said {prior}")
    result.seconds = time.perf_counter() - started
    return result


def _boundary_features(model, freezer, candidates, x, batch_size: int):
    """``(boundaries, features)``: each trained candidate's freeze-point tensor, and the
    frozen part's output there (and the pooled features, ``"pooled"``) for every image."""
    boundaries = {c: _boundary_output(model, freezer, c) for c in candidates
                  if c not in ("all", "none")}
    outputs = [head_layers(model)[0].input, *boundaries.values()]
    extractor = keras.Model(single_input(model), outputs)
    feats = extractor.predict(x, batch_size=max(batch_size, 128), verbose=0)
    return boundaries, dict(zip(["pooled", *boundaries], feats, strict=True))


def pick(candidates: list[Candidate], prior: str) -> Candidate:
    """The best scored candidate: highest held-out accuracy; among equals the rule's choice
    (``prior``: evidence has to beat the prior, not tie it), then the lowest held-out loss,
    then the earlier (more frozen, cheaper) candidate."""
    scored = [c for c in candidates if c.accuracy is not None]
    if not scored:
        raise ValueError("no candidate was scored")
    order = {id(c): i for i, c in enumerate(scored)}
    return max(
        scored,
        # Rounded: Keras reports a float32 0.8 (0.800000011...) where the solver's is 8/10.
        key=lambda c: (round(c.accuracy, 6), c.policy == prior,
                       -(c.loss if c.loss is not None else 0.0), -order[id(c)]),
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1))))
