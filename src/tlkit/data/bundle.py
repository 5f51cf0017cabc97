"""What a data source returns: splits of images and labels, the class names and a report."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlkit.data.mistakes import label_issue_line, near_duplicate_line

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split: image files or in-memory images, with integer labels.

    Exactly one of ``paths`` and ``images`` is set. ``images`` is a uint8 array ``(N, H, W, 3)``,
    or a list of uint8 ``(H, W, 3)`` arrays when sizes differ.

    Attributes:
        labels: Integer class index per example, shape ``(N,)``.
        paths: Image files (the data doctor may swap a path for a converted RGB copy).
        images: In-memory images.
        origins: Where each example came from, for reports and ``splits.csv``: the original
            file path, or ``"SOURCE#INDEX"`` for in-memory sources.
    """

    labels: np.ndarray
    paths: list[str] | None = None
    images: np.ndarray | list[np.ndarray] | None = None
    origins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.paths is None and self.images is None:
            self.paths = []
        if self.paths is not None:
            self.paths = [str(p) for p in self.paths]
        if not self.origins:
            n = len(self.images) if self.paths is None else 0
            self.origins = (
                list(self.paths) if self.paths is not None else [f"#{i}" for i in range(n)]
            )
        n = len(self.labels)
        data_len = len(self.paths) if self.paths is not None else len(self.images)
        if data_len != n or len(self.origins) != n:
            raise ValueError(
                f"split has {data_len} images, {n} labels, {len(self.origins)} origins"
            )

    @classmethod
    def empty(cls, in_memory: bool = False) -> Split:
        """An empty split (an absent test split)."""
        if in_memory:
            return cls(labels=np.zeros(0, np.int64), images=np.zeros((0, 1, 1, 3), np.uint8))
        return cls(labels=np.zeros(0, np.int64), paths=[])

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> Split:
        """The examples at ``indices``, in that order."""
        indices = [int(i) for i in indices]
        if self.images is not None:
            if isinstance(self.images, np.ndarray):
                images = self.images[np.asarray(indices, dtype=np.int64)]
            else:
                images = [self.images[i] for i in indices]
            return Split(
                labels=self.labels[indices],
                images=images,
                origins=[self.origins[i] for i in indices],
            )
        return Split(
            labels=self.labels[indices],
            paths=[self.paths[i] for i in indices],
            origins=[self.origins[i] for i in indices],
        )

    def counts(self, num_classes: int) -> np.ndarray:
        """Examples per class, shape ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=num_classes)[:num_classes]


@dataclass
class DataReport:
    """What was found in the data and what the data doctor did about it.

    Attributes:
        source: The ``data.source`` string.
        split_mode: How the splits were made: ``folders``, ``stratified``, ``csv`` or ``official``.
        class_names: Class names, index order.
        counts: Per split, per class name, the number of examples.
        imbalance_ratio: Largest / smallest training class (``None`` if a class is empty).
        class_weights: Per class name weight when class weighting is on, else ``None``.
        class_weight_mode: The ``data.class_weights`` setting that produced ``class_weights``.
        checked: Whether the data doctor ran.
        skipped: ``{path, split, label, reason}`` for every file removed from a split.
        converted: ``{path, to, reason}`` for every file replaced by an RGB PNG copy.
        duplicates: Groups of byte-identical images found in train and in val or test:
            ``{sha1, items: [{path, split, label}]}``.
        near_duplicates: ``{summary, groups}`` of near-copies (re-encoded, resized, slightly
            cropped) by perceptual hash (:func:`tlkit.data.mistakes.find_near_duplicates`);
            reported only, nothing removed.
        label_issues: ``{summary, items}`` of likely label errors found after training
            (:func:`tlkit.data.mistakes.find_label_issues`); reported only, nothing relabelled.
        small_classes: ``{class, train, minimum}`` for classes below ``min_images_per_class``.
        dropped_classes: ``{class, reason, val, test}`` for classes left out of the run (no
            training images: an empty class folder, or all of its files unreadable).
        missing: Per split, classes with no examples there.
        ignored: Files next to the images that are not images (``{path, reason}``).
        unlisted: Folders that could not be read (``{path, reason}``: no permission, say); what
            they hold is not in the run.
        warnings: Other things worth a look.
        notes: Facts about the load (caps, official splits used, where copies went).
    """

    source: str
    split_mode: str = ""
    class_names: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    imbalance_ratio: float | None = None
    class_weights: dict[str, float] | None = None
    class_weight_mode: str | None = None
    checked: bool = False
    skipped: list[dict[str, Any]] = field(default_factory=list)
    converted: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    near_duplicates: dict[str, Any] = field(default_factory=dict)
    label_issues: dict[str, Any] = field(default_factory=dict)
    small_classes: list[dict[str, Any]] = field(default_factory=list)
    dropped_classes: list[dict[str, Any]] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[dict[str, Any]] = field(default_factory=list)
    unlisted: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        """Examples per split."""
        return {s: sum(self.counts.get(s, {}).values()) for s in SPLITS}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what the run writes as ``data_report.json``)."""
        return {
            "source": self.source,
            "split_mode": self.split_mode,
            "class_names": list(self.class_names),
            "totals": self.totals(),
            "counts": {s: dict(c) for s, c in self.counts.items()},
            "imbalance_ratio": self.imbalance_ratio,
            "class_weight_mode": self.class_weight_mode,
            "class_weights": self.class_weights,
            "checked": self.checked,
            "skipped": list(self.skipped),
            "converted": list(self.converted),
            "duplicates": list(self.duplicates),
            "near_duplicates": dict(self.near_duplicates),
            "label_issues": dict(self.label_issues),
            "small_classes": list(self.small_classes),
            "dropped_classes": list(self.dropped_classes),
            "missing": {s: list(c) for s, c in self.missing.items()},
            "ignored": list(self.ignored),
            "unlisted": list(self.unlisted),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }

    def format(self, limit: int = 10) -> str:
        """Human-readable summary: a few lines, then the first ``limit`` items of each list."""
        t = self.totals()
        k = len(self.class_names)
        lines = [
            f"data {self.source} ({self.split_mode}): {k} classes, "
            f"train {t['train']} / val {t['val']} / test {t['test']} images"
        ]
        train = self.counts.get("train", {})
        if train:
            big = max(train, key=train.get)
            small = min(train, key=train.get)
            ratio = "n/a" if self.imbalance_ratio is None else f"{self.imbalance_ratio:.2f}"
            lines.append(
                f"  train per class: {train[small]}..{train[big]} "
                f"(smallest {small!r}, largest {big!r}; imbalance {ratio})"
            )
        if self.class_weights:
            shown = ", ".join(f"{c}={w:.3g}" for c, w in list(self.class_weights.items())[:limit])
            lines.append(
                f"  class weights ({self.class_weight_mode}): {shown}{_more(self.class_weights, limit)}"
            )
        elif self.class_weight_mode:
            lines.append(f"  class weights ({self.class_weight_mode}): off")
        if not self.checked:
            lines.append("  files not checked (the data doctor did not run)")
        _list(
            lines,
            f"skipped {len(self.skipped)} unreadable files",
            self.skipped,
            limit,
            lambda d: f"{d['path']} [{d['split']}]: {d['reason']}",
        )
        if self.converted:
            lines.append(f"  {converted_summary(self.converted)}")
        _list(
            lines,
            f"{len(self.duplicates)} exact duplicates in train and val/test or in several classes",
            self.duplicates,
            limit,
            lambda d: f"{d.get('kind', 'train and val/test')}: " + " = ".join(
                f"{i['path']} [{i['split']}, {i.get('label', '?')}]" for i in d["items"]),
        )
        for line in (near_duplicate_line(self.near_duplicates),
                     label_issue_line(self.label_issues)):
            if line:
                lines.append(f"  {line}")
        _list(
            lines,
            f"dropped {len(self.dropped_classes)} classes (data.strict: true makes this an error)",
            self.dropped_classes,
            limit,
            lambda d: f"{d['class']!r}: {d['reason']}",
        )
        _list(
            lines,
            f"{len(self.small_classes)} classes below the minimum",
            self.small_classes,
            limit,
            lambda d: f"{d['class']!r}: {d['train']} train images (minimum {d['minimum']})",
        )
        for split, classes in self.missing.items():
            if classes:
                lines.append(
                    f"  no {split} images for {len(classes)} class(es): "
                    f"{', '.join(map(repr, classes[:limit]))}{_more(classes, limit)}"
                )
        _list(
            lines,
            f"ignored {len(self.ignored)} non-image files",
            self.ignored,
            limit,
            lambda d: f"{d['path']}: {d['reason']}",
        )
        _list(
            lines,
            f"could not read {len(self.unlisted)} folders (their files are not in the run)",
            self.unlisted,
            limit,
            lambda d: f"{d['path']}: {d['reason']}",
        )
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def converted_summary(converted: list[dict[str, Any]]) -> str:
    """One line for the data check's copies: how many, why (most common reason first), where.

    Conversions are routine (a folder of phone photos may be mostly EXIF-rotated), so the
    terminal gets this line and ``converted`` (``data_report.json`` in a run) keeps the list.
    """
    reasons = Counter(c["reason"] for c in converted)
    why = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    folders = sorted({os.path.dirname(c["to"]) for c in converted if c.get("to")})
    where = f" into {folders[0]}" if len(folders) == 1 else ""
    return f"converted {len(converted)} files TensorFlow cannot read as they are ({why}){where}"


