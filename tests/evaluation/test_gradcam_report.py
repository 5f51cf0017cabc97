"""Grad-CAM finds a synthetic object; report.html is self-contained, escaped, and renders in a
real browser."""

from __future__ import annotations

import json
import shutil
import subprocess

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tlkit.cli.main import cli
from tlkit.evaluation.gradcam import grad_cam, last_feature_map

EVIL = '<img src=x onerror=alert(1)> & "dogs"'


def _squares(n, rng, size=32):
    """Noise; class 1 has a bright 8x8 square somewhere (its position is returned)."""
    x = rng.uniform(0, 90, (n, size, size, 3)).astype("float32")
    y = rng.integers(0, 2, n)
    where = rng.integers(0, size - 8, (n, 2))
    for i in np.flatnonzero(y):
        r, c = where[i]
        x[i, r : r + 8, c : c + 8] = 255.0
    return x, y, where


def test_grad_cam_has_the_input_size_and_peaks_on_the_object():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y, _ = _squares(512, rng)
    inputs = keras.Input((32, 32, 3), name="image")
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    assert last_feature_map(model).name == "last_conv"
    tx, ty, where = _squares(64, np.random.default_rng(1))
    assert model.evaluate(tx, ty, verbose=0)[1] > 0.9
    positives = np.flatnonzero(ty == 1)
    cams = grad_cam(model, tx[positives], classes=[1] * len(positives))
    assert cams.shape == (len(positives), 32, 32) and cams.min() >= 0 and cams.max() <= 1
    hits = 0
    for cam, (r, c) in zip(cams, where[positives], strict=True):
        pr, pc = np.unravel_index(cam.argmax(), cam.shape)
        hits += (r - 4 <= pr < r + 12) and (c - 4 <= pc < c + 12)
    assert hits >= 0.8 * len(positives)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["plain", EVIL]):
        folder = root / "data" / name
        folder.mkdir(parents=True)
        for i in range(20):
            img = rng.normal(60 + 120 * c, 25, (32, 32, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    (root / "data" / "plain" / "broken.png").write_bytes(b"not an image")
    out = root / "run"
    result = CliRunner().invoke(cli, [
        "finetune", "--backbone", "resnet18", "--weights", "none", "--image-size", "32",
        "--batch-size", "16", "--data", str(root / "data"), "--epochs", "2",
        "--set", "augment.preset=none", "--set", "train.verbose=0", "--output", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


def test_finetune_writes_a_self_contained_escaped_report(run):
    out, result = run
    page = (out / "report.html").read_text()
    assert "report.html" in result.output
    for section in ("Summary", "Training", "training curves", "Calibration",
                    "Most confused pairs", "Highest-loss val images", "Grad-CAM", "Data",
                    "Data issues", "unreadable files skipped", "Resolved recipe"):
        assert section in page, section
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;dogs&quot;" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") >= 10
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["temperature"] > 0 and "ece_after" in calibration["val"]


def test_tlkit_report_rewrites_it_and_refuses_a_folder_that_is_no_run(run, tmp_path):
    out, _ = run
    (out / "report.html").unlink()
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file()
    bad = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert bad.exit_code == 2 and "not a finished run" in bad.output


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_report_renders_in_a_real_browser_offline(run, tmp_path):
    out, _ = run
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", (out / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-1000:]
    assert "Grad-CAM" in dom.stdout and "&lt;img src=x onerror=alert(1)&gt;" in dom.stdout
    assert 'onerror="alert' not in dom.stdout  # the class name stayed text, not an element
    shot = tmp_path / "page.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1100,2400",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # text, plots and images drawn, not a blank page


def test_every_architecture_in_the_zoo_has_a_spatial_map_for_grad_cam():
    from tlkit.models import build_transfer_model, get_model_info
    from tlkit.models.applications_data import FAMILIES  # one member a family: same builder
    from tlkit.models.registry import model_ids

    later = {m.id for family in FAMILIES for m in family.members[1:]}
    for model_id in [i for i in model_ids() if i not in later]:
        info = get_model_info(model_id)
        size = max(64, info.min_size)
        model = build_transfer_model(info, 3, image_size=size)
        layer = last_feature_map(model)
        assert layer.output.shape[1] * layer.output.shape[2] > 1, model_id
        cams = grad_cam(model, np.full((1, size, size, 3), 128.0, np.float32))
        assert cams.shape == (1, size, size), model_id


def test_a_fast_path_report_from_memory_equals_the_one_rebuilt_from_disk(run, tmp_path):
    # finetune writes the page from the model and val probabilities it holds in memory;
    # `tlkit report` loads model.keras and runs it on the images: the same page
    pretrained, _ = run
    out = tmp_path / "fast"
    result = CliRunner().invoke(cli, [
        "finetune", "--backbone", "resnet18", "--weights", str(pretrained), "--image-size", "32",
        "--batch-size", "16", "--data", str(pretrained.parent / "data"), "--freeze", "all",
        "--epochs", "2", "--set", "augment.preset=none", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["fast_path"]
    from_memory = (out / "report.html").read_text()
    assert CliRunner().invoke(cli, ["report", str(out)]).exit_code == 0
    assert (out / "report.html").read_text() == from_memory
