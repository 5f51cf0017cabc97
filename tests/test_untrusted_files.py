"""Every command that takes a model file, given one that would run code: refused with exit 2,
naming the file, and nothing written; run only under ``--trust``.

The files: a SavedModel whose ``serving_default`` writes a file (``tf.io.write_file``), the
same op carried into a ``.tflite`` as a ``Flex`` op, an ``.onnx`` with a custom-domain op, a
PyTorch ``.pth`` whose pickle calls ``os.system``, and ``.keras``/``.h5`` files with the safe-mode
bypasses published against Keras (CVE-2025-1550, -8747, -9905, -9906, CVE-2026-1462), each
checked on the Keras that the pin admits.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from tests.conftest import make_image_folder
from tests.torch_writer import RunsCommand, Tensor, write_legacy, write_zip
from tlkit import runtime
from tlkit.cli.main import cli

SIZE = 8


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _beside(folder: Path) -> None:
    """labels.json and preprocessing.json as tlkit export writes them beside an artifact."""
    (folder / "labels.json").write_text(json.dumps({"class_names": ["class_0", "class_1"]}))
    (folder / "preprocessing.json").write_text(json.dumps({
        "version": 1, "decoder": "tensorflow", "colour": "RGB, 8 bits per channel",
        "input_size": SIZE, "resize": "squash", "normalisation": "tf"}))


class _Writer(tf.Module):
    """Probabilities from the mean colour; writes ``marker`` whenever it is called."""

    def __init__(self, marker: Path):
        super().__init__()
        self.marker = str(marker)

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32, name="image")])
    def serve(self, image):
        tf.io.write_file(self.marker, "code ran")
        return {"probabilities": tf.nn.softmax(tf.reduce_mean(image, axis=[1, 2])[:, :2])}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """``(folder, marker)``: a SavedModel, a .tflite and an .onnx that each write ``marker``
    (or need code outside their runtime), with the files tlkit export puts beside them."""
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / "code-ran"
    module = _Writer(marker)
    tf.saved_model.save(module, str(folder / "saved_model"),
                        signatures={"serving_default": module.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    (folder / "model.tflite").write_bytes(converter.convert())
    _onnx_with_custom_op(folder / "model.onnx")
    _beside(folder)
    assert not marker.exists()
    return folder, marker


def _onnx_with_custom_op(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("WriteFile", ["image"], ["probabilities"], domain="evil.ops")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("evil.ops", 1)])
    onnx.save(model, path)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), classes=2, per_class=2, size=SIZE)


def test_a_saved_model_that_writes_a_file_is_refused_by_predict_and_evaluate(hostile, images):
    folder, marker = hostile
    artifact = folder / "saved_model"
    for result in (invoke("predict", artifact, images),
                   invoke("evaluate", artifact, "--data", images)):
        assert result.exit_code == 2, result.output
        assert str(artifact) in result.output and "WriteFile" in result.output
        assert "--trust" in result.output and "Traceback" not in result.output
        assert not marker.exists()


def test_under_trust_the_same_saved_model_runs_and_its_op_writes(hostile, images):
    """The control: the payload above is live, so its refusal is what kept the file away."""
    folder, marker = hostile
    result = invoke("predict", folder / "saved_model", images, "--trust")
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "code ran"
    marker.unlink()


def test_a_tflite_with_a_flex_op_and_an_onnx_with_a_custom_op_are_refused(hostile, images):
    folder, marker = hostile
    for artifact, op in ((folder / "model.tflite", "FlexWriteFile"),
                         (folder / "model.onnx", "WriteFile (domain evil.ops)")):
        result = invoke("predict", artifact, images)
        assert result.exit_code == 2, result.output
        assert str(artifact) in result.output and op in result.output
    assert not marker.exists()


def test_onnx_external_data_outside_its_folder_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])], "g", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=[weight])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(runtime.UntrustedArtifact, match="outside its folder"):
        runtime.check_artifact(str(path))


def test_tlkits_own_saved_model_passes_the_check(tmp_path):
    """The list of ops is not so narrow that tlkit's own export fails it (every family's export
    was checked when the list was made; this keeps one in the suite)."""
    from tlkit.export.convert import saved_model
    from tlkit.models import build_model

    model = build_model("lenet5", input_shape=(32, 32, 3), classes=2, weights=None)
    runtime.check_artifact(str(saved_model(model, tmp_path / "saved_model")))


def test_a_keras_applications_export_with_gelu_passes_the_check(tmp_path):
    """ConvNeXt's exact GELU is ``Erfc`` in a SavedModel: arithmetic, so the check accepts
    tlkit's export of it (the smallest member at its smallest side, random weights)."""
    from tlkit.export.convert import saved_model
    from tlkit.models import build_transfer_model, get_model_info

    model = build_transfer_model(get_model_info("convnexttiny"), 2, image_size=32)
    runtime.check_artifact(str(saved_model(model, tmp_path / "saved_model")))


