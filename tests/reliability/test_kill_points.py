"""``kill -9`` at twelve points of a real run (two of them again under mixed precision, two on a
run that weighs fine-tuning against the frozen backbone), then the same command again: every
rerun finishes with exactly the planned epochs, the same files and, bit for bit, the same weights,
optimizer state and saved arrays as a run that was never killed.

Each point is a real SIGKILL of a real ``tlkit finetune`` process (see ``crash_at.py`` for how it
is timed). Three kinds of run: images in two stages (frozen head, then everything, checkpoints
every 2 steps), the same under mixed_float16, and a frozen backbone trained on cached features.
The runs keep their last checkpoint (``keep_checkpoints: true``): the weights and optimizer state
after the last step, which ``model.keras`` (the best epoch's model, here the first's) is not.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_image_folder

HERE = Path(__file__).parent
EPOCHS = 4  # two stages of 2

IMAGES = """\
seed: 3
model: {backbone: lenet5, image_size: 32}
weights: {source: ../backbone.keras}
data: {source: ../data}
freeze:
  stages:
    - {policy: all, epochs: 2, lr: 0.01}
    - {policy: none, epochs: 2, lr: 0.001}
augment: {preset: none}
train: {batch_size: 8, verbose: 0, checkpoint_every_steps: 2, feature_cache: "off",
       keep_checkpoints: true}
"""
FEATURES = """\
seed: 3
model: {backbone: lenet5, image_size: 32}
weights: {source: ../backbone.keras}
data: {source: ../data}
freeze: {policy: all}
augment: {preset: none}
train: {batch_size: 8, verbose: 0, epochs: 4, feature_cache: "auto"}
"""
MIXED = IMAGES.replace("keep_checkpoints: true}",
                       "keep_checkpoints: true, precision: mixed_float16}")
assert MIXED != IMAGES
#: freeze: auto weighing fine-tuning against the frozen backbone (freeze_search.json, both routes)
EVIDENCE = """\
seed: 3
model: {backbone: lenet5, image_size: 32}
weights: {source: ../backbone.keras}
data: {source: ../data}
freeze: {policy: auto, auto: {finetune_from: 0}}
augment: {preset: none}
train: {batch_size: 8, verbose: 0, epochs: 4, checkpoint_every_steps: 2,
       keep_checkpoints: true}
