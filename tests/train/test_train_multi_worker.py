"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train one model together."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from train_helpers import LENET, cli_env, free_ports, h5_arrays, tlkit_command

from tests.conftest import make_image_folder

TIMEOUT = 240  # a collective that hangs fails the test instead of hanging CI


CRASH_AT = Path(__file__).parents[1] / "reliability" / "crash_at.py"


def _wait_all(workers, logs):
    """Exit codes of every worker (None if one timed out); none is left running."""
    try:
        return [w.wait(timeout=TIMEOUT) for w in workers]
    except subprocess.TimeoutExpired:
        return None
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        for log in logs:
            log.close()


def _start_worker(index, ports, args, cwd, log, crash_at: str | None = None):
    tf_config = {
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    }
    command = tlkit_command(*args)
    if crash_at:  # the same command, SIGKILLed at a named point (see crash_at.py)
        command = [sys.executable, str(CRASH_AT), crash_at, "--", *command[3:]]
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=cli_env(TF_CONFIG=json.dumps(tf_config)),
        text=True,
    )


def test_two_workers_train_to_the_end_with_the_same_weights(tmp_path):
    """Each worker runs the same command in its own folder, as on two machines.

    (Sharing one folder on one machine races: the non-chief inspects the chief's run directory
    while the chief is filling it; see the note in docs/training.md.)
    """
    data = make_image_folder(tmp_path / "data", classes=3, per_class=16)
    homes = [tmp_path / f"machine{i}" for i in range(2)]
    for home in homes:
        home.mkdir()
    args = [
        "finetune",
        *LENET,
        "--data",
        data,
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--output",
        "run",
        "--set",
        "train.strategy=multi_worker",
        "--set",
        "train.keep_checkpoints=true",  # compared below
    ]
    ports = free_ports(2)
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]  # noqa: SIM115
    workers = [_start_worker(i, ports, args, homes[i], logs[i]) for i in range(2)]
    codes = _wait_all(workers, logs)
    output = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n---\n".join(o[-3000:] for o in output)

    chief, other = homes[0] / "run", homes[1] / ".run-worker-1"
    assert not (homes[1] / "run").exists()
    assert "MultiWorkerMirroredStrategy over 2 workers, 2 replicas" in output[0]
    # Only the chief writes the run's outputs.
    metrics = json.loads((chief / "metrics.json").read_text())
    assert metrics["custom_loop"] is True and len(metrics["history"]) == 2
    assert all(np.isfinite(h["loss"]) for h in metrics["history"])
    assert (chief / "model.keras").exists()
    assert not (other / "model.keras").exists() and not (other / "metrics.json").exists()
    # Every worker checkpoints into its own directory; the weights are the same on both.
    for run in (chief, other):
        state = json.loads((run / "state.json").read_text())
        assert state["finished"] and state["epoch"] == 2 and state["checkpoint"] == "epoch-0002"
    a = h5_arrays(chief / "checkpoints/epoch-0002/model.weights.h5")
    b = h5_arrays(other / "checkpoints/epoch-0002/model.weights.h5")
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    with (
        np.load(chief / "checkpoints/epoch-0002/optimizer.npz") as oa,
        np.load(other / "checkpoints/epoch-0002/optimizer.npz") as ob,
    ):
        for name in oa.files:
            np.testing.assert_array_equal(oa[name], ob[name])
    # The model trained: each epoch took the 39 training images in 3 global batches of 16.
    assert [h["steps"] for h in metrics["history"]] == [3, 3]
    assert metrics["history"][1]["loss"] < metrics["history"][0]["loss"]


def _same_checkpoint(chief: Path, other: Path, name: str) -> None:
    a = h5_arrays(chief / f"checkpoints/{name}/model.weights.h5")
    b = h5_arrays(other / f"checkpoints/{name}/model.weights.h5")
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid-epoch", "checkpoint-before-state"])
def test_a_worker_killed_mid_run_then_both_restarted_finish_the_planned_epochs(tmp_path, point):
    """Two real workers; worker 1 is SIGKILLed in epoch 3 (``mid-epoch``: at its 7th step, both
    hold epoch 2's checkpoint) or while committing an epoch (``checkpoint-before-state``: its
    checkpoint folder is written, its state.json still names the epoch before, the chief's has
    committed it). The
    chief, left waiting in a collective, is stopped as a cluster manager would; both are started
    again with the same command and finish exactly the planned 4 epochs, from the chief's
    checkpoint, with the same weights."""
    data = make_image_folder(tmp_path / "data", classes=3, per_class=16)
    homes = [tmp_path / f"machine{i}" for i in range(2)]
    for home in homes:
        home.mkdir()
    args = ["finetune", *LENET, "--data", data, "--epochs", "4", "--batch-size", "16",
            "--output", "run", "--set", "train.strategy=multi_worker",
            "--set", "train.keep_checkpoints=true"]

    def cluster(tag, crash_at=None):
        ports = free_ports(2)
        logs = [open(tmp_path / f"{tag}-worker{i}.log", "w") for i in range(2)]  # noqa: SIM115
        workers = [_start_worker(i, ports, args, homes[i], logs[i], crash_at if i else None)
                   for i in range(2)]
        return workers, logs

    def read(tag):
        return [(tmp_path / f"{tag}-worker{i}.log").read_text() for i in range(2)]

    workers, logs = cluster("killed", crash_at=point)
    try:
        assert workers[1].wait(timeout=TIMEOUT) == -signal.SIGKILL, read("killed")[1][-3000:]
        time.sleep(5)  # the chief is now blocked on (or failing in) a collective with a dead peer
        if workers[0].poll() is None:
            workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=60)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        for log in logs:
            log.close()
    chief, other = homes[0] / "run", homes[1] / ".run-worker-1"
    at = json.loads((chief / "state.json").read_text())["epoch"]
    behind = 0 if point == "mid-epoch" else 1  # the killed worker's own state, committed or not
    assert json.loads((other / "state.json").read_text())["epoch"] == at - behind >= 1

    workers, logs = cluster("restarted")
    codes = _wait_all(workers, logs)
    output = read("restarted")
    assert codes == [0, 0], "\n---\n".join(o[-3000:] for o in output)
    assert "resuming" in output[0] and f"after epoch {at}" in output[0]
    assert "Traceback" not in output[0] + output[1]
    if behind:  # the worker behind took the chief's state and weights
        assert "it continues from the chief's, weights sent by the chief" in output[1]
    history = json.loads((chief / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert [h["steps"] for h in history] == [3, 3, 3, 3]
    for run in (chief, other):
        state = json.loads((run / "state.json").read_text())
        assert state["finished"] and state["epoch"] == 4 and state["checkpoint"] == "epoch-0004"
    _same_checkpoint(chief, other, "epoch-0004")
