"""Model files that travel: model.keras without tlkit, and `tlkit export` checked in the real
runtimes (a fresh TensorFlow process, the LiteRT interpreter, onnxruntime)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tlkit.cli.main import cli

ALL = "saved_model,tflite,tflite_fp16,tflite_int8,onnx"
ARTIFACTS = {"saved_model": "saved_model", "tflite": "model.tflite",
             "tflite_fp16": "model_fp16.tflite", "tflite_int8": "model_int8.tflite",
             "onnx": "model.onnx"}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _photos(root, classes=3, per_class=18, seed=0):
    """Non-square JPEG 'photos': a class colour with a class-specific bar, plus noise."""
    rng = np.random.default_rng(seed)
    colours = [(220, 40, 40), (40, 200, 60), (50, 60, 230)]
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            h, w = 36 + (i % 3) * 8, 52
            img = np.empty((h, w, 3), np.float32)
            img[:] = colours[c]
            img[:, 10 + 8 * c : 16 + 8 * c] = 255 - img[0, 0]
            img += rng.normal(0, 20, img.shape)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                folder / f"{i:02d}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained ResNet-18 (caffe preprocessing: ops.flip + Rescaling) on non-square JPEGs, with
    random crops (so evaluation is the centre 32 of 37)."""
    root = tmp_path_factory.mktemp("export")
    data = _photos(root / "data")
    out = root / "run"
    result = invoke("finetune", "--backbone", "resnet18", "--weights", "none", "--image-size",
                    "32", "--batch-size", "16", "--data", data, "--epochs", "3", "--lr", "0.003",
                    "--set", "augment.preset=light", "--set", "train.verbose=0", "--output", out)
    assert result.exit_code == 0, result.output
    return data, out


def test_run_stores_its_preprocessing_contract(run):
    _, out = run
    contract = json.loads((out / "preprocessing.json").read_text())
    assert contract["resize"] == "centre_crop" and contract["decoder"] == "tensorflow"
    assert (contract["input_size"], contract["eval_size"], contract["train_size"]) == (32, 37, 37)
    assert contract["normalisation"] == "caffe"


def test_model_keras_loads_without_tlkit_and_matches_predict(run, tmp_path):
    """A plain Keras process (tlkit never imported) loads model.keras and gives the
    probabilities `tlkit predict` gives on the same images."""
    from tlkit.contract import Contract
    from tlkit.data.images import load_for_model
    from tlkit.evaluation.scoring import predict_files

    data, out = run
    files = sorted((data / "class_2").glob("*.jpg"))[:5]
    arrays, _, _ = load_for_model(files, Contract.find(out / "model.keras", 32))
    np.save(tmp_path / "x.npy", np.stack(arrays).astype("float32"))
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras
        model = keras.models.load_model({str(out / "model.keras")!r})
        assert not [m for m in sys.modules if m.split(".")[0] == "tlkit"], "tlkit was imported"
        np.save({str(tmp_path / "p.npy")!r}, np.asarray(model(np.load({str(tmp_path / "x.npy")!r}))))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain = np.load(tmp_path / "p.npy")
    results, _ = predict_files(out, files, top_k=3)
    names = json.loads((out / "labels.json").read_text())["class_names"]
    for probs, result in zip(plain, results, strict=True):
        for top in result["top"]:
            assert abs(probs[names.index(top["label"])] - top["probability"]) < 1e-5


def test_import_tlkit_is_enough_for_custom_layers(tmp_path):
    """AlexNet's LRN is a tlkit layer: a fresh process loads the file after `import tlkit`
    (before Keras is imported), and not without it."""
    from tlkit.models import build_transfer_model, get_model_info

    model = build_transfer_model(get_model_info("alexnet"), 3, image_size=67)
    assert any(type(layer).__name__ == "LocalResponseNormalization" for layer in model.layers)
    path = tmp_path / "alexnet.keras"
    model.save(path)
    load = f"import keras; keras.models.load_model({str(path)!r}); print('loaded')"
    with_tlkit = subprocess.run([sys.executable, "-c", f"import tlkit; {load}"],
                                capture_output=True, text=True, timeout=300)
    assert with_tlkit.returncode == 0 and "loaded" in with_tlkit.stdout, with_tlkit.stderr[-2000:]
    without = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True,
                             timeout=300)
    assert without.returncode != 0 and "LocalResponseNormalization" in without.stderr