"""
#: case -> the run it is tried on (a case is a point of crash_at.py, or "point@kind")
POINTS = {
    "data-scan": IMAGES,
    "doctor-cache-saved": IMAGES,
    "weights-loaded": IMAGES,
    "mid-epoch": IMAGES,
    "checkpoint-weights-written": IMAGES,
    "checkpoint-before-state": IMAGES,
    "checkpoint-before-prune": IMAGES,
    "best-model-before-rename": IMAGES,
    "stage-2-compiled": IMAGES,
    "calibration": IMAGES,
    "report": IMAGES,
    "feature-caching": FEATURES,
    # mixed precision: the loss scale and float32 master weights go through the checkpoint too
    "mid-epoch@mixed_float16": MIXED,
    "checkpoint-before-state@mixed_float16": MIXED,
    # the evidence: killed while caching the frozen backbone's features, and while fine-tuning
    "feature-caching@evidence": EVIDENCE,
    "mid-epoch@evidence": EVIDENCE,
}


def _env():
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", TLKIT_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _run(folder: Path, recipe: str, point: str | None) -> subprocess.CompletedProcess:
    (folder / "recipe.yaml").write_text(recipe)
    args = ["finetune", "--recipe", "recipe.yaml", "--output", "run"]
    prefix = [sys.executable, str(HERE / "crash_at.py"), point.split("@")[0], "--"] if point else [
        sys.executable, "-m", "tlkit.cli.main"]
    return subprocess.run([*prefix, *args], cwd=folder, env=_env(), capture_output=True,
                          text=True, timeout=600)


def _files(run: Path) -> set[str]:
    """Every file of a run, TensorBoard's event files (named by time and process) aside."""
    return {str(p.relative_to(run)) for p in run.rglob("*")
            if p.is_file() and "tensorboard" not in p.relative_to(run).parts}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every point killed and rerun, two at a time; and one never-killed run of each kind."""
    import keras

    from tlkit.models.heads import build_transfer_model
    from tlkit.models.registry import get_model_info

    root = tmp_path_factory.mktemp("kills")
    make_image_folder(root / "data", classes=3, per_class=16)
    keras.utils.set_random_seed(3)  # a frozen backbone needs weights: seeded, saved like a real one
    build_transfer_model(get_model_info("lenet5"), 3, image_size=32).save(root / "backbone.keras")

    def reference(name, recipe):
        folder = root / name
        folder.mkdir()
        done = _run(folder, recipe, None)
        return folder / "run", done

    def killed(point):
        folder = root / point.replace("@", "-")
        folder.mkdir()
        first = _run(folder, POINTS[point], point)
        again = _run(folder, POINTS[point], None)
        return folder / "run", first, again

    with ThreadPoolExecutor(2) as pool:
        refs = {text: pool.submit(reference, f"never-killed-{i}", text)
                for i, text in enumerate((IMAGES, FEATURES, MIXED, EVIDENCE))}
        again = pool.submit(reference, "never-killed-again", IMAGES)  # is the path deterministic?
        kills = {point: pool.submit(killed, point) for point in POINTS}
        return {"reference": {k: f.result() for k, f in refs.items()},
                "killed": {k: f.result() for k, f in kills.items()}, "again": again.result()}


def _arrays(run: Path) -> dict[str, np.ndarray]:
    """Every array a run saved, by file and name: the weights of ``model.keras``; the last
    checkpoint's weights and optimizer state (``keep_checkpoints: true`` keeps it: the model
    and the optimizer after the last step); cached features; saved predictions."""
    import h5py

    def h5(source, prefix):
        with h5py.File(source, "r") as fh:
            fh.visititems(lambda name, obj: out.__setitem__(f"{prefix}:{name}", obj[()])
                          if isinstance(obj, h5py.Dataset) else None)

    out: dict[str, np.ndarray] = {}
    for path in sorted(run.rglob("*")):
        rel = str(path.relative_to(run))
        if "tensorboard" in path.relative_to(run).parts:
            continue
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                h5(io.BytesIO(archive.read("model.weights.h5")), rel)
        elif path.suffix == ".h5":
            h5(path, rel)
        elif path.suffix == ".npz":
            with np.load(path) as saved:
                out.update({f"{rel}:{key}": saved[key] for key in saved.files})
        elif path.suffix == ".npy":
            out[rel] = np.load(path)
    return out


def _differences(run: Path, reference: Path) -> list[str]:
    """The arrays of ``run`` that are not bit for bit those of ``reference``."""
    got, expected = _arrays(run), _arrays(reference)
    differ = [f"{key}: only in {'the resumed run' if key in got else 'the reference'}"
              for key in sorted(got.keys() ^ expected.keys())]
    for key in sorted(got.keys() & expected.keys()):
        a, b = got[key], expected[key]
        if a.dtype != b.dtype or a.shape != b.shape:
            differ.append(f"{key}: {a.dtype}{a.shape} != {b.dtype}{b.shape}")
        elif not np.array_equal(a, b):
            gap = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
            differ.append(f"{key}: max |resumed - reference| = {gap:.3g}")
    return differ


#: The points whose rerun resumes inside the training loop, from a checkpoint. The rest resume
#: before the first step or after the last, and must end bit for bit as the never-killed run.
INSIDE_TRAINING = [
    "mid-epoch", "checkpoint-weights-written", "checkpoint-before-state",
    "checkpoint-before-prune", "best-model-before-rename", "stage-2-compiled",
    "mid-epoch@mixed_float16", "checkpoint-before-state@mixed_float16", "mid-epoch@evidence",
]
#: Why those do not (yet) end bit for bit. Measured: two never-killed runs agree bit for bit
#: (test below); resumed runs differ by up to ~1e-3 in the last checkpoint's weights. With
#: every tf.data shuffle made non-reshuffling and ``head: {dropout: 0}``, the resumed runs of
#: stage-2-compiled and mid-epoch were bit for bit the never-killed one: weights, optimizer state
#: and step are restored exactly; only these two random streams are not.
assert set(INSIDE_TRAINING) <= set(POINTS)


def _rows(run: Path) -> list[dict]:
    return json.loads((run / "metrics.json").read_text())["history"]


def _history(run: Path) -> list[int]:
    return [row["epoch"] for row in _rows(run)]


@pytest.mark.slow
def test_two_runs_never_killed_save_the_same_arrays_bit_for_bit(runs):
    """What makes the bit-for-bit comparison below fair: without a kill, the same command gives
    the same weights and optimizer state twice, though two runs share the CPU's two cores."""
    (first, done), (second, again) = runs["reference"][IMAGES], runs["again"]
    assert done.returncode == 0 and again.returncode == 0, again.stderr[-3000:]
    assert _differences(second, first) == []
    assert _rows(second) == _rows(first)


@pytest.mark.slow
@pytest.mark.parametrize("point", list(POINTS))
def test_kill_9_then_the_same_command_finishes_like_a_run_never_killed(runs, point):
    run, first, again = runs["killed"][point]
    reference, done = runs["reference"][POINTS[point]]
    assert done.returncode == 0, done.stderr[-3000:]
    assert first.returncode == -signal.SIGKILL, (
        f"the process was not killed at {point}:\n{first.stderr[-3000:]}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    state = json.loads((run / "state.json").read_text())
    expected = json.loads((reference / "state.json").read_text())
    assert state["finished"] and state["reported"]
    assert state["epoch"] == expected["epoch"]
    assert _history(run) == _history(reference)
    assert _files(run) == _files(reference)
    assert not list(run.rglob(".tmp-*"))  # nothing half-written left behind
    if point not in INSIDE_TRAINING:  # bit for bit (the test below has the others)
        assert _differences(run, reference) == []
        assert _rows(run) == _rows(reference)
    import keras

    import tlkit  # noqa: F401 - registers tlkit's layers

    model = keras.models.load_model(run / "model.keras")
    assert model.get_layer("calibrated") is not None  # the reports' last step reached the model


@pytest.mark.slow
@pytest.mark.parametrize("point", INSIDE_TRAINING)
def test_a_run_resumed_inside_training_ends_with_the_same_weights_bit_for_bit(runs, point):
    """Weights, optimizer state, cached features and predictions of the resumed run, against
    the never-killed run's: bit for bit, since the path is deterministic (the test above).
    This failed (max |dw| about 8e-4 at mid-epoch and stage-2-compiled, 40 arrays) until a
    checkpoint held the random streams too: the seed generators' states (Dropout's masks) and
    the shuffles' position (the trainer makes one unread iterator per epoch already done)."""
    run, _, again = runs["killed"][point]
    reference, _ = runs["reference"][POINTS[point]]
    assert again.returncode == 0, again.stderr[-3000:]
    assert _differences(run, reference) == []
