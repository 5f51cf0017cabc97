"""Run an exported model in its own runtime, with nothing of tlkit.

This file imports only the standard library, NumPy and the artifact's runtime (TensorFlow's
``tf.saved_model`` for a SavedModel, the LiteRT interpreter for ``.tflite``, onnxruntime for
``.onnx``). The parity gate runs it as a script in a fresh process, so an artifact that passes
is known to load and run where tlkit is not installed::

    python runtime.py ARTIFACT INPUTS.npy OUTPUT.npz

``INPUTS.npy`` is float32 ``[N, S, S, 3]`` raw RGB in 0..255 (the preprocessing contract's
model input); ``OUTPUT.npz`` gets ``probabilities [N, C]``, ``latency_ms`` (median per image at
batch 1) and ``load_seconds``. ``tlkit predict`` calls :func:`load_runner` in its own process.

An artifact is a program, not a table of numbers: a SavedModel's graph can write files
(``WriteFile``), print to one (``PrintV2``) or call back into Python (``PyFunc``); a ``.tflite``
can carry TensorFlow ops as ``Flex`` custom ops; an ``.onnx`` can name ops from a custom domain
and external data files anywhere on disk. So before anything is loaded, :func:`check_artifact`
reads the file as data (protobuf or flatbuffer) and refuses, with :class:`UntrustedArtifact`,
one that needs more than arithmetic on tensors:

- SavedModel: every op in every function the loader or a signature can run (the closure of the
  object graph's concrete functions) is in :data:`PURE_OPS`; the checkpoint's own save and
  restore functions, which only TF1 loaders run, may add :data:`SAVER_OPS`. A SavedModel
  without an object graph (TF1) is refused: its loader runs the main graph.
- TFLite: builtin operators only (no custom or ``Flex`` ops).
- ONNX: the standard domains only, and external data inside the model's folder.

``load_runner(path, trust=True)`` skips the check (``tlkit predict --trust``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: TensorFlow ops that compute on tensors and touch nothing outside the graph: what tlkit's and
#: Keras' exports of every tlkit family hold, and the common layers of other Keras models.
#: Missing on purpose: file, Python and summary ops (WriteFile, ReadFile, PyFunc, EagerPyFunc,
#: PrintV2, SaveV2, ImmutableConst, ...), datasets and queues.
PURE_OPS = frozenset("""
    Abs Add AddN AddV2 All Any ArgMax ArgMin Assert AssignAddVariableOp AssignSubVariableOp
    AssignVariableOp AvgPool AvgPool3D BatchMatMul BatchMatMulV2 BatchMatMulV3 BiasAdd
    BroadcastArgs BroadcastTo Cast Ceil CheckNumerics ClipByValue ConcatV2 Const Conv2D
    Conv2DBackpropInput Conv3D Cos Cumsum DepthToSpace DepthwiseConv2dNative DisableCopyOnRead
    DivNoNan Einsum Elu Equal Erf Exp ExpandDims Fill Floor FloorDiv FloorMod FusedBatchNorm
    FusedBatchNormV3 GatherNd GatherV2 Greater GreaterEqual Identity IdentityN If
    ImageProjectiveTransformV3 IsFinite L2Loss LRN LeakyRelu Less LessEqual Log Log1p LogSoftmax
    LogicalAnd LogicalNot LogicalOr MatMul Max MaxPool MaxPool3D MaxPoolV2 Maximum Mean Min
    Minimum MirrorPad Mul Neg NoOp NotEqual OneHot OnesLike Pack Pad PadV2 PartitionedCall
    Placeholder PlaceholderWithDefault Pow Prod RandomStandardNormal RandomUniform Range Rank
    ReadVariableOp RealDiv Reciprocal Relu Relu6 Reshape ResizeBilinear ResizeNearestNeighbor
    ReverseV2 Round Rsqrt Select SelectV2 Selu Shape ShapeN Sigmoid Sign Sin Size Slice Softmax
    Softplus Softsign SpaceToDepth Split SplitV Sqrt Square SquaredDifference Squeeze
    StatefulPartitionedCall StatelessIf StatelessRandomGetKeyCounter StatelessRandomNormalV2
    StatelessRandomUniformV2 StatelessWhile StopGradient StridedSlice Sub Sum Tanh TensorListFromTensor
    TensorListGetItem TensorListReserve TensorListSetItem TensorListStack Tile TopKV2 Transpose
    Unpack VarHandleOp VarIsInitializedOp While ZerosLike
    Acos Acosh Asin Asinh Atan Atan2 Atanh BitwiseAnd BitwiseOr BitwiseXor Bitcast Bucketize
    Cholesky Cosh CropAndResize Cumprod Dilation2D EnsureShape Expm1 ExtractImagePatches
    FakeQuantWithMinMaxVars FakeQuantWithMinMaxVarsPerChannel HSVToRGB InTopKV2 Invert
    LeftShift LinSpace LogMatrixDeterminant MatrixBandPart MatrixDeterminant MatrixDiagPartV3
    MatrixDiagV3 MatrixInverse MatrixSetDiagV3 MatrixSolve MatrixTriangularSolve Mod Qr
    RGBToHSV ResizeArea ResizeBicubic ReverseSequence RightShift ScatterNd SegmentSum
    SelfAdjointEigV2 Sinh Svd Tan TensorScatterAdd TensorScatterUpdate TruncateDiv
    TruncateMod Unique UnsortedSegmentSum Where Xdivy Xlogy
