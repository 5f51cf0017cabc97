"""The run directory: the one folder a run writes, and resume, predict, evaluate, export, report
and ``--weights RUN_DIR`` read.

Every file's name is here, once, with a reader for each file another command reads::

    run = RunDir("runs/vgg16-small")
    run.model                    # runs/vgg16-small/model.keras
    run.metrics()                # metrics.json as a dict ({} when the run has none yet)
    run.class_names()            # labels.json's names, or None
    RunDir.of("runs/x/model.keras")   # the run a model file belongs to, or None

Writers use the paths (``atomic_write_json(run.path / RunDir.METRICS, ...)`` or the properties)
with :mod:`tlkit.io`'s atomic writers; nothing here writes. Ground floor: no TensorFlow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tlkit.errors import UserError


class _InRun:
    """A file of the run directory, read on an instance as its path."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, run: RunDir | None, owner=None):
        return self if run is None else run.path / self.name


class RunDir:
    """One run's folder and the names of what lies in it."""

    MODEL = "model.keras"
    METRICS = "metrics.json"
    RECIPE = "recipe.yaml"
    LABELS = "labels.json"
    CONTRACT = "preprocessing.json"
    STATE = "state.json"
    CHECKPOINTS = "checkpoints"
    INPUTS = "inputs.json"
    LOCK = ".tlkit.lock"
    FEATURE_CACHE = "feature_cache"
    HISTORY = "history.csv"
    CURVES = "curves.png"
    DATA_REPORT = "data_report.json"
    SPLITS = "splits.csv"
    WEIGHTS_REPORT = "weights_report.json"
    FREEZE_SEARCH = "freeze_search.json"
    HEAD_FIT = "head_fit.json"
    PCA_STATS = "pca_stats.json"
    CALIBRATION = "calibration.json"
    RELIABILITY = "reliability.png"
    CONFUSION = "confusion_matrix.png"
    EVALUATION = "evaluation.json"
    PER_CLASS = "per_class.csv"
    REPORT = "report.html"
    EXPORT = "export"
    EXPORT_REPORT = "export_report.json"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def of(cls, path: str | os.PathLike) -> RunDir | None:
        """The run that ``path`` names: the folder itself, or the folder of its ``model.keras``
        when ``metrics.json`` lies beside it; ``None`` for anything else."""
        path = Path(path).expanduser()
        if path.is_dir():
            return cls(path)
        if path.name == cls.MODEL and (path.parent / cls.METRICS).is_file():
            return cls(path.parent)
        return None

    # -- paths (``RunDir(p).model`` is ``p / RunDir.MODEL``) --------------------------------

    model = _InRun(MODEL)
    recipe = _InRun(RECIPE)
    labels = _InRun(LABELS)
    state = _InRun(STATE)
    checkpoints = _InRun(CHECKPOINTS)
    export = _InRun(EXPORT)

    def predictions(self, split: str) -> Path:
        """Where the run keeps its probabilities on ``split`` (``val``, ``test``)."""
        return self.path / f"predictions_{split}.npy"

    def per_class(self, split: str, suffix: str = ".csv") -> Path:
        """A split's per-class scores: ``.csv`` for spreadsheets, ``.txt`` to read."""
        return self.path / f"per_class_{split}{suffix}"

    def confusion(self, split: str) -> Path:
        """A split's confusion matrix (val's is ``confusion_matrix.png``)."""
        return self.path / (self.CONFUSION if split == "val" else f"confusion_matrix_{split}.png")

    # -- readers ---------------------------------------------------------------------------

    def has_model(self) -> bool:
        return self.model.is_file()

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON file of the run as a dict; ``None`` when it is missing, unreadable or not an
        object (a report reads what is there and leaves out the rest)."""
        try:
            data = json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` (``{}`` for a run that has not finished)."""
        return self.read_json(self.METRICS) or {}

    def class_names(self) -> list[str] | None:
        """``labels.json``'s class names, or ``None`` when the run has none."""
        if not self.labels.exists():
            return None
        return list(json.loads(self.labels.read_text())["class_names"])

    def recipe_text(self) -> str:
        """The resolved ``recipe.yaml`` the run wrote ('' when absent)."""
        return self.recipe.read_text() if self.recipe.exists() else ""

    def require_recipe(self, why: str) -> Path:
        """``recipe.yaml``'s path, or a :class:`UserError` saying ``why`` it was needed."""
        if not self.recipe.is_file():
            raise UserError(f"{self.path} has no {self.RECIPE}: {why}")
        return self.recipe

    def require_model(self, hint: str = "") -> Path:
        """``model.keras``'s path, or a :class:`UserError` (``hint`` says what to do)."""
        if not self.model.is_file():
            raise UserError(f"no model at {self.model}{hint}")
        return self.model
