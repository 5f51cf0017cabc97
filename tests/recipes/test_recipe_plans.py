"""Every shipped recipe resolves to a sensible plan, not only a valid file.

For each recipe, its model is built and its freeze stages are planned as a run would plan them:
with random weights (``--weights none``, or the recipe's own ``none``) nothing is frozen and
BatchNorm trains; with pretrained weights ``auto`` follows the rule the recipe's regime is for
and BatchNorm of the pretrained layers stays in inference mode.
"""

from __future__ import annotations

import functools

import keras
import pytest

from tlkit.freeze.freezer import Freezer
from tlkit.models.heads import HeadConfig, build_transfer_model
from tlkit.models.registry import get_model_info
from tlkit.recipes import resolve_backbone, resolve_recipe, shipped_recipes
from tlkit.recipes.loader import REGIME_THRESHOLDS

SHIPPED = sorted(shipped_recipes())
#: Training images per class a recipe of each regime is written for.
PER_CLASS = {"small": 20, "medium": 300, "large": 3000}


def regime(name: str) -> str | None:
    return next((r for r in PER_CLASS if name.endswith(f"-{r}")), None)


@functools.lru_cache(maxsize=4)
def model_for(backbone: str, head: str):
    info = get_model_info(backbone)
    size = info.default_size if head == "paper" else info.min_size
    keras.backend.clear_session()
    return build_transfer_model(info, 3, image_size=size, head=HeadConfig(type=head)), info


def _bn(model) -> set[str]:
    return {la.name for la in model.layers if isinstance(la, keras.layers.BatchNormalization)}


def _plans(name: str, recipe, pretrained: bool):
    recipe = resolve_backbone(recipe, log=lambda _: None)  # a recipe without one: auto
    model, info = model_for(recipe.model.backbone, recipe.model.head.type)
    per_class = PER_CLASS.get(regime(name) or "", 20)
    freezer = Freezer(model, info, recipe.freeze, train_images_per_class=per_class,
                      pretrained=pretrained)
    stages = recipe.freeze.effective_stages(recipe.train.epochs)
    return model, freezer, [freezer.plan(s.policy) for s in stages]


@pytest.mark.parametrize("name", SHIPPED)
def test_random_weights_train_everything_and_batchnorm(name):
    recipe = resolve_recipe([name], sets=["weights.source=none"])
    model, freezer, plans = _plans(name, recipe, pretrained=False)
    for decision in plans:
        assert decision.frozen_layers == [], (name, decision.message)
        assert decision.bn == "train", name
        assert _bn(model) <= set(decision.trainable_layers)
    assert freezer.lr_multipliers() == {}  # pretrained_lr is for pretrained layers only


@pytest.mark.parametrize("name", [n for n in SHIPPED if regime(n)])
def test_pretrained_auto_follows_the_regime_rule(name):
    recipe = resolve_recipe([name])
    assert recipe.freeze.policy == "auto" and not recipe.freeze.stages
    assert recipe.freeze.auto.search and recipe.freeze.linear_probe
    model, freezer, (decision,) = _plans(name, recipe, pretrained=True)
    expected = {"small": "all", "medium": None, "large": "none"}[regime(name)]
    rule = freezer.rule()[0]
    if expected:
        assert rule == expected, (name, rule)
    else:  # medium: a group boundary, neither end
        assert rule in freezer.candidates()[1:-1], (name, rule)
    assert decision.bn == "frozen"
    assert not _bn(model) & set(decision.trainable_layers)
    assert rule in freezer.candidates()


def test_regime_images_per_class_match_the_rule_thresholds():
    small, large = REGIME_THRESHOLDS
    assert PER_CLASS["small"] < small <= PER_CLASS["medium"] < large <= PER_CLASS["large"]


@pytest.mark.parametrize("name", [n for n in SHIPPED if not regime(n)])
def test_recipes_without_pretrained_weights_as_shipped_are_consistent(name):
    recipe = resolve_recipe([name])
    if recipe.weights.source != "none":
        pytest.skip("pretrained as shipped: covered with --weights none above")
    model, _, plans = _plans(name, recipe, pretrained=False)
    assert all(d.frozen_layers == [] and d.bn == "train" for d in plans), name