""".split()) | {
    "Erfc",  # 1 - erf(x), elementwise: Keras 3's exact GELU on TensorFlow (ConvNeXt's blocks)
}

#: What a SavedModel's checkpoint functions (``__inference__traced_save_*``/``_restore_*``) add:
#: allowed there only, never in a function a signature or the loader runs.
SAVER_OPS = frozenset("MergeV2Checkpoints RestoreV2 SaveV2 ShardedFilename StaticRegexFullMatch "
                      "StringJoin".split())

#: ONNX operator domains onnxruntime implements itself (no custom-op library).
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


class UntrustedArtifact(ValueError):
    """An artifact that asks for more than arithmetic on tensors (nothing in it was run)."""


def check_artifact(path: str) -> None:
    """Raise :class:`UntrustedArtifact` unless the artifact at ``path`` only computes on
    tensors (see the module's docstring); reads it as data, runs nothing."""
    kind = artifact_format(path)
    if kind:
        RUNTIMES[kind].check(path)


def _refuse(path: str, what: str) -> UntrustedArtifact:
    return UntrustedArtifact(
        f"{path}: {what}. A model file is a program; tlkit runs only those that compute on "
        "tensors and touch nothing else. If you made this file or trust who did, pass --trust.")


def _check_saved_model(path: str) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for graph in proto.meta_graphs:
        if not graph.object_graph_def.nodes:
            raise _refuse(path, "a TF1 SavedModel (no object graph): its loader runs the graph")
        library = {f.signature.name: f for f in graph.graph_def.library.function}
        served = _closure(graph.object_graph_def.concrete_functions, library)
        bad = _ops_outside(served, library, PURE_OPS)
        rest = [name for name in library if name not in served]
        bad += _ops_outside(rest, library, PURE_OPS | SAVER_OPS)
        bad += sorted({f"{n.op} (graph)" for n in graph.graph_def.node
                       if n.op not in PURE_OPS | SAVER_OPS})
        if bad:
            raise _refuse(path, "its graph has ops outside tlkit's list of ops that only "
                                "compute on tensors: " + ", ".join(sorted(set(bad))[:8]))


def _closure(roots, library) -> set[str]:
    """The library functions ``roots`` call, directly or through any node's function attrs."""
    seen, todo = set(), [name for name in roots if name in library]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in library[name].node_def:
            if node.op in library:
                todo.append(node.op)
            for attr in node.attr.values():
                names = [attr.func.name, *(f.name for f in attr.list.func)]
                todo += [n for n in names if n in library]
    return seen


def _ops_outside(functions, library, allowed) -> list[str]:
    return [f"{node.op} (in {name})" for name in functions for node in library[name].node_def
            if node.op not in allowed and node.op not in library]


def _check_tflite(path: str) -> None:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # the schema TensorFlow still ships
        from tensorflow.lite.python import schema_py_generated as schema  # type: ignore[no-redef]

    with open(path, "rb") as f:
        model = schema.Model.GetRootAsModel(f.read(), 0)
    custom = schema.BuiltinOperator.CUSTOM
    names = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == custom:
            names.add((code.CustomCode() or b"?").decode(errors="replace"))
    if names:
        raise _refuse(path, "it has custom operators, run by code outside TFLite's builtins: "
                            + ", ".join(sorted(names)))


def _check_onnx(path: str) -> None:
    import onnx

    model = onnx.load(path, load_external_data=False)
    graphs, bad = [model.graph], set()
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            if node.domain not in ONNX_DOMAINS:
                bad.add(f"{node.op_type} (domain {node.domain})")
            graphs += [a.g for a in node.attribute if a.HasField("g")]
            graphs += [g for a in node.attribute for g in a.graphs]
        for tensor in graph.initializer:
            for entry in tensor.external_data:
                where = os.path.normpath(entry.value) if entry.key == "location" else ""
                if os.path.isabs(where) or where.startswith(".."):
                    bad.add(f"external data outside its folder ({entry.value})")
    if bad:
        raise _refuse(path, "it needs more than onnxruntime's own operators: "
                            + ", ".join(sorted(bad)))


def artifact_format(path: str) -> str | None:
    """``saved_model``, ``tflite`` or ``onnx`` from an artifact's path, or None."""
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        return "saved_model"
    suffix = os.path.splitext(path)[1].lower()
    return next((r.kind for r in RUNTIMES.values() if r.suffix and r.suffix == suffix), None)


def load_runner(path: str, *, trust: bool = False):
    """A function ``float32 [N, S, S, 3] -> float32 [N, C]`` running the artifact at ``path``.

    Raises :class:`UntrustedArtifact` (having loaded nothing) for an artifact that is more than
    arithmetic on tensors, unless ``trust``.
    """
    kind = artifact_format(path)
    if not trust:
        check_artifact(path)
    if kind:
        return RUNTIMES[kind].load(path)
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


@dataclass(frozen=True)
class Runtime:
    """One kind of artifact: how its path is recognised, how it is checked and loaded, and
    what runs it.

    Attributes:
        kind: ``saved_model``, ``tflite`` or ``onnx`` (what :func:`artifact_format` returns).
        suffix: The file's suffix; empty for a folder (a SavedModel holds ``saved_model.pb``).
        label: The runtime, as the export report names it.
        check: Raises :class:`UntrustedArtifact` for more than arithmetic on tensors.
        load: ``path -> run``, a function ``float32 [N, S, S, 3] -> float32 [N, C]``.
    """

    kind: str
    suffix: str
    label: str
    check: Callable[[str], None]
    load: Callable[[str], Callable[[np.ndarray], np.ndarray]]


#: Every kind of artifact, by :attr:`Runtime.kind`.
RUNTIMES = {r.kind: r for r in (
    Runtime("saved_model", "", "TensorFlow (fresh process)", _check_saved_model, _saved_model),
    Runtime("tflite", ".tflite", "LiteRT interpreter", _check_tflite, _tflite),
    Runtime("onnx", ".onnx", "onnxruntime", _check_onnx, _onnx),
)}


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
    run = load_runner(artifact, trust=True)  # the gate's artifacts: just written by tlkit
    loaded = time.perf_counter() - start
    probabilities = run_all(run, images)
    np.savez(output, probabilities=probabilities, latency_ms=latency_ms(run, images),
             load_seconds=loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
