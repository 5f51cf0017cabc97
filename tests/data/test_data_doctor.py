"""The data doctor: bad files skipped, odd formats converted, duplicates found, records written."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from data_testlib import make_class_folder, make_image
from PIL import Image

from tlkit.data import (
    BadImageError,
    DataConfig,
    check_data,
    class_weights,
    load_data,
    load_image_file,
    prepare_data,
    save_splits,
)
from tlkit.data import doctor as doctor_module
from tlkit.errors import UserError


def _load(root, **kw):
    return load_data(DataConfig(source=str(root), **kw), seed=0)


def test_broken_files_are_skipped_and_listed(image_folder, tmp_path):
    (image_folder / "cat" / "zero.jpg").write_bytes(b"")
    good = make_image(tmp_path / "full.jpg", fmt="JPEG", seed=99).read_bytes()
    (image_folder / "dog" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (image_folder / "fox" / "text.png").write_text("not an image at all")
    bundle = _load(image_folder)
    before = len(bundle.train) + len(bundle.val)
    report = check_data(bundle, tmp_path / "run", progress=False)
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in report.skipped}
    assert reasons == {
        "zero.jpg": "empty file (0 bytes)",
        "truncated.jpg": "truncated file",
        "text.png": "not an image (unknown format)",
    }
    assert len(bundle.train) + len(bundle.val) == before - 3 == 24
    assert not any(
        p.endswith(("zero.jpg", "truncated.jpg", "text.png")) for p in bundle.train.paths
    )
    assert report.checked and report.totals()["train"] + report.totals()["val"] == 24
    assert "skipped 3 unreadable files" in report.format()
    json.dumps(report.as_dict())


def _odd_images(folder):
    """Images in modes and formats TensorFlow's decoder misreads (or cannot read)."""
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: must become white
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.full((16, 16, 2), 200, np.uint8), "LA").save(folder / "la.png")
    exif = Image.Exif()
    exif[0x0112] = 3  # upside down
    grey = np.zeros((16, 16), np.uint8)
    grey[12:] = 90
    Image.fromarray(grey, "L").save(folder / "rotated.jpg", exif=exif.tobytes())
    Image.new("RGB", (16, 16), (0, 0, 250)).save(folder / "blue.webp", lossless=True)
    Image.new("RGB", (16, 16), (250, 250, 0)).save(folder / "anim.gif")
    Image.new("RGB", (16, 16), (5, 5, 5)).save(folder / "dark.bmp")
    Image.new("RGB", (16, 16), (7, 8, 9)).save(folder / "page.tif")


