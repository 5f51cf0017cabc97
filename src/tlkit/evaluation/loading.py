"""Loading a trained model: a run directory, a ``.keras`` file or an exported artifact, with
its class names and preprocessing contract (:class:`LoadedModel`)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

import tlkit.augment.layer  # noqa: F401 - registers AugmentationLayer (augment.device: model)
import tlkit.layers  # noqa: F401 - registers tlkit's custom layers
from tlkit.contract import Contract
from tlkit.errors import UserError
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
