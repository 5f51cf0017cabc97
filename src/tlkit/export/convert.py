"""Converting a run's Keras model to SavedModel, TFLite (float, float16, int8) and ONNX (the
formats that use each converter: :mod:`tlkit.export.formats`).

Each function writes one artifact atomically (a temporary name, then a rename) and raises
:class:`ExportError` with the converter's own reason, and the model layer it names when it
names one, instead of the converter's trace.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tlkit.errors import TlkitError


class ExportError(TlkitError):
    """A model that a converter cannot turn into a format (exit 1)."""


def _reason(exc: BaseException, layer_names: Iterable[str]) -> str:
    """The converter's message boiled down: the operations it has no kernel for, the model layer
    they belong to (converters name ops by their graph path, ``model/layer_1/Op``), or else its
    first telling line."""
    text = str(exc) or type(exc).__name__
    missing = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text)))
    missing += sorted(set(re.findall(r"[Uu]nsupported (?:ops?|operator)[: ]+([\w.]+)", text)))
    layers = [name for name in layer_names
              if re.search(rf"/{re.escape(name)}(?:_\d+)?/", text)]
    where = f" (in layer {', '.join(layers)})" if layers else ""
    if missing:
        return f"no built-in operation for {', '.join(missing)}{where}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    telling = [
        line for line in lines
        if re.search(r"error|not supported|unsupported|failed|cannot|could not", line, re.I)
    ] or lines[:1]
    return f"{telling[0][:300]}{where}"


def _fail(fmt: str, exc: BaseException, model) -> ExportError:
    names = [layer.name for layer in model.layers]
    return ExportError(f"cannot export to {fmt}: {_reason(exc, names)}")


@contextlib.contextmanager
def _quiet_stderr():
    """Converters print MLIR diagnostics straight to file descriptor 2; hold them back (the
    exception carries what matters)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _replace(tmp: Path, final: Path) -> None:
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()
    os.replace(tmp, final)


def saved_model(model, path: Path) -> Path:
    """A SavedModel with a ``serving_default`` signature (and ``serve``, as Keras'
    ``model.export`` writes): float32 ``[N, S, S, 3]`` raw RGB in, probabilities out; each
    weight stored once."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=".saved_model-", dir=path.parent))
    shutil.rmtree(tmp)
    try:
        _export_archive(model).write_out(str(tmp), verbose=False)
    except Exception as exc:  # noqa: BLE001 - converters raise anything
        shutil.rmtree(tmp, ignore_errors=True)
        raise _fail("saved_model", exc, model) from None
    _replace(tmp, path)
    return path


def _export_archive(model):
    """What ``model.export(format="tf_saved_model")`` builds, less its second copy of every
    weight: its ``track(model)`` lists the ``keras.Variable`` wrappers while the endpoint
    captures the ``tf.Variable`` inside each, two objects that TensorFlow's checkpoint writes
    twice (keras-team/keras#23553; a ResNet-18 took 87 MB against TFLite's 43 MB). The endpoint
    alone tracks what it uses; the collections hold those same ``tf.Variable`` objects, so a
    reloaded artifact still has ``.variables`` without a byte more."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    spec = keras.tree.map_structure(
        lambda t: tf.TensorSpec(t.shape, t.dtype, name=t.name), model.input)
    archive.add_endpoint("serve", model.__call__, input_signature=[spec])
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        archive.add_variable_collection(name, [v.value for v in getattr(model, name)])
    return archive


def tflite(saved: Path, path: Path, model, *, quantize: str = "none",
           calibration: Callable[[], Iterable[np.ndarray]] | None = None) -> Path:
    """TFLite from a SavedModel: ``quantize`` ``none``, ``fp16`` (float16 weights) or ``int8``
    (weights and activations int8, calibrated on ``calibration()``'s batches; float32 input and
    output, so the model still takes raw RGB)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if calibration is None:
            raise ValueError("int8 needs calibration data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([b] for b in calibration())
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        with warnings.catch_warnings(), _quiet_stderr():
            warnings.simplefilter("ignore")
            flat = converter.convert()
    except Exception as exc:  # noqa: BLE001
        raise _fail(f"tflite ({quantize})" if quantize != "none" else "tflite", exc, model) from None
    _write_bytes(Path(path), flat)
    return Path(path)


def onnx(model, path: Path) -> Path:
    """ONNX through Keras' own exporter (tf2onnx underneath), opset chosen by Keras."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    model(np.zeros((1, *model.inputs[0].shape[1:]), "float32"))  # Keras exports called models
    try:
        with warnings.catch_warnings(), _quiet_stderr():
            warnings.simplefilter("ignore")
            model.export(str(tmp), format="onnx", verbose=False)
    except ImportError as exc:
        raise ExportError(
            f"cannot export to onnx: {exc}. Install the export extra: "
            "python3 -m pip install 'tlkit[export]'"
        ) from None
    except Exception as exc:  # noqa: BLE001
        tmp.unlink(missing_ok=True)
        raise _fail("onnx", exc, model) from None
    try:
        _check_onnx_graph(tmp, model)
    except ExportError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def _check_onnx_graph(path: Path, model) -> None:
    """tf2onnx leaves what it cannot convert as TensorFlow function calls, which no ONNX
    runtime runs (Keras 3's grouped ``Conv2D`` is one): refuse them here, naming the layers."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    calls = [n.name for n in graph.node if n.op_type in ("StatefulPartitionedCall",
                                                          "PartitionedCall")]
    if not calls:
        return
    names = [layer.name for layer in model.layers]
    layers = [n for n in names if any(re.search(rf"/{re.escape(n)}(?:_\d+)?/", c) for c in calls)]
    grouped = [n for n in layers if getattr(model.get_layer(n), "groups", 1) > 1]
    why = " (grouped convolutions: tf2onnx cannot convert Conv2D(groups>1))" if grouped else ""
    raise ExportError(f"cannot export to onnx: {len(calls)} TensorFlow function call(s) left "
                      f"unconverted in layer {', '.join(layers) or '?'}{why}; TFLite and "
                      "SavedModel exports of this model work")


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def size_bytes(path: Path) -> int:
    """Bytes on disk of a file or of everything in a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
