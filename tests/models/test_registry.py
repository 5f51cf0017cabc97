"""Registry-wide checks: every architecture builds, runs, round-trips and has sane facts."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from tlkit.errors import InputSizeError, UnknownNameError
from tlkit.models import get_model_info, model_ids
from tlkit.models.applications_data import FAMILIES

#: keras.applications' families: every member is keras' own function, built by one tlkit
#: builder; the first member of each stands for its family here (tests/models/
#: test_applications.py and the catalog, whose script builds every member, cover the rest).
LATER_MEMBERS = {m.id for family in FAMILIES for m in family.members[1:]}
IDS = [i for i in model_ids() if i not in LATER_MEMBERS]
OFFICIAL = {"vgg16", "vgg19", "resnet50", "resnet101", "resnet152",
            *(f"efficientnet_lite{v}" for v in range(5)),
            *(m.id for family in FAMILIES for m in family.members)}


def test_registry_has_every_architecture_of_the_notes():
    expected = {
        "lenet5", "alexnet", "zfnet", "vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19",
        "nin", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
        "plain18", "plain34", "plain50", "plain101", "plain152",
    }
    assert expected <= set(IDS)


@pytest.mark.parametrize("model_id", IDS)
def test_build_forward_roundtrip_and_facts(model_id, tmp_path):
    info = get_model_info(model_id)
    assert info.id == model_id and info.paper and info.description
    assert info.preprocessing in ("caffe", "tf", "torch", "none")
    assert 1 <= info.min_size <= info.default_size
    assert (info.official_weights is not None) == (model_id in OFFICIAL)

    size = max(info.min_size, 32)
    model = info.build(include_top=True, classes=7, input_shape=(size, size, info.channels))
    x = np.random.default_rng(0).uniform(0, 1, (2, size, size, info.channels)).astype("float32")
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, 7)
    assert np.isfinite(y).all()
    path = tmp_path / f"{model_id}.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(again(x, training=False)), y, atol=1e-5)

    names = [layer.name for layer in model.layers]
    for group in info.freeze_groups:
        assert any(re.search(group.pattern, n) for n in names), (model_id, group.name)
    backbone = info.build(include_top=False, input_shape=(size, size, info.channels))
    assert backbone.outputs[0].shape[-1] == info.feature_size


@pytest.mark.parametrize("model_id", ["alexnet", "zfnet", "vgg16", "googlenet", "resnet50"])
def test_below_minimum_size_names_the_minimum(model_id):
    info = get_model_info(model_id)
    with pytest.raises(InputSizeError, match=str(info.min_size)):
        info.build(include_top=False, input_shape=(info.min_size - 1, info.min_size - 1, 3))


def test_unknown_id_suggests_the_closest():
    with pytest.raises(UnknownNameError) as err:
        get_model_info("vgg61")
    assert "vgg16" in str(err.value)


def test_aliases_resolve():
    assert get_model_info("VGG-16").id == "vgg16"
    assert get_model_info("vgg_d").id == "vgg16"
    assert get_model_info("inception_v1").id == "googlenet"


def test_the_facts_are_read_without_keras():
    """Every entry, alias and the "did you mean" error without Keras or TensorFlow; a builder's
    module is imported when a model is first built, and its builder is the family module's."""
    import json
    import subprocess
    import sys

    probe = """if True:
        import json, sys
        from tlkit.errors import UnknownNameError
        from tlkit.models.registry import get_model_info, model_ids
        refs = sorted({get_model_info(i).builder.reference for i in model_ids()})
        assert get_model_info("VGG-16").id == "vgg16"
        try:
            get_model_info("vgg17")
        except UnknownNameError as exc:
            error = str(exc)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        json.dump({"refs": refs, "error": error, "heavy": heavy}, sys.stdout)
    """
    seen = json.loads(subprocess.check_output([sys.executable, "-c", probe], timeout=60))
    assert seen["heavy"] == [] and "vgg19" in seen["error"]
    for ref in seen["refs"]:
        module = ref.partition(":")[0]
        assert module.startswith("tlkit.models.") and not module.startswith("tlkit.models.facts")
    info = get_model_info("resnet18")
    assert info.builder.__name__ == "ResNet18"
    from tlkit.models.resnet import ResNet18

    assert info.builder.resolve() is ResNet18
