"""``data.classes`` and ``data.max_per_class`` on every kind of source."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_testlib import make_class_folder
from pydantic import ValidationError

from tlkit.data import DataConfig, load_data
from tlkit.errors import UnknownNameError, UserError


def _cfg(source, **kw) -> DataConfig:
    return DataConfig(source=str(source), **kw)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _fashion_like(folder: Path, train_per_class: int = 30, test_per_class: int = 10) -> Path:
    """A 10-class IDX folder laid out like Fashion-MNIST; pixel [0, 0] holds the label."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", train_per_class), ("t10k", test_per_class)):
        labels = np.tile(np.arange(10, dtype=np.uint8), n)
        images = np.random.default_rng(n).integers(0, 256, (len(labels), 8, 8)).astype(np.uint8)
        images[:, 0, 0] = labels
        _write_idx(folder / f"{stem}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", labels)
    return folder


def _per_class(split) -> list[int]:
    return np.bincount(split.labels).tolist()


def test_the_transfer_study_example(tmp_path):
    """Classes 5-9, 20 labelled images per class, the official test images of those classes."""
    folder = _fashion_like(tmp_path / "fm")
    recipe = yaml.safe_load(
        f"data: {{source: 'idx:{folder}', classes: [5,6,7,8,9], max_per_class: 20, "
        "test_split: 0.1}"
    )
    bundle = load_data(DataConfig(**recipe["data"]), seed=3)
    assert bundle.class_names == ["5", "6", "7", "8", "9"]
    assert _per_class(bundle.train) == [16] * 5
    assert _per_class(bundle.val) == [4] * 5
    assert _per_class(bundle.test) == [10] * 5  # official test: every image of the 5 classes
    for split in bundle.splits().values():  # re-indexed: label i is source class 5 + i
        assert np.all(split.images[:, 0, 0, 0] == split.labels + 5)
    notes = bundle.report.notes
    assert "kept classes 5, 6, 7, 8, 9 of 10" in notes
    assert any("capped at 20 images per class" in n and "30 -> 20 per class" in n for n in notes)
    assert any("150 -> 100 in all" in n for n in notes)


def test_classes_subset_reindexes_and_keeps_source_order(image_folder):
    bundle = load_data(_cfg(image_folder, classes=["fox", "cat"]), seed=0)
    assert bundle.class_names == ["cat", "fox"]
    assert bundle.report.totals() == {"train": 12, "val": 4, "test": 0}
    for split in (bundle.train, bundle.val):
        for path, label in zip(split.paths, split.labels, strict=True):
            assert f"/{bundle.class_names[label]}/" in path
    assert bundle.report.counts["train"] == {"cat": 6, "fox": 6}


def test_unknown_class_lists_the_valid_names(image_folder):
    with pytest.raises(UnknownNameError, match="'dgo'. Did you mean: dog.*Valid: cat, dog, fox"):
        load_data(_cfg(image_folder, classes=["cat", "dgo"]))


def test_a_single_kept_class_cannot_train(image_folder):
    with pytest.raises(UserError, match="at least 2 classes"):
        load_data(_cfg(image_folder, classes=["cat"]))


def test_class_names_from_yaml_numbers_and_validation():
    assert DataConfig(classes=yaml.safe_load("[5, 6, '7']")).classes == ["5", "6", "7"]
    assert DataConfig(classes=7).classes == ["7"]
    with pytest.raises(ValidationError, match="listed twice: 5"):
        DataConfig(classes=[5, "5"])
    with pytest.raises(ValidationError):
        DataConfig(classes=[])
    with pytest.raises(ValidationError):
        DataConfig(max_per_class=0)
    assert DataConfig.model_fields["max_per_class"].description


def test_max_per_class_on_a_folder_is_exact_and_seeded(tmp_path):
    root = make_class_folder(tmp_path / "imgs", {"cat": 12, "dog": 9, "fox": 3})
    bundle = load_data(_cfg(root, max_per_class=5, val_split=0.2, test_split=0.2), seed=0)
    counts = bundle.report.counts
    assert counts["train"] == {"cat": 3, "dog": 3, "fox": 1}
    assert counts["val"] == {"cat": 1, "dog": 1, "fox": 1}
    assert counts["test"] == {"cat": 1, "dog": 1, "fox": 1}
    assert any("3..12 -> 3..5 per class, 24 -> 13 in all" in n for n in bundle.report.notes)

    def kept(seed):
        b = load_data(_cfg(root, max_per_class=5), seed=seed)
        return sorted(b.train.paths + b.val.paths)

    assert kept(1) == kept(1)
    assert any(kept(s) != kept(1) for s in (2, 3, 4))


