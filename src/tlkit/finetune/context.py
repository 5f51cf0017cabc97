"""The run context: where a run writes, whether it resumes, its strategy, seed and chief."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from tlkit.errors import UserError
from tlkit.io import remove_stale_temporaries
from tlkit.recipes import recipe_to_yaml, run_name
from tlkit.recipes.regime import DEFAULT_NAME
from tlkit.rundir import RunDir
from tlkit.train import TrainState, is_chief, resolve_strategy

#: Held (``flock``) by the process running in a run directory; the kernel releases it when
#: that process ends, however it ends, so a killed run never leaves it stuck.
LOCK_FILE = RunDir.LOCK
#: What makes a folder a tlkit run directory.
RUN_MARKERS = (RunDir.RECIPE, RunDir.STATE, RunDir.FEATURE_CACHE, LOCK_FILE)


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``run_dir/.tlkit.lock`` (with the holder's pid)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise UserError(
                f"{run_dir} is in use by another tlkit run (process {holder}); wait for it to "
                "finish, or give this run another --output"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def check_not_busy(run_dir: Path) -> None:
    """Raise :class:`UserError` when a live process holds ``run_dir``'s lock."""
    if (Path(run_dir) / LOCK_FILE).exists():
        RunLock(run_dir).release()


@dataclass
class RunContext:
    """Where and how a run happens.

    Attributes:
        run_dir: The run directory (a non-chief worker's own scratch folder).
        resuming: An unfinished run is continued there.
        strategy: The ``tf.distribute`` strategy.
        chief: This process writes the run's outputs.
        seed: The run's seed (set for Python, NumPy and the backend).
    """

    run_dir: Path
    resuming: bool
    strategy: Any
    chief: bool
    seed: int
    lock: RunLock | None = field(default=None, repr=False)
    #: This process made the directory (it did not exist): a failed start may remove it.
    created: bool = False

    def close(self) -> None:
        """Release the run directory (the end of the run, or its failure)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @classmethod
    def open(
        cls,
        output,
        name: str,
        strategy: str,
        *,
        seed: int,
        overwrite: bool = False,
        resume: bool = True,
        log: Callable[[str], None] = print,
    ) -> RunContext:
        """Resolve the strategy and the run directory (see :func:`resolve_run_dir`), create the
        directory and seed every generator.

        Args:
            output: The recipe's ``output`` section.
            name: The recipe's name (``runs/<name>`` by default).
            strategy: The recipe's ``train.strategy``.
            seed: The recipe's seed.
            overwrite: Replace an existing run directory.
            resume: Continue an unfinished run there.
            log: Where the directory line goes.
        """
        resolved = resolve_strategy(strategy)
        chief = is_chief(resolved)
        if chief:
            run_dir, resuming = resolve_run_dir(output, name, overwrite=overwrite, resume=resume)
        else:
            run_dir, resuming = worker_run_dir(
                run_base(output, name), resolved.cluster_resolver.task_id,
                overwrite=overwrite, resume=resume,
            )
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir)
        remove_stale_temporaries(run_dir)  # half-written files of a killed process
        log(f"run directory: {run_dir}" + (" (resuming)" if resuming else ""))
        keras.utils.set_random_seed(seed)
        return cls(run_dir, resuming, resolved, chief, seed, lock, created)

    def discard_if_unstarted(self) -> bool:
        """After a failed start: remove the directory this process made if no epoch finished
        (no ``state.json``), so a mistake leaves no half-written run behind."""
        if not self.created or (self.run_dir / RunDir.STATE).exists():
            return False
        self.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return True


def run_base(output, name: str) -> Path:
    """``output.dir``, or ``<output.root>/<name>``."""
    return Path(output.dir) if output.dir is not None else Path(output.root) / name


#: A run's inputs at its start (:func:`run_fingerprint`): what says a finished run is this one.
INPUTS_FILE = RunDir.INPUTS


def run_fingerprint(recipe_yaml: str, source: str) -> str:
    """A digest of the resolved recipe and of the data it names: for a folder, every file's
    path, size and modification time (cheap: no file is read); else the source string."""
    digest = hashlib.sha256(recipe_yaml.encode())
    folder = Path(source)
    if folder.is_dir():
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(f for f in files if not f.startswith(".")):
                path = Path(root, name)
                try:
                    info = path.stat()
                except OSError:
                    continue
                digest.update(f"{path.relative_to(folder)}\0{info.st_size}\0"
                              f"{info.st_mtime_ns}\n".encode("utf8", "surrogateescape"))
    else:
        digest.update(source.encode("utf8", "surrogateescape"))
    return digest.hexdigest()


def _fingerprint_of(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / INPUTS_FILE).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def locate_run_dir(output, name: str, *, fingerprint: str | None = None,
                   overwrite: bool = False, resume: bool = True) -> tuple[Path, str]:
    """Where a run with these settings goes, and what happens there, without changing
    anything (``tlkit plan`` says it; :func:`resolve_run_dir` does it). The status is ``new``
    (an empty or missing directory), ``resume`` (an unfinished run), ``restart`` (one that
    crashed before its first epoch), ``replace`` (``overwrite``) or ``done``: a finished run
    with the same ``fingerprint`` (the same recipe and data), which a run says and leaves.

    A default directory (``runs/<name>``) that holds another finished run moves on to
    ``runs/<name>-2`` and so on; an explicit ``output.dir`` that holds one is an error unless
    ``overwrite``.
    """
    explicit = output.dir is not None
    base = run_base(output, name)
    candidate, n = base, 1
    while True:
        if candidate.exists():
            check_not_busy(candidate)  # before anything here is resumed, cleared or replaced
        if not candidate.exists() or not any(candidate.iterdir()):
            return candidate, "new"
        if not any((candidate / m).exists() for m in RUN_MARKERS):
            raise UserError(
                f"{candidate} exists and is not a tlkit run directory; choose another --output"
            )
        if overwrite:
            return candidate, "replace"
        state = TrainState.load(candidate)
        if state is not None and not state.complete and resume:
            return candidate, "resume"  # training, or the reports after it, did not finish
        if state is None and resume:
            return candidate, "restart"
        if (state is not None and state.complete and fingerprint is not None
                and _fingerprint_of(candidate) == fingerprint):
            return candidate, "done"
        if explicit:
            raise UserError(
                f"{candidate} already holds a finished run with other settings or data; pass "
                "--overwrite to replace it or choose another --output"
            )
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")


def place_run(recipe, *, overwrite: bool = False, resume: bool = True):
    """Where ``recipe``'s run goes and what happens there (``finetune`` acts on it, ``plan``
    says it): the recipe with its run's name filled in (``<backbone>-<data>`` when it leaves the
    default, so ``recipe.yaml`` and the reports carry it), its fingerprint, the directory and
    :func:`locate_run_dir`'s status."""
    if recipe.name == DEFAULT_NAME:
        recipe = recipe.model_copy(update={"name": run_name(recipe)})
    fingerprint = run_fingerprint(recipe_to_yaml(recipe), recipe.data.source)
    where, status = locate_run_dir(recipe.output, recipe.name, fingerprint=fingerprint,
                                   overwrite=overwrite, resume=resume)
    return recipe, fingerprint, where, status


