"""Loading weights into a model by layer name: every shape checked, a report of what loaded.

Every load goes through :func:`load_weights_file`, which matches layers by name, checks shapes
and returns a :class:`LoadReport` (loaded, skipped, mismatched). It reads legacy Keras ``.h5``
(the official ImageNet files, and the files tlkit converts from other checkpoints), Keras 3
``.weights.h5`` and ``.keras`` archives (a tlkit run's ``model.keras`` too).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np

import tlkit.layers  # noqa: F401 - registers tlkit's custom layers (for .keras files)
from tlkit.errors import UserError, WeightsError
from tlkit.torchfile import read_state_dict
from tlkit.weights.sources import ImageNetWeights, official_weights_path


@dataclass
class LoadReport:
    """What a weight load did, layer by layer.

    Attributes:
        source: The file the weights came from.
        loaded: Model layers whose weights were set from the file.
        missing: Model layers with weights that the file does not have.
        mismatched: ``(layer, model shapes, file shapes)`` for layers whose shapes differ.
        unused: Layers in the file that the model does not have.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, list, list]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.mismatched

    def format(self) -> str:
        lines = [
            f"weights from {self.source}: {len(self.loaded)} layers loaded, "
            f"{len(self.missing)} missing, {len(self.mismatched)} mismatched, "
            f"{len(self.unused)} in the file but not in the model"
        ]
        if self.missing:
            lines.append("  missing: " + ", ".join(self.missing[:12]) + _more(self.missing, 12))
        for name, ours, theirs in self.mismatched[:12]:
            lines.append(f"  mismatched: {name} model {ours} vs file {theirs}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": self.loaded,
            "missing": self.missing,
            "mismatched": [
                {"layer": n, "model": [list(s) for s in a], "file": [list(s) for s in b]}
                for n, a, b in self.mismatched
            ],
            "unused": self.unused,
        }


def _more(items: list, shown: int) -> str:
    return f" (+{len(items) - shown} more)" if len(items) > shown else ""


# --------------------------------------------------------------------------- reading files


#: Suffixes of PyTorch checkpoints (read by :mod:`tlkit.torchfile`, which runs nothing).
TORCH_SUFFIXES = (".pth", ".pt", ".bin")

#: ``{tensor name: array} -> {layer name: [arrays]}``: an architecture's map from a PyTorch
#: state dict to its layers (``ConvertedWeights.from_state_dict``).
StateDictConverter = Callable[[dict[str, np.ndarray]], dict[str, list]]


