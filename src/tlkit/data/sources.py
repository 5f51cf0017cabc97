"""Data sources: an image folder, a CSV file, IDX files, tensorflow_datasets and built-in sets.

:func:`load_data` reads ``data.source`` and returns a :class:`DataBundle`. Nothing here opens
an image; the data doctor (:func:`tlkit.data.check_data`) does that.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from tlkit.data.bundle import DataBundle, DataReport, Split
from tlkit.data.config import DataConfig
from tlkit.data.datasets import (
    load_builtin,
    load_idx,
    load_tfds,
    pool_indices,
    take_pool,
    wanted_labels,
)
from tlkit.data.images import IMAGE_EXTENSIONS, is_image_file
from tlkit.data.splits import LAYOUT_HELP, carve, finish_bundle
from tlkit.errors import UnknownNameError, UserError

SCHEMES = ("builtin", "csv", "dir", "idx", "tfds")
_SPLIT_DIRS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
_SPLIT_VALUES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
_SKIP_DIRS = {"__MACOSX"}


def load_data(config: DataConfig | str, *, seed: int = 0) -> DataBundle:
    """Load the source named by ``config.source`` into train / val / test splits.

    Args:
        config: The recipe's ``data:`` section, or just a source string (defaults for the rest).
        seed: Seed of any split made here; same seed, same split.

    Returns:
        The bundle, with counts in ``bundle.report``; files are not opened yet.

    Raises:
        UserError: Unknown scheme, missing path, no images, a single class, a class without
            training images.
    """
    if isinstance(config, str):
        config = DataConfig(source=config)
    source = config.source.strip()
    if "://" in source:
        raise UserError(
            f"data source {source!r} is a URL; tlkit never downloads. Download the images, "
            "then point data.source at the folder." + LAYOUT_HELP
        )
    scheme, rest = _scheme(source)
    if scheme is None:
        bundle = _load_path(Path(os.path.expanduser(source)), source, config, seed)
    elif scheme == "dir":
        bundle = load_folder(Path(os.path.expanduser(rest)), config, seed=seed, source=source)
    elif scheme == "csv":
        bundle = load_csv(Path(os.path.expanduser(rest)), config, seed=seed, source=source)
    elif scheme == "builtin":
        bundle = load_builtin(rest, config, seed=seed)
    elif scheme == "tfds":
        bundle = load_tfds(rest, config, seed=seed)
    elif scheme == "idx":
        bundle = load_idx(rest, config, seed=seed)
    else:
        raise UnknownNameError("data source scheme", scheme, SCHEMES)
    return finish_bundle(keep_classes(bundle, config), strict=config.strict)


def keep_classes(bundle: DataBundle, config: DataConfig) -> DataBundle:
    """Only the classes named in ``data.classes``, in every split, re-indexed ``0..k-1``.

    The sources have already dropped the other classes from the pool they carve from (with
    :func:`tlkit.data.datasets.pool_indices`); this drops them from official splits too.
    """
    wanted = wanted_labels(bundle.class_names, config)
    if wanted is None:
        return bundle
    lookup = np.full(len(bundle.class_names), -1, np.int64)
    lookup[wanted] = np.arange(len(wanted))
    for role, split in bundle.splits().items():
        index = np.flatnonzero(lookup[split.labels] >= 0)
        if len(index) < len(split):
            split = split.subset(index)
        kept = Split(
            labels=lookup[split.labels],
            paths=split.paths,
            images=split.images,
            origins=split.origins,
        )
        setattr(bundle, role, kept)
    total = len(bundle.class_names)
    bundle.class_names = [bundle.class_names[i] for i in wanted]
    bundle.report.notes.append(f"kept classes {', '.join(bundle.class_names)} of {total}")
    return bundle


def _scheme(source: str) -> tuple[str | None, str]:
    match = re.match(r"^([A-Za-z][A-Za-z0-9_]+):(?!//)(.*)$", source)
    if not match or (match.group(1).lower() not in SCHEMES and Path(source).exists()):
        return None, source
    return match.group(1).lower(), match.group(2)


def _load_path(path: Path, source: str, config: DataConfig, seed: int) -> DataBundle:
    if path.is_file() and path.suffix.lower() == ".csv":
        return load_csv(path, config, seed=seed, source=source)
    return load_folder(path, config, seed=seed, source=source)


def load_folder(
    root: str | os.PathLike, config: DataConfig, *, seed: int = 0, source: str | None = None
) -> DataBundle:
    """Images in class subfolders, optionally under ``train/``, ``val/`` and ``test/``.

    With split folders, class names are the union over them, sorted; otherwise each class is
    split with :func:`tlkit.data.splits.stratified_split`. Class names sort numerically when
    they are all integers, else alphabetically. Hidden files and folders are ignored; files
    without an image extension are listed in the report.
    """
    root = Path(root)
    source = source or str(root)
    if not root.exists():
        raise UserError(f"data folder {root} does not exist." + LAYOUT_HELP)
    if not root.is_dir():
        raise UserError(f"data source {root} is a file, not a folder or a CSV." + LAYOUT_HELP)
    subdirs = _visible_dirs(root)
    split_dirs: dict[str, Path] = {}
    for d in subdirs:
        role = _SPLIT_DIRS.get(d.name.lower())
        if role and role not in split_dirs:
            split_dirs[role] = d
    report = DataReport(source=source)
    if "train" in split_dirs and (len(split_dirs) > 1 or len(subdirs) == 1):
        return _load_split_folders(root, split_dirs, subdirs, report, config, seed)
    classes, loose = _scan_classes(root, report)
    if not classes:
        if loose:
            raise UserError(
                f"data folder {root} has {len(loose)} images directly inside it but no class "
                "subfolders; put each class's images in its own subfolder." + LAYOUT_HELP
            )
        raise UserError(
            f"no images in data folder {root} (looked for {', '.join(IMAGE_EXTENSIONS)})."
            + LAYOUT_HELP
        )
    _note_loose(report, loose, root)
    names = sort_class_names(classes)
    everything = take_pool(_split_from(classes, names), names, config, seed, report)
    train, val, test = carve(
        everything, val_split=config.val_split, test_split=config.test_split, seed=seed
    )
    report.split_mode = "stratified"
    return DataBundle(names, train, val, test, report, source)


def _load_split_folders(root, split_dirs, subdirs, report, config, seed) -> DataBundle:
    scanned = {}
    for role, d in split_dirs.items():
        classes, loose = _scan_classes(d, report)
        _note_loose(report, loose, d)
        scanned[role] = classes
    extra = [d.name for d in subdirs if d not in split_dirs.values()]
    if extra:
        report.warnings.append(
            f"folders next to the split folders were ignored: {', '.join(sorted(extra))}"
        )
    names = sort_class_names({c for classes in scanned.values() for c in classes})
    if not names:
        raise UserError(f"no images in the split folders of {root}." + LAYOUT_HELP)
    splits = {role: _split_from(classes, names) for role, classes in scanned.items()}
    train = take_pool(splits["train"], names, config, seed, report)
    val, test = splits.get("val"), splits.get("test")
    modes = ["folders"]
    if val is None:
        test_frac = config.test_split if test is None else 0.0
        train, val, carved_test = carve(
            train, val_split=config.val_split, test_split=test_frac, seed=seed
        )
        test = test if test is not None else carved_test
        modes.append("val carved from train")
    elif test is None and config.test_split > 0:
        train, _, test = carve(train, val_split=0.0, test_split=config.test_split, seed=seed)
        modes.append("test carved from train")
    report.split_mode = ", ".join(modes)
    return DataBundle(
        names, train, val, test if test is not None else Split.empty(), report, report.source
    )


def _visible_dirs(root: Path) -> list[Path]:
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name not in _SKIP_DIRS
    )


def _scan_classes(root: Path, report: DataReport) -> tuple[dict[str, list[str]], list[str]]:
    """``{class: sorted image paths}`` for each subfolder (searched recursively), loose images."""
    classes: dict[str, list[str]] = {}
    for d in _visible_dirs(root):
        files = []

        def unreadable(error: OSError) -> None:
            report.unlisted.append({"path": error.filename,
                                    "reason": f"cannot list folder ({error.strerror})"})

        for dirpath, dirnames, filenames in os.walk(d, onerror=unreadable):
            dirnames[:] = [n for n in dirnames if not n.startswith(".") and n not in _SKIP_DIRS]
            for name in filenames:
                path = os.path.join(dirpath, name)
                if is_image_file(name):
                    files.append(path)
                elif not name.startswith("."):
                    report.ignored.append({"path": path, "reason": "not an image extension"})
        classes[d.name] = sorted(files)
    loose = sorted(str(p) for p in root.iterdir() if p.is_file() and is_image_file(p.name))
    return classes, loose


def _note_loose(report: DataReport, loose: list[str], root: Path) -> None:
    if loose:
        report.warnings.append(
            f"{len(loose)} images directly in {root} (outside any class folder) were ignored"
        )


def _split_from(classes: dict[str, list[str]], names: list[str]) -> Split:
    index = {name: i for i, name in enumerate(names)}
    paths = [p for c in sorted(classes) for p in classes[c]]
    labels = [index[c] for c in sorted(classes) for _ in classes[c]]
    return Split(labels=np.asarray(labels, np.int64), paths=paths)


def sort_class_names(names) -> list[str]:
    """Integers in numeric order ("2" before "10"), anything else alphabetically."""
    names = list(set(names))
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def load_csv(
    path: str | os.PathLike, config: DataConfig, *, seed: int = 0, source: str | None = None
) -> DataBundle:
    """Rows ``path,label[,split]``; an optional header row starts with ``path``.

    Relative paths are relative to the CSV's folder. Rows with a ``split`` value (train, val or
    validation, test) keep it; rows without one are split per class like a folder. Blank rows
    and rows starting with ``#`` are skipped.
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
    report = DataReport(source=source, split_mode="csv")
    pool = np.asarray([i for i, role in enumerate(roles) if role in (None, "train")], np.int64)
    chosen = pool_indices(everything.labels[pool], names, config, seed, report)
    if chosen is not None:  # rows of the pool: capped; rows of a val/test split: kept
        keep = np.sort(np.concatenate([np.setdiff1d(np.arange(len(rows)), pool), pool[chosen]]))
        everything, roles = everything.subset(keep), [roles[i] for i in keep]
    parts = {
        role: everything.subset([i for i, r in enumerate(roles) if r == role])
        for role in ("train", "val", "test", None)
    }
    if len(parts[None]):
        all_unassigned = len(parts[None]) == len(everything)
        extra = carve(
            parts[None], val_split=config.val_split, test_split=config.test_split, seed=seed
        )
        parts = {
            role: _concat(parts[role], p)
            for role, p in zip(("train", "val", "test"), extra, strict=True)
        }
        report.split_mode = "stratified" if all_unassigned else "csv, unassigned rows stratified"
    if not len(parts["val"]):
        test_frac = config.test_split if not len(parts["test"]) else 0.0
        train, val, test = carve(
            parts["train"], val_split=config.val_split, test_split=test_frac, seed=seed
        )
        parts = {"train": train, "val": val, "test": _concat(parts["test"], test)}
        report.split_mode += ", val carved from train"
    return DataBundle(names, parts["train"], parts["val"], parts["test"], report, source)


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


def _concat(a: Split, b: Split) -> Split:
    return Split(
        labels=np.concatenate([a.labels, b.labels]),
        paths=list(a.paths) + list(b.paths),
        origins=list(a.origins) + list(b.origins),
    )
