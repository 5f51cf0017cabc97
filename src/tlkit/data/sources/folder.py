"""An image folder: class subfolders, optionally under ``train/``, ``val/`` and ``test/``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from tlkit.data.assemble import LAYOUT_HELP, RawParts
from tlkit.data.bundle import DataReport, Split
from tlkit.data.images import IMAGE_EXTENSIONS, is_image_file
from tlkit.errors import UserError

_SPLIT_DIRS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
_SKIP_DIRS = {"__MACOSX"}


def folder_parts(root: str | os.PathLike, *, source: str | None = None) -> RawParts:
    """Images in class subfolders, optionally under ``train/``, ``val/`` and ``test/``.

    With split folders, class names are the union over them, sorted, and the folders are the
    source's own splits; otherwise every image is in the pool and each class is split by the
    assembly. Class names sort numerically when they are all integers, else alphabetically.
    Hidden files and folders are ignored; files without an image extension are listed in the
    report.

    Args:
        root: The folder.
        source: The ``data.source`` string (default: the folder).

    Raises:
        UserError: No such folder, a file, no images, images but no class subfolders.
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
        return _split_folder_parts(root, split_dirs, subdirs, report)
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
    return RawParts(names, report, _split_from(classes, names))


def _split_folder_parts(root, split_dirs, subdirs, report) -> RawParts:
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
    return RawParts(
        names, report, splits["train"], in_train=True, val=splits.get("val"),
        test=splits.get("test"), split_mode="folders", carve_test=True,
    )  # fmt: skip


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
            report.unlisted.append(
                {"path": error.filename, "reason": f"cannot list folder ({error.strerror})"}
            )

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
