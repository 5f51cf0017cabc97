"""The IDX reader and the ``idx:`` source, on files written here in the IDX format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tlkit.data import DataConfig, load_data
from tlkit.data.idx import IDX_TYPES, IdxError, find_idx_files, read_idx
from tlkit.errors import UserError

CODES = {np.dtype(t).newbyteorder("="): code for code, t in IDX_TYPES.items()}


def write_idx(path: Path, array: np.ndarray, *, zipped: bool = False) -> Path:
    """``array`` as an IDX file: magic, big-endian dimensions, big-endian data."""
    array = np.asarray(array)
    header = bytes([0, 0, CODES[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if zipped else data)
    return path


def write_set(folder: Path, stem: str, per_class: int, classes: int = 3, size: int = 6, seed=0):
    """``{stem}-images-idx3-ubyte.gz`` and ``{stem}-labels-idx1-ubyte``: class c is grey c*60."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(classes, dtype=np.uint8), per_class)
    noise = np.random.default_rng(seed).integers(0, 20, (len(labels), size, size))
    images = (labels[:, None, None] * 60 + noise).astype(np.uint8)
    write_idx(folder / f"{stem}-images-idx3-ubyte.gz", images, zipped=True)
    write_idx(folder / f"{stem}-labels-idx1-ubyte", labels)
    return images, labels


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("zipped", [False, True])
def test_every_type_round_trips(tmp_path, dtype, zipped):
    rng = np.random.default_rng(0)
    array = (rng.normal(0, 100, (3, 4, 5)) % 120).astype(dtype)
    if dtype.startswith("i"):
        array[0, 0] = -5
    back = read_idx(write_idx(tmp_path / "a.idx", array, zipped=zipped))
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)


def test_gzip_is_recognized_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = write_idx(tmp_path / "plain-name", array, zipped=True)
    np.testing.assert_array_equal(read_idx(path), array)


def _valid(tmp_path) -> bytes:
    return write_idx(tmp_path / "ok", np.zeros((2, 3, 3), np.uint8)).read_bytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b[:-1], "truncated: dimensions 2 x 3 x 3 of uint8 need 18 bytes"),
        (lambda b: b + b"\0", "longer than its header says"),
        (lambda b: b[:6], "truncated: the header names 3 dimensions"),
        (lambda b: b"\x01" + b[1:], "is not an IDX file: it starts with 01 00 08 03"),
        (lambda b: b"", "is not an IDX file: it starts with nothing"),
        (lambda b: b[:2] + b"\x0a" + b[3:], "unknown IDX type code 0x0A"),
        (lambda b: b[:4] + (2**31).to_bytes(4, "big") + b[8:], "over the limit"),
    ],
)
@pytest.mark.parametrize("zipped", [False, True])
def test_malformed_files_are_clear_user_errors(tmp_path, change, message, zipped):
    data = change(_valid(tmp_path))
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if zipped else data)
    with pytest.raises(IdxError, match=message) as info:
        read_idx(path)
    assert isinstance(info.value, UserError) and str(path) in str(info.value)


def test_absurd_header_is_refused_before_reading(tmp_path):
    # 65535^3 elements claimed by a 16-byte file: refused from the header alone
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 0x0E, 3]) + (0xFFFF).to_bytes(4, "big") * 3)
    with pytest.raises(IdxError, match="over the limit of 2,147,483,648"):
        read_idx(path)
    with pytest.raises(IdxError, match="over the limit of 10"):
        read_idx(write_idx(tmp_path / "small", np.zeros(11, np.uint8)), max_elements=10)


def test_missing_and_broken_gzip_files(tmp_path):
    with pytest.raises(IdxError, match="does not exist"):
        read_idx(tmp_path / "nope")
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(_valid(tmp_path))[:-12])
    with pytest.raises(IdxError, match="gzip|truncated"):
        read_idx(broken)


def _cfg(source, **kw) -> DataConfig:
    return DataConfig(source=str(source), **kw)


