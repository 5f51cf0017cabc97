"""Each policy freezes exactly what it says on VGG16, ResNet50 and GoogLeNet, checked by a
training step: frozen layers' weights do not move, every trainable layer's weights do."""

from __future__ import annotations

import pytest

from tlkit.errors import UnknownNameError, UserError
from tlkit.freeze import FreezeConfig, apply_freeze, plan_freeze
from tlkit.models import get_model_info

BACKBONE = "backbone"  # every layer before the head

# (model id, policy, images per class, resolved policy, name prefixes of the frozen layers)
CASES = [
    ("vgg16", "all", None, "all", BACKBONE),
    ("vgg16", "none", None, "none", ()),
    ("vgg16", 10, None, "10", ("block1_", "block2_", "block3_", "block4_")),
    ("vgg16", "block3", None, "block3", ("block1_", "block2_", "block3_")),
    ("vgg16", "auto", 25, "all", BACKBONE),
    ("vgg16", "auto", 300, "block4", ("block1_", "block2_", "block3_", "block4_")),
    ("vgg16", "auto", 5000, "none", ()),
    ("resnet50", "all", None, "all", BACKBONE),
    ("resnet50", "none", None, "none", ()),
    ("resnet50", "12", None, "13", ("conv1_", "conv2_", "conv3_block1_")),
    ("resnet50", "conv3", None, "conv3", ("conv1_", "conv2_", "conv3_")),
    (
        "resnet50",
        "conv4_block2",
        None,
        "conv4_block2",
        ("conv1_", "conv2_", "conv3_", "conv4_block1_", "conv4_block2_"),
    ),
    ("resnet50", "auto", 25, "all", BACKBONE),
    ("resnet50", "auto", 300, "conv4", ("conv1_", "conv2_", "conv3_", "conv4_")),
    ("resnet50", "auto", 1000, "none", ()),
    ("googlenet", "all", None, "all", BACKBONE),
    ("googlenet", "none", None, "none", ()),
    ("googlenet", 4, None, "5", ("conv1_", "conv2_", "inception3a_")),
    (
        "googlenet",
        "inception4c",
        None,
        "inception4c",
        ("conv1_", "conv2_", "inception3", "inception4a_", "inception4b_", "inception4c_"),
    ),
    ("googlenet", "auto", 99.5, "all", BACKBONE),
    ("googlenet", "auto", 300, "inception4", ("conv1_", "conv2_", "inception3", "inception4")),
    ("googlenet", "auto", 2000, "none", ()),
]


def is_head(name: str) -> bool:
    return name.startswith(("head_", "preprocess")) or name == "predictions"


def expected_frozen(model, prefixes) -> set[str]:
    names = [layer.name for layer in model.layers if layer.weights]
    if prefixes == BACKBONE:
        return {n for n in names if not is_head(n)}
    return {n for n in names if n.startswith(prefixes)}


@pytest.mark.parametrize(
    "model_id,policy,images,resolved,prefixes",
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES],
)
def test_policy_freezes_exactly_what_it_says(
    finetune_model, trained_changes, model_id, policy, images, resolved, prefixes
):
    model = finetune_model(model_id)
    info = get_model_info(model_id)
    decision = apply_freeze(
        model, info, policy, train_images_per_class=images, config=FreezeConfig(bn="train")
    )
    assert decision.policy == resolved
    frozen = expected_frozen(model, prefixes)
    weighted = {layer.name for layer in model.layers if layer.weights}
    assert frozen < weighted
    assert set(decision.frozen_layers) == frozen
    assert set(decision.trainable_layers) == weighted - frozen
    for layer in model.layers:
        if layer.weights:
            assert layer.trainable == (layer.name not in frozen), layer.name
    # Behaviour: exactly the trainable layers move in a training step.
    assert trained_changes(model) == weighted - frozen
    assert not model.compiled  # the engine never compiles


def test_auto_messages_say_why(finetune_model):
    model, info = finetune_model("vgg16"), get_model_info("vgg16")
    small = plan_freeze(model, info, "auto", train_images_per_class=25)
    assert small.message.startswith("auto: 25 images per class < 100 -> freeze all but the head")
    medium = plan_freeze(model, info, "auto", train_images_per_class=300)
    assert "auto: 300 images per class in [100, 1000)" in medium.message
    assert "through block4" in medium.message and "train block5 and the head" in medium.message
    large = plan_freeze(model, info, "auto", train_images_per_class=1000)
    assert large.message.startswith("auto: 1,000 images per class >= 1000 -> fine-tune")


