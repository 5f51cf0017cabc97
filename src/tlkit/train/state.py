"""What a run remembers between epochs, so a crashed run continues where it stopped.

``state.json`` is the commit point: a checkpoint folder is written first, then ``state.json`` is
replaced atomically to point at it, then older checkpoint folders are removed. A crash at any
moment leaves either the old or the new state, both complete.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.io import atomic_path, atomic_write_json

STATE_FILE = "state.json"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainState:
    """Progress of a run: where it is, what it has seen, which checkpoint holds it."""

    stage: int = 0
    epoch: int = 0  # epochs completed in all stages
    stage_epoch: int = 0  # epochs completed in the current stage
    step_in_epoch: int = 0  # steps done in the current epoch (step checkpoints)
    best: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    plateau: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: str | None = None
    finished: bool = False
    stopped_early: bool = False
    recipe_digest: str | None = None

    @classmethod
    def load(cls, run_dir: Path) -> TrainState | None:
        path = Path(run_dir) / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, run_dir: Path) -> None:
        atomic_write_json(Path(run_dir) / STATE_FILE, asdict(self))


def save_checkpoint(run_dir: Path, name: str, model, optimizer) -> str:
    """Write model weights and optimizer variables into ``checkpoints/<name>/``."""
    folder = Path(run_dir) / CHECKPOINTS / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with atomic_path(folder / "model.weights.h5") as tmp:
        model.save_weights(tmp)
    values = {f"v{i:05d}": np.asarray(v) for i, v in enumerate(optimizer.variables)}
    with atomic_path(folder / "optimizer.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **values)
    return name


def restore_checkpoint(run_dir: Path, name: str, model, optimizer) -> None:
    """Load what :func:`save_checkpoint` wrote; the optimizer must be built for the model."""
    folder = Path(run_dir) / CHECKPOINTS / name
    model.load_weights(folder / "model.weights.h5")
    with np.load(folder / "optimizer.npz") as data:
        values = [data[k] for k in sorted(data.files)]
    variables = optimizer.variables
    if len(values) != len(variables):
        raise RuntimeError(
            f"checkpoint {folder} has {len(values)} optimizer variables, the optimizer "
            f"{len(variables)}: the recipe changed since the checkpoint"
        )
    for var, value in zip(variables, values, strict=True):
        var.assign(value)


def prune_checkpoints(run_dir: Path, keep: str) -> None:
    """Remove every checkpoint folder except ``keep``."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.exists():
        return
    for folder in root.iterdir():
        if folder.is_dir() and folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)