def _plain_images(folder):
    """Grey, palette, 16-bit, opaque RGBA and Adobe CMYK: TensorFlow reads them as they are."""
    Image.fromarray(np.full((16, 16), 90, np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(np.full((16, 16), 90, np.uint8), "L").save(folder / "gray.jpg")
    Image.new("RGB", (16, 16), (10, 200, 30)).convert("P").save(folder / "palette.png")
    sixteen = np.full((16, 16), 65535, np.uint16)
    sixteen[:8] = 32896
    Image.fromarray(sixteen).save(folder / "deep16.png")
    Image.new("RGBA", (16, 16), (1, 2, 3, 255)).save(folder / "opaque.png")
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(folder / "cmyk.jpg")


def test_odd_formats_are_converted_and_decodable(image_folder, tmp_path):
    _odd_images(image_folder / "cat")
    _plain_images(image_folder / "dog")
    bundle = _load(image_folder)
    report = check_data(bundle, tmp_path / "run", progress=False)
    converted = {c["path"].rsplit("/", 1)[-1]: c for c in report.converted}
    assert {n: c["reason"] for n, c in converted.items()} == {
        "rgba.png": "transparent pixels", "la.png": "transparent pixels",
        "rotated.jpg": "EXIF-rotated", "blue.webp": "WEBP format", "anim.gif": "GIF format",
        "dark.bmp": "BMP format", "page.tif": "TIFF format",
    }  # fmt: skip
    assert not report.skipped
    out = tmp_path / "run" / "data_cache" / "converted"
    paths = bundle.train.paths + bundle.val.paths
    assert sum(p.startswith(str(out)) for p in paths) == 7
    import tensorflow as tf

    for name, item in converted.items():
        image = tf.io.decode_image(tf.io.read_file(item["to"]), channels=3).numpy()
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8, name
    pixel = {n: np.asarray(Image.open(c["to"]))[12, 0].tolist() for n, c in converted.items()}
    assert pixel["rgba.png"] == [255, 255, 255]
    assert pixel["rotated.jpg"][0] < 10 and pixel["rotated.jpg"][0] == pixel["rotated.jpg"][2]
    assert pixel["blue.webp"] == [0, 0, 250]
    # what is read as it is: TensorFlow's pixels are PIL's
    plain = {p.rsplit("/", 1)[-1]: p for p in paths if "/dog/" in p and "/0" not in p}
    assert set(plain) == {"gray.png", "gray.jpg", "palette.png", "deep16.png", "opaque.png",
                          "cmyk.jpg"}
    seen = {n: tf.io.decode_image(tf.io.read_file(p), channels=3).numpy()[12, 0].tolist()
            for n, p in plain.items()}
    assert seen["gray.png"] == seen["gray.jpg"] == [90, 90, 90]
    assert seen["deep16.png"] == [255, 255, 255]
    assert seen["palette.png"] == [0, 204, 51]  # the web palette's nearest colour, as PIL reads
    assert seen["opaque.png"] == [1, 2, 3]
    assert seen["cmyk.jpg"][0] > 200 and max(seen["cmyk.jpg"][1:]) < 60  # C=0, M=Y=255: red
    # splits.csv keeps the original paths
    save_splits(bundle, tmp_path / "run" / "splits.csv")
    text = (tmp_path / "run" / "splits.csv").read_text()
    assert "page.tif" in text and str(out) not in text


def test_conversion_without_run_dir_uses_a_temp_folder(image_folder):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(image_folder / "dog" / "x.webp")
    bundle = _load(image_folder)
    report = check_data(bundle, progress=False)
    target = report.converted[0]["to"]
    assert "tlkit-converted-" in target
    assert f"1 WEBP format) into {target.rsplit('/', 1)[0]}" in report.format()
    shutil.rmtree(target.rsplit("/", 1)[0])  # the process would remove it at exit


def test_duplicates_across_train_and_val_are_reported(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 10, "b": 10})
    for i in range(10):  # every "b" image also appears as a copy, so some land in val
        shutil.copy(root / "b" / f"{i:03d}.png", root / "b" / f"copy{i:03d}.png")
    bundle = _load(root)
    report = check_data(bundle, progress=False)
    assert report.duplicates
    for group in report.duplicates:
        assert {i["split"] for i in group["items"]} >= {"train", "val"}
        assert len(group["items"]) == 2
    assert "exact duplicates" in report.format()


def test_small_classes_and_no_training_images_left(tmp_path):
    root = make_class_folder(tmp_path / "d", {"a": 8, "b": 3})
    bundle = _load(root)
    report = check_data(bundle, progress=False, min_images_per_class=5)
    assert report.small_classes == [{"class": "b", "train": 2, "minimum": 5}]
    broken = make_class_folder(tmp_path / "e", {"a": 4})
    (broken / "b").mkdir()
    (broken / "b" / "bad.jpg").write_bytes(b"")
    (broken / "b" / "bad2.jpg").write_bytes(b"\xff\xd8garbage")
    bundle = _load(broken)
    with pytest.raises(UserError, match="no training images: 'b'"):
        check_data(bundle, progress=False)


def test_in_memory_bundle_is_counted_and_hashed():
    bundle = load_data("builtin:digits")
    report = check_data(bundle, progress=False)
    assert report.checked and not report.skipped and not report.converted
    assert report.imbalance_ratio is not None and report.imbalance_ratio < 1.1


def test_doctor_remembers_results_in_the_run_folder(image_folder, tmp_path, monkeypatch):
    (image_folder / "cat" / "zero.jpg").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(image_folder / "dog" / "c.tif")
    first = check_data(_load(image_folder), tmp_path / "run", progress=False)
    assert [c["reason"] for c in first.converted] == ["TIFF format"]

    def fail(path, converter):
        raise AssertionError(f"{path} read again")

    monkeypatch.setattr(doctor_module, "_inspect", fail)
    again = check_data(_load(image_folder), tmp_path / "run", progress=False)
    assert again.skipped == first.skipped and again.converted == first.converted


def test_save_splits_round_trips_as_a_csv_source(image_folder, tmp_path):
    bundle = _load(image_folder, test_split=0.2)
    save_splits(bundle, tmp_path / "splits.csv")
    again = load_data(DataConfig(source=f"csv:{tmp_path / 'splits.csv'}"), seed=5)
    for name in ("train", "val", "test"):
        assert getattr(again, name).paths == getattr(bundle, name).paths
    digits = load_data("builtin:digits")
    save_splits(digits, tmp_path / "digits.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "digits.csv").read_text())))
    assert len(rows) == 1797 and rows[0]["path"].startswith("builtin:digits#")


def test_prepare_data_writes_report_and_splits(image_folder, tmp_path):
    (image_folder / "fox" / "bad.png").write_bytes(b"\x89PNG broken")
    run = tmp_path / "run"
    bundle = prepare_data(
        DataConfig(source=str(image_folder), class_weights="balanced"), run_dir=run, progress=False
    )
    data = json.loads((run / "data_report.json").read_text())
    assert data["totals"]["train"] + data["totals"]["val"] == 24
    assert data["skipped"][0]["path"].endswith("bad.png")
    assert data["class_weights"] == {"cat": 1.0, "dog": 1.0, "fox": 1.0}
    assert (run / "splits.csv").read_text().count("\n") == 25
    assert bundle.report.checked


def test_class_weights():
    from tlkit.data import DataBundle, DataReport, Split

    labels = np.repeat([0, 1, 2], [6, 3, 1])
    split = Split(labels=labels, paths=[f"{i}.png" for i in range(10)])
    bundle = DataBundle(["a", "b", "c"], split, split, Split.empty(), DataReport("x"), "x")
    balanced = class_weights(bundle, "balanced")
    assert balanced == pytest.approx({0: 10 / 18, 1: 10 / 9, 2: 10 / 3})
    assert class_weights(bundle, "auto", threshold=1.5) == balanced
    assert class_weights(bundle, "auto", threshold=10.0) is None
    assert class_weights(bundle, "none") is None
    assert bundle.report.class_weight_mode == "none"


def test_load_image_file(tmp_path):
    path = tmp_path / "c.jpg"
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(path)
    image = load_image_file(path, 8)
    assert image.shape == (8, 8, 3) and image.dtype == np.float32
    assert image[..., 0].mean() > 200
    assert load_image_file(path).shape == (10, 20, 3)
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(BadImageError, match="not an image") as info:
        load_image_file(tmp_path / "bad.png", 8)
    assert isinstance(info.value, UserError) and info.value.exit_code == 2
    with pytest.raises(BadImageError, match="file not found"):
        load_image_file(tmp_path / "missing.png")