@pytest.fixture(scope="module")
def exported(run):
    _, out = run
    result = invoke("export", out, "--format", ALL)
    return out, result


def test_export_every_format_passes_its_parity_gate(exported):
    out, result = exported
    assert result.exit_code == 0, result.output
    report = json.loads((out / "export" / "export_report.json").read_text())
    assert report["passed"] and report["held_out"] == "val"
    checks = {c["format"]: c for c in report["checks"]}
    assert set(checks) == set(ARTIFACTS)
    for fmt, check in checks.items():
        assert (out / "export" / ARTIFACTS[fmt]).exists(), fmt
        assert check["images"] == report["images"] > 0
        assert check["size_mb"] > 0 and check["latency_ms"] > 0
        assert check["needs_trust"] is None, check["needs_trust"]  # predict takes it as it is
        if fmt != "tflite_int8":
            assert check["agreement"] >= 0.999, fmt
    assert checks["saved_model"]["runtime"] == "TensorFlow (fresh process)"
    assert checks["onnx"]["max_abs_diff"] <= 1e-4 and checks["tflite"]["max_abs_diff"] <= 1e-4
    assert checks["tflite_int8"]["keras_top1"] - checks["tflite_int8"]["top1"] <= 0.01
    # int8 answers as the model does, not only as well (this run's images are easy: all agree)
    assert checks["tflite_int8"]["agreement"] >= 0.9 and checks["tflite_int8"]["max_abs_diff"] < 0.2
    assert "agree %" in result.output and "tflite_int8" in result.output
    for name in ("labels.json", "preprocessing.json"):
        assert (out / "export" / name).read_text() == (out / name).read_text()


def test_predict_runs_each_artifact_like_the_run(exported, run):
    data, out = run
    files = [str(p) for p in sorted((data / "class_1").glob("*.jpg"))[:4]]
    reference = invoke("predict", out, *files, "--top-k", "1", "--json")
    assert reference.exit_code == 0, reference.output
    expected = [r["top"][0]["label"] for r in json.loads(reference.output)["predictions"]]
    for fmt in ("saved_model", "tflite", "onnx"):
        result = invoke("predict", out / "export" / ARTIFACTS[fmt], *files, "--top-k", "1",
                        "--json")
        assert result.exit_code == 0, result.output
        got = json.loads(result.output[result.output.index("{"):])["predictions"]
        assert [r["top"][0]["label"] for r in got] == expected, fmt


