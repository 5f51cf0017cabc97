"""What every benchmark shares: timing, the machine report, results files and tables.

A script parses its options with :func:`parse_args`, opens a :class:`Run` (the command and the
machine, recorded before anything is measured), measures, and ends with :meth:`Run.finish`:
the tables, ratios and notes printed and written as one JSON document to
``benchmarks/results/<name>.json``, which ``scripts/make_benchmarks_doc.py`` renders (both
with ``render.py``). Importing this module imports neither TensorFlow nor NumPy.

Results describe a commit. A run that would write a results file refuses to start (exit 2,
before measuring anything) when the code it measures is not a commit: uncommitted changes to
``src/``, ``benchmarks/`` (results and notes excepted) or ``pyproject.toml``, including new
files there that git does not ignore, or a ``tlkit`` imported from somewhere other than this
checkout's ``src/``. ``--allow-dirty`` runs it anyway, and the results file says so. The check
runs again before writing, in case the tree changed during the run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from render import machine_line, markdown_table, ratios_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
# What a results file's figures depend on: changes here make a tree "dirty" for the harness.
# Results and notes are outputs and prose; anything else in the repository (docs, tests,
# untracked files at the top) does not change what a benchmark measures.
MEASURED_PATHS = ("src", "benchmarks", "pyproject.toml")
NOT_MEASURED = ("benchmarks/results", "benchmarks/notes")
PACKAGES = {"TensorFlow": "tensorflow", "Keras": "keras", "NumPy": "numpy"}
PACKAGES |= {"albumentations": "albumentations", "tlkit": "tlkit"}  # label: distribution
PACKAGES |= {"onnxruntime": "onnxruntime", "tf2onnx": "tf2onnx", "LiteRT": "ai-edge-litert"}


class Timer:
    """Wall-clock and process CPU seconds (all threads) of a ``with`` block.

    CPU seconds barely move when another process shares the cores; wall seconds do.
    """

    wall = cpu = 0.0

    def __enter__(self) -> Timer:
        self._start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._start[0]
        self.cpu = time.process_time() - self._start[1]


def time_batches(batches: Iterable, seconds: float, warmup: int = 2) -> tuple[float, float]:
    """Images per second drawn from ``batches`` for about ``seconds``, after ``warmup`` draws.

    Items with a 4-D ``shape`` count as that many images, anything else as one. Also returns
    the process CPU milliseconds per image (all threads; steadier on a shared machine).
    """
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds or count == 0:
        item = next(it)
        shape = getattr(item, "shape", ())
        count += int(shape[0]) if len(shape) == 4 else 1
    return count / elapsed, (time.process_time() - cpu) * 1000 / count


def rate_from_ends(ends: Sequence[float], per_step: int, warmup: int) -> float:
    """``per_step`` over the median interval between step end times, after ``warmup`` steps.

    The median, not the mean, so a burst of load from another process moves it less.
    """
    steps = [b - a for a, b in zip(ends, ends[1:], strict=False)][max(warmup, 1) - 1 :]
    if warmup < 1 or not steps:
        raise ValueError(f"need >= 1 warm-up and 1 timed step; got {len(ends)} steps")
    return per_step / statistics.median(steps)


def _field(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a /proc file, if there is one."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)


def _output(*command: str) -> str | None:
    """A command's standard output, or None if it cannot run or fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _gpus() -> list[str]:
    """GPU names: from TensorFlow if it is already imported (never imported for this)."""
    if tf := sys.modules.get("tensorflow"):
        details = tf.config.experimental.get_device_details
        return [
            details(g).get("device_name", g.name) for g in tf.config.list_physical_devices("GPU")
        ]
    query = _output("nvidia-smi", "--query-gpu=name", "--format=csv,noheader")
    return query.splitlines() if query else []