def read_weights_file(
    path: str | os.PathLike, *, from_state_dict: StateDictConverter | None = None
) -> dict[str, list]:
    """Read a weights file into ``{layer name: [arrays]}``.

    Supports legacy Keras ``.h5`` (weights-only files such as the official ImageNet files, and
    whole-model ``.h5`` files), Keras 3 ``.weights.h5`` and ``.keras`` archives (including a
    tlkit run's ``model.keras``), and PyTorch state dicts (``.pth``, ``.pt``) for architectures
    that map their tensor names (``from_state_dict``).

    Raises:
        WeightsError: no such file, an unsupported kind, or tensors that do not map.
        UnsafeCheckpointError: a PyTorch file that holds more than tensors (exit code 2;
            nothing in it ran).
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    name = path.name.lower()
    if name.endswith(".keras"):
        return _read_keras_archive(path)
    if name.endswith(".h5") or name.endswith(".hdf5"):
        return _read_h5(path)
    if name.endswith(TORCH_SUFFIXES):
        state = read_state_dict(path)  # refuses anything but tensors before any mapping
        if from_state_dict is None:
            raise WeightsError(
                f"{path} is a PyTorch checkpoint; tlkit maps PyTorch tensor names only for the "
                "architectures whose ImageNet weights come from one (efficientnet_lite0-2). "
                "Convert it to a Keras .h5 or .keras file for this one."
            )
        try:
            return from_state_dict(state)
        except KeyError as exc:
            raise WeightsError(f"{path} does not fit this architecture: {exc}") from None
    raise WeightsError(
        f"unsupported weights file {path}: use .h5, .weights.h5, .keras or (for "
        "efficientnet_lite*) a PyTorch .pth"
    )


def _is_keras3_weights(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "layer_names" not in f.attrs and "model_weights" not in f and "layers" in f
    except OSError as exc:
        raise WeightsError(f"cannot read {path} as HDF5: {exc}") from None


def _read_h5(path: Path) -> dict[str, list]:
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in group.attrs:
                return _read_legacy_group(group)
    except OSError as exc:
        raise WeightsError(f"cannot read {path} as HDF5: {exc}") from None
    raise WeightsError(f"{path} is not a Keras weights file (no layer names found)")


def _decode(names) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _read_legacy_group(group) -> dict[str, list]:
    out = {}
    for layer_name in _decode(group.attrs["layer_names"]):
        g = group[layer_name]
        weight_names = _decode(g.attrs.get("weight_names", []))
        if weight_names:
            out[layer_name] = [g[w][()] for w in weight_names]
    return out


def is_legacy_h5(path: Path) -> bool:
    """Whether ``path`` is a legacy Keras ``.h5`` weights file (keras.applications' layout)."""
    if path.suffix.lower() not in (".h5", ".hdf5") or not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            return "layer_names" in group.attrs
    except OSError:
        return False


def load_by_position(model, path: str | os.PathLike, *, layers: Collection[str]) -> LoadReport:
    """Load a legacy ``.h5`` file into ``layers`` of ``model`` by order, as Keras loads
    keras.applications' files: the file's layers with weights, in its order, against the
    model's layers with weights, in topological order, every shape checked.

    A file layer whose arrays span several model layers (a nested model saved as one, as
    ConvNeXt's stem) fills them in turn. Layers past the model's (an official file's
    classifier, loaded into a model without it) are ``unused``.
    """
    path = Path(path)
    stored = read_weights_file(path)  # {file layer: arrays}, in the file's order
    report = LoadReport(source=f"{path} (by position)")
    queue = [la for la in _all_layers(model) if la.weights and la.name in set(layers)]
    for file_layer, arrays in stored.items():
        at = 0
        while at < len(arrays) and queue:
            layer = queue[0]
            variables = _ordered_weights(layer)
            chunk = arrays[at:at + len(variables)]
            ours = [tuple(v.shape) for v in variables]
            theirs = [tuple(a.shape) for a in chunk]
            if ours != theirs:
                report.mismatched.append((f"{layer.name} (file: {file_layer})", ours, theirs))
                report.missing += [la.name for la in queue[1:]]
                return report
            for var, value in zip(variables, chunk, strict=True):
                var.assign(value)
            _finalize(layer)
            report.loaded.append(layer.name)
            queue.pop(0)
            at += len(variables)
        if at < len(arrays):
            report.unused.append(file_layer)
    report.missing += [la.name for la in queue]
    return report


def _finalize(layer) -> None:
    # Normalization keeps constants made from its variables (Keras calls this after a load)
    if hasattr(layer, "finalize_state"):
        layer.finalize_state()


def _read_keras_archive(path: Path) -> dict[str, list]:
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
    return {
        layer.name: [v.numpy() if hasattr(v, "numpy") else v for v in layer.get_weights()]
        for layer in _all_layers(model)
        if layer.weights
    }


def _all_layers(model) -> list:
    """Leaf layers of a model, nested functional models flattened."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_all_layers(layer))
        else:
            out.append(layer)
    return out


# --------------------------------------------------------------------------- loading


def load_weights_file(
    model,
    path: str | os.PathLike,
    *,
    layers: list[str] | None = None,
    from_state_dict: StateDictConverter | None = None,
) -> LoadReport:
    """Load a weights file into ``model`` by layer name, checking every shape.

    Args:
        model: A built Keras model (nested models are flattened).
        path: ``.h5`` (legacy or Keras 3), ``.weights.h5``, ``.keras``, or a PyTorch ``.pth``
            with ``from_state_dict``.
        layers: Only consider these model layers (e.g. the backbone's); default all.
        from_state_dict: The architecture's map from PyTorch tensor names to its layers.

    Returns:
        A :class:`LoadReport`; nothing is set for a layer whose shapes differ.
    """
    path = Path(path)
    if path.suffix.lower() == ".h5" and path.exists() and _is_keras3_weights(path):
        return _load_structurally(model, path)
    stored = read_weights_file(path, from_state_dict=from_state_dict)
    report = LoadReport(source=str(path))
    wanted = set(layers) if layers is not None else None
    seen = set()
    for layer in _all_layers(model):
        if not layer.weights or (wanted is not None and layer.name not in wanted):
            continue
        seen.add(layer.name)
        if layer.name not in stored:
            report.missing.append(layer.name)
            continue
        ours = [tuple(w.shape) for w in _ordered_weights(layer)]
        values = stored[layer.name]
        theirs = [tuple(v.shape) for v in values]
        if ours != theirs:
            report.mismatched.append((layer.name, ours, theirs))
            continue
        for var, value in zip(_ordered_weights(layer), values, strict=True):
            var.assign(value)
        _finalize(layer)
        report.loaded.append(layer.name)
    report.unused = [n for n in stored if n not in seen]
    return report


def _load_structurally(model, path: Path) -> LoadReport:
    # Keras 3 ``.weights.h5`` files key variables by position, not layer name, so they only
    # load into the very same architecture.
    try:
        model.load_weights(path)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(
            f"{path} is a Keras 3 .weights.h5 file, which only loads into the same architecture "
            f"({type(exc).__name__}: {exc}). Use a .keras file (e.g. a run's model.keras) or a "
            "legacy .h5 file to load by layer name."
        ) from None
    return LoadReport(source=str(path), loaded=[x.name for x in _all_layers(model) if x.weights])


def _by_position(official: ImageNetWeights | None, path: Path) -> bool:
    """Whether ``path`` loads by order: a legacy ``.h5`` (keras.applications' layout) for an
    architecture whose official files load that way. A run's ``model.keras`` loads by name."""
    return bool(getattr(official, "by_position", False)) and is_legacy_h5(Path(path))


def _state_dict_map(official: ImageNetWeights | None) -> StateDictConverter | None:
    return getattr(official, "from_state_dict", None)


def _ordered_weights(layer) -> list:
    # Legacy files list trainable weights first, then non-trainable (BatchNorm moving stats).
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def load_builder_weights(
    model, weights: Any, *, official: ImageNetWeights | None, model_id: str, include_top: bool
) -> LoadReport:
    """Load ``weights`` ("imagenet" or a path) into a model a builder just made; all or nothing.

    Args:
        model: The freshly built model.
        weights: ``"imagenet"`` or a file path.
        official: The architecture's official files (None: it has none).
        model_id: Its registry id, for messages.
        include_top: Whether the model has the classifier (which official file fits).

    Raises:
        WeightsError: a layer of the model was not found in the file or has other shapes.
    """
    if weights == "imagenet":
        path = official_weights_path(official, include_top, model_id=model_id)
    elif isinstance(weights, (str, os.PathLike)):
        path = Path(weights)
    else:
        raise UserError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")
    if _by_position(official, path):
        report = load_by_position(model, path, layers=[la.name for la in model.layers])
        report.unused = []  # an official file's classifier, for a model without it
    else:
        report = load_weights_file(model, path, from_state_dict=_state_dict_map(official))
    if not report.complete:
        raise WeightsError(
            f"{path} does not fit {model.name}:\n{report.format()}\n"
            "Check include_top/classes match the file, or load partially with "
            "tlkit.weights.load_weights_file."
        )
    return report


def load_backbone_weights(
    model,
    source: str,
    *,
    official: ImageNetWeights | None,
    model_id: str,
    include_top: bool,
    head_layers: Collection[str],
    allow_partial: bool = False,
) -> LoadReport:
    """Load pretrained weights into a transfer model's backbone (its new head stays as built).

    Args:
        model: The transfer model.
        source: ``"imagenet"`` (the official file, through Keras' cache) or a file path
            (``.h5``, ``.weights.h5``, ``.keras``; a previous run's ``model.keras`` too, whose
            head loads when it fits).
        official: The backbone's official files (None: it has none).
        model_id: Its registry id, for messages.
        include_top: Load the official file with the classifier (the architecture's own head).
        head_layers: Names of the model's head layers: not looked for in an official file, and
            a head that a file does not fit is expected, not an error.
        allow_partial: Let backbone layers the file does not cover keep their initial values.

    Raises:
        WeightsError: the file is missing or, unless ``allow_partial``, leaves backbone layers
            unloaded (the message holds the load report).
    """
    head = set(head_layers)
    backbone = [la.name for la in _all_layers(model) if la.weights and la.name not in head]
    if source == "imagenet":
        path = official_weights_path(official, include_top, model_id=model_id)
        load = load_by_position if _by_position(official, path) else load_weights_file
        report = load(model, path, layers=backbone)
    elif _by_position(official, Path(source)):
        report = load_by_position(model, source, layers=backbone)
    else:
        if not Path(source).exists():
            raise WeightsError(f"weights file not found: {source}")
        report = load_weights_file(model, source, from_state_dict=_state_dict_map(official))
        report.mismatched = [m for m in report.mismatched if m[0] not in head]
        report.missing = [m for m in report.missing if m not in head]
    if not report.complete and not allow_partial:
        raise WeightsError(
            f"backbone layers were left unloaded from {report.source}:\n{report.format()}\n"
            "Fix the file, or set weights.allow_partial: true to train those layers from "
            "random values."
        )
    return report
