"""Predicting with a trained model and scoring the predictions: top-1/top-5 accuracy, the
confusion matrix and per-class scores on a labelled split (:class:`Evaluation`), top-k
predictions for image files (``tlkit predict``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.data import DataConfig, Split, check_data, load_data
from tlkit.data.images import is_image_file, load_for_model
from tlkit.errors import UserError
from tlkit.evaluation.figures import plot_confusion_matrix
from tlkit.evaluation.loading import LoadedModel, load_trained
from tlkit.evaluation.tables import confusion_matrix, per_class_report, write_per_class_csv
from tlkit.io import atomic_write_json
from tlkit.rundir import RunDir


@dataclass
class Evaluation:
    """Top-1/top-5 accuracy, confusion matrix and per-class scores on one split."""

    top1: float
    top5: float | None
    count: int
    matrix: np.ndarray
    per_class: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"top1": self.top1, "top5": self.top5, "count": self.count,
                "confusion_matrix": self.matrix.tolist(), "per_class": self.per_class}


def evaluate_predictions(probabilities: np.ndarray, labels: np.ndarray,
                         class_names: list[str]) -> Evaluation:
    """Scores from predicted probabilities ``[N, C]`` and integer labels ``[N]``."""
    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        raise UserError("nothing to evaluate: the split is empty")
    predicted = probabilities.argmax(axis=1)
    top1 = float((predicted == labels).mean())
    top5 = None
    if probabilities.shape[1] > 5:
        top = np.argsort(-probabilities, axis=1)[:, :5]
        top5 = float((top == labels[:, None]).any(axis=1).mean())
    matrix = confusion_matrix(labels, predicted, len(class_names))
    return Evaluation(top1, top5, len(labels), matrix, per_class_report(matrix, class_names))


def predict_dataset(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over a dataset of ``(images, one-hot labels[, weights])``."""
    probs, labels = [], []
    for batch in dataset:
        probs.append(np.asarray(model(batch[0], training=False)))
        labels.append(np.asarray(batch[1]).argmax(axis=-1))
    if not probs:
        return np.zeros((0, int(model.outputs[0].shape[-1]))), np.zeros((0,), int)
    return np.concatenate(probs), np.concatenate(labels)


def labelled_split(data: str, split: str, models: list[LoadedModel]):
    """``(split, bundle)``: the ``split`` part (``all``: train, val and test in order) of data
    source ``data``, its labels indexing ``bundle.class_names``; every model must know every
    class of it (a user error otherwise)."""
    bundle = load_data(DataConfig(source=data), seed=0)
    check_data(bundle, None, progress=False, min_images_per_class=1)
    for loaded in models:
        unknown = sorted(set(bundle.class_names) - set(loaded.class_names))
        if unknown:
            raise UserError(
                f"{data} has classes {loaded.path} was not trained on: {', '.join(unknown)}; "
                f"it knows {', '.join(loaded.class_names)}"
            )
    names = ("train", "val", "test") if split == "all" else (split,)
    chosen = [getattr(bundle, n) for n in names if len(getattr(bundle, n))]
    if not chosen:
        raise UserError(f"{data} has no images in the {split} split")
    return _concat(chosen, np.arange(bundle.num_classes)), bundle


def _concat(splits: list, remap: np.ndarray):
    """One split holding ``splits`` in order, labels mapped through ``remap``."""
    labels = np.concatenate([remap[s.labels] for s in splits])
    origins = [o for s in splits for o in s.origins]
    if all(s.in_memory for s in splits):
        images = [img for s in splits for img in s.images]
        return Split(labels=labels, images=images, origins=origins)
    if any(s.in_memory for s in splits):
        raise UserError("cannot mix in-memory and file splits")
    return Split(labels=labels, paths=[p for s in splits for p in s.paths], origins=origins)


def predict_files(run_or_model: str | Path, paths: list[str | Path], *, top_k: int = 5,
                  batch_size: int = 32, min_confidence: float = 0.0, trust: bool = False,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Top-k predictions for image files and folders (searched recursively).

    Each file is decoded and shaped by the run's preprocessing contract, exactly as its
    validation images were (:func:`tlkit.data.images.load_for_model`).

    Returns:
        ``(results, skipped)``: one result per readable image (``path``, ``top``: list of
        ``{label, probability}``, ``abstained``: its top probability is below
        ``min_confidence``) and the files that could not be read, with the reason.
    """
    loaded = load_trained(run_or_model, trust=trust)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f.name))
        elif p.exists():
            files.append(p)
        else:
            raise UserError(f"no such file or folder: {p}")
    if not files:
        raise UserError(f"no images found in {', '.join(map(str, paths))}")
    images, kept, skipped = load_for_model(files, loaded.contract)
    results = []
    k = max(1, min(top_k, len(loaded.class_names)))
    for start in range(0, len(images), batch_size):
        batch = np.stack(images[start : start + batch_size]).astype("float32")
        probs = np.asarray(loaded.model(batch, training=False))
        for f, p in zip(kept[start : start + batch_size], probs, strict=True):
            order = np.argsort(-p)[:k]
            results.append({"path": str(f), "top": [
                {"label": loaded.class_names[i], "probability": round(float(p[i]), 6)}
                for i in order], "abstained": bool(p[order[0]] < min_confidence)})
    return results, skipped


def write_evaluation(folder: str | Path, result: Evaluation, class_names: list[str],
                     extra: dict[str, Any] | None = None) -> None:
    """``evaluation.json`` (``result``, or ``extra`` when given), ``confusion_matrix.png`` and
    ``per_class.csv`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / RunDir.EVALUATION, extra or result.as_dict())
    plot_confusion_matrix(folder / RunDir.CONFUSION, result.matrix, class_names)
    write_per_class_csv(folder / RunDir.PER_CLASS, result.per_class)
