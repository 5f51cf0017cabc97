"""``freeze: auto`` decides once, in one function, for `tlkit plan` and `tlkit finetune` alike;
and the evidence it weighs counts its own noise."""

from __future__ import annotations

import numpy as np
import pytest

from tlkit.finetune.evidence import HopelessStop, judge, per_image_loss
from tlkit.finetune.freeze_choice import decide
from tlkit.freeze.config import FreezeConfig
from tlkit.train.plan import Stage, TrainPlan


class _Freezer:
    """What :func:`decide` asks of a freezer."""

    def __init__(self, per_class, pretrained=True, rule="all"):
        self.train_images_per_class, self.pretrained, self._rule = per_class, pretrained, rule

    def rule(self):
        return self._rule, f"auto: {self.train_images_per_class} images per class -> {self._rule}"

    def candidates(self):
        return ["all", "conv4", "none"]


def _plan(policy="auto"):
    from tlkit.train.config import OptimizerConfig, ScheduleConfig

    return TrainPlan(stages=(Stage(policy, 10, 1e-3),), steps_per_epoch=1, batch_size=8,
                     optimizer=OptimizerConfig(), schedule=ScheduleConfig())


def _decide(per_class, *, freeze=None, pretrained=True, rule="all", linear=True, multi=False,
            policy="auto"):
    return decide(FreezeConfig(**(freeze or {})), _plan(policy), _Freezer(per_class, pretrained, rule),
                  linear=linear, multi_worker=multi)


def test_small_folders_keep_the_frozen_backbone_without_trying():
    d = _decide(20)
    assert (d.policy, d.method, d.candidate) == ("all", "rule", None)
    assert "finetune_from" in d.why


def test_from_finetune_from_fine_tuning_is_weighed_against_the_frozen_backbone():
    d = _decide(60)
    assert (d.policy, d.method, d.prior, d.candidate) == ("none", "evidence", "all", "none")
    medium = _decide(300, rule="conv4")  # the rule fine-tunes: it is the candidate and the prior
    assert (medium.policy, medium.prior, medium.candidate) == ("conv4", "conv4", "conv4")
    assert _decide(20, freeze={"auto": {"finetune_from": 0}}).method == "evidence"


@pytest.mark.parametrize("case, expected", [
    ({"freeze": {"auto": {"search": "off"}}}, "rule"),
    ({"freeze": {"auto": {"search": False}}}, "rule"),
    ({"freeze": {"auto": {"search": "grid"}}}, "grid"),
    ({"linear": False}, "rule"),
    ({"multi": True}, "rule"),  # the drift `tlkit plan` had: now one function for both
    ({"pretrained": False}, "random"),
    ({"policy": "all"}, "fixed"),
    ({"freeze": {"stages": [{"policy": "all", "epochs": 1}]}}, "stages"),
])
def test_every_way_the_decision_goes(case, expected):
    assert _decide(200, **case).method == expected


def test_judge_needs_more_than_noise_to_overrule_the_rule():
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 4
    truth = np.eye(4)[labels]

    def model(confidence, noise):
        p = truth * confidence + (1 - confidence) / 4 + rng.uniform(0, noise, (200, 4))
        return p / p.sum(1, keepdims=True)

    frozen = model(0.6, 0.2)
    slightly = model(0.61, 0.2)  # barely better: within noise
    clearly = model(0.9, 0.05)
    chosen, mean, se, why = judge(frozen, slightly, labels, prior="all", candidate="none",
                                  margin_se=2.0)
    assert chosen == "all" and "not the 2 needed" in why
    chosen, mean, se, why = judge(frozen, clearly, labels, prior="all", candidate="none",
                                  margin_se=2.0)
    assert chosen == "none" and mean > 2 * se > 0
    # the prior only needs to be better, not significantly so
    assert judge(clearly, frozen, labels, prior="all", candidate="none", margin_se=2.0)[0] == "all"
    # two perfect models: no difference
    assert judge(truth, truth, labels, prior="all", candidate="none", margin_se=0.0)[0] == "all"
    assert per_image_loss(truth, labels).max() < 1e-9


def test_hopeless_fine_tuning_is_stopped_after_half_its_epochs():
    class T:
        def __init__(self):
            from types import SimpleNamespace

            self.state = SimpleNamespace(epoch=0, stopped_early=False)
            self.stop_training = False
            self.messages = []

        def log(self, m):
            self.messages.append(m)

    stop = HopelessStop(reference=0.5, se=0.05, margin=3.0, after=5)
    t = T()
    stop.bind(t)
    for epoch, loss in enumerate([2.0, 1.5, 1.2, 0.9, 0.8, 0.7], start=1):
        t.state.epoch = epoch
        stop.on_epoch_end(epoch - 1, {"val_loss": loss})
        if epoch < 5:  # a dip at the start is allowed
            assert not t.stop_training
    assert t.stop_training and stop.stopped and t.state.stopped_early
    assert "0.8" in t.messages[0] or "0.7" in t.messages[0]
    close = HopelessStop(reference=0.5, se=0.05, margin=3.0, after=1)
    t2 = T()
    close.bind(t2)
    t2.state.epoch = 3
    close.on_epoch_end(2, {"val_loss": 0.6})  # behind by 2 se: not hopeless
    assert not t2.stop_training
