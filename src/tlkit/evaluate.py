"""Evaluating and predicting with a trained model (a run directory or a ``.keras`` file)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

import tlkit.augment.layer  # noqa: F401 - registers AugmentationLayer (augment.device: model)
import tlkit.layers  # noqa: F401 - registers tlkit's custom layers
from tlkit.contract import Contract
from tlkit.data import DataConfig, Split, check_data, load_data
from tlkit.data.images import is_image_file, load_for_model
from tlkit.data.pipeline import make_dataset
from tlkit.errors import UserError
from tlkit.io import atomic_write_json
from tlkit.reports import (
    confusion_matrix,
    per_class_report,
    plot_confusion_matrix,
    write_per_class_csv,
)
from tlkit.rundir import RunDir
from tlkit.runtime import UntrustedArtifact, artifact_format, load_runner


@dataclass
class LoadedModel:
    """A trained classifier with its class names, input size and preprocessing contract."""

    model: Any
    class_names: list[str]
    image_size: int
    path: Path
    contract: Contract | None = None

    def __post_init__(self):
        if self.contract is None:
            self.contract = Contract.find(self.path, self.image_size)


def load_trained(run_or_model: str | Path, *, trust: bool = False) -> LoadedModel:
    """Load ``model.keras`` and ``labels.json`` from a run directory, or a ``.keras`` file, or
    an exported artifact (a SavedModel folder, ``.tflite``, ``.onnx``) from ``tlkit export``.

    Untrusted by default: a Keras file loads in Keras' safe mode (no Python code from the file,
    such as a ``Lambda`` layer's, is deserialised) and an artifact must pass
    :func:`tlkit.runtime.check_artifact` (nothing but computation on tensors) before it is
    loaded. ``trust`` turns both off, for files the user made or vouches for.

    A bare ``.keras`` file without a ``labels.json`` beside it gets class names ``0..n-1``, and
    without a ``preprocessing.json`` the contract of runs saved before contracts (squash).
    """
    # Keras 3.15 warns when a one-input model named "image" is called with a bare tensor.
    warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")

    path = Path(run_or_model)
    if artifact_format(str(path)):
        return _load_artifact(path, trust)
    if path.is_dir():
        model_path = RunDir(path).require_model(" (the run has not saved a model yet)")
    elif not path.exists():
        raise UserError(f"no model at {path}")
    else:
        model_path = path
    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=not trust)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot load {model_path}: {type(exc).__name__}: {exc}") from None
    return trained_in_memory(model, model_path)


def trained_in_memory(model, model_path: Path) -> LoadedModel:
    """A :class:`LoadedModel` for a Keras model already in memory that ``model_path`` holds
    (with the class names and contract saved beside it), without loading the file again."""
    model_path = Path(model_path)
    classes = int(model.outputs[0].shape[-1])
    run = RunDir(model_path.parent)
    labels_path = run.labels
    class_names = run.class_names() or [str(i) for i in range(classes)]
    if len(class_names) != classes:
        raise UserError(f"{labels_path} lists {len(class_names)} classes, the model has {classes}")
    return LoadedModel(model, class_names, int(model.inputs[0].shape[1]), model_path)


class ArtifactModel:
    """An exported artifact (SavedModel, ``.tflite``, ``.onnx``) called like a Keras model, in
    its own runtime (:func:`tlkit.runtime.load_runner`)."""

    def __init__(self, path: Path, trust: bool = False):
        self.path = path
        try:
            self._run = load_runner(str(path), trust=trust)
        except UntrustedArtifact as exc:
            raise UserError(str(exc)) from None
        except ImportError as exc:
            raise UserError(f"cannot run {path}: {exc}; install the export extra: "
                            "python3 -m pip install 'tlkit[export]'") from None
        except Exception as exc:  # noqa: BLE001 - a runtime's own load error
            raise UserError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None

    def __call__(self, images, training: bool = False):
        return self._run(np.asarray(images, np.float32))


def _load_artifact(path: Path, trust: bool) -> LoadedModel:
    """An exported artifact with the ``labels.json`` and ``preprocessing.json`` beside it."""
    folder = path.parent
    contract_path, labels_path = folder / RunDir.CONTRACT, folder / RunDir.LABELS
    missing = [p.name for p in (contract_path, labels_path) if not p.is_file()]
    if missing:
        raise UserError(f"{path}: {' and '.join(missing)} must lie beside an exported model "
                        "(tlkit export puts them there)")
    contract = Contract.from_dict(json.loads(contract_path.read_text()))
    class_names = json.loads(labels_path.read_text())["class_names"]
    return LoadedModel(ArtifactModel(path, trust), class_names, contract.input_size, path, contract)


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


def evaluate(run_or_model: str | Path, data: str, *, batch_size: int = 32,
             split: str = "all", trust: bool = False) -> tuple[Evaluation, LoadedModel, Any]:
    """Evaluate a trained model on a data source (folder, ``csv:``, ``tfds:``, ``builtin:``).

    The source's classes are matched to the model's by name; classes the model does not know
    are a user error. ``split`` picks ``train``, ``val``, ``test`` or ``all`` of a source that
    has split folders; a plain class folder is evaluated whole.
    """
    loaded = load_trained(run_or_model, trust=trust)
    chosen, bundle = labelled_split(data, split, [loaded])
    remap = np.array([loaded.class_names.index(c) for c in bundle.class_names])
    ds = make_dataset(_concat([chosen], remap), num_classes=len(loaded.class_names),
                      image_size=loaded.image_size, batch_size=batch_size, training=False, seed=0,
                      contract=loaded.contract)
    probs, labels = predict_dataset(loaded.model, ds)
    return evaluate_predictions(probs, labels, loaded.class_names), loaded, bundle


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