def _swap_classes(path):
    """Rewrite the ONNX file at ``path`` so that its classifier's kernel (ResNet-18's 512
    features -> 3 classes) has its columns rolled by one: class ``c``'s weights score ``c + 1``."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path))
    kernels = [init for init in graph.graph.initializer if tuple(init.dims) == (512, 3)]
    assert len(kernels) == 1, [tuple(init.dims) for init in graph.graph.initializer]
    kernel = numpy_helper.to_array(kernels[0])
    kernels[0].CopyFrom(numpy_helper.from_array(np.roll(kernel, 1, axis=1), kernels[0].name))
    onnx.save(graph, str(path))
    return path


def test_a_failed_gate_exits_1_and_keeps_the_artifact_marked(run, monkeypatch):
    """A real failing artifact, judged by the real gate: the ONNX file is written, then its
    classifier's columns are rolled (as a converter that mixed up the classes would leave it);
    the gate runs it in onnxruntime and finds it disagrees with the Keras model."""
    from tlkit.export import convert

    _, out = run
    written = convert.onnx
    monkeypatch.setattr(convert, "onnx", lambda model, path: _swap_classes(written(model, path)))
    target = out / "drift"
    result = invoke("export", out, "--format", "onnx", "--out", target, "--max-images", "8")
    assert result.exit_code == 1, result.output
    assert "failed the parity gate" in result.output and "FAIL" in result.output
    assert "onnx: top-1 agreement 0.00% is below 99.9%" in result.output
    assert "onnx: probabilities differ by up to" in result.output
    assert "passed the parity gate" not in result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("onnx ")]
    assert rows and all(row[-1] == "FAIL" for row in rows)  # the table's row: nothing passes
    assert (target / "model.FAILED-PARITY.onnx").is_file() and not (target / "model.onnx").exists()
    report = json.loads((target / "export_report.json").read_text())
    assert report["passed"] is False
    [check] = report["checks"]
    assert check["format"] == "onnx" and check["passed"] is False and check["failures"]
    assert check["agreement"] < 0.5 and check["max_abs_diff"] > 0.1  # it really disagrees
    assert check["path"].endswith("model.FAILED-PARITY.onnx")
    allowed = invoke("export", out, "--format", "onnx", "--out", target, "--max-images", "8",
                     "--allow-drift")
    assert allowed.exit_code == 0, allowed.output
    assert (target / "model.onnx").is_file() and not (target / "model.FAILED-PARITY.onnx").exists()
    assert json.loads((target / "export_report.json").read_text())["passed"] is False


def test_export_user_mistakes_exit_2(run, tmp_path):
    _, out = run
    bad = invoke("export", out, "--format", "tflite,coreml")
    assert bad.exit_code == 2 and "coreml" in bad.output and "Traceback" not in bad.output
    (tmp_path / "empty").mkdir()
    bare = invoke("export", tmp_path / "empty", "--format", "onnx")
    assert bare.exit_code == 2 and "not a finished run directory" in bare.output


def test_a_layer_tflite_cannot_convert_is_named(tmp_path):
    import keras
    from keras import ops

    from tlkit.export import ExportError, convert

    class Determinant(keras.layers.Layer):
        def call(self, x):
            return ops.reshape(ops.linalg.det(ops.reshape(x, (-1, 4, 4)) + ops.eye(4)), (-1, 1))

    inputs = keras.Input((16,), name="image")
    y = Determinant(name="odd_layer")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(y))
    saved = convert.saved_model(model, tmp_path / "saved_model")
    with pytest.raises(ExportError) as caught:
        convert.tflite(saved, tmp_path / "model.tflite", model)
    message = str(caught.value)
    assert "tf.MatrixDeterminant" in message and "odd_layer" in message
    assert len(message) < 300 and not (tmp_path / "model.tflite").exists()


def test_googlenet_auxiliary_classifiers_are_never_exported(tmp_path):
    from tlkit.export import convert
    from tlkit.models import build_transfer_model, get_model_info, inference_model
    from tlkit.models.heads import HeadConfig

    info = get_model_info("googlenet")
    model = build_transfer_model(info, 4, image_size=info.aux_min_size,
                                 head=HeadConfig(type="paper"), aux_classifiers=True)
    assert len(model.outputs) == 3
    served = inference_model(model)
    saved = convert.saved_model(served, tmp_path / "saved_model")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import tensorflow as tf
        serve = tf.saved_model.load({str(saved)!r}).signatures["serving_default"]
        print(sorted(serve.structured_outputs), serve.structured_outputs)
    """)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("TensorSpec") == 1 and "(None, 4)" in proc.stdout


def test_grouped_convolutions_are_refused_for_onnx_naming_the_layers(tmp_path):
    from tlkit.export import ExportError, convert
    from tlkit.models import build_transfer_model, get_model_info

    model = build_transfer_model(get_model_info("alexnet_2tower"), 3, image_size=67)
    with pytest.raises(ExportError) as caught:
        convert.onnx(model, tmp_path / "model.onnx")
    message = str(caught.value)
    assert "conv2, conv4, conv5" in message and "grouped" in message
    assert not (tmp_path / "model.onnx").exists()