def test_folder_with_official_test_pair(tmp_path):
    write_set(tmp_path / "set", "train", per_class=10)
    write_set(tmp_path / "set", "t10k", per_class=4, seed=1)
    bundle = load_data(_cfg(f"idx:{tmp_path / 'set'}", test_split=0.1), seed=0)
    assert bundle.class_names == ["0", "1", "2"]
    assert bundle.report.split_mode == "official test, val carved from train"
    assert bundle.report.totals() == {"train": 24, "val": 6, "test": 12}
    assert bundle.train.images.shape[1:] == (6, 6, 3) and bundle.train.images.dtype == np.uint8
    for split in bundle.splits().values():  # labels follow the images' grey levels
        assert np.all(split.images[:, 0, 0, 0] // 60 == split.labels)
    assert bundle.test.origins[0] == f"idx:{tmp_path / 'set'}:test#0"
    no_test = load_data(_cfg(f"idx:{tmp_path / 'set'}"), seed=0)
    assert no_test.report.totals() == {"train": 24, "val": 6, "test": 0}
    assert any("set data.test_split > 0" in n for n in no_test.report.notes)


def test_folder_without_test_pair_carves_test(tmp_path):
    write_set(tmp_path / "set", "train", per_class=10)
    bundle = load_data(_cfg(f"idx:{tmp_path / 'set'}", val_split=0.2, test_split=0.1), seed=0)
    assert bundle.report.split_mode == "stratified"
    assert bundle.report.totals() == {"train": 21, "val": 6, "test": 3}


def test_images_and_labels_pair_and_classes_txt(tmp_path):
    images, labels = write_set(tmp_path / "d", "train", per_class=5)
    (tmp_path / "d" / "classes.txt").write_text("zero\none\ntwo\n\n")
    pair = tmp_path / "d" / "train-images-idx3-ubyte.gz", tmp_path / "d" / "train-labels-idx1-ubyte"
    bundle = load_data(_cfg(f"idx:{pair[0]},{pair[1]}"), seed=0)
    assert bundle.class_names == ["zero", "one", "two"]
    assert bundle.report.totals() == {"train": 12, "val": 3, "test": 0}
    assert any("classes.txt" in n for n in bundle.report.notes)
    index = int(bundle.val.origins[0].rsplit("#", 1)[1])
    np.testing.assert_array_equal(bundle.val.images[0, ..., 0], images[index])


def test_label_values_without_images_are_left_out(tmp_path):
    # EMNIST letters style: labels 1..3, no 0; the test pair spelled "test-...", a prefix
    folder = tmp_path / "letters"
    folder.mkdir()
    labels = np.repeat(np.arange(1, 4, dtype=np.uint8), 4)
    write_idx(folder / "emnist-letters-train-images.idx3-ubyte", np.zeros((12, 4, 4), np.uint8))
    write_idx(folder / "emnist-letters-train-labels.idx1-ubyte", labels)
    write_idx(folder / "emnist-letters-test-images.idx3-ubyte", np.zeros((3, 4, 4), np.uint8))
    write_idx(folder / "emnist-letters-test-labels.idx1-ubyte", labels[::4])
    assert set(find_idx_files(folder)) == {"train", "test"}
    bundle = load_data(_cfg(f"idx:{folder}", test_split=0.5), seed=0)
    assert bundle.class_names == ["1", "2", "3"]
    assert bundle.report.totals() == {"train": 9, "val": 3, "test": 3}
    assert "classes with no images left out: 0" in bundle.report.notes
    write_idx(folder / "emnist-digits-train-images.idx3-ubyte", np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(UserError, match="2 sets .*idx:IMAGES_FILE,LABELS_FILE"):
        load_data(_cfg(f"idx:{folder}"))


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((5, 4, 4), np.uint8), np.zeros(4, np.uint8), "5 images but .* 4 labels"),
        (np.zeros((5, 4, 4), np.uint8), np.full(5, -1, np.int8), "non-negative, found -1"),
        (np.zeros((5, 4, 4), np.uint8), np.zeros(5, np.float32), "integer label per image"),
        (np.zeros((5, 4, 4), np.float32), np.zeros(5, np.uint8), "uint8 images of shape"),
        (np.zeros((5, 4, 4, 2), np.uint8), np.zeros(5, np.uint8), "uint8 images of shape"),
    ],
)
def test_pairs_that_do_not_fit(tmp_path, images, labels, message):
    img = write_idx(tmp_path / "img", images)
    lbl = write_idx(tmp_path / "lbl", labels)
    with pytest.raises(UserError, match=message):
        load_data(_cfg(f"idx:{img},{lbl}"))


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no training files"):
        load_data(_cfg(f"idx:{tmp_path / 'empty'}"))
    with pytest.raises(UserError, match="expected idx:DIR or idx:IMAGES_FILE,LABELS_FILE"):
        load_data(_cfg(f"idx:{tmp_path / 'nope'}"))
    write_set(tmp_path / "half", "train", per_class=3)
    (tmp_path / "half" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="no matching train labels"):
        load_data(_cfg(f"idx:{tmp_path / 'half'}"))
    write_set(tmp_path / "named", "train", per_class=3)
    (tmp_path / "named" / "classes.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match="label 2 but there are only 2 class names"):
        load_data(_cfg(f"idx:{tmp_path / 'named'}"))
    (tmp_path / "named" / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(UserError, match="repeated: a"):
        load_data(_cfg(f"idx:{tmp_path / 'named'}"))


def test_builtin_fashion_mnist_reads_through_the_idx_reader(tmp_path, monkeypatch):
    write_set(tmp_path / "fm", "train", per_class=4, classes=10)
    monkeypatch.setenv("TLKIT_FASHION_MNIST_DIR", str(tmp_path / "fm"))
    bundle = load_data(_cfg("builtin:fashion_mnist"), seed=0)
    assert bundle.class_names[9] == "Ankle boot"
    assert bundle.report.totals() == {"train": 30, "val": 10, "test": 0}
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte\\[.gz\\] missing"):
        load_data(_cfg("builtin:fashion_mnist", test_split=0.1))
    (tmp_path / "fm" / "train-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\x28")
    with pytest.raises(UserError, match="truncated"):
        load_data(_cfg("builtin:fashion_mnist"))


def test_cli_bad_idx_file_exits_2_with_one_line(tmp_path):
    from tlkit.cli.main import cli

    write_set(tmp_path / "set", "train", per_class=4)
    images = tmp_path / "set" / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-7]))
    result = CliRunner().invoke(
        cli,
        ["finetune", "--backbone", "resnet18", "--weights", "none", "--image-size", "32",
         "--epochs", "1", "--data", f"idx:{tmp_path / 'set'}", "--output", str(tmp_path / "o")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {images} is truncated: dimensions 12 x 6 x 6 of uint8 need 432 bytes of data, "
        "the file has 425 bytes"
    ]
    assert "Traceback" not in result.output
