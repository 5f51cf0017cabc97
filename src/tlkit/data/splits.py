"""Seeded stratified splitting and the ``splits.csv`` record of which example went where.

The split maths only: :func:`tlkit.data.assemble.assemble` decides what is carved from what.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from tlkit.data.bundle import DataBundle, Split
from tlkit.io import atomic_write_text


def stratified_split(
    labels: np.ndarray, *, val_split: float, test_split: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices per class into train / val / test, reproducibly.

    Every class with at least 2 examples gets at least one validation example (and, with
    ``test_split > 0``, every class with at least 3 gets a test example); every class keeps at
    least one training example. A class with a single example goes to train. Within each split
    the indices are sorted, so the order follows the source.

    Args:
        labels: Integer label per example.
        val_split: Fraction of each class for validation.
        test_split: Fraction of each class for test; 0 for none.
        seed: Seed of the per-class shuffles: same seed, same split.

    Returns:
        ``(train, val, test)`` index arrays.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val, n_test = _sizes(len(idx), val_split, test_split)
        parts[1].extend(idx[:n_val])
        parts[2].extend(idx[n_val : n_val + n_test])
        parts[0].extend(idx[n_val + n_test :])
    return tuple(np.sort(np.asarray(p, dtype=np.int64)) for p in parts)


def _sizes(n: int, val_split: float, test_split: float) -> tuple[int, int]:
    n_val = max(1, round(n * val_split)) if val_split > 0 and n >= 2 else 0
    n_test = max(1, round(n * test_split)) if test_split > 0 and n >= 3 else 0
    while n_val + n_test > n - 1 and (n_test or n_val):
        if n_test:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def carve(
    split: Split, *, val_split: float, test_split: float, seed: int
) -> tuple[Split, Split, Split]:
    """Stratified ``(train, val, test)`` parts of ``split``; a fraction of 0 gives an empty part."""
    train, val, test = stratified_split(
        split.labels, val_split=val_split, test_split=test_split, seed=seed
    )
    return split.subset(train), split.subset(val), split.subset(test)


def save_splits(bundle: DataBundle, path: str | os.PathLike) -> None:
    """Write which example went to which split as CSV (``path,label,split``), atomically.

    File sources record the original file paths (before any conversion by the data doctor),
    so the file works as a ``csv:`` source to repeat the split exactly. In-memory sources record
    ``SOURCE#INDEX`` rows.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "label", "split"])
    for name, split in bundle.splits().items():
        for origin, label in zip(split.origins, split.labels, strict=True):
            writer.writerow([origin, bundle.class_names[int(label)], name])
    atomic_write_text(path, out.getvalue())
