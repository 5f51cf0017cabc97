"""Crash-safe training: kill -9 mid-epoch and re-run; a NaN loss stops with the last good state."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest
from train_helpers import LENET, cli_env, h5_arrays, run_tlkit, tlkit_command

from tests.conftest import make_image_folder
from tlkit.evaluation.loading import load_trained
from tlkit.models import heads  # noqa: F401 - registers Preprocessing (load_trained misses it)

EPOCHS = 4


def _state(run):
    try:
        return json.loads((run / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _kill_mid_epoch(args, cwd, run, ready, timeout=180):
    """Start ``tlkit ARGS``, SIGKILL it once ``ready(state)``; return the state it left."""
    proc = subprocess.Popen(
        tlkit_command(*args),
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            state = _state(run)
            if state is not None and ready(state):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        else:
            pytest.fail(
                f"the run ended or timed out before it could be killed:\n"
                f"{proc.stderr.read()[-3000:] if proc.poll() is not None else ''}"
            )
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _state(run)


@pytest.mark.parametrize("every", [None, 4], ids=["epoch-checkpoints", "step-checkpoints"])
def test_kill_9_mid_epoch_then_the_same_command_finishes_the_planned_epochs(tmp_path, every):
    data = make_image_folder(tmp_path / "data", classes=3, per_class=40)
    run = tmp_path / "run"
    args = [
        "finetune",
        *LENET,
        "--data",
        data,
        "--epochs",
        EPOCHS,
        "--batch-size",
        "4",
        "--output",
        run,
        "--set",
        "train.schedule.name=cosine",
        "--set",
        "train.keep_checkpoints=true",  # looked at below
    ]
    if every:
        args += ["--set", f"train.checkpoint_every_steps={every}"]
        ready = lambda s: s["epoch"] >= 1 and s["step_in_epoch"] > 0  # noqa: E731
    else:
        ready = lambda s: s["epoch"] >= 1  # noqa: E731
    left = _kill_mid_epoch(args, tmp_path, run, ready)
    assert not left["finished"] and 1 <= left["epoch"] < EPOCHS
    checkpoint = run / "checkpoints" / left["checkpoint"]
    assert (checkpoint / "model.weights.h5").exists() and (checkpoint / "optimizer.npz").exists()
    # A kill between the commit and the clean-up may leave the previous folder beside it.
    assert left["checkpoint"] in [p.name for p in (run / "checkpoints").iterdir()]

    result = run_tlkit(*args, cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming {run} after epoch {left['epoch']}" in result.stderr
    assert "(resuming)" in result.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    history = metrics["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    assert metrics["epochs"] == EPOCHS and metrics["resumed"] is True
    # What was learned before the kill is kept as it was.
    assert history[: left["epoch"]] == left["history"]
    steps = history[0]["steps"]  # a whole epoch
    resumed_epoch = history[left["epoch"]]
    if left["step_in_epoch"]:
        # The step checkpoint restored model and optimizer; the epoch ran only what was left.
        assert every and f"step {left['step_in_epoch']} of epoch {left['epoch'] + 1}" in (
            result.stderr
        )
        assert resumed_epoch["resumed_at_step"] == left["step_in_epoch"]
        assert resumed_epoch["steps"] == steps
    else:
        assert "resumed_at_step" not in resumed_epoch
    assert all(h["steps"] == steps for h in history)
    state = _state(run)
    assert state["finished"] and state["epoch"] == EPOCHS and state["step_in_epoch"] == 0
    assert [p.name for p in (run / "checkpoints").iterdir()] == [f"epoch-{EPOCHS:04d}"]


def test_nan_loss_stops_with_exit_1_and_keeps_the_last_good_checkpoint(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=3, per_class=16)
    recipe = tmp_path / "diverge.yaml"
    # Stage 1 learns normally; stage 2's absurd learning rate overflows the ReLU head.
    recipe.write_text(
        "name: diverge\n"
        "model: {backbone: lenet5, image_size: 32, head: {type: avg, dropout: 0.0, "
        "hidden_units: [16]}}\n"
        "weights: {source: none}\n"
        f"data: {{source: {data}}}\n"
        "augment: {preset: none}\n"
        "freeze:\n"
        "  stages:\n"
        "    - {policy: none, epochs: 1, lr: 0.002}\n"
        "    - {policy: none, epochs: 2, lr: 1.0e+30}\n"
        "train: {batch_size: 8, verbose: 0, optimizer: {name: sgd}}\n"
    )
    run = tmp_path / "run"
    result = run_tlkit("finetune", "--recipe", recipe, "--output", run, cwd=tmp_path, timeout=180)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "error: the" in result.stderr and "Traceback" not in result.stderr
    assert "became nan" in result.stderr or "NaN or infinite" in result.stderr
    assert "the last good checkpoint (epoch-0001) is kept" in result.stderr
    state = _state(run)
    assert state["epoch"] == 1 and state["checkpoint"] == "epoch-0001" and not state["finished"]
    assert len(state["history"]) == 1 and np.isfinite(state["history"][0]["loss"])
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch-0001"]
    weights = h5_arrays(run / "checkpoints/epoch-0001/model.weights.h5")
    assert all(np.isfinite(w).all() for w in weights.values())
    with np.load(run / "checkpoints/epoch-0001/optimizer.npz") as opt:
        assert all(np.isfinite(opt[k]).all() for k in opt.files)
    # model.keras is the best epoch's (epoch 1), finite and usable.
    assert state["best_epoch"] == 1
    model = load_trained(run).model
    assert all(np.isfinite(np.asarray(w)).all() for w in model.weights)
    probs = model.predict(np.full((2, 32, 32, 3), 128, "float32"), verbose=0)
    assert np.isfinite(probs).all()
    assert not (run / "metrics.json").exists()


def test_workers_agree_with_the_chief_before_resuming(tmp_path):
    """The resume handshake: a worker drops progress the chief does not have, or all stop."""
    from train_helpers import tiny_recipe, tiny_trainer

    from tlkit.errors import TlkitError, UserError
    from tlkit.train.state import TrainState

    trainer = tiny_trainer(tmp_path, tiny_recipe())
    ahead = TrainState(epoch=2, checkpoint="epoch-0002")
    assert trainer._agree_with_chief(ahead, None) is ahead  # the chief keeps its own state
    with pytest.raises(UserError, match="different recipe"):
        trainer._agree_with_chief(ahead, UserError("different recipe"))
    trainer.chief = False  # alone, this worker sees a chief with no progress at all
    assert trainer._agree_with_chief(ahead, None) is None
    assert trainer._agree_with_chief(None, None) is None
    with pytest.raises(TlkitError):
        trainer._agree_with_chief(None, TlkitError("cannot read the checkpoint"))