def test_auto_thresholds_come_from_the_config(finetune_model):
    model, info = finetune_model("vgg16"), get_model_info("vgg16")
    config = FreezeConfig(auto={"small_per_class": 10, "large_per_class": 50})
    assert plan_freeze(model, info, "auto", train_images_per_class=25, config=config).policy == (
        "block4"
    )
    config = FreezeConfig(auto={"medium_frozen_fraction": 0.3})
    decision = plan_freeze(model, info, "auto", train_images_per_class=300, config=config)
    assert decision.policy == "block2"  # ceil(0.3 * 13) = 4 -> block2 (layers 3-4)


def test_auto_needs_an_image_count(finetune_model):
    with pytest.raises(UserError, match="images per class"):
        plan_freeze(finetune_model("vgg16"), get_model_info("vgg16"), "auto")


def test_policy_defaults_to_the_config(finetune_model):
    decision = plan_freeze(
        finetune_model("vgg16"), get_model_info("vgg16"), config=FreezeConfig(policy="block2")
    )
    assert decision.policy == "block2" and decision.frozen_weight_layers == 4


def test_n_messages(finetune_model):
    vgg = plan_freeze(finetune_model("vgg16"), get_model_info("vgg16"), "10")
    assert vgg.message == "froze the first 10 weight layers (through block4_conv3)"
    assert vgg.snapped_from is None and vgg.frozen_groups == [
        "block1",
        "block2",
        "block3",
        "block4",
    ]
    none = plan_freeze(finetune_model("vgg16"), get_model_info("vgg16"), 0)
    assert none.frozen_layers == [] and none.policy == "0"


def test_n_inside_a_residual_block_moves_to_its_end(finetune_model):
    decision = plan_freeze(finetune_model("resnet50"), get_model_info("resnet50"), 12)
    assert decision.snapped_from == 12 and decision.frozen_weight_layers == 13
    assert decision.message.startswith(
        "layer 12 is inside conv3_block1; moved the boundary to the end of the block (layer 13)"
    )
    # A boundary at a block's end, or in the stem, stays where it is.
    at_end = plan_freeze(finetune_model("resnet50"), get_model_info("resnet50"), 10)
    assert at_end.snapped_from is None and at_end.frozen_groups == ["stem", "conv2"]
    stem = plan_freeze(finetune_model("resnet50"), get_model_info("resnet50"), 1)
    assert set(stem.frozen_layers) >= {"conv1_conv", "conv1_bn"}
    assert "conv2_block1_0_conv" not in stem.frozen_layers


def test_n_inside_an_inception_module_moves_to_its_end(finetune_model):
    decision = plan_freeze(finetune_model("googlenet"), get_model_info("googlenet"), 14)
    # inception4d spans weight layers 14-15.
    assert decision.snapped_from == 14 and decision.policy == "15"
    assert "layer 14 is inside inception4d" in decision.message
    assert "through inception4d" in decision.message


def test_n_beyond_the_backbone_names_the_maximum(finetune_model):
    with pytest.raises(UserError, match=r"13 weight layers of vgg16.*use 0 to 13"):
        plan_freeze(finetune_model("vgg16"), get_model_info("vgg16"), 14)
    with pytest.raises(UserError, match="use 0 to 49"):
        plan_freeze(finetune_model("resnet50"), get_model_info("resnet50"), 50)


def test_unknown_block_lists_valid_names(finetune_model):
    with pytest.raises(UnknownNameError) as err:
        plan_freeze(finetune_model("resnet50"), get_model_info("resnet50"), "conv6")
    for name in ("conv2", "conv5", "stem", "conv4_block6", "all", "none"):
        assert name in err.value.valid
    assert "Valid:" in str(err.value)
    with pytest.raises(UnknownNameError, match="Did you mean: block4"):
        plan_freeze(finetune_model("vgg16"), get_model_info("vgg16"), "blok4")


def test_bad_policies_are_user_errors(finetune_model):
    model, info = finetune_model("vgg16"), get_model_info("vgg16")
    with pytest.raises(UserError, match="head always trains"):
        plan_freeze(model, info, "head")
    with pytest.raises(UserError, match="'fc' of vgg16 has no layers in this model"):
        plan_freeze(model, info, "fc")  # built without the top
    with pytest.raises(UserError, match="0 or more"):
        plan_freeze(model, info, -2)
    with pytest.raises(UserError, match="freeze policy must be"):
        plan_freeze(model, info, "block 4!")
