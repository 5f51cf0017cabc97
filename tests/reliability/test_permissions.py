"""A file and a folder the user may not read, among good images: skipped and reported, never
fatal; ``data.strict`` refuses them.

Root reads everything, so as root (CI) the run is started with no capabilities at all
(``setpriv --bounding-set=-all``): a uid-0 process without CAP_DAC_OVERRIDE gets the same real
EACCES from the kernel as any user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import make_image_folder


def _as_an_ordinary_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv (util-linux) cannot be denied a read")
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


@pytest.fixture
def folder(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=2, per_class=8)
    secret = data / "class_0" / "secret.png"
    shutil.copy(data / "class_0" / "img_000.png", secret)
    locked = data / "class_1" / "locked"
    locked.mkdir()
    shutil.copy(data / "class_1" / "img_000.png", locked / "inside.png")
    secret.chmod(0)
    locked.chmod(0)
    try:
        yield data, secret, locked
    finally:
        locked.chmod(0o755)


def _tlkit(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", TLKIT_OFFLINE="1")
    return subprocess.run([*_as_an_ordinary_user(), sys.executable, "-m", "tlkit.cli.main", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_files_and_folders_without_read_permission_are_skipped_and_reported(folder, tmp_path):
    data, secret, locked = folder
    done = _tlkit("finetune", "--backbone", "lenet5", "--weights", "none", "--data", str(data),
                  "--epochs", "1", "--output", "run", "--set", "train.verbose=0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert [(s["path"], s["reason"]) for s in report["skipped"]] == [
        (str(secret), "cannot open file (Permission denied)")]
    assert report["unlisted"] == [{"path": str(locked),
                                   "reason": "cannot list folder (Permission denied)"}]
    assert "skipped 1 unreadable files" in done.stderr
    assert "could not read 1 folders" in done.stderr and str(locked) in done.stderr
    assert report["totals"]["train"] + report["totals"]["val"] == 16  # the readable ones

    strict = _tlkit("plan", "--backbone", "lenet5", "--weights", "none", "--data", str(data),
                    "--set", "data.strict=true", cwd=tmp_path)
    assert strict.returncode == 2, strict.stderr[-3000:]
    assert "data.strict is on" in strict.stderr and "Traceback" not in strict.stderr