def resolve_run_dir(
    output, name: str, *, overwrite: bool = False, resume: bool = True
) -> tuple[Path, bool]:
    """Pick the run directory (:func:`locate_run_dir`, a finished run never reused) and make it
    ready; returns ``(path, resuming)``."""
    candidate, status = locate_run_dir(output, name, overwrite=overwrite, resume=resume)
    if status == "replace":
        shutil.rmtree(candidate)
    elif status == "restart":
        # Crashed before the first epoch finished: start again in the same place, keeping
        # any cached features (keyed by content, they are reused when still valid).
        _clear_run_dir(candidate, keep=("feature_cache",))
    return candidate, status == "resume"


def worker_run_dir(
    base: Path, task_id: int, *, overwrite: bool = False, resume: bool = True
) -> tuple[Path, bool]:
    """A non-chief worker's own scratch folder beside the chief's run directory ``base``.

    Computed without looking into (or changing) the chief's directory, which the chief alone
    manages. A finished or overwritten worker folder starts again; an unfinished one resumes.
    """
    folder = base.parent / f".{base.name}-worker-{task_id}"
    state = TrainState.load(folder) if folder.exists() else None
    if folder.exists() and (overwrite or state is None or state.finished or not resume):
        shutil.rmtree(folder)
        return folder, False
    return folder, state is not None


def _clear_run_dir(run_dir: Path, keep: tuple[str, ...] = ()) -> None:
    for entry in run_dir.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
