"""What a run remembers between epochs, so a crashed run continues where it stopped.

``state.json`` is the commit point: a checkpoint folder is written first, then ``state.json`` is
replaced atomically to point at it, then older checkpoint folders are removed. A crash at any
moment leaves either the old or the new state, both complete.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.io import TEMPORARY_PREFIX, atomic_write_json, named
from tlkit.rundir import RunDir

STATE_FILE = RunDir.STATE
CHECKPOINTS = RunDir.CHECKPOINTS


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
    reported: bool = False  # the run's reports were written after training finished

    @property
    def complete(self) -> bool:
        """Training finished and the reports after it were written: nothing left to resume."""
        return self.finished and self.reported

    @classmethod
    def load(cls, run_dir: Path) -> TrainState | None:
        path = Path(run_dir) / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data.setdefault("reported", bool(data.get("finished")))  # runs from before the field
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def save(self, run_dir: Path) -> None:
        atomic_write_json(Path(run_dir) / STATE_FILE, asdict(self))


def save_checkpoint(run_dir: Path, name: str, model, optimizer) -> str:
    """Write model weights and optimizer variables into ``checkpoints/<name>/``.

    The folder is written under a temporary name and renamed when both files are complete, so a
    failed write (a full disk, a kill) never leaves a half checkpoint under a real name; what
    failed is removed at once, or by the next run (:func:`tlkit.io.remove_stale_temporaries`).
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, suffix=f"-{name}", dir=root))
    try:
        _save_weights(model, tmp / "model.weights.h5")
        values = {f"v{i:05d}": np.asarray(v) for i, v in enumerate(optimizer.variables)}
        randoms = {f"s{i:05d}": np.asarray(v) for i, v in enumerate(seed_states(model))}
        for file, arrays in (("optimizer.npz", values), (RANDOM_FILE, randoms)):
            with open(tmp / file, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
        folder = root / name
        if folder.exists():  # a folder of this name that state.json never pointed at
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError as exc:
        raise named(exc, root / name) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return name


def _save_weights(model, path: Path) -> None:
    """``model.save_weights(path)``, but with the HDF5 file built in memory and written to disk
    by plain Python I/O.

    When h5py writes straight to a file and a write fails (a full disk, a file-size limit), HDF5
    keeps the half-closed file, prints tracebacks from its finalisers and crashes the interpreter
    at exit (measured with h5py 3.x: exit 139 after EFBIG), so the user would see a segfault
    instead of the error. Keras builds its ``.keras`` archives' weights in memory the same way;
    the two calls used here are Keras' own, private ones (``keras.src.saving.saving_lib``).
    Where they are missing or behave otherwise, the public call writes the same file, with a
    warning that names the fallback and what it loses.
    """
    data = _weights_in_memory(model)
    if isinstance(data, str):  # why the private path is not available
        import keras  # only for the message: this module needs no Keras otherwise

        warnings.warn(
            f"tlkit: checkpoints are written by model.save_weights: Keras {keras.__version__} "
            f"{data} (tlkit is tested on Keras >= 3.15.1). The file is the same, but a failed "
            "write (a full disk) may crash Python at exit instead of raising the error",
            RuntimeWarning,
            stacklevel=3,
        )
        model.save_weights(path)
        return
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


#: The first bytes of every HDF5 file.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _weights_in_memory(model) -> memoryview | str:
    """The ``.weights.h5`` file of ``model`` as bytes, or why Keras' private saving calls
    cannot build it."""
    try:
        # Function-level: keras.src is Keras' private tree, read only when a checkpoint is
        # written, and its absence is a fallback here, not an import error of tlkit.
        from keras.src.saving.saving_lib import H5IOStore, _save_state
    except ImportError as exc:
        return f"has no keras.src.saving.saving_lib.H5IOStore/_save_state ({exc})"
    buffer = io.BytesIO()
    try:
        store = H5IOStore(buffer, mode="w")
        _save_state(model, weights_store=store, assets_store=None, inner_path="",
                    visited_saveables=set())
        store.close()
    except TypeError as exc:  # another signature: not the calls this was written for
        return f"has a keras.src.saving.saving_lib.H5IOStore/_save_state that differ ({exc})"
    data = buffer.getbuffer()  # no copy: a checkpoint can be hundreds of MB
    if data[: len(HDF5_SIGNATURE)].tobytes() != HDF5_SIGNATURE:
        return "wrote no HDF5 file through keras.src.saving.saving_lib.H5IOStore"
    return data


#: The random streams' states in a checkpoint (Dropout's and the augmentation layer's seed
#: generators), which ``model.weights.h5`` does not hold: without them a resumed run draws
#: other dropout masks than the uninterrupted run would have.
RANDOM_FILE = "random.npz"


def seed_states(model) -> list:
    """The state variables of ``model``'s ``keras.random.SeedGenerator``s, in a fixed order."""
    return [v for v in model.variables if v.name == "seed_generator_state"]


def restore_random_state(folder: Path, model) -> bool:
    """Set ``model``'s seed generators to the states saved in ``folder``; False (and nothing
    changed) for a checkpoint written before they were saved or for another model."""
    path = Path(folder) / RANDOM_FILE
    states = seed_states(model)
    if not path.exists():
        return False
    with np.load(path) as data:
        values = [data[k] for k in sorted(data.files)]
    if len(values) != len(states) or any(v.shape != tuple(s.shape) for v, s in zip(values, states,
                                                                                 strict=True)):
        return False
    for var, value in zip(states, values, strict=True):
        var.assign(value)
    return True


def restore_checkpoint(run_dir: Path, name: str, model, optimizer) -> None:
    """Load what :func:`save_checkpoint` wrote; the optimizer must be built for the model."""
    folder = Path(run_dir) / CHECKPOINTS / name
    model.load_weights(folder / "model.weights.h5")
    restore_random_state(folder, model)
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
