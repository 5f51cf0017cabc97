"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train one model together."""

from __future__ import annotations

import json
import subprocess

import numpy as np
from train_helpers import LENET, cli_env, free_ports, h5_arrays, tlkit_command

from tests.conftest import make_image_folder

TIMEOUT = 240  # a collective that hangs fails the test instead of hanging CI


def _start_worker(index, ports, args, cwd, log):
    tf_config = {
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    }
    return subprocess.Popen(
        tlkit_command(*args),
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
    ]
    ports = free_ports(2)
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]  # noqa: SIM115
    workers = [_start_worker(i, ports, args, homes[i], logs[i]) for i in range(2)]
    try:
        codes = [w.wait(timeout=TIMEOUT) for w in workers]
    except subprocess.TimeoutExpired:
        codes = None
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        for log in logs:
            log.close()
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
