"""Run an exported model in its own runtime, with nothing of tlkit.

This file imports only the standard library, NumPy and the artifact's runtime (TensorFlow's
``tf.saved_model`` for a SavedModel, the LiteRT interpreter for ``.tflite``, onnxruntime for
``.onnx``). The parity gate runs it as a script in a fresh process, so an artifact that passes
is known to load and run where tlkit is not installed::

    python runtime.py ARTIFACT INPUTS.npy OUTPUT.npz

``INPUTS.npy`` is float32 ``[N, S, S, 3]`` raw RGB in 0..255 (the preprocessing contract's
model input); ``OUTPUT.npz`` gets ``probabilities [N, C]``, ``latency_ms`` (median per image at
batch 1) and ``load_seconds``. ``tlkit predict`` calls :func:`load_runner` in its own process.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

FORMATS_BY_SUFFIX = {".tflite": "tflite", ".onnx": "onnx"}


def artifact_format(path: str) -> str | None:
    """``saved_model``, ``tflite`` or ``onnx`` from an artifact's path, or None."""
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        return "saved_model"
    return FORMATS_BY_SUFFIX.get(os.path.splitext(path)[1].lower())


def load_runner(path: str):
    """A function ``float32 [N, S, S, 3] -> float32 [N, C]`` running the artifact at ``path``."""
    kind = artifact_format(path)
    if kind == "saved_model":
        return _saved_model(path)
    if kind == "tflite":
        return _tflite(path)
    if kind == "onnx":
        return _onnx(path)
    raise ValueError(f"{path} is not a SavedModel folder, a .tflite or an .onnx file")


def _saved_model(path: str):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]

    def run(batch):
        outputs = serve(**{name: tf.constant(batch, tf.float32)})
        (value,) = outputs.values()
        return value.numpy()

    return run


def _tflite(path: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the interpreter TensorFlow still ships
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from tensorflow.lite import Interpreter  # type: ignore[no-redef]

    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
    state = {"batch": None}
    (inp,) = interpreter.get_input_details()

    def run(batch):
        batch = np.asarray(batch, np.float32)
        if state["batch"] != len(batch):
            interpreter.resize_tensor_input(inp["index"], batch.shape)
            interpreter.allocate_tensors()
            state["batch"] = len(batch)
        details = interpreter.get_input_details()[0]
        if details["dtype"] != np.float32:  # a quantised input: real = scale * (q - zero)
            scale, zero = details["quantization"]
            info = np.iinfo(details["dtype"])
            batch = np.clip(np.round(batch / scale + zero), info.min, info.max)
            batch = batch.astype(details["dtype"])
        interpreter.set_tensor(details["index"], batch)
        interpreter.invoke()
        out = interpreter.get_output_details()[0]
        value = interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        return value.astype(np.float32)

    return run


def _onnx(path: str):
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch):
        return session.run(None, {name: np.asarray(batch, np.float32)})[0]

    return run


def run_all(run, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """``run`` over ``images`` in batches."""
    outputs = [run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def latency_ms(run, images: np.ndarray, count: int = 20) -> float:
    """Median milliseconds per image at batch 1, after one warm-up call."""
    if not len(images):
        return float("nan")
    run(images[:1])
    times = []
    for i in range(min(count, len(images))):
        start = time.perf_counter()
        run(images[i : i + 1])
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    artifact, inputs, output = argv
    images = np.load(inputs)
    start = time.perf_counter()
    run = load_runner(artifact)
    loaded = time.perf_counter() - start
    probabilities = run_all(run, images)
    np.savez(output, probabilities=probabilities, latency_ms=latency_ms(run, images),
             load_seconds=loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
