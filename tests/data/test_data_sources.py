"""Sources: folders, CSV, builtin sets, tfds (offline), splitting and user errors."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from data_testlib import make_class_folder, make_image
from pydantic import ValidationError

from tlkit.data import DataConfig, load_data, stratified_split
from tlkit.data.sources import builtin as builtin_sets
from tlkit.data.sources import tfds as tfds_source
from tlkit.errors import UserError


def _cfg(source, **kw) -> DataConfig:
    return DataConfig(source=str(source), **kw)


def test_folder_without_split_folders_is_split_per_class(image_folder):
    bundle = load_data(_cfg(image_folder), seed=0)
    assert bundle.class_names == ["cat", "dog", "fox"]
    assert bundle.report.split_mode == "stratified"
    assert len(bundle.train) + len(bundle.val) == 24 and len(bundle.test) == 0
    assert set(bundle.val.labels.tolist()) == {0, 1, 2}
    assert bundle.report.counts["val"] == {"cat": 2, "dog": 2, "fox": 2}
    for split in (bundle.train, bundle.val):
        for path, label in zip(split.paths, split.labels, strict=True):
            assert f"/{bundle.class_names[label]}/" in path
    assert not set(bundle.train.paths) & set(bundle.val.paths)


def test_split_is_seeded(image_folder):
    first = load_data(_cfg(image_folder), seed=1).val.paths
    again = load_data(_cfg(image_folder), seed=1).val.paths
    other = [load_data(_cfg(image_folder), seed=s).val.paths for s in (2, 3, 4)]
    assert first == again
    assert any(o != first for o in other)


def test_test_split_fraction(image_folder):
    bundle = load_data(_cfg(image_folder, val_split=0.25, test_split=0.25), seed=0)
    assert bundle.report.totals() == {"train": 12, "val": 6, "test": 6}
    assert set(bundle.test.labels.tolist()) == {0, 1, 2}


def test_split_folders_are_used_and_missing_val_class_reported(tmp_path):
    root = tmp_path / "ds"
    make_class_folder(root / "train", {"cat": 4, "dog": 4, "fox": 3})
    make_class_folder(root / "val", {"cat": 2, "dog": 2}, start=100)
    make_class_folder(root / "test", {"cat": 1, "dog": 1, "fox": 1}, start=200)
    bundle = load_data(_cfg(root), seed=0)
    assert bundle.class_names == ["cat", "dog", "fox"]
    assert bundle.report.totals() == {"train": 11, "val": 4, "test": 3}
    assert bundle.report.split_mode == "folders"
    assert bundle.report.missing["val"] == ["fox"]
    assert "no val images for 1 class(es): 'fox'" in bundle.report.format()
    assert all("/train/" in p for p in bundle.train.paths)


def test_validation_folder_alias_and_carved_val(tmp_path):
    root = tmp_path / "a"
    make_class_folder(root / "train", {"x": 3, "y": 3})
    make_class_folder(root / "validation", {"x": 1, "y": 1}, start=50)
    assert load_data(_cfg(root)).report.totals()["val"] == 2
    only_train = tmp_path / "b"
    make_class_folder(only_train / "train", {"x": 5, "y": 5})
    bundle = load_data(_cfg(only_train))
    assert "val carved from train" in bundle.report.split_mode
    assert len(bundle.val) == 2


def test_hidden_and_non_image_files(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 3, "b": 3})
    make_image(root / "a" / "UPPER.JPG", fmt="JPEG")
    make_image(root / "a" / ".hidden.png")
    make_image(root / ".cache" / "x.png")
    (root / "b" / "notes.txt").write_text("hello")
    make_image(root / "b" / "nested" / "deep.jpeg", fmt="JPEG")
    bundle = load_data(_cfg(root))
    paths = bundle.train.paths + bundle.val.paths
    assert bundle.class_names == ["a", "b"]
    assert len(paths) == 8
    assert not any("/.hidden" in p or "/.cache/" in p for p in paths)
    assert [i["path"].endswith("notes.txt") for i in bundle.report.ignored] == [True]


def test_numeric_class_names_sort_numerically(tmp_path):
    root = make_class_folder(tmp_path / "n", {"2": 2, "10": 2, "1": 2})
    assert load_data(_cfg(root)).class_names == ["1", "2", "10"]


def test_tiny_classes_do_not_crash(tmp_path):
    root = make_class_folder(tmp_path / "t", {"one": 1, "two": 2, "many": 6})
    bundle = load_data(_cfg(root, test_split=0.2), seed=0)
    assert bundle.report.counts["train"]["one"] == 1
    assert bundle.report.counts["val"]["two"] == 1
    assert "one" in bundle.report.missing["val"]


def test_stratified_split_sizes():
    labels = np.repeat([0, 1, 2], [10, 2, 1])
    train, val, test = stratified_split(labels, val_split=0.2, test_split=0.1, seed=0)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(13))
    assert np.bincount(labels[val], minlength=3).tolist() == [2, 1, 0]
    assert np.bincount(labels[test], minlength=3).tolist() == [1, 0, 0]
    assert np.bincount(labels[train], minlength=3).tolist() == [7, 1, 1]


def test_csv_source_relative_paths_and_split_column(tmp_path):
    root = make_class_folder(tmp_path / "imgs", {"cat": 4, "dog": 4})
    rows = ["path,label,split"]
    for i in range(4):
        rows.append(f"imgs/cat/{i:03d}.png,cat,{'val' if i == 0 else 'train'}")
        rows.append(f"imgs/dog/{i:03d}.png,dog,{'validation' if i == 0 else ''}")
    rows.append(f"{root / 'cat' / '003.png'},cat,test")  # absolute path
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    bundle = load_data(_cfg(f"csv:{csv_file}"), seed=0)
    assert bundle.class_names == ["cat", "dog"]
    assert bundle.report.counts["val"] == {"cat": 1, "dog": 1 + 1}
    assert bundle.report.counts["test"] == {"cat": 1, "dog": 0}
    assert str(root / "cat" / "000.png") in bundle.val.paths


def test_csv_without_header_or_split_is_stratified(tmp_path):
    make_class_folder(tmp_path / "imgs", {"cat": 5, "dog": 5})
    lines = [f"imgs/{c}/{i:03d}.png,{c}" for c in ("cat", "dog") for i in range(5)]
    (tmp_path / "l.csv").write_text("\n".join(lines))
    bundle = load_data(_cfg(tmp_path / "l.csv"))  # a .csv path needs no scheme
    assert bundle.report.split_mode == "stratified"
    assert bundle.report.totals() == {"train": 8, "val": 2, "test": 0}


@pytest.mark.parametrize(
    "content, message",
    [
        ("imgs/a.png\n", "expected 'path,label"),
        ("imgs/a.png,a,holdout\n", "not one of train, val, test"),
        ("nothere/a.png,a\nnothere/b.png,b\n", "relative paths are taken from"),
    ],
)
def test_csv_errors(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(UserError, match=message):
        load_data(_cfg(f"csv:{tmp_path / 'bad.csv'}"))


def test_builtin_digits():
    bundle = load_data(_cfg("builtin:digits"), seed=0)
    assert bundle.class_names == [str(i) for i in range(10)]
    assert len(bundle.train) + len(bundle.val) == 1797
    images = bundle.train.images
    assert images.dtype == np.uint8 and images.shape[1:] == (8, 8, 3)
    assert images.max() == 255 and images.min() == 0
    assert np.array_equal(images[..., 0], images[..., 2])
    assert set(bundle.val.labels.tolist()) == set(range(10))
    assert bundle.train.origins[0].startswith("builtin:digits#")


def test_builtin_fashion_mnist_absent_and_present(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin_sets, "FASHION_MNIST_DIRS", ())
    monkeypatch.setattr(builtin_sets, "_dpkg_dirs", lambda package: [])
    monkeypatch.setenv("TLKIT_FASHION_MNIST_DIR", str(tmp_path / "none"))
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        load_data(_cfg("builtin:fashion_mnist"))
    folder = tmp_path / "fm"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, n in (("train", 40), ("t10k", 10)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
        (folder / f"{stem}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(header + images.tobytes())
        )
        (folder / f"{stem}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.tobytes()
        )
    monkeypatch.setenv("TLKIT_FASHION_MNIST_DIR", str(folder))
    bundle = load_data(_cfg("builtin:fashion_mnist", test_split=0.1))
    assert bundle.class_names[0] == "T-shirt/top" and bundle.num_classes == 10
    assert bundle.report.totals() == {"train": 30, "val": 10, "test": 10}
    assert bundle.train.images.shape[1:] == (28, 28, 3)


def test_tfds_not_prepared_is_a_quick_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        load_data(_cfg("tfds:tf_flowers"))
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert str(tmp_path) in message and "tfds build tf_flowers" in message
    other = tmp_path / "other"
    with pytest.raises(UserError, match=str(other)):
        load_data(_cfg("tfds:mnist:train[:10%]", tfds_data_dir=str(other)))


def test_tfds_source_parsing():
    parse = tfds_source.parse_tfds_source
    assert parse("mnist") == ("mnist", None)
    assert parse("mnist:train[:10%]") == ("mnist", "train[:10%]")
    assert parse("mnist:3.0.1:test") == ("mnist:3.0.1", "test")
    assert parse("cifar10/plain:1.*.*") == ("cifar10/plain:1.*.*", None)


class _FakeTfdsBuilder:
    """Just enough of a tfds builder: splits, keys, features and as_dataset."""

    class info:  # noqa: N801 - mirrors tfds' attribute
        splits = {"train": None, "test": None}
        supervised_keys = ("image", "label")
        features: dict = {}

    def as_dataset(self, split, shuffle_files=False):
        n = {"train": 12, "test": 4}[split]
        examples = [
            {"image": np.full((5 + i % 2, 6, 1), i, np.uint8), "label": i % 3} for i in range(n)
        ]

        class _Iterable:
            def as_numpy_iterator(self):
                return iter(examples)

        return _Iterable()


def test_tfds_prepared_set_is_materialized(tmp_path, monkeypatch):
    info = tmp_path / "toy" / "1.0.0" / "dataset_info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"name": "toy"}))
    monkeypatch.setattr(tfds_source, "_tfds_builder", lambda name, data_dir: _FakeTfdsBuilder())
    monkeypatch.setattr(tfds_source, "_tfds_class_names", lambda builder: None)
    bundle = load_data(_cfg("tfds:toy", tfds_data_dir=str(tmp_path), test_split=0.1), seed=0)
    assert bundle.class_names == ["0", "1", "2"]
    assert bundle.report.totals() == {"train": 9, "val": 3, "test": 4}
    assert isinstance(bundle.train.images, list)  # sizes differ: kept as a list
    assert bundle.train.images[0].shape[-1] == 3
    report = bundle.report
    capped = tfds_source._materialize(_FakeTfdsBuilder(), "train", "tfds:toy", [250], report)
    assert len(capped) == 2  # 90 + 108 bytes fit in 250, the third image does not
    assert "max_in_memory_mb" in report.notes[-1]


@pytest.mark.parametrize(
    "source, message",
    [
        ("ftp:somewhere", "unknown data source scheme 'ftp'"),
        ("bultin:digits", "Did you mean: builtin"),
        ("builtin:mnist", "unknown builtin data set"),
        ("/no/such/folder", "does not exist"),
        ("https://example.com/data.zip", "never downloads"),
    ],
)
def test_bad_sources(source, message):
    with pytest.raises(UserError, match=message):
        load_data(_cfg(source))


def test_empty_single_class_and_loose_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images in data folder"):
        load_data(_cfg(tmp_path / "empty"))
    single = make_class_folder(tmp_path / "single", {"only": 4})
    with pytest.raises(UserError, match="at least 2 classes") as info:
        load_data(_cfg(single))
    assert "DIR/cat/001.jpg" in str(info.value)
    make_image(tmp_path / "loose" / "a.png")
    with pytest.raises(UserError, match="no class subfolders"):
        load_data(_cfg(tmp_path / "loose"))
    make_class_folder(tmp_path / "withempty", {"a": 3, "b": 3})
    (tmp_path / "withempty" / "c").mkdir()
    bundle = load_data(_cfg(tmp_path / "withempty"))  # a stray empty folder costs no run
    assert bundle.class_names == ["a", "b"]
    assert [d["class"] for d in bundle.report.dropped_classes] == ["c"]
    strict = _cfg(tmp_path / "withempty").model_copy(update={"strict": True})
    with pytest.raises(UserError, match="no training images: 'c'"):
        load_data(strict)


def test_config_validation():
    with pytest.raises(ValidationError):
        DataConfig(val_split=0)
    with pytest.raises(ValidationError):
        DataConfig(val_split=0.6, test_split=0.5)
    with pytest.raises(ValidationError, match="extra"):
        DataConfig(sourse="x")
    cfg = DataConfig(tfds_split_map={"train": "train[:90%]", "val": "train[90%:]"})
    assert cfg.tfds_split_map["val"] == "train[90%:]"
    assert DataConfig.model_fields["cache"].description


def test_importing_tlkit_data_does_not_import_tensorflow():
    code = "import sys, tlkit.data; assert 'tensorflow' not in sys.modules, 'tf imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
