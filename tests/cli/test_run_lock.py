"""One run per run directory (a lock a killed run does not leave stuck), and what an
interrupted run tells the user."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tlkit.errors import UserError
from tlkit.finetune.context import LOCK_FILE, RunLock, check_not_busy

COMMAND = [sys.executable, "-m", "tlkit.cli.main", "finetune", "--recipe", "digits-demo",
           "--epochs", "40", "--set", "train.verbose=0"]


def _wait_for(path: Path, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.5)


def test_the_lock_is_exclusive_and_freed_when_its_holder_goes(tmp_path):
    first = RunLock(tmp_path)
    with pytest.raises(UserError, match=f"process {os.getpid()}"):
        check_not_busy(tmp_path)
    first.release()
    check_not_busy(tmp_path)  # free again
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path[:0] = ['src']\n"
        "from tlkit.finetune.context import RunLock\n"
        f"RunLock({str(tmp_path)!r}); print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UserError, match="in use by another tlkit run"):
        check_not_busy(tmp_path)
    holder.kill()  # kill -9: nothing released by hand
    holder.wait()
    check_not_busy(tmp_path)
    assert (tmp_path / LOCK_FILE).exists()


def _start(out: Path, *extra: str, sigint_ignored: bool = False) -> subprocess.Popen:
    """The run in the background, in a session of its own (no terminal's signals reach it).

    A background job of a non-interactive shell inherits SIGINT *ignored*; ``sigint_ignored``
    starts it that way on purpose (tlkit must stop on Ctrl-C even then), otherwise the child
    gets default handling."""
    def child():
        signal.signal(signal.SIGINT, signal.SIG_IGN if sigint_ignored else signal.SIG_DFL)

    return subprocess.Popen([*COMMAND, "--output", str(out), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=child)


def _stop_mid_run(first: subprocess.Popen, out: Path, signum: int, after: float = 0) -> str:
    try:
        _wait_for(out / "state.json")  # training: at least one epoch checkpointed
        time.sleep(after)  # (into the next epoch's steps)
        first.send_signal(signum)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    return err


def _assert_stopped_at_a_checkpoint(err: str, out: Path) -> dict:
    """One line said it stops after the step, one that the same command resumes from a named
    checkpoint, which is the one state.json points at."""
    assert "Traceback" not in err, err[-3000:]
    assert "stopping after this step, with a checkpoint there" in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "run the same command again to resume from there" in last, last
    state = json.loads((out / "state.json").read_text())
    assert f"(checkpoint {state['checkpoint']})" in last, (last, state["checkpoint"])
    assert (out / "checkpoints" / state["checkpoint"]).is_dir()
    if state["step_in_epoch"]:  # stopped mid-epoch: the checkpoint is at that step
        assert f"-step-{state['step_in_epoch']:06d}" in state["checkpoint"]
        assert f"at step {state['step_in_epoch']} of epoch {state['epoch'] + 1}" in last
    return state


def _resume_and_check(out: Path, *extra: str, epochs: int) -> None:
    resumed = subprocess.run([*COMMAND, "--output", str(out), *extra], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "(resuming)" in resumed.stderr  # the stopped run's lock did not stay behind
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))


@pytest.mark.slow
def test_a_second_run_on_the_same_directory_exits_2_and_sigterm_stops_at_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    first, second = _start(out), None
    try:
        _wait_for(out / "recipe.yaml")
        second = subprocess.run([*COMMAND, "--output", str(out)], capture_output=True, text=True,
                                timeout=300)
    finally:
        if second is None and first.poll() is None:
            first.kill()
    assert second.returncode == 2, second.stderr
    assert "in use by another tlkit run" in second.stderr
    assert "Traceback" not in second.stderr
    err = _stop_mid_run(first, out, signal.SIGTERM)
    assert first.returncode == 143, err[-2000:]
    assert "SIGTERM: stopping after this step" in err
    assert "terminated (SIGTERM)" in err
    _assert_stopped_at_a_checkpoint(err, out)
    _resume_and_check(out, epochs=40)


@pytest.mark.slow
@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["default", "inherited-ignored"])
def test_ctrl_c_stops_mid_epoch_with_a_checkpoint_there_and_the_same_command_resumes(
        tmp_path, sigint_ignored):
    out = tmp_path / "run"
    small_steps = ("--set", "train.batch_size=2", "--epochs", "6")  # 719 steps, ~3 s an epoch
    first = _start(out, *small_steps, sigint_ignored=sigint_ignored)
    err = _stop_mid_run(first, out, signal.SIGINT, after=1.0)
    assert first.returncode == 130, err[-2000:]
    assert "Ctrl-C: stopping after this step" in err
    state = _assert_stopped_at_a_checkpoint(err, out)
    assert not state["finished"] and state["epoch"] < 6
    assert state["step_in_epoch"] > 0, "the stop was meant to land mid-epoch"
    _resume_and_check(out, *small_steps, epochs=6)
