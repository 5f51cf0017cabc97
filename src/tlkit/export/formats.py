"""The export formats, one record each (:data:`FORMATS`): the file or folder a format writes,
the kind of artifact it is (and so the runtime that runs it, :data:`tlkit.runtime.RUNTIMES`),
its parity gate (:data:`GATES`) and its converter (:mod:`tlkit.export.convert`).

A new format is a converter, a record here and, for a new kind of artifact, a
:class:`tlkit.runtime.Runtime`; nothing else branches on a format's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlkit import runtime
from tlkit.export import convert

#: Parity gates by format class: minimum top-1 agreement, maximum absolute probability
#: difference, maximum top-1 accuracy lost (fraction).
GATES = {
    "float": {"min_agreement": 0.999, "max_abs_diff": 1e-4, "max_accuracy_drop": None},
    "fp16": {"min_agreement": 0.999, "max_abs_diff": 1e-2, "max_accuracy_drop": None},
    "int8": {"min_agreement": None, "max_abs_diff": None, "max_accuracy_drop": 0.01},
}


class Sources:
    """What the converters start from: the Keras model, one SavedModel of it (the exported one,
    or one written to ``scratch`` when a TFLite format needs it first) and int8's calibration.

    Args:
        model: The Keras model.
        scratch: A folder for intermediate files.
        calibration: ``() -> (() -> batches)``, called only for a format that calibrates.
    """

    def __init__(self, model, scratch: Path,
                 calibration: Callable[[], Callable[[], Iterable[np.ndarray]]]):
        self.model = model
        self.scratch = Path(scratch)
        self.calibration = calibration
        self.saved: Path | None = None

    def saved_model(self) -> Path:
        """The SavedModel the TFLite converter reads, written on first need."""
        if self.saved is None:
            self.saved = convert.saved_model(self.model, self.scratch / "saved_model")
        return self.saved


def _saved_model(sources: Sources, target: Path) -> Path:
    sources.saved = convert.saved_model(sources.model, target)
    return sources.saved


def _tflite(quantize: str) -> Callable[[Sources, Path], Path]:
    """TFLite's converter with ``quantize`` (see :func:`tlkit.export.convert.tflite`)."""

    def write(sources: Sources, target: Path) -> Path:
        saved = sources.saved_model()
        calibration = sources.calibration() if quantize == "int8" else None
        return convert.tflite(saved, target, sources.model, quantize=quantize,
                              calibration=calibration)

    return write


def _onnx(sources: Sources, target: Path) -> Path:
    return convert.onnx(sources.model, target)


@dataclass(frozen=True)
class Format:
    """One ``--format``.

    Attributes:
        name: The ``--format`` value.
        file: The file or folder it writes in the export folder.
        artifact: Its kind of artifact, a key of :data:`tlkit.runtime.RUNTIMES`.
        gate: Its parity class, a key of :data:`GATES`.
        write: ``(sources, target) -> target``: converts and writes the artifact atomically,
            or raises :class:`tlkit.export.convert.ExportError`.
    """

    name: str
    file: str
    artifact: str
    gate: str
    write: Callable[[Sources, Path], Path]

    @property
    def runtime(self) -> str:
        """What runs the artifact, as the report names it."""
        return runtime.RUNTIMES[self.artifact].label


#: Every export format, by ``--format`` value, in the order they are listed.
FORMATS = {f.name: f for f in (
    Format("saved_model", "saved_model", "saved_model", "float", _saved_model),
    Format("tflite", "model.tflite", "tflite", "float", _tflite("none")),
    Format("tflite_fp16", "model_fp16.tflite", "tflite", "fp16", _tflite("fp16")),
    Format("tflite_int8", "model_int8.tflite", "tflite", "int8", _tflite("int8")),
    Format("onnx", "model.onnx", "onnx", "float", _onnx),
)}