def tree_changes(root: Path | None = None) -> list[str] | None:
    """The paths a benchmark measures that differ from ``HEAD`` in the checkout at ``root``:
    modified, staged, deleted, or new and not ignored, under :data:`MEASURED_PATHS` but not
    :data:`NOT_MEASURED`. None when ``root`` is not a git checkout (or git cannot run)."""
    root = ROOT if root is None else Path(root)
    specs = [*MEASURED_PATHS, *(f":(exclude){p}" for p in NOT_MEASURED)]
    command = ["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain", "-z"]
    command += ["--untracked-files=all", "--", *specs]  # read only: no index refresh
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    entries, changes = done.stdout.split("\0"), []
    while entries:
        entry = entries.pop(0)
        if entry:
            changes.append(entry[3:])
            if entry[0] in "RC":  # a rename or copy: the next entry is its old path
                entries.pop(0)
    return sorted(changes)


def tlkit_mismatch(root: Path | None = None) -> str | None:
    """Where ``tlkit`` would be imported from, when that is not ``root/src/tlkit`` (the code the
    commit describes); None when it is, or when there is no tlkit to import (not imported
    here: only found)."""
    import importlib.util

    root = ROOT if root is None else Path(root)
    module = sys.modules.get("tlkit")
    try:
        origin = (
            getattr(module, "__file__", None)
            if module
            else importlib.util.find_spec("tlkit").origin
        )
    except (AttributeError, ImportError, ValueError):
        return None
    if not origin:
        return None
    package, expected = Path(origin).resolve().parent, (root / "src" / "tlkit").resolve()
    return None if package == expected else str(package)


def dirty_reasons(root: Path | None = None) -> list[str]:
    """Why results from the checkout at ``root`` would not describe a commit (empty: they
    would): uncommitted changes to what is measured, no git, or a tlkit from elsewhere."""
    root = ROOT if root is None else Path(root)
    changes = tree_changes(root)
    if changes is None:
        reasons = [f"{root} is not a git checkout (or git cannot run): no commit to record"]
    else:
        shown = ", ".join(changes[:10]) + (f" and {len(changes) - 10} more" if changes[10:] else "")
        reasons = [f"uncommitted changes: {shown}"] if changes else []
    if elsewhere := tlkit_mismatch(root):
        reasons.append(
            f"tlkit is imported from {elsewhere}, not this checkout's {root / 'src' / 'tlkit'}"
            f" (run with PYTHONPATH={root / 'src'})"
        )
    return reasons


def refuse_dirty(
    name: str, allow_dirty: bool, when: str = "before measuring", reasons: list[str] | None = None
) -> list[str]:
    """Exit 2 with a message if the tree is dirty (``reasons``, by default
    :func:`dirty_reasons`) and ``allow_dirty`` is false; otherwise the reasons (empty for a
    clean tree), printed as a warning if any."""
    reasons = dirty_reasons() if reasons is None else reasons
    if reasons and not allow_dirty:
        print(
            f"{name}: refusing to write a results file {when}: the code measured is not a "
            "commit:\n"
            + "".join(f"  - {r}\n" for r in reasons)
            + "Commit (or stash) the changes and run it again, or pass --allow-dirty to write "
            "results that say they come from uncommitted changes (or --no-save).",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2)
    for reason in reasons:
        print(f"# warning (--allow-dirty): {reason}", file=sys.stderr, flush=True)
    return reasons


def machine_info() -> dict:
    """Date (UTC), CPU, cores, memory, GPUs, load average, versions and git commit.

    ``git.dirty`` is whether :func:`dirty_reasons` found any (then ``git.changes`` lists them).
    """
    versions = {"Python": platform.python_version()}
    for label, dist in PACKAGES.items():
        try:
            versions[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    git = ("git", "--no-optional-locks", "-C", str(ROOT))  # read only: no index refresh
    commit = _output(*git, "rev-parse", "--short", "HEAD")
    reasons = dirty_reasons() if commit else []
    memory = _field("/proc/meminfo", "MemTotal")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "gpus": _gpus(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions,
        "git": {"commit": commit, "dirty": bool(reasons)}
        | ({"changes": reasons} if reasons else {})
        if commit
        else None,
    }


def will_save(args: argparse.Namespace) -> bool:
    """Whether :meth:`Run.finish` writes a results file for these options."""
    return not args.no_save and bool(args.json or not args.quick)


def add_allow_dirty(parser: argparse.ArgumentParser) -> None:
    """``--allow-dirty``: write results from a tree with uncommitted changes (marked so)."""
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="Write results even if src/ or benchmarks/ have uncommitted changes (or tlkit is "
        "not this checkout's); the results file says so. Without it such a run exits 2.",
    )


