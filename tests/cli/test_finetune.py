"""End-to-end `tlkit finetune`, `predict` and `evaluate` on small generated folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import make_image_folder
from tlkit.cli.main import cli

FAST = ["--backbone", "resnet18", "--weights", "none", "--image-size", "32", "--batch-size", "16",
        "--set", "augment.preset=none", "--set", "train.verbose=0"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = make_image_folder(root / "data", classes=3, per_class=20)
    (data / "class_0" / "broken.jpg").write_bytes(b"")  # zero-byte
    (data / "class_1" / "notes.png").write_text("not an image")
    out = root / "run"
    result = invoke("finetune", *FAST, "--data", data, "--freeze", "none", "--epochs", "4",
                    "--lr", "0.003", "--output", out)
    assert result.exit_code == 0, result.output
    return data, out, result


def test_finetune_learns_well_above_chance(trained_run):
    _, out, _ = trained_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val"]["top1"] >= 0.8  # chance is 1/3
    assert len(metrics["history"]) == 4


def test_run_directory_has_every_output(trained_run):
    _, out, _ = trained_run
    for name in ("model.keras", "labels.json", "recipe.yaml", "metrics.json", "history.csv",
                 "curves.png", "confusion_matrix.png", "per_class_val.csv", "data_report.json",
                 "splits.csv", "state.json", "preprocessing.json", "calibration.json",
                 "reliability.png", "report.html"):
        assert (out / name).exists(), name
    labels = json.loads((out / "labels.json").read_text())["class_names"]
    assert labels == ["class_0", "class_1", "class_2"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pytest.importorskip("tensorboard")
    assert list((out / "tensorboard" / "validation").glob("events.out.tfevents.*"))


def test_broken_files_are_skipped_and_reported(trained_run):
    _, out, result = trained_run
    report = json.dumps(json.loads((out / "data_report.json").read_text()))
    assert "broken.jpg" in report and "notes.png" in report


def test_resolved_recipe_reproduces_the_run_settings(trained_run):
    from tlkit.recipes import resolve_recipe

    _, out, _ = trained_run
    recipe = resolve_recipe([out / "recipe.yaml"])
    assert recipe.model.backbone == "resnet18" and recipe.train.epochs == 4
    assert recipe.freeze.policy == "none"


def test_predict_and_evaluate(trained_run, tmp_path):
    data, out, _ = trained_run
    result = invoke("predict", out, data / "class_2", "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{"):])
    preds = payload["predictions"]
    assert len(preds) == 20 and all(len(p["top"]) == 2 for p in preds)
    hits = np.mean([p["top"][0]["label"] == "class_2" for p in preds])
    assert hits >= 0.8
    result = invoke("evaluate", out, "--data", data, "--output", tmp_path / "ev", "--json")
    assert result.exit_code == 0, result.output
    ev = json.loads(result.output[result.output.index("{"):])
    assert ev["count"] == 60 and ev["top1"] >= 0.8
    assert (tmp_path / "ev" / "confusion_matrix.png").exists()


def test_weights_from_a_previous_run(trained_run, tmp_path):
    data, out, _ = trained_run
    result = invoke("finetune", *FAST, "--data", data, "--weights", out / "model.keras",
                    "--freeze", "all", "--epochs", "1", "--output", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert "layers loaded" in result.output
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert metrics["val"]["top1"] >= 0.8  # starts from the trained backbone and head


def test_finished_explicit_output_is_not_overwritten(trained_run):
    data, out, _ = trained_run
    before = (out / "model.keras").stat().st_mtime
    result = invoke("finetune", *FAST, "--data", data, "--epochs", "1", "--output", out)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "model.keras").stat().st_mtime == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--backbone", "resnet5O"], "resnet50"),
        (["--set", "train.epochs=zero"], "train.epochs"),
        (["--data", "{missing}"], "does not exist"),
        (["--data", "{empty}"], "no images"),
        (["--data", "{single}"], "at least 2 classes"),
        (["--backbone", "alexnet", "--image-size", "32"], "67"),
    ],
)
def test_user_mistakes_exit_2_with_a_clear_message(tmp_path, args, needle):
    (tmp_path / "empty").mkdir()
    make_image_folder(tmp_path / "single", classes=1, per_class=6)
    two = make_image_folder(tmp_path / "two", classes=2, per_class=6)
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "single": tmp_path / "single"}
    args = [a.format(**paths) for a in args]
    base = ["--data", str(two)] if "--data" not in args else []  # only the mistake under test
    result = invoke("finetune", *FAST, *base, *args, "--epochs", "1", "--output", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert needle.lower() in result.output.lower(), result.output
    assert "Traceback" not in result.output


def test_imagenet_weights_offline_say_which_file(tmp_path, monkeypatch, image_folder):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")  # the offline path only, never the network
    result = invoke("finetune", "--backbone", "vgg16", "--weights", "imagenet", "--data",
                    image_folder, "--image-size", "32", "--epochs", "1",
                    "--output", tmp_path / "o")
    assert result.exit_code == 2
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in result.output
    assert str(tmp_path / "keras" / "models") in result.output


def test_official_format_file_loads_into_the_backbone(tmp_path, image_folder):
    """A keras.applications VGG16 written in the official .h5 layout loads through --weights."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    out = tmp_path / "run"
    result = invoke("finetune", "--backbone", "vgg16", "--weights", path, "--data", image_folder,
                    "--image-size", "32", "--freeze", "all", "--epochs", "1", "--batch-size", "16",
                    "--set", "augment.preset=none", "--set", "train.verbose=0", "--output", out)
    assert result.exit_code == 0, result.output
    assert "13 layers loaded, 0 missing, 0 mismatched" in result.output
    model = keras.saving.load_model(out / "model.keras")
    np.testing.assert_array_equal(model.get_layer("block3_conv2").get_weights()[0],
                                  reference.get_layer("block3_conv2").get_weights()[0])


def test_augment_on_the_model_device_and_pca_stats_in_the_run(tmp_path, image_folder):
    """augment.device=model puts the batched ops in the training model; the saved model has
    Keras' Identity in its place (nothing of tlkit to load). PCA colour statistics computed
    over the training set are stored in the run."""
    import keras
    import yaml

    out = tmp_path / "run"
    result = invoke("finetune", "--backbone", "lenet5", "--weights", "none", "--image-size", "32",
                    "--data", image_folder, "--freeze", "none", "--epochs", "1",
                    "--set", "augment.device=model", "--set", "augment.mirror.enabled=true",
                    "--set", "augment.pca_colour.enabled=true", "--set", "train.verbose=0",
                    "--output", out)
    assert result.exit_code == 0, result.output
    model = keras.saving.load_model(out / "model.keras")
    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    assert kinds["augmentation"] == "Identity" and "AugmentationLayer" not in kinds.values()
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))  # inactive
    stats = yaml.safe_load((out / "recipe.yaml").read_text())["augment"]["pca_colour"]["stats"]
    assert len(stats["eigvals"]) == 3
    assert json.loads((out / "pca_stats.json").read_text())["eigvals"] == stats["eigvals"]


def test_predict_in_a_fresh_process(trained_run):
    """The saved model loads where nothing of tlkit was imported before (custom layers)."""
    import subprocess
    import sys

    data, out, _ = trained_run
    image = sorted((data / "class_1").glob("*.png"))[0]
    proc = subprocess.run([sys.executable, "-m", "tlkit.cli.main", "predict", str(out), str(image),
                           "--top-k", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "class_1" in proc.stdout
