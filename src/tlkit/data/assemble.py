"""The one assembly step every source goes through: classes, pool, carving and the report.

A source (:mod:`tlkit.data.sources`) only reads: it returns :class:`RawParts`, the class names
and whatever splits it has of its own. :func:`assemble` then keeps ``data.classes``, caps the
pool at ``data.max_per_class``, carves train / val / test with
:func:`tlkit.data.splits.carve` and checks the result (:func:`finish_bundle`), the same way
for every source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tlkit.data.bundle import DataBundle, DataReport, Split
from tlkit.data.config import DataConfig
from tlkit.data.splits import carve
from tlkit.errors import UnknownNameError, UserError

LAYOUT_HELP = """
Expected one of:
  DIR/cat/001.jpg, DIR/dog/002.png, ...            (one subfolder per class; split by val_split)
  DIR/train/cat/..., DIR/val/cat/..., [DIR/test/cat/...]   (splits given as folders)
  csv:FILE with rows path,label[,split]             (paths relative to the CSV's folder)
  tfds:NAME[:split], builtin:digits, builtin:fashion_mnist"""


@dataclass
class RawParts:
    """What a source read, before class selection, capping and carving.

    Attributes:
        class_names: Every class of the source, in label order.
        report: The report so far: the source string and what scanning found (ignored files,
            unreadable folders, warnings, notes).
        pool: The examples train and any carved val/test come from, in source order;
            ``data.classes`` and ``data.max_per_class`` apply to it. In-memory images may be
            grayscale, ``(N, H, W)`` or ``(N, H, W, 1)``: they become RGB once the splits are
            cut, so images a cap drops are never widened.
        in_train: Which pool examples the source itself puts in train: ``True`` all (a
            ``train/`` folder, a tfds split, IDX train files with an official test split),
            ``False`` none (every example is carved), or a boolean mask (a CSV's ``train``
            rows; the other pool rows have no split).
        val: The source's own validation split (not capped), or ``None``.
        test: The source's own test split (not capped), or ``None``.
        split_mode: What ``report.split_mode`` calls the source's own splits.
        carve_test: Carve test from train when the source gives val but no test and
            ``data.test_split > 0`` (split folders).
        empty_is_missing: Once the examples without a split are carved, an empty val or test
            split counts as missing (a CSV names its splits row by row).
        closing_notes: Notes about the source's own splits, recorded after the pool's.
    """

    class_names: list[str]
    report: DataReport
    pool: Split
    in_train: bool | np.ndarray = False
    val: Split | None = None
    test: Split | None = None
    split_mode: str = "stratified"
    carve_test: bool = False
    empty_is_missing: bool = False
    closing_notes: list[str] = field(default_factory=list)


def assemble(parts: RawParts, config: DataConfig, seed: int) -> DataBundle:
    """Turn a source's raw parts into the checked train / val / test bundle.

    In order: keeps the pool's examples of ``data.classes``, at most ``data.max_per_class`` of
    each (:func:`pool_indices`); carves the pool's examples without a split into train, val and
    test, then val (and test, when missing) from train when the source has no val; keeps
    ``data.classes`` in every split, re-indexed ``0..k-1`` (:func:`keep_classes`); widens
    in-memory images to RGB; counts and checks (:func:`finish_bundle`).

    Args:
        parts: What the source read.
        config: The recipe's ``data:`` section.
        seed: Seed of the cap and of every carved split; same seed, same splits.

    Returns:
        The bundle, with counts in ``bundle.report``.

    Raises:
        UnknownNameError: A name in ``data.classes`` that the source does not have.
        UserError: Fewer than 2 classes, or a class without training images.
    """
    report = parts.report
    train, unassigned = _pool(parts, config, seed)
    train, val, test, report.split_mode = _carve(parts, train, unassigned, config, seed)
    report.notes += parts.closing_notes
    bundle = keep_classes(
        DataBundle(parts.class_names, train, val, test, report, report.source), config
    )
    for role, split in bundle.splits().items():
        setattr(bundle, role, _rgb(split))
    return finish_bundle(bundle, strict=config.strict)


def _pool(parts: RawParts, config: DataConfig, seed: int) -> tuple[Split, Split]:
    """``(train the source gave, examples without a split)`` of the pool, selected and capped."""
    pool, in_train = parts.pool, parts.in_train
    index = pool_indices(pool.labels, parts.class_names, config, seed, parts.report)
    if index is not None:
        pool = pool.subset(index)
        in_train = in_train if isinstance(in_train, bool) else np.asarray(in_train)[index]
    if in_train is True:
        return pool, pool.subset([])
    if in_train is False:
        return pool.subset([]), pool
    in_train = np.asarray(in_train, bool)
    return pool.subset(np.flatnonzero(in_train)), pool.subset(np.flatnonzero(~in_train))


def _carve(parts: RawParts, train: Split, unassigned: Split, config: DataConfig, seed: int):
    """``(train, val, test, split mode)``: the one place where splits are carved.

    First the pool's examples without a split (all of an all-in-one source's, even none) are
    carved into train, val and test, after the source's own. Then, without a val split (with
    ``empty_is_missing``: or with an empty one), val is carved from train, and test too when it
    is missing as well; else, with ``carve_test`` and no test split, test is carved from train
    when ``data.test_split > 0``.
    """
    val, test, modes = parts.val, parts.test, [parts.split_mode]
    if parts.in_train is False or len(unassigned):
        given = len(train) or val is not None or test is not None
        carved = carve(
            unassigned, val_split=config.val_split, test_split=config.test_split, seed=seed
        )
        train, val, test = (_concat(a, b) for a, b in zip((train, val, test), carved, strict=True))
        modes = [*modes, "unassigned rows stratified"] if given else ["stratified"]

    def missing(split: Split | None) -> bool:
        return split is None or (parts.empty_is_missing and not len(split))

    if missing(val):
        test_frac = config.test_split if missing(test) else 0.0
        train, val, carved_test = carve(
            train, val_split=config.val_split, test_split=test_frac, seed=seed
        )
        test = _concat(test, carved_test)
        modes.append("val carved from train")
    elif parts.carve_test and test is None and config.test_split > 0:
        train, _, test = carve(train, val_split=0.0, test_split=config.test_split, seed=seed)
        modes.append("test carved from train")
    if test is None:
        test = Split.empty(in_memory=train.in_memory)
    return train, val, test, ", ".join(modes)


def _concat(a: Split | None, b: Split) -> Split:
    """``a`` then ``b``; either alone when the other is missing or empty (only file splits, a
    CSV's, ever have both)."""
    if a is None or (len(b) and not len(a)):
        return b
    if not len(b):
        return a
    return Split(
        labels=np.concatenate([a.labels, b.labels]),
        paths=list(a.paths) + list(b.paths),
        origins=list(a.origins) + list(b.origins),
    )


def _rgb(split: Split) -> Split:
    """``split`` with grayscale in-memory images (``(N, H, W)`` or ``(N, H, W, 1)``) as RGB."""
    images = split.images
    if not isinstance(images, np.ndarray) or (images.ndim != 3 and images.shape[-1] != 1):
        return split
    images = images[..., None] if images.ndim == 3 else images
    return Split(labels=split.labels, images=np.repeat(images, 3, axis=-1), origins=split.origins)


def wanted_labels(names: list[str], config: DataConfig) -> np.ndarray | None:
    """The label indices ``data.classes`` keeps, in the source's order; ``None`` keeps all.

    Raises:
        UnknownNameError: A name in ``data.classes`` that the source does not have.
    """
    if config.classes is None:
        return None
    index = {name: i for i, name in enumerate(names)}
    for name in config.classes:
        if name not in index:
            raise UnknownNameError("data.classes name", name, names)
    return np.asarray(sorted(index[name] for name in config.classes), np.int64)


def pool_indices(
    labels: np.ndarray, names: list[str], config: DataConfig, seed: int, report: DataReport
) -> np.ndarray | None:
    """Which examples of a pool (what train and any carved val/test come from) to keep.

    Drops classes outside ``data.classes``, then keeps a seeded random ``data.max_per_class``
    examples of each class (all of a smaller class). The choice for a class depends only on
    the seed and that class, and the kept indices are sorted, so source order is kept.

    Returns:
        Sorted indices into ``labels``, or ``None`` when both settings are off.
    """
    wanted, cap = wanted_labels(names, config), config.max_per_class
    if wanted is None and cap is None:
        return None
    labels = np.asarray(labels, np.int64)
    keep = np.arange(len(labels)) if wanted is None else np.flatnonzero(np.isin(labels, wanted))
    if cap is None:
        return keep
    keep = keep[np.argsort(labels[keep], kind="stable")]
    classes = np.arange(len(names)) if wanted is None else wanted
    starts = np.searchsorted(labels[keep], classes, side="left")
    stops = np.searchsorted(labels[keep], classes, side="right")
    chosen, before = [], []
    for cls, start, stop in zip(classes, starts, stops, strict=True):
        members = keep[start:stop]
        before.append(len(members))
        if len(members) > cap:
            members = np.random.default_rng([seed, int(cls)]).choice(members, cap, replace=False)
        chosen.append(members)
    after = [len(c) for c in chosen]
    report.notes.append(
        f"capped at {cap} images per class (seed {seed}), before any val/test split was carved: "
        f"{_span(before)} -> {_span(after)} per class, {sum(before):,} -> {sum(after):,} in all"
    )
    return np.sort(np.concatenate(chosen)) if chosen else keep[:0]


def _span(counts: list[int]) -> str:
    low, high = min(counts, default=0), max(counts, default=0)
    return f"{low:,}" if low == high else f"{low:,}..{high:,}"


def keep_classes(bundle: DataBundle, config: DataConfig) -> DataBundle:
    """Only the classes named in ``data.classes``, in every split, re-indexed ``0..k-1``.

    The pool has already lost the other classes (:func:`pool_indices`); this drops them from
    the source's own val and test splits too.
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


def finish_bundle(bundle: DataBundle, strict: bool = False) -> DataBundle:
    """Count, and refuse what cannot train: fewer than 2 classes or a class with no training image.

    Classes without val or test images are listed in ``bundle.report.missing``.

    Raises:
        UserError: With what was found and what is expected.
    """
    names = bundle.class_names
    if len(names) < 2:
        found = f"only class {names[0]!r}" if names else "no classes"
        raise UserError(
            f"data {bundle.source}: found {found}; classification needs at least 2 classes."
            + LAYOUT_HELP
        )
    bundle.refresh_counts()
    empty = [c for c, n in bundle.report.counts["train"].items() if n == 0]
    if empty:
        if strict or len(names) - len(empty) < 2:
            raise UserError(
                f"data {bundle.source}: {len(empty)} classes have no training images: "
                f"{', '.join(map(repr, empty[:10]))}. Add images for them, or remove them."
            )
        bundle.drop_classes(empty, "no training images (an empty class folder?)")
    return bundle
