"""Atomic file writes: a crash never leaves a half-written file where a good one was."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` if the block succeeds.

    The temporary name ends with ``path``'s whole name, so writers that look at the suffix
    (Keras' ``.keras`` and ``.weights.h5``, matplotlib's ``.png``) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise named(exc, path) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


#: The prefix of :func:`atomic_path`'s temporary files.
TEMPORARY_PREFIX = ".tmp-"


def remove_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Delete what :func:`atomic_path` (and the checkpoint writer's temporary folders) left
    under ``root`` when its process was killed before the rename; finished files are never
    touched. Call it only while holding ``root``."""
    removed = []
    for tmp in sorted(Path(root).rglob(f"{TEMPORARY_PREFIX}*"), reverse=True):
        if tmp.is_symlink() or not tmp.exists():
            continue
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


#: errno values that mean "no room to write": what it is, and what the user can do about it.
OUT_OF_SPACE = {
    errno.ENOSPC: ("no space left on the device", "Free some space"),
    errno.EDQUOT: ("disk quota exceeded", "Free some space within your quota"),
    errno.EFBIG: ("file too large for the file-size limit", "Raise the limit (ulimit -f)"),
}


def out_of_space(exc: BaseException) -> tuple[str, str] | None:
    """What ``exc`` (or what caused it) says when it is a write that found no room, and what to
    do about it; None when it is something else.

    h5py and TensorFlow report it in their own exception types, with the errno only in the
    message ("errno = 28"), so the message is read too.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        number = getattr(exc, "errno", None)
        if number in OUT_OF_SPACE:
            return OUT_OF_SPACE[number]
        text = str(exc)
        for number, found in OUT_OF_SPACE.items():
            if f"errno = {number}," in text or os.strerror(number) in text:
                return found
        exc = exc.__cause__ or exc.__context__
    return None


def named(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` with ``path`` as its file name when it has none (a failed ``write`` names none)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically. A file name that is not valid UTF-8 (its
    bytes decoded by Python as surrogates) is written with backslash escapes, never a crash."""
    atomic_write_bytes(path, text.encode("utf8", errors="backslashreplace"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")