# ---------------------------------------------------------------- PyTorch pickles


@pytest.mark.parametrize("where", ["the whole object", "a tensor's place"])
@pytest.mark.parametrize("writer", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_a_pth_whose_pickle_calls_os_system_is_refused_everywhere(tmp_path, images, where, writer):
    marker = tmp_path / "ran"
    payload = RunsCommand(f"touch {marker}")
    state = payload if where == "the whole object" else {
        "_conv_stem.weight": Tensor("0", 0, (2,), (1,)), "_bn0.weight": payload}
    evil = writer(tmp_path / "evil.pth", state, {"0": np.zeros(2, np.float32)})
    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    commands = [
        ("finetune", "--backbone", "efficientnet_lite0", "--weights", evil, "--image-size", 32,
         "--data", data, "--output", tmp_path / "run"),
        ("predict", evil, images),
        ("evaluate", evil, "--data", images),
    ]
    for args in commands:
        result = invoke(*args)
        assert result.exit_code == 2, (args[0], result.output)
        assert str(evil) in result.output and "Traceback" not in result.output, result.output
        assert not marker.exists()


# ---------------------------------------------------------------- Keras safe mode


def _save_lambda_model(path: Path, marker: Path, size: int) -> None:
    """A model whose Lambda layer creates ``marker`` whenever its Python code runs, saved at
    ``path`` (``.keras`` or legacy ``.h5``); ``marker`` does not exist afterwards."""
    where = str(marker)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Lambda(lambda t: (open(where, "w").close(), t)[1],
                            output_shape=(size, size, 3), name="evil")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once, here


def _keras_file(tmp_path: Path, name: str, layer: dict) -> Path:
    """A valid .keras archive whose middle layer's entry in config.json is ``layer``."""
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="middle")(inputs)
    base = tmp_path / "base.keras"
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="predictions")(x)).save(base)
    with zipfile.ZipFile(base) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    config["config"]["layers"][1].update(layer)
    files["config.json"] = json.dumps(config).encode()
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    return path


def _lambda(function: dict, arguments: dict) -> dict:
    return {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": "middle", "trainable": True, "dtype": "float32",
                       "function": function, "arguments": arguments, "output_shape": None,
                       "mask": None}}


def _fn(module: str, name: str) -> dict:
    return {"module": module, "class_name": "function", "config": name, "registered_name": name}


