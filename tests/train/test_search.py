"""The freeze search: how it picks, and that it picks right on a case built to have an answer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.conftest import make_image_folder
from tlkit.data import prepare_data
from tlkit.data.config import DataConfig
from tlkit.freeze.freezer import Freezer
from tlkit.models.heads import build_transfer_model
from tlkit.models.registry import get_model_info
from tlkit.train.config import OptimizerConfig
from tlkit.train.search import Candidate, SearchResult, default_search_epochs, pick, search_freeze


def test_pick_prefers_accuracy_then_the_rule_then_loss_then_the_cheaper():
    c = [Candidate("all", 0.80, 0.50), Candidate("conv4", 0.90, 0.40),
         Candidate("none", 0.90, 0.30)]
    assert pick(c, "all").policy == "none"  # the rule is beaten; same accuracy, lower loss
    assert pick(c, "conv4").policy == "conv4"  # evidence must beat the rule, not tie it
    assert pick([Candidate("all", 0.7, 0.9), Candidate("none", 0.8, 2.0)], "all").policy == "none"
    tie = [Candidate("all", 0.9, 0.3), Candidate("conv4", 0.9, 0.3), Candidate("none", 0.9, 0.3)]
    assert pick(tie, "conv2").policy == "all"  # a full tie: the earlier, more frozen one
    # Keras' float32 accuracy of 8/10 is 0.800000011...: still a tie with the solver's 0.8.
    f32 = [Candidate("all", 0.8, 0.7), Candidate("conv2", float(np.float32(0.8)), 0.5)]
    assert pick(f32, "all").policy == "all"
    skipped = [Candidate("all", 0.5, 1.0), Candidate("conv4", note="skipped: ...")]
    assert pick(skipped, "conv4").policy == "all"
    with pytest.raises(ValueError):
        pick([Candidate("all")], "all")


def test_search_result_round_trips_and_prints_a_table():
    result = SearchResult("conv4", "all", [Candidate("all", 0.8, 0.5, 0, 0.1, 99, "solver"),
                                            Candidate("conv4", 0.9, 0.4, 3, 2.0, 1234)],
                          search_images=30, holdout_images=10, epochs_each=3, reason="best")
    again = SearchResult.from_dict(result.to_dict())
    assert again == result
    table = result.table()
    assert "<- chosen" in table.splitlines()[3] and "(rule)" in table.splitlines()[2]
    assert "1,234" in table and "30 images to train, 10 held out" in table


def test_default_budget_is_a_third_of_the_epochs():
    assert default_search_epochs(15) == 5 and default_search_epochs(2) == 2


@pytest.fixture(scope="module")
def digits_like(tmp_path_factory):
    folder = make_image_folder(tmp_path_factory.mktemp("search") / "d", classes=3, per_class=24)
    return prepare_data(DataConfig(source=str(folder), val_split=0.1), seed=0, progress=False)


def _lenet(broken: bool):
    keras.utils.set_random_seed(0)
    info = get_model_info("lenet5")
    model = build_transfer_model(info, 3, image_size=32)
    if broken:
        # The "pretrained" last group outputs a constant: its kernel is zero, its bias positive
        # (so gradients still flow). Frozen, its features say nothing; trained, they recover.
        c5 = model.get_layer("c5")
        kernel, bias = c5.get_weights()
        c5.set_weights([np.zeros_like(kernel), np.full_like(bias, 0.1)])
    return model, info


def _search(model, info, bundle, epochs=8):
    freezer = Freezer(model, info, train_images_per_class=20, pretrained=True)
    before = [w.copy() for w in model.get_weights()]
    flags = [layer.trainable for layer in model.layers]
    result = search_freeze(
        model, freezer, bundle.train, num_classes=3, image_size=32, batch_size=16,
        optimizer=OptimizerConfig(name="adam"), lr=3e-3, epochs=epochs, holdout=0.25, seed=0,
        log=lambda m: None,
    )
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert flags == [layer.trainable for layer in model.layers]  # left as it was
    return result, freezer


def test_search_unfreezes_a_group_whose_features_are_useless(digits_like):
    model, info = _lenet(broken=True)
    result, freezer = _search(model, info, digits_like)
    scores = {c.policy: c.accuracy for c in result.candidates}
    assert [c.policy for c in result.candidates] == freezer.candidates()
    assert freezer.rule()[0] == "all" and result.prior == "all"
    assert scores["all"] <= 0.5  # constant features: the solver's head can only guess
    assert result.chosen != "all"
    assert scores[result.chosen] >= 0.9 and "the rule said all" in result.reason


def test_search_keeps_the_frozen_backbone_when_its_features_suffice(digits_like):
    model, info = _lenet(broken=False)  # random but informative features of coloured stripes
    result, _ = _search(model, info, digits_like, epochs=2)
    scores = {c.policy: c.accuracy for c in result.candidates}
    assert scores["all"] == 1.0 and result.chosen == "all"