def parse_args(parser: argparse.ArgumentParser, argv=None, quick: dict | None = None):
    """Add ``--json``, ``--no-save``, ``--quick`` (``quick``'s tiny defaults) and
    ``--allow-dirty``, and parse. Exits 2 here, before anything is measured, if the run would
    write a results file from a dirty tree without ``--allow-dirty`` (:func:`refuse_dirty`)."""
    where = "default benchmarks/results/<name>.json; with --quick, nowhere unless given"
    parser.add_argument("--json", type=Path, help=f"Write the results here ({where}).")
    parser.add_argument("--no-save", action="store_true", help="Write no results file.")
    parser.add_argument("--quick", action="store_true", help="Tiny settings: a smoke test.")
    add_allow_dirty(parser)
    args = parser.parse_args(argv)
    if args.quick and quick:
        parser.set_defaults(**quick)  # explicit flags still win
        args = parser.parse_args(argv)
    if will_save(args):
        refuse_dirty(parser.prog, args.allow_dirty)
    return args


class Run:
    """One benchmark run: the command and the machine, recorded when it starts."""

    def __init__(self, name: str, args: argparse.Namespace, argv: Sequence[str] | None = None):
        self.name, self.args = name, args
        argv = sys.argv[1:] if argv is None else list(argv)
        self.command = shlex.join(["python", f"benchmarks/{name}.py", *argv])
        self.machine = machine_info()
        print(f"# {machine_line(self.machine)}", flush=True)

    def finish(self, tables: list[dict], ratios: Sequence[dict] = (), notes: Sequence[str] = ()):
        """Print the tables, ratios and notes; write the JSON document (atomically)."""
        doc = {"benchmark": self.name, "command": self.command, "machine": self.machine}
        doc |= {"settings": vars(self.args), "tables": tables}
        doc |= {"ratios": list(ratios), "notes": list(notes)}
        for table in [*tables, *([ratios_table(doc["ratios"])] if ratios else [])]:
            print(f"\n{table['title']}\n{markdown_table(table)}")
        for note in notes:
            print(f"- {note}")
        path = self.args.json or (None if self.args.quick else RESULTS / f"{self.name}.json")
        if path and not self.args.no_save:
            allow = bool(getattr(self.args, "allow_dirty", False))
            now, git = dirty_reasons(), doc["machine"].get("git")
            if now and git and not git["dirty"]:  # the tree changed while this ran
                git |= {"dirty": True, "changes": ["changed during the run", *now]}
            dirty = git["dirty"] if git else bool(now)
            if dirty and not allow:  # kept, but not where the docs read results from
                aside = Path(tempfile.gettempdir()) / f"{self.name}.dirty.json"
                write_json(doc, aside)
                print(f"\nresults kept aside in {aside}", flush=True)
                reasons = now or (git or {}).get("changes") or ["no commit recorded"]
                refuse_dirty(self.name, False, "at the end of the run", reasons)
            if dirty and git:
                git["allow_dirty"] = True
            write_json(doc, Path(path))
            print(f"\nwrote {path}")
        else:
            print("\nresults not saved (--no-save, or --quick without --json)")
        return doc


def write_json(doc: dict, path: Path) -> None:
    """Write ``doc`` to ``path`` through a temporary file and a rename (never half written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            # NaN (a failed measurement) becomes null: strict JSON
            text = json.dumps(doc, indent=2, default=str)
            fh.write(json.dumps(json.loads(text, parse_constant=lambda _: None), indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
