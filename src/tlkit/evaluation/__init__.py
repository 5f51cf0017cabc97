"""Evaluation, under one roof: loading a trained model (:mod:`~tlkit.evaluation.loading`),
predicting and scoring (:mod:`~tlkit.evaluation.scoring`), the papers' evaluation methods
(single, flip, AlexNet's 10 crops, VGG's dense and multi-scale evaluation, GoogLeNet's
multi-crop) and ensembles of runs (:mod:`~tlkit.evaluation.methods`, over
:mod:`~tlkit.evaluation.views` and :mod:`~tlkit.evaluation.dense`), calibration
(:mod:`~tlkit.evaluation.calibration`), a run's tables and figures
(:mod:`~tlkit.evaluation.tables`, :mod:`~tlkit.evaluation.figures`), Grad-CAM
(:mod:`~tlkit.evaluation.gradcam`) and the page, ``report.html`` (:mod:`~tlkit.evaluation.page`).

    from tlkit.evaluation import evaluate_runs
    results, bundle = evaluate_runs(["runs/a", "runs/b"], "builtin:digits", ["single", "10crop"])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlkit.evaluation.loading import load_trained
from tlkit.evaluation.methods import METHODS, MethodResult, evaluate_methods, format_table
from tlkit.evaluation.scoring import labelled_split

__all__ = ["METHODS", "MethodResult", "evaluate_methods", "evaluate_runs", "format_table"]


def evaluate_runs(paths: list, data: str, methods: list[str], *, split: str = "all",
                  scales=None, batch_size: int = 32, max_images: int | None = None,
                  trust: bool = False):
    """Every method on every model in ``paths`` (run directories, ``.keras`` files or exported
    artifacts) and on their ensemble, on ``split`` of ``data``.

    ``max_images`` evaluates a class-balanced sample of that many images (seeded, the same for
    every method and model), for methods that cost a hundred views per image. ``trust`` loads
    the models without the checks on untrusted files (:func:`tlkit.evaluation.loading.load_trained`).

    Returns:
        ``(results, bundle)``: a :class:`MethodResult` per (model, method), ensembles after
        their members, and the data bundle.
    """
    models = [load_trained(p, trust=trust) for p in paths]
    chosen, bundle = labelled_split(data, split, models)
    if max_images and max_images < len(chosen):
        chosen = chosen.subset(balanced_sample(chosen.labels, max_images))
    names = [_name(Path(p)) for p in paths]
    results = evaluate_methods(models, names, chosen, bundle.class_names, methods,
                               scales=scales, batch_size=batch_size)
    return results, bundle


def balanced_sample(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``count`` examples, as equal a number per class as there are."""
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked = []
    while len(picked) < count and any(pools):
        for pool in pools:
            if pool and len(picked) < count:
                picked.append(pool.pop())
    return np.array(sorted(picked), dtype=int)


def _name(path: Path) -> str:
    return path.name if path.is_dir() or path.suffix != ".keras" else path.stem
