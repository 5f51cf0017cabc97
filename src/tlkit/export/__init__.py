"""``tlkit export``: a run's model as SavedModel, TFLite (float, float16, int8) and ONNX, each
checked in its own runtime against the Keras model before it is called done.

Every artifact takes what the run's ``model.keras`` takes: float32 ``[N, S, S, 3]`` raw RGB in
0..255, shaped by the run's preprocessing contract (``preprocessing.json``, copied beside the
artifacts with ``labels.json``; :mod:`tlkit.contract`). GoogLeNet's auxiliary classifiers are
never in it (``model.keras`` is the inference model).

The parity gate runs each artifact in a fresh process that imports nothing of tlkit
(:mod:`tlkit.runtime`) on the run's held-out images, and compares it with the Keras
model: top-1 agreement, each one's top-1 accuracy, the largest absolute probability
difference, size on disk and latency per image. The defaults (:data:`GATES`): float formats
agree on 99.9% of images with probabilities within 1e-4; float16 within 99.9% and 1e-2 (a
float16 weight is only good to about 1e-3 relative, so 1e-4 cannot hold); int8 loses at most
one point of top-1 accuracy. An artifact that fails is kept, renamed ``*.FAILED-PARITY*``, and
the export exits 1, unless ``allow_drift``.

Importing this package is cheap (``tlkit --help`` lists ``tlkit export``): the work is in
:mod:`tlkit.export.run`, which loads TensorFlow, imported when :func:`export_run` is first used.
"""

from __future__ import annotations

from tlkit.export.convert import ExportError
from tlkit.export.formats import FORMATS, GATES

__all__ = ["FORMATS", "GATES", "ExportError", "ExportReport", "export_run"]


def __getattr__(name: str):
    if name in ("ExportReport", "ArtifactCheck", "export_run", "read_report"):
        from tlkit.export import run  # TensorFlow only once an export is asked for

        return getattr(run, name)
    raise AttributeError(f"module 'tlkit.export' has no attribute {name!r}")
