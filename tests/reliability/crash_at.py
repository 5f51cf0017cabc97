"""Run a tlkit command and SIGKILL it at a named point: ``python crash_at.py POINT -- ARGS``.

``python crash_at.py POINT --fill BALLAST -- ARGS`` fills the disk instead (writes BALLAST until
the file system holding it has no space left); ``--fsize BYTES`` sets a file-size limit
(RLIMIT_FSIZE) instead. Either way the run goes on, into a real ENOSPC or EFBIG from the kernel,
and the SHA-256 of each file of the run directory at that moment is written to ``--record``.

The kill is a real ``kill -9`` (the kernel ends the process at once: no ``finally``, no atexit,
no flush); only its timing is chosen from inside, by wrapping one function of tlkit (or Keras),
so each test lands exactly where it means to (between two writes of a checkpoint, say) instead
of wherever a timer from outside happens to fall. Nothing of tlkit itself is changed.
"""

from __future__ import annotations

import argparse
import errno
import functools
import hashlib
import importlib
import json
import os
import resource
import signal
import sys
from pathlib import Path

#: point -> (module, attribute path, which call, kill before or after the original runs)
POINTS = {
    "data-scan": ("tlkit.data.doctor", "_inspect", 20, "before"),
    "doctor-cache-saved": ("tlkit.data.doctor", "_DoctorCache.save", 1, "after"),
    "weights-loaded": ("tlkit.finetune", "load_start_weights", 1, "after"),
    "feature-caching": ("tlkit.train.feature_store", "_save", 1, "after"),
    "mid-epoch": ("tlkit.train.trainer", "_StepRelay.on_train_batch_end", 7, "after"),
    "checkpoint-weights-written": ("tlkit.train.state", "_save_weights", 3, "after"),
    "checkpoint-before-state": ("tlkit.train.state", "TrainState.save", 3, "before"),
    "checkpoint-before-prune": ("tlkit.train.trainer", "prune_checkpoints", 4, "before"),
    "best-model-before-rename": ("keras", "Model.save", 1, "after"),
    "stage-2-compiled": ("tlkit.train.trainer", "Trainer.prepare_stage", 2, "after"),
    "calibration": ("tlkit.evaluation.calibration", "plot_reliability", 1, "after"),
    "report": ("tlkit.finetune", "write_report", 1, "before"),
    "second-checkpoint-done": ("tlkit.train.trainer", "prune_checkpoints", 2, "after"),
}


def _die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _fill(ballast: Path) -> None:
    """Write ``ballast`` until its file system is full (the kernel says ENOSPC)."""
    with open(ballast, "wb", buffering=0) as fh:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise


def _record(run_dir: Path, record: Path) -> None:
    digests = {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(run_dir.rglob("*"))
               if p.is_file() and "tensorboard" not in p.parts}
    record.write_text(json.dumps(digests, indent=1))


def no_room(run_dir: str, record: str, fill: str | None, fsize: int | None):
    """The action that, instead of a kill, leaves the run no room to write."""
    def act():
        _record(Path(run_dir), Path(record))
        if fill:
            _fill(Path(fill))
        else:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a killed process
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))
    return act


def arm(point: str, action=None) -> None:
    action = action or _die
    module_name, path, nth, when = POINTS[point]
    owner = importlib.import_module(module_name)
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = {"n": 0}

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth and when == "before":
            action()
        result = original(*args, **kwargs)
        if calls["n"] == nth and when == "after":
            action()
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("point", choices=POINTS)
    parser.add_argument("--fill", help="fill the disk holding this ballast file instead")
    parser.add_argument("--fsize", type=int, help="set this file-size limit instead")
    parser.add_argument("--run-dir", help="the run directory (with --fill or --fsize)")
    parser.add_argument("--record", help="where the run's file digests go (with --fill/--fsize)")
    if "--" not in sys.argv:
        parser.error("usage: crash_at.py POINT [--fill F | --fsize N ...] -- TLKIT ARGS")
    split = sys.argv.index("--")
    options, args = parser.parse_args(sys.argv[1:split]), sys.argv[split + 1:]
    from tlkit.cli._run import quiet_tensorflow

    quiet_tensorflow()
    action = None
    if options.fill or options.fsize:
        action = no_room(options.run_dir, options.record, options.fill, options.fsize)
    arm(options.point, action)
    from tlkit.cli.main import main

    sys.argv = ["tlkit", *args]
    main()
