"""The learning-rate range test: the rules on known curves, the test on a real model, and
``tlkit lr-find`` / ``--lr suggested`` end to end."""

from __future__ import annotations

import json
import struct

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from train_helpers import tiny_data

from tlkit.cli.main import cli
from tlkit.train.lr_range import RangeTest, range_test, suggest
from tlkit.train.plan import TrainPlan


def _bowl(lrs, best=1e-2):
    """A range-test-like curve: flat at small rates, falling to a minimum near ``best``, then
    blowing up."""
    x = np.log10(lrs) - np.log10(best)
    return 2.0 - 1.5 / (1 + np.exp(-3 * (x + 1.5))) + np.where(x > 0, 4 * x**2, 0)


def test_the_rules_read_a_known_curve():
    lrs = np.geomspace(1e-6, 1, 80)
    rates = suggest(lrs, _bowl(lrs))
    assert 1e-4 < rates["valley"] < 1e-2  # on the way down, before the minimum
    lowest = lrs[np.argmin(_bowl(lrs))]
    assert rates["minimum"] == pytest.approx(lowest / 10, rel=0.2)
    assert 1e-4 < rates["steep"] < 1e-2


def test_a_curve_that_never_falls_suggests_nothing():
    lrs = np.geomspace(1e-6, 1, 40)
    rates = suggest(lrs, np.linspace(1, 5, 40))
    assert rates == {"valley": None, "steep": None, "minimum": None, "divergence": None}
    test = RangeTest(list(lrs), list(np.linspace(1, 5, 40)), [], "reached 1", rates)
    assert "no suggestion" in test.describe()


def _model(lr=1e-3):
    """A small MLP on raw 0..255 pixels: large rates blow it up."""
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="categorical_crossentropy")
    return model


def test_the_test_on_real_digits_stops_when_the_loss_diverges():
    """scikit-learn's digits and a small MLP with SGD: the loss falls, then blows up."""
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x, y = digits.data.astype("float32") / 16, np.eye(10, dtype="float32")[digits.target]
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="categorical_crossentropy")
    batches = ((x[i:i + 32], y[i:i + 32]) for _ in range(100) for i in range(0, 1760, 32))
    seen = []
    test = range_test(model, batches, start=1e-4, end=100, steps=80, diverge=1.5,
                      on_step=lambda i, lr, loss: seen.append(lr))
    assert test.lrs == seen and len(test.lrs) == len(test.losses) == len(test.raw)
    assert np.all(np.diff(test.lrs) > 0)
    assert "diverged" in test.stopped and test.lrs[-1] < 100  # it stopped early
    assert 1e-3 < test.suggested < 1  # where SGD trains this MLP well
    assert min(test.losses) < test.losses[5]  # the loss did fall first
    text = test.ascii_plot()
    assert "*" in text and "|" in text and "lr 1e-04" in text


def test_the_learning_rate_is_set_before_every_step():
    x, y = tiny_data(16)
    model = _model()
    rates = []

    batches = iter([(x[:8], y[:8])] * 12)
    original = model.train_on_batch

    def spy(*args, **kwargs):
        rates.append(float(model.optimizer.learning_rate.numpy()))
        return original(*args, **kwargs)

    model.train_on_batch = spy
    test = range_test(model, batches, start=1e-4, end=1e-2, steps=12, diverge=1e9)
    assert rates == pytest.approx(np.geomspace(1e-4, 1e-2, 12).tolist())
    assert test.stopped == "reached 0.01"


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


FAST = ["--backbone", "lenet5", "--weights", "none", "--image-size", "32", "--freeze", "none",
        "--data", "builtin:digits", "--set", "data.max_per_class=30", "--set", "train.verbose=0"]


