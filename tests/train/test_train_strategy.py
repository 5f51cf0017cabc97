"""train.strategy on a CPU-only machine: every value resolves, errors are clear, mirrored trains."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf
from click.testing import CliRunner
from train_helpers import LENET, run_tlkit

from tests.conftest import make_image_folder
from tlkit.cli.main import cli
from tlkit.errors import UserError
from tlkit.train.strategy import describe_strategy, is_chief, resolve_strategy


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch):
    for name in ("TF_CONFIG", "TPU_NAME", "TLKIT_LOGICAL_CPUS"):
        monkeypatch.delenv(name, raising=False)


def test_auto_and_default_are_the_default_strategy_without_gpus():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this checks the CPU-only choice")
    for name in ("auto", "default"):
        strategy = resolve_strategy(name)
        assert strategy is tf.distribute.get_strategy()
        assert strategy.num_replicas_in_sync == 1 and is_chief(strategy)


def test_one_device_and_mirrored_fall_back_to_the_cpu():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this checks the CPU-only choice")
    one = resolve_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    assert "CPU" in one.extended.worker_devices[0].upper()
    mirrored = resolve_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert all("CPU" in d.upper() for d in mirrored.extended.worker_devices)
    assert describe_strategy(mirrored, 32).startswith("strategy: MirroredStrategy")


def test_multi_worker_without_tf_config_is_a_user_error():
    with pytest.raises(UserError, match="TF_CONFIG is not set"):
        resolve_strategy("multi_worker")


def test_multi_worker_with_broken_tf_config_is_a_user_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        resolve_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"task": {"type": "worker", "index": 0}}')
    with pytest.raises(UserError, match="cluster"):
        resolve_strategy("multi_worker")


def test_tpu_without_a_tpu_is_a_clear_user_error():
    with pytest.raises(UserError, match="no TPU could be reached"):
        resolve_strategy("tpu")


def test_bad_logical_cpu_count_and_unknown_name(monkeypatch):
    with pytest.raises(UserError, match="unknown train.strategy"):
        resolve_strategy("horovod")
    monkeypatch.setenv("TLKIT_LOGICAL_CPUS", "two")
    with pytest.raises(UserError, match="TLKIT_LOGICAL_CPUS"):
        resolve_strategy("mirrored")


def test_describe_strategy_shows_the_per_replica_split():
    assert describe_strategy(tf.distribute.get_strategy(), 32) == (
        "strategy: default strategy, 1 replica (global batch 32, 32 per replica)"
    )


@pytest.mark.parametrize(
    "strategy, message",
    [
        ("multi_worker", "TF_CONFIG is not set"),
        ("tpu", "no TPU could be reached"),
    ],
)
def test_cli_exits_2_without_a_traceback(tmp_path, strategy, message):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=4)
    result = CliRunner().invoke(
        cli,
        [
            "finetune",
            *LENET,
            "--data",
            str(data),
            "--output",
            str(tmp_path / "run"),
            "--set",
            f"train.strategy={strategy}",
        ],
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_mirrored_over_two_logical_cpus_trains_to_the_end(tmp_path):
    """TLKIT_LOGICAL_CPUS=2 splits the CPU before TensorFlow starts; MirroredStrategy uses both.

    39 training and 9 validation images at a global batch of 16: the last training batch and
    the only validation batch do not split evenly over two replicas (Keras 3's first-batch
    reduce would fail there without the trainer's workaround).
    """
    data = make_image_folder(tmp_path / "data", classes=3, per_class=16)
    run = tmp_path / "run"
    result = run_tlkit(
        "finetune",
        *LENET,
        "--data",
        data,
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--output",
        run,
        "--set",
        "train.strategy=mirrored",
        cwd=tmp_path,
        timeout=240,
        TLKIT_LOGICAL_CPUS="2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "strategy: MirroredStrategy, 2 replicas (global batch 16, 8 per replica)" in (
        result.stderr
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["val"]["count"] == 9
    assert [h["steps"] for h in metrics["history"]] == [3, 3]
    assert (run / "model.keras").exists() and metrics["custom_loop"] is False
