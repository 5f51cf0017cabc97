"""IDX files (MNIST's format) as a source, and in-memory arrays as splits.

The file reader itself is :mod:`tlkit.data.idx`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tlkit.data.assemble import RawParts
from tlkit.data.bundle import DataReport, Split
from tlkit.data.config import DataConfig
from tlkit.data.idx import find_idx_files, label_names, read_class_names, read_idx_pair
from tlkit.errors import UserError


def idx_parts(spec: str, config: DataConfig) -> RawParts:
    """``idx:DIR`` or ``idx:IMAGES_FILE,LABELS_FILE``: a labelled set in IDX files (MNIST format).

    A folder holds ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` and
    optionally the ``t10k-`` pair, the official test split (used when ``data.test_split > 0``);
    see :func:`tlkit.data.idx.find_idx_files` for the spellings accepted. Validation is carved
    from train. A single pair is split per ``data.val_split`` and ``data.test_split``. Class
    names are the label values, or line ``i`` of a ``classes.txt`` next to the files names
    label ``i``; label values with no images are left out.

    Raises:
        UserError: A missing or malformed file, images and labels that do not match.
    """
    source = f"idx:{spec}"
    target = Path(os.path.expanduser(spec.strip()))
    if target.is_dir():
        pairs = find_idx_files(target)
        if "train" not in pairs:
            raise UserError(
                f"{source}: no training files in {target}; expected train-images-idx3-ubyte[.gz] "
                "and train-labels-idx1-ubyte[.gz] (and optionally the t10k- pair), or name one "
                "pair as idx:IMAGES_FILE,LABELS_FILE"
            )
        folder = target
    else:
        files = [Path(os.path.expanduser(p.strip())) for p in spec.split(",")]
        if len(files) != 2 or not all(str(p) not in ("", ".") for p in files):
            missing = "" if target.exists() else f" ({target} is not a folder)"
            raise UserError(
                f"data source {source!r}: expected idx:DIR or idx:IMAGES_FILE,LABELS_FILE{missing}"
            )
        pairs, folder = {"pool": (files[0], files[1])}, files[0].parent
    names_file = folder / "classes.txt"
    names = read_class_names(names_file) if names_file.is_file() else None
    parts = idx_pair_parts(pairs, names, config, source)
    if names is not None:
        parts.closing_notes.append(f"class names from {names_file}")
    return parts


def idx_pair_parts(
    pairs: dict, given: list[str] | None, config: DataConfig, source: str
) -> RawParts:
    """IDX pairs as raw parts: ``train`` (+ official ``test``) from a folder, or one ``pool``.

    Args:
        pairs: ``{"train": (images, labels), "test": ...}`` (see
            :func:`tlkit.data.idx.find_idx_files`) or ``{"pool": (images, labels)}``.
        given: Class names by label value, or ``None`` to name classes by their values.
        config: The recipe's ``data:`` section (``test_split > 0`` uses an official test pair).
        source: The ``data.source`` string.
    """
    from_folder = "train" in pairs
    images, labels = read_idx_pair(*pairs["train" if from_folder else "pool"])
    use_test = from_folder and "test" in pairs and config.test_split > 0
    test_images, test_labels = read_idx_pair(*pairs["test"]) if use_test else (None, None)
    report = DataReport(source=source)
    present = np.unique(labels if test_labels is None else np.concatenate([labels, test_labels]))
    names, absent = label_names(present, given, next(iter(pairs.values()))[1])
    if absent:
        report.notes.append(f"classes with no images left out: {', '.join(absent)}")
    lookup = np.zeros(int(present.max(initial=0)) + 1, np.int64)
    lookup[present] = np.arange(len(present))
    pool = in_memory(images, lookup[labels], f"{source}:train" if from_folder else source)
    parts = RawParts(names, report, pool)
    if use_test:
        parts.in_train, parts.split_mode = True, "official test"
        parts.test = in_memory(test_images, lookup[test_labels], f"{source}:test")
        parts.closing_notes.append(
            f"test_split > 0: the official {len(test_labels):,}-image test split "
            f"({pairs['test'][0].name}) is the test set"
        )
    elif from_folder and "test" in pairs:
        parts.closing_notes.append(
            f"official test files {pairs['test'][0].name} not used; set data.test_split > 0 "
            "to make them the test set"
        )
    return parts


def in_memory(images: np.ndarray, labels, source: str) -> Split:
    """Grayscale ``(N, H, W)`` or RGB ``(N, H, W, 3)`` uint8 as a split, origins ``SOURCE#i``.

    Grayscale stays grayscale here; the assembly widens what is left of it to RGB.
    """
    labels = np.asarray(labels, np.int64)
    return Split(
        labels=labels, images=images, origins=[f"{source}#{i}" for i in range(len(labels))]
    )
