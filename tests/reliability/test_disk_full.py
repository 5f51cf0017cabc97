"""A disk that fills up while a run saves: a clear error (exit 1), every file written before
intact, and the same command resumes once there is room again.

Two real kinds of "no room", both raised by the kernel in the middle of a real run: a small
tmpfs file system filled to the last byte (ENOSPC; needs ``mount``, so root, as on CI), and a
file-size limit (RLIMIT_FSIZE, EFBIG; works anywhere). The disk runs out right after the second
epoch's checkpoint, so the third epoch's writes (best model, checkpoint, state, metrics) fail.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_image_folder

HERE = Path(__file__).parent
RECIPE = """\
seed: 3
model: {{backbone: lenet5, image_size: 32}}
weights: {{source: none}}
data: {{source: {data}}}
freeze: {{policy: none}}
augment: {{preset: none}}
train: {{batch_size: 8, verbose: 0, epochs: 4}}
"""


def _env():
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", TLKIT_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def disk(tmp_path, request):
    """Where the run directory goes: a 16 MiB tmpfs, or a plain folder (the size limit)."""
    if request.param == "fsize":
        yield tmp_path / "disk", None
        return
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the size-limit case "
                    "covers the same path")
    try:
        yield mount, mount / "ballast"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("disk", ["tmpfs", "fsize"], indirect=True)
def test_a_full_disk_fails_clearly_keeps_what_was_written_and_resumes(tmp_path, disk):
    root, ballast = disk
    make_image_folder(tmp_path / "data", classes=3, per_class=16)
    run = root / "run"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(data=tmp_path / "data"))
    command = ["finetune", "--recipe", str(recipe), "--output", str(run)]
    record = tmp_path / "before.json"
    room = ["--fill", str(ballast)] if ballast else ["--fsize", "2048"]
    full = subprocess.run(
        [sys.executable, str(HERE / "crash_at.py"), "second-checkpoint-done", *room,
         "--run-dir", str(run), "--record", str(record), "--", *command],
        env=_env(), capture_output=True, text=True, timeout=600)

    assert full.returncode == 1, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    error = full.stderr.strip().splitlines()[-1]
    why = "no space left on the device" if ballast else "file too large for the file-size limit"
    assert error.startswith(f"error: {why} while writing {run}"), error
    advice = "Free some space" if ballast else "Raise the limit (ulimit -f)"
    assert f"{advice} and run the same command again to resume" in error
    # the resume point (state, checkpoint, best model) is as it was when the disk filled, byte
    # for byte; every other file is whole (small ones, history.csv, may have been rewritten)
    before = json.loads(record.read_text())
    kept = {"model.keras", "state.json", "checkpoints/epoch-0002/model.weights.h5",
            "checkpoints/epoch-0002/optimizer.npz"}
    assert kept <= set(before)
    for name in kept:
        assert hashlib.sha256((run / name).read_bytes()).hexdigest() == before[name], name
    for name in before:
        if name.endswith(".json"):
            json.loads((run / name).read_text())
        elif name == "history.csv":
            rows = list(csv.DictReader((run / name).open()))
            assert [int(row["epoch"]) for row in rows] == list(range(1, len(rows) + 1))
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and state["checkpoint"] == "epoch-0002"
    assert not list(run.rglob(".tmp-*"))  # what failed was cleaned up, not left half-written
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0002"]
    import keras

    import tlkit  # noqa: F401

    keras.models.load_model(run / "model.keras")  # still loads

    if ballast:
        ballast.unlink()  # free the space
    again = subprocess.run([sys.executable, "-m", "tlkit.cli.main", *command], env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stderr and "after epoch 2" in again.stderr
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert json.loads((run / "state.json").read_text())["reported"]