def _list(lines: list[str], title: str, items: list, limit: int, fmt) -> None:
    if not items:
        return
    lines.append(f"  {title}:")
    lines += [f"    {fmt(item)}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"    ... and {len(items) - limit} more (see data_report.json)")


def _more(items, limit: int) -> str:
    return f" ... and {len(items) - limit} more" if len(items) > limit else ""


@dataclass
class DataBundle:
    """Everything a training run needs from its data source.

    Attributes:
        class_names: Class names; a label is an index into this list.
        train: Training split.
        val: Validation split.
        test: Test split (may be empty).
        report: What was found and done.
        source: The ``data.source`` string.
    """

    class_names: list[str]
    train: Split
    val: Split
    test: Split
    report: DataReport
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def splits(self) -> dict[str, Split]:
        """``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def drop_classes(self, names: list[str], reason: str) -> None:
        """Leave classes ``names`` out: their examples leave every split, the other classes'
        labels are renumbered, and ``report.dropped_classes`` says what went and why."""
        gone = [self.class_names.index(n) for n in names]
        for n, i in zip(names, gone, strict=True):
            left = {s: int((getattr(self, s).labels == i).sum()) for s in SPLITS}
            self.report.dropped_classes.append({"class": n, "reason": reason, **left})
        keep = [i for i in range(self.num_classes) if i not in gone]
        remap = np.full(self.num_classes, -1, np.int64)
        remap[keep] = np.arange(len(keep))
        for name in SPLITS:
            split = getattr(self, name)
            if not len(split):
                continue
            out = split.subset(np.flatnonzero(remap[split.labels] >= 0))
            out.labels = remap[out.labels]
            setattr(self, name, out)
        self.class_names = [self.class_names[i] for i in keep]
        self.refresh_counts()

    def refresh_counts(self) -> None:
        """Recompute the report's per-class counts, imbalance ratio and missing classes."""
        k = self.num_classes
        report = self.report
        report.class_names = list(self.class_names)
        report.counts = {}
        report.missing = {}
        for name, split in self.splits().items():
            counts = split.counts(k)
            report.counts[name] = {c: int(n) for c, n in zip(self.class_names, counts, strict=True)}
            if name != "test" or len(split):
                missing = [c for c, n in zip(self.class_names, counts, strict=True) if n == 0]
                if missing:
                    report.missing[name] = missing
        train = self.train.counts(k)
        report.imbalance_ratio = float(train.max() / train.min()) if k and train.min() > 0 else None
        if report.imbalance_ratio is not None and not math.isfinite(report.imbalance_ratio):
            report.imbalance_ratio = None
