"""Learning-rate schedules as functions of the global step, the plateau rule, weight decay."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from tlkit.train.config import OptimizerConfig, ScheduleConfig
from tlkit.train.optim import build_optimizer
from tlkit.train.schedules import PlateauState, learning_rate_at

BASE = 0.1
SPE, EPOCHS = 10, 10  # 10 steps per epoch, 10 epochs: 100 steps


def rate(name, step, **cfg):
    return learning_rate_at(ScheduleConfig(name=name, **cfg), BASE, step, SPE, EPOCHS)


def test_constant_and_plateau_are_the_base_rate_at_every_step():
    for step in (0, 1, 55, 99, 150):
        assert rate("constant", step) == BASE
        assert rate("plateau", step) == BASE  # plateau scales it from outside (PlateauState)


def test_step_divides_by_ten_every_step_epochs():
    kw = {"factor": 0.1, "step_epochs": 3}
    assert rate("step", 0, **kw) == BASE
    assert rate("step", 29, **kw) == BASE  # last step of epoch 3
    assert rate("step", 30, **kw) == pytest.approx(BASE * 0.1)
    assert rate("step", 60, **kw) == pytest.approx(BASE * 0.01)
    assert rate("step", 99, **kw) == pytest.approx(BASE * 0.001)


def test_cosine_warms_up_linearly_then_follows_the_half_cosine_to_min_lr():
    kw = {"warmup_epochs": 1, "min_lr": 1e-4}
    assert rate("cosine", 0, **kw) == pytest.approx(BASE / 10)  # (step + 1) / warmup steps
    assert rate("cosine", 4, **kw) == pytest.approx(BASE / 2)
    assert rate("cosine", 9, **kw) == pytest.approx(BASE)  # warmup reaches the base rate
    assert rate("cosine", 10, **kw) == pytest.approx(BASE)  # cosine starts at its top
    mid = 10 + 45  # half-way through the 90 cosine steps
    assert rate("cosine", mid, **kw) == pytest.approx(1e-4 + 0.5 * (BASE - 1e-4))
    assert rate("cosine", 100, **kw) == pytest.approx(1e-4)
    rates = [rate("cosine", s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))  # never rises again


def test_cosine_without_warmup_starts_at_the_base_rate():
    assert rate("cosine", 0, min_lr=0.0) == pytest.approx(BASE)
    quarter = learning_rate_at(ScheduleConfig(name="cosine", min_lr=0.0), BASE, 25, SPE, EPOCHS)
    assert quarter == pytest.approx(0.5 * BASE * (1 + math.cos(math.pi * 0.25)))


def test_onecycle_rises_from_base_over_25_to_base_then_falls_to_base_over_1e4():
    assert rate("onecycle", 0) == pytest.approx(BASE / 25)
    assert rate("onecycle", 15) == pytest.approx(BASE / 25 + (BASE - BASE / 25) * 0.5)
    assert rate("onecycle", 30) == pytest.approx(BASE)  # peak at 30% of the run
    assert rate("onecycle", 100) == pytest.approx(BASE / 1e4)
    # An explicit warmup moves the peak.
    assert rate("onecycle", 20, warmup_epochs=2) == pytest.approx(BASE)


def test_schedule_is_a_pure_function_of_the_step_so_resume_continues_exactly():
    kw = {"warmup_epochs": 0.5}
    assert [rate("cosine", s, **kw) for s in range(40, 45)] == [
        rate("cosine", s, **kw) for s in range(40, 45)
    ]


def test_plateau_divides_after_patience_epochs_without_improvement():
    p = PlateauState()
    kw = {"mode": "max", "factor": 0.1, "patience": 2}
    assert not p.update(0.5, **kw) and p.scale == 1.0
    assert not p.update(0.6, **kw)  # improved
    assert not p.update(0.6, **kw) and p.wait == 1  # equal is not an improvement
    assert p.update(0.55, **kw) and p.scale == pytest.approx(0.1)  # second stalled epoch
    assert p.wait == 0 and p.best == 0.6
    assert not p.update(0.59, **kw)
    assert p.update(0.58, **kw) and p.scale == pytest.approx(0.01)


def test_plateau_respects_min_scale_min_mode_and_round_trips_through_a_dict():
    p = PlateauState()
    kw = {"mode": "min", "factor": 0.1, "patience": 1, "min_scale": 0.05}
    p.update(1.0, **kw)
    assert not p.update(0.9, **kw)  # lower loss is better
    assert p.update(0.95, **kw) and p.scale == pytest.approx(0.1)
    assert p.update(0.95, **kw) and p.scale == pytest.approx(0.05)  # floor
    again = PlateauState(**p.as_dict())
    assert again == p


def _conv_bn_dense():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="predictions")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_weight_decay_applies_to_kernels_only(name):
    model = _conv_bn_dense()
    opt = build_optimizer(OptimizerConfig(name=name, lr=0.1, weight_decay=0.01, momentum=0.0))
    opt.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if opt._use_weight_decay(v)}
    assert decayed == {"conv/kernel", "predictions/kernel"}


def test_weight_decay_shrinks_kernels_and_leaves_bias_and_batchnorm_after_a_zero_gradient_step():
    model = _conv_bn_dense()
    opt = build_optimizer(OptimizerConfig(name="sgd", lr=0.1, weight_decay=0.01, momentum=0.0))
    variables = model.trainable_variables
    for v in variables:  # non-zero biases and BN shifts, so a decay would show
        v.assign(np.full(v.shape, 0.5, "float32"))
    before = {v.path: np.array(v) for v in variables}
    opt.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in variables])
    for v in variables:
        after = np.array(v)
        if v.path.endswith("kernel"):  # Keras' decoupled decay: w -= lr * wd * w
            np.testing.assert_allclose(after, before[v.path] * (1 - 0.1 * 0.01), rtol=1e-6)
        else:
            np.testing.assert_array_equal(after, before[v.path])


def test_no_weight_decay_by_default_for_sgd_and_adam():
    for name in ("sgd", "adam"):
        opt = build_optimizer(OptimizerConfig(name=name))
        assert not opt.weight_decay
