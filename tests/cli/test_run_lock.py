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


def _start(out: Path) -> subprocess.Popen:
    # a new session: the child gets default signal handling, not an ignored SIGINT
    return subprocess.Popen([*COMMAND, "--output", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


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


@pytest.mark.slow
def test_a_second_run_on_the_same_directory_exits_2_and_sigterm_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    first = _start(out)
    try:
        _wait_for(out / "recipe.yaml")
        second = subprocess.run([*COMMAND, "--output", str(out)], capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2, second.stderr
        assert "in use by another tlkit run" in second.stderr
        assert "Traceback" not in second.stderr
        _wait_for(out / "state.json")  # at least one epoch checkpointed
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 143, err[-2000:]
        assert "run the same command again to resume" in err
    finally:
        if first.poll() is None:
            first.kill()
    resumed = subprocess.run([*COMMAND, "--output", str(out)], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "(resuming)" in resumed.stderr  # the killed run's lock did not stay behind


    assert json.loads((out / "metrics.json").read_text())["epochs"] == 40