def test_lr_find_writes_only_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("lr-find", *FAST, "--steps", "30")
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "lenet5-digits-lr-find"
    found = json.loads((out / "lr_find.json").read_text())
    assert len(found["lrs"]) == len(found["losses"]) >= 10 and found["policy"] == "none"
    assert found["suggested"] is not None and found["rule"] == "valley"
    assert f"--lr {found['suggested']:.2g}" in result.output
    assert _png_size(out / "lr_find.png")[0] > 300
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["lenet5-digits-lr-find"]
    assert not (out / "model.keras").exists() and not (out / "state.json").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--start-lr", "1", "--end-lr", "0.1"], "must be below"),
        (["--rule", "fastest"], "fastest"),
    ],
)
def test_lr_find_mistakes_exit_2(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    result = _invoke("lr-find", *FAST, *args)
    assert result.exit_code == 2 and needle in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["fast", "-1", "0"])
def test_lr_flag_takes_a_number_or_suggested(tmp_path, value):
    result = _invoke("finetune", *FAST, "--lr", value, "--output", tmp_path / "o", "--dry-run")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_finetune_trains_at_the_suggested_rate(tmp_path):
    out = tmp_path / "run"
    result = _invoke("finetune", *FAST, "--lr", "suggested", "--epochs", "1", "--set",
                     "train.schedule.name=constant", "--output", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    found = json.loads((out / "lr_find.json").read_text())
    assert metrics["lr_find"]["lr"] == found["lr"] == found["suggested"]
    rows = (out / "history.csv").read_text().splitlines()
    header, first = rows[0].split(","), rows[1].split(",")
    assert float(first[header.index("lr")]) == pytest.approx(found["lr"], rel=1e-5)
    assert (out / "lr_find.png").exists()
    recipe = (out / "recipe.yaml").read_text()
    assert "lr: suggested" in recipe  # the recipe as asked; the rate found is in metrics.json


@pytest.mark.parametrize(("policy", "solver"), [("auto", True), ("none", False)])
def test_the_policy_tested_is_the_runs_first(policy, solver):
    """Pretrained weights and few images: ``auto`` keeps the backbone frozen and a solver fits
    the head (no rate to find); ``none`` trains everything at the rate."""
    import tensorflow as tf

    from tlkit.finetune.lr_find import run_policy
    from tlkit.freeze import Freezer
    from tlkit.models import get_model_info
    from tlkit.models.heads import build_transfer_model
    from tlkit.recipes.schema import Recipe

    recipe = Recipe.model_validate({"model": {"backbone": "lenet5", "image_size": 32},
                                    "freeze": {"policy": policy}})
    info = get_model_info("lenet5")
    model = build_transfer_model(info, 3, image_size=32, head=recipe.model.head)
    freezer = Freezer(model, info, recipe.freeze, train_images_per_class=10, pretrained=True)
    plan = TrainPlan.from_recipe(recipe, train_images=30)
    got, why, probe, uses_solver = run_policy(recipe, plan, model, freezer,
                                              tf.distribute.get_strategy())
    assert (got == "all") is solver and uses_solver is solver and probe and why


def test_a_low_noisy_start_is_not_a_divergence():
    """From a fitted head the first batches' losses are near 0 and noisy: an easy first batch
    (0.01) and a harder second (0.1) must not stop the test at its second step."""

    class Scripted:
        def __init__(self, losses):
            self.losses, self.optimizer = iter(losses), keras.optimizers.SGD(1e-3)

        def train_on_batch(self, *batch, return_dict=True):
            return {"loss": next(self.losses)}

    losses = [0.01, 0.1, 0.05, 0.12, 0.08] + [0.1] * 20 + list(np.linspace(0.1, 0.02, 15)) + [
        0.02 * 1.5**k for k in range(20)]
    test = range_test(Scripted(losses), iter([((), ())] * 60), start=1e-6, end=1, steps=60,
                      rule="divergence")
    assert len(test.lrs) > 40 and "diverged" in test.stopped
    assert test.rule == "divergence" and test.suggested == pytest.approx(test.lrs[-1] / 10)
    assert "a tenth of where the loss blew up" in test.describe()