def test_the_published_keras_safe_mode_bypasses_are_refused(tmp_path, images):
    """One file per published bypass, each through ``tlkit predict`` and ``--weights``."""
    marker = tmp_path / "code-ran"
    module = _Writer(marker)
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    _save_lambda_model(tmp_path / "lambda.h5", marker, SIZE)
    files = {
        # CVE-2025-1550: a function from any module, named in config.json
        "os.system": _keras_file(tmp_path, "os.keras", _lambda(_fn("os", "system"), {})),
        # CVE-2025-8747: a Keras function that downloads (here: copies a local file)
        "get_file": _keras_file(tmp_path, "get_file.keras", _lambda(
            _fn("keras.utils", "get_file"),
            {"origin": "file:///etc/hostname", "cache_dir": str(tmp_path), "cache_subdir": "dl"})),
        # CVE-2025-9906: turn safe mode off from inside the file
        "enable_unsafe_deserialization": _keras_file(tmp_path, "unsafe.keras", _lambda(
            _fn("keras.config", "enable_unsafe_deserialization"), {})),
        # CVE-2026-1462: a TFSMLayer that loads (and runs) an outside SavedModel
        "TFSMLayer": _keras_file(tmp_path, "tfsm.keras", {
            "module": "keras.layers", "class_name": "TFSMLayer", "registered_name": None,
            "config": {"name": "middle", "trainable": False, "dtype": "float32",
                       "filepath": str(tmp_path / "sm"), "call_endpoint": "serving_default"}}),
        # CVE-2025-9905: a Lambda's bytecode in a legacy .h5 model
        "Lambda": tmp_path / "lambda.h5",
    }
    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    for named, path in files.items():
        result = invoke("predict", path, images)
        assert result.exit_code == 2, (named, result.output)
        assert str(path) in result.output and named.split(".")[-1] in result.output, result.output
        if path.suffix == ".keras":  # --weights reads .keras archives through Keras too
            result = invoke("finetune", "--backbone", "lenet5", "--weights", path, "--data", data,
                            "--epochs", 1, "--output", tmp_path / f"run-{path.stem}")
            assert result.exit_code == 2, (named, result.output)
        assert not marker.exists() and not (tmp_path / "dl").exists(), named
    # the in-file call to enable_unsafe_deserialization did not stick either
    result = invoke("predict", tmp_path / "lambda.h5", images)
    assert result.exit_code == 2 and "Lambda" in result.output
    # the control: under --trust the Lambda's code is live and runs
    invoke("predict", tmp_path / "lambda.h5", images, "--trust")
    assert marker.exists()


def test_the_keras_pin_excludes_releases_with_known_bypasses():
    """pyproject's floor is at or above the release fixing the last published bypass
    (CVE-2026-1462, fixed in 3.14.0), and the installed Keras satisfies it."""
    import re
    from importlib import metadata

    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    floor = re.search(r'"keras>=([0-9.]+)', pyproject).group(1)
    as_tuple = lambda v: tuple(int(p) for p in v.split(".")[:3])  # noqa: E731
    assert as_tuple(floor) >= (3, 14, 0)
    assert as_tuple(metadata.version("keras")) >= as_tuple(floor)


def test_a_run_directory_holding_a_hostile_model_is_refused_by_every_command(
        tmp_path, hostile, images):
    """``model.keras`` with a Lambda inside a run directory (as a downloaded run would be),
    through every command that loads a run's model (``tlkit report`` loads it the same way,
    through ``load_trained``, after reading the run's recipe); and the file-writing SavedModel
    as ``--weights``, which takes Keras files and run directories only."""
    marker = tmp_path / "code-ran"
    run = tmp_path / "run"
    run.mkdir()
    _save_lambda_model(run / "model.keras", marker, 32)
    _beside(run)
    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    folder, sm_marker = hostile
    commands = [("export", run, "--format", "onnx"), ("predict", run, images),
                ("evaluate", run, "--data", images)]
    for weights in (run, folder / "saved_model"):
        commands += [(verb, "--backbone", "lenet5", "--weights", weights, "--data", data,
                      "--epochs", 1, "--output", tmp_path / f"out-{verb}-{weights.name}")
                     for verb in ("finetune", "pretrain")]
    for args in commands:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output, result.output
        assert not marker.exists() and not sm_marker.exists(), args
        expected = "no model.keras" if folder / "saved_model" in args else "Lambda"
        assert expected in result.output, (args, result.output)
