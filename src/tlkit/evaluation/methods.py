"""The papers' evaluation methods, and ensembles of runs, on one labelled split.

=============  =================================================  ==========================
method         views averaged per image                           source
=============  =================================================  ==========================
``single``     the contract's centre crop (the default)           tlkit's contract
``flip``       that and its mirror                                VGG section 3.2
``10crop``     4 corners + centre of the eval square, mirrored    AlexNet section 4.1
``dense``      the whole square at Q = eval size, fully           VGG section 3.2, Table 3
               convolutional, score map averaged, mirrored
``multiscale`` ``dense`` at several Q (VGG's {S-32, S, S+32})     VGG Table 4
``multicrop``  GoogLeNet's crops: 4 scales x 3 squares x 6 crops  GoogLeNet section 7
               x mirror = 144 (``scales`` configurable)
=============  =================================================  ==========================

Every method averages softmax probabilities. Several models (run directories) evaluated
together are an ensemble: their probabilities are averaged too (AlexNet, VGG section 4.3).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tlkit.data.pipeline import decoded_images
from tlkit.errors import UserError
from tlkit.evaluation import views
from tlkit.evaluation.dense import dense_model


def _eval_size(contract, scales) -> tuple[int, ...]:
    return (contract.eval_size,)


def _googlenet_scales(contract, scales) -> tuple[int, ...]:
    chosen = tuple(scales or views.googlenet_scales(contract))
    small = [q for q in chosen if q < contract.input_size]
    if small:
        raise UserError(f"multicrop scales {small} are below the input size "
                        f"{contract.input_size}")
    return chosen


def _at_least_input(contract, chosen) -> tuple[int, ...]:
    return tuple(q for q in chosen if q >= contract.input_size) or (contract.input_size,)


def _dense_scale(contract, scales) -> tuple[int, ...]:
    return _at_least_input(contract, tuple(scales[:1]) if scales else (contract.eval_size,))


def _vgg_scales(contract, scales) -> tuple[int, ...]:
    return _at_least_input(contract, tuple(scales or views.vgg_scales(contract)))


def _whole_batch(batch_size: int) -> int:
    return batch_size


def _tenth(batch_size: int) -> int:
    return max(1, batch_size // 10)


def _one_image(batch_size: int) -> int:
    return 1


@dataclass(frozen=True)
class Method:
    """One evaluation method: the views of an image it averages and at which scales.

    Attributes:
        name: The ``--method`` value.
        paper: Where the method comes from.
        views: ``(image, contract, scales) -> uint8 [V, S, S, 3]`` (graph code); a ``dense``
            method gets one scale at a time.
        views_per_scale: ``V`` at one scale (at all of them, for a method without scales).
        scales: ``(contract, requested scales or None) -> the scales used``.
        images_per_call: Images per model call, from the batch size (a view stack is ``V``
            model inputs).
        dense: Runs the fully convolutional model (:func:`tlkit.evaluation.dense.dense_model`)
            at each scale and averages their probabilities; needs the Keras model.
    """

    name: str
    paper: str
    views: Callable[..., tf.Tensor]
    views_per_scale: int
    scales: Callable[[Any, Any], tuple[int, ...]] = _eval_size
    images_per_call: Callable[[int], int] = _whole_batch
    dense: bool = False


#: The evaluation methods, by name, in the order they are listed.
METHODS = {m.name: m for m in (
    Method("single", "centre crop", lambda im, c, _: views.single(im, c), 1),
    Method("flip", "VGG 3.2", lambda im, c, _: views.flip(im, c), 2),
    Method("10crop", "AlexNet 4.1", lambda im, c, _: views.ten_crop(im, c), 10,
           images_per_call=_tenth),
    Method("dense", "VGG 3.2, Table 3", views.squares, 2, _dense_scale, _tenth, dense=True),
    Method("multiscale", "VGG Table 4", views.squares, 2, _vgg_scales, _tenth, dense=True),
    Method("multicrop", "GoogLeNet 7", views.multi_crop, 36, _googlenet_scales, _one_image),
)}


@dataclass
class MethodResult:
    """One method on one model (or an ensemble): scores and cost."""

    model: str
    method: str
    scales: list[int]
    views: int
    top1: float
    top5: float | None
    ms_per_image: float
    count: int
    probabilities: np.ndarray = field(repr=False, default=None)
    labels: np.ndarray = field(repr=False, default=None)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("model", "method", "scales", "views", "top1",
                                               "top5", "ms_per_image", "count")}

    def row(self) -> list[str]:
        top5 = "-" if self.top5 is None else f"{100 * self.top5:.2f}"
        return [self.model, self.method, ",".join(map(str, self.scales)), str(self.views),
                f"{100 * self.top1:.2f}", top5, f"{100 * (1 - self.top1):.2f}",
                f"{self.ms_per_image:.1f}"]


def format_table(results: list[MethodResult]) -> str:
    """The results in the form of VGG's Tables 3 and 4."""
    head = ["model", "method", "test scales", "views", "top-1 %", "top-5 %", "top-1 err %",
            "ms/img"]
    rows = [head, *(r.row() for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _scores(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float | None]:
    top1 = float((probs.argmax(1) == labels).mean())
    if probs.shape[1] <= 5:
        return top1, None
    top = np.argsort(-probs, axis=1)[:, :5]
    return top1, float((top == labels[:, None]).any(axis=1).mean())


def _averaged(ds: tf.data.Dataset, model, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean probabilities of each example's view stack ``[V, S, S, 3]``."""
    probs, labels = [], []
    for stack, label in ds.batch(batch_size).prefetch(tf.data.AUTOTUNE):
        b, v = stack.shape[0], stack.shape[1]
        flat = tf.reshape(tf.cast(stack, tf.float32), [b * v, *stack.shape[2:]])
        out = np.asarray(model(flat, training=False)).reshape(b, v, -1)
        probs.append(out.mean(axis=1))
        labels.append(label.numpy())
    if not probs:
        raise UserError("nothing to evaluate: the split is empty")
    return np.concatenate(probs), np.concatenate(labels)


def run_method(loaded, split, method: str, *, scales=None, batch_size: int = 32):
    """``(probabilities [N, C], labels [N], scales, views per image)`` of one method."""
    if method not in METHODS:
        raise UserError(f"unknown evaluation method {method!r}; choose from {', '.join(METHODS)}")
    spec = METHODS[method]
    contract, model = loaded.contract, loaded.model
    decoded = decoded_images(split)

    def stacked(fn):
        return decoded.map(lambda image, label: (fn(image), label),
                           num_parallel_calls=tf.data.AUTOTUNE)

    if spec.dense and not hasattr(model, "get_config"):
        raise UserError(f"{method} evaluation needs the Keras model (a run directory or a "
                        ".keras file), not an exported artifact")
    chosen = spec.scales(contract, scales)
    per_call = spec.images_per_call(batch_size)
    count = spec.views_per_scale * len(chosen)
    if not spec.dense:
        fn = lambda im: spec.views(im, contract, chosen)  # noqa: E731
        probs, labels = _averaged(stacked(fn), model, per_call)
        return probs, labels, list(chosen), count
    total, labels = None, None
    for q in chosen:
        try:
            fcn = dense_model(model, q)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        fn = lambda im, q=q: spec.views(im, contract, q)  # noqa: E731
        probs, labels = _averaged(stacked(fn), fcn, per_call)
        total = probs if total is None else total + probs
    return total / len(chosen), labels, list(chosen), count


def evaluate_methods(models: list, names: list[str], split, class_names: list[str],
                     methods: list[str], *, scales=None, batch_size: int = 32,
                     ) -> list[MethodResult]:
    """Each method on each model, and on their ensemble when there are several.

    ``split``'s labels index ``class_names``; every model's probabilities are reordered to
    that order (models must know every class of the split).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown evaluation method {', '.join(unknown)}; choose from "
                        f"{', '.join(METHODS)}")
    results: list[MethodResult] = []
    for method in methods:
        ensemble = []
        for loaded, name in zip(models, names, strict=True):
            order = [loaded.class_names.index(c) for c in class_names]
            started = time.perf_counter()
            probs, labels, used, count = run_method(loaded, split, method, scales=scales,
                                                    batch_size=batch_size)
            seconds = time.perf_counter() - started
            probs = probs[:, order]
            top1, top5 = _scores(probs, labels)
            results.append(MethodResult(name, method, used, count, top1, top5,
                                        1000 * seconds / len(labels), len(labels), probs,
                                        labels))
            ensemble.append((probs, labels, seconds))
        if len(models) > 1:
            probs = np.mean([p for p, _, _ in ensemble], axis=0)
            labels = ensemble[0][1]
            top1, top5 = _scores(probs, labels)
            ms = 1000 * sum(s for _, _, s in ensemble) / len(labels)
            members = results[-len(models):]
            results.append(MethodResult(f"ensemble of {len(models)}", method, members[0].scales,
                                        sum(r.views for r in members), top1, top5, ms,
                                        len(labels), probs, labels))
    return results