def test_official_splits_are_not_capped(tmp_path):
    root = tmp_path / "ds"
    make_class_folder(root / "train", {"cat": 10, "dog": 10})
    make_class_folder(root / "val", {"cat": 6, "dog": 6}, start=100)
    make_class_folder(root / "test", {"cat": 7, "dog": 7}, start=200)
    bundle = load_data(_cfg(root, max_per_class=4), seed=0)
    assert bundle.report.totals() == {"train": 8, "val": 12, "test": 14}
    only_val = tmp_path / "ds2"
    make_class_folder(only_val / "train", {"cat": 10, "dog": 10})
    make_class_folder(only_val / "val", {"cat": 6, "dog": 6}, start=100)
    bundle = load_data(_cfg(only_val, max_per_class=5, test_split=0.2), seed=0)
    assert bundle.report.totals() == {"train": 8, "val": 12, "test": 2}  # test carved from 10


def test_csv_split_column_is_official_and_not_capped(tmp_path):
    make_class_folder(tmp_path / "imgs", {"cat": 10, "dog": 10, "fox": 10})
    rows = ["path,label,split"]
    for c in ("cat", "dog", "fox"):
        rows += [f"imgs/{c}/{i:03d}.png,{c},{'val' if i < 4 else ''}" for i in range(10)]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    source = f"csv:{tmp_path / 'list.csv'}"
    bundle = load_data(_cfg(source, max_per_class=3), seed=0)
    assert bundle.report.counts["val"] == {"cat": 4 + 1, "dog": 4 + 1, "fox": 4 + 1}
    assert bundle.report.counts["train"] == {"cat": 2, "dog": 2, "fox": 2}
    subset = load_data(_cfg(source, classes=["fox", "dog"]), seed=0)
    assert subset.class_names == ["dog", "fox"]
    assert subset.report.counts["val"] == {"dog": 4 + 1, "fox": 4 + 1}
    assert all("/cat/" not in p for p in subset.train.paths + subset.val.paths)


def test_in_memory_source_digits(tmp_path):
    bundle = load_data(_cfg("builtin:digits", classes=[3, 8], max_per_class=10), seed=0)
    assert bundle.class_names == ["3", "8"]
    assert _per_class(bundle.train) == [8, 8] and _per_class(bundle.val) == [2, 2]
    assert bundle.train.images.shape[1:] == (8, 8, 3)
    again = load_data(_cfg("builtin:digits", classes=[3, 8], max_per_class=10), seed=0)
    assert again.train.origins == bundle.train.origins
    capped_only = load_data(_cfg("builtin:digits", max_per_class=7), seed=0)
    assert capped_only.num_classes == 10 and len(capped_only.train) + len(capped_only.val) == 70


def test_idx_pool_without_official_test(tmp_path):
    folder = _fashion_like(tmp_path / "fm")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).unlink()
    bundle = load_data(_cfg(f"idx:{folder}", classes=[0, 9], max_per_class=20, test_split=0.1))
    assert (_per_class(bundle.train), _per_class(bundle.val), _per_class(bundle.test)) == (
        [14, 14], [4, 4], [2, 2],
    )  # fmt: skip


class _FakeTfds:
    """A prepared tfds set: 'train' (30, labels i % 3) and 'validation' (9)."""

    class info:  # noqa: N801 - mirrors tfds' attribute
        splits = {"train": None, "validation": None}
        supervised_keys = ("image", "label")

    def as_dataset(self, split, shuffle_files=False):
        n = {"train": 30, "validation": 9}[split]
        examples = [{"image": np.full((4, 4, 3), i, np.uint8), "label": i % 3} for i in range(n)]

        class _Iterable:
            def as_numpy_iterator(self):
                return iter(examples)

        return _Iterable()


def test_tfds_train_is_capped_its_validation_split_is_not(tmp_path, monkeypatch):
    from tlkit.data.sources import tfds as datasets

    (tmp_path / "toy" / "1.0.0").mkdir(parents=True)
    (tmp_path / "toy" / "1.0.0" / "dataset_info.json").write_text("{}")
    monkeypatch.setattr(datasets, "_tfds_builder", lambda name, data_dir: _FakeTfds())
    monkeypatch.setattr(datasets, "_tfds_class_names", lambda builder: ["a", "b", "c"])
    cfg = _cfg("tfds:toy", tfds_data_dir=str(tmp_path), classes=["c", "a"], max_per_class=4)
    bundle = load_data(cfg, seed=0)
    assert bundle.class_names == ["a", "c"]
    assert bundle.report.counts == {
        "train": {"a": 4, "c": 4}, "val": {"a": 3, "c": 3}, "test": {"a": 0, "c": 0}
    }  # fmt: skip
