"""Where weights come from: official keras.applications files, local files, earlier tlkit runs.

Every load goes through :func:`load_weights_file`, which matches layers by name, checks shapes
and returns a :class:`LoadReport` (loaded, skipped, mismatched). Official ImageNet files come
through Keras' file cache (``$KERAS_HOME/models``, default ``~/.keras/models``) with their md5
hashes checked; offline, a missing file is a clear error that names the file and the folder,
never a silent fall-back to random weights.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import keras

import tlkit.layers  # noqa: F401 - registers tlkit's custom layers (for .keras files)
from tlkit.errors import UserError, WeightsError


@dataclass(frozen=True)
class OfficialWeights:
    """Where keras.applications keeps the ImageNet weights for an architecture.

    The registry entry of an architecture carries one (``ModelInfo.official_weights``); the
    functions here take it, so they never look an architecture up.

    Attributes:
        top: (file name, md5 hash) of the file with the classifier.
        notop: (file name, md5 hash) of the file without it.
        base_url: Folder URL the file names are appended to.
        cache_subdir: Keras cache folder (``~/.keras/<cache_subdir>``).
    """

    top: tuple[str, str]
    notop: tuple[str, str]
    base_url: str
    cache_subdir: str = "models"

    def file(self, include_top: bool) -> tuple[str, str]:
        return self.top if include_top else self.notop


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


# --------------------------------------------------------------------------- official files


def keras_cache_dir() -> Path:
    """Keras' cache folder (``$KERAS_HOME`` or ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()


def official_weights_path(
    official: OfficialWeights | None, include_top: bool, *, model_id: str, download: bool = True
) -> Path:
    """Return the local path of an architecture's official ImageNet file.

    Looks in Keras' cache first (checking the md5 hash), then downloads it through
    ``keras.utils.get_file`` unless ``download`` is False or ``TLKIT_OFFLINE=1``.

    Raises:
        WeightsError: the architecture has no official file, or the file is not on this
            machine and cannot be fetched (the message names the file and where to put it),
            or the cached file's hash is wrong.
    """
    if official is None:
        raise WeightsError(
            f"{model_id} has no official ImageNet weights (only vgg16, vgg19, resnet50, "
            "resnet101 and resnet152 do). Train from scratch with --weights none, or start from "
            f"a backbone you pretrained: --weights RUN_DIR after `tlkit pretrain --backbone "
            f"{model_id} --data LARGER_LABELLED_SET` (docs/transfer.md)."
        )
    fname, md5 = official.file(include_top)
    url = official.base_url + fname
    target = keras_cache_dir() / official.cache_subdir / fname
    place_it = (
        f"Download {url} and place it at {target} (md5 {md5}); or train from scratch with "
        "--weights none; or pretrain on a larger labelled set you have and transfer from it "
        f"(`tlkit pretrain --backbone {model_id} --data DATA`, then --weights RUN_DIR; "
        "docs/transfer.md)."
    )
    if target.exists():
        if _md5(target) != md5:
            raise WeightsError(f"{target} is corrupt (md5 differs from {md5}). {place_it}")
        return target
    if not download or os.environ.get("TLKIT_OFFLINE") == "1":
        raise WeightsError(f"ImageNet weights for {model_id} are not on this machine. {place_it}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(float(os.environ.get("TLKIT_DOWNLOAD_TIMEOUT", "30")))
    try:
        path = keras.utils.get_file(
            fname, url, cache_subdir=official.cache_subdir, file_hash=md5,
            cache_dir=str(keras_cache_dir()),
        )
    except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
        raise WeightsError(
            f"ImageNet weights for {model_id} are not on this machine and could not be "
            f"downloaded ({type(exc).__name__}: {exc}). {place_it}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return Path(path)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- reading files


def read_weights_file(path: str | os.PathLike) -> dict[str, list]:
    """Read a weights file into ``{layer name: [arrays]}``.

    Supports legacy Keras ``.h5`` (weights-only files such as the official ImageNet files, and
    whole-model ``.h5`` files), Keras 3 ``.weights.h5`` and ``.keras`` archives (including a
    tlkit run's ``model.keras``).
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    name = path.name.lower()
    if name.endswith(".keras"):
        return _read_keras_archive(path)
    if name.endswith(".h5") or name.endswith(".hdf5"):
        return _read_h5(path)
    raise WeightsError(f"unsupported weights file {path}: use .h5, .weights.h5 or .keras")


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
    model, path: str | os.PathLike, *, layers: list[str] | None = None
) -> LoadReport:
    """Load a weights file into ``model`` by layer name, checking every shape.

    Args:
        model: A built Keras model (nested models are flattened).
        path: ``.h5`` (legacy or Keras 3), ``.weights.h5`` or ``.keras``.
        layers: Only consider these model layers (e.g. the backbone's); default all.

    Returns:
        A :class:`LoadReport`; nothing is set for a layer whose shapes differ.
    """
    path = Path(path)
    if path.suffix.lower() == ".h5" and path.exists() and _is_keras3_weights(path):
        return _load_structurally(model, path)
    stored = read_weights_file(path)
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


def _ordered_weights(layer) -> list:
    # Legacy files list trainable weights first, then non-trainable (BatchNorm moving stats).
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def load_builder_weights(
    model, weights: Any, *, official: OfficialWeights | None, model_id: str, include_top: bool
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
    report = load_weights_file(model, path)
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
    official: OfficialWeights | None,
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
    if source == "imagenet":
        path = official_weights_path(official, include_top, model_id=model_id)
        backbone = [la.name for la in model.layers if la.weights and la.name not in head]
        report = load_weights_file(model, path, layers=backbone)
    else:
        if not Path(source).exists():
            raise WeightsError(f"weights file not found: {source}")
        report = load_weights_file(model, source)
        report.mismatched = [m for m in report.mismatched if m[0] not in head]
        report.missing = [m for m in report.missing if m not in head]
    if not report.complete and not allow_partial:
        raise WeightsError(
            f"backbone layers were left unloaded from {report.source}:\n{report.format()}\n"
            "Fix the file, or set weights.allow_partial: true to train those layers from "
            "random values."
        )
    return report
