"""A CSV file of ``path,label[,split]`` rows."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from tlkit.data.assemble import RawParts
from tlkit.data.bundle import DataReport, Split
from tlkit.data.sources.folder import sort_class_names
from tlkit.errors import UserError

_SPLIT_VALUES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def csv_parts(path: str | os.PathLike, *, source: str | None = None) -> RawParts:
    """Rows ``path,label[,split]``; an optional header row starts with ``path``.

    Relative paths are relative to the CSV's folder. Rows with a ``split`` value (train, val or
    validation, test) keep it; rows without one are split per class like a folder. Blank rows
    and rows starting with ``#`` are skipped. The pool is the train rows and the rows without a
    split, in file order; val and test rows are the source's own splits.

    Args:
        path: The CSV file.
        source: The ``data.source`` string (default: ``csv:PATH``).

    Raises:
        UserError: No such file, no rows, a malformed row, none of the listed files exists.
    """
    path = Path(path)
    source = source or f"csv:{path}"
    if not path.is_file():
        raise UserError(
            f"CSV file {path} does not exist. Expected rows like 'images/cat1.jpg,cat[,train]'."
        )
    rows = _read_csv_rows(path)
    if not rows:
        raise UserError(f"CSV file {path} has no rows. Expected rows like 'images/cat1.jpg,cat'.")
    names = sort_class_names({label for _, _, label, _ in rows})
    index = {name: i for i, name in enumerate(names)}
    paths = [p for _, p, _, _ in rows]
    if not any(os.path.exists(p) for p in paths):
        first_line, first_path = rows[0][0], rows[0][1]
        raise UserError(
            f"none of the {len(paths)} files listed in {path} exists (line {first_line} points "
            f"to {first_path}); relative paths are taken from the CSV's folder {path.parent}."
        )
    everything = Split(labels=np.asarray([index[r[2]] for r in rows], np.int64), paths=paths)
    roles = [r[3] for r in rows]

    def rows_of(*wanted) -> np.ndarray:
        return np.asarray([i for i, role in enumerate(roles) if role in wanted], np.int64)

    pool, own = rows_of(None, "train"), {role: rows_of(role) for role in ("val", "test")}
    val, test = (everything.subset(own[role]) if len(own[role]) else None for role in own)
    return RawParts(
        names, DataReport(source=source), everything.subset(pool),
        in_train=np.asarray([roles[i] == "train" for i in pool], bool), val=val, test=test,
        split_mode="csv", empty_is_missing=True,
    )  # fmt: skip


def _read_csv_rows(path: Path) -> list[tuple[int, str, str, str | None]]:
    """``(line, absolute path, label, split or None)`` per data row."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        first = True
        for line, row in enumerate(csv.reader(fh), start=1):
            row = [cell.strip() for cell in row]
            if not any(row) or row[0].startswith("#"):
                continue
            if first:
                first = False
                if _is_header(row):
                    continue
            if len(row) < 2 or not row[0] or not row[1]:
                raise UserError(
                    f"{path} line {line}: expected 'path,label[,split]', got {','.join(row)!r}"
                )
            split = row[2].lower() if len(row) > 2 and row[2] else None
            if split is not None and split not in _SPLIT_VALUES:
                raise UserError(
                    f"{path} line {line}: split {row[2]!r} is not one of train, val, test"
                )
            file = Path(os.path.expanduser(row[0]))
            file = file if file.is_absolute() else path.parent / file
            rows.append((line, str(file), row[1], _SPLIT_VALUES.get(split) if split else None))
    return rows


def _is_header(row: list[str]) -> bool:
    return row[0].lower() in {"path", "file", "filename", "filepath", "image"} and (
        len(row) < 2 or row[1].lower() in {"label", "class", "category", "target"}
    )
