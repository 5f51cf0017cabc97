"""What real folders contain, among good images: the run completes, every finding is in
data_report.json, nothing undecodable reaches training; data.strict refuses the same folder."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import make_image_folder
from tlkit.cli.main import cli

BAD_NAME = b"bad\xffname.png"  # not valid UTF-8


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def build_corpus(root: Path) -> Path:
    root = make_image_folder(root, classes=3, per_class=8)
    bad = root / "class_0"
    rng = np.random.default_rng(0)

    def rgb(h=20, w=24):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    def encoded(image, fmt):
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        return buffer.getvalue()

    (bad / "truncated.jpg").write_bytes(encoded(rgb(), "JPEG")[:200])
    (bad / "truncated.png").write_bytes(encoded(rgb(), "PNG")[:120])
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("hello")
    (bad / "random.png").write_bytes(rng.bytes(500))
    Image.fromarray(rng.integers(0, 65535, (20, 20)).astype(np.uint16)).save(bad / "sixteen.png")
    rgb().convert("L").save(bad / "grey.png")
    rgb().convert("CMYK").save(bad / "cmyk.jpg")
    rgb().convert("RGBA").save(bad / "rgba.png")
    rgb().convert("P").save(bad / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb(16, 30).save(bad / "rotated.jpg", exif=exif.tobytes())
    rgb(1, 1).save(bad / "tiny.png")
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)  # 900 Mpixels claimed
    (bad / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                                   + _chunk(b"IDAT", zlib.compress(b"\0" * 10)) + _chunk(b"IEND", b""))
    frames = [rgb() for _ in range(3)]
    frames[0].save(bad / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(bad / "pages.tif", save_all=True, append_images=frames[1:])
    rgb().save(bad / "pic.webp")
    rgb().save(bad / "pic.bmp")
    (Path(os.fsdecode(os.path.join(os.fsencode(bad), BAD_NAME)))).write_bytes(encoded(rgb(), "PNG"))
    rgb().save(bad / "with space.png")
    rgb().save(bad / "кошка 猫.png")
    os.symlink(bad, bad / "loop")  # a folder that contains itself
    (bad / ".DS_Store").write_bytes(b"\0\1")
    (bad / "._x.jpg").write_bytes(b"\0\5")
    (bad / "notes.txt").write_text("notes")
    (bad / "labels.csv").write_text("a,b")
    (bad / "nested" / "deeper").mkdir(parents=True)
    rgb().save(bad / "nested" / "deeper" / "n.png")
    (root / "empty_class").mkdir()
    (root / "single").mkdir()
    rgb().save(root / "single" / "one.png")
    shutil.copy(root / "class_1" / "img_000.png", root / "class_2" / "copy_of_1.png")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "data")


@pytest.mark.slow
def test_a_run_on_a_messy_folder_completes_and_reports_everything(corpus, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["finetune", "--backbone", "lenet5", "--weights", "none",
                                      "--data", str(corpus), "--epochs", "1", "--output", str(out),
                                      "--set", "train.verbose=0"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "data_report.json").read_text())
    skipped = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"truncated.jpg", "truncated.png", "zero.jpg", "text.jpg",
                            "random.png", "bomb.png"}
    assert "decompression bomb" in skipped["bomb.png"] and "0 bytes" in skipped["zero.jpg"]
    converted = {Path(c["path"]).name: c["reason"] for c in report["converted"]}
    assert set(converted) == {"rotated.jpg", "anim.gif", "pages.tif", "pic.webp", "pic.bmp"}
    assert [d["class"] for d in report["dropped_classes"]] == ["empty_class"]
    assert {Path(i["path"]).name for i in report["ignored"]} == {"notes.txt", "labels.csv"}
    assert any(d["kind"] == "several classes" for d in report["duplicates"])
    assert "single" in report["class_names"]
    trained = (out / "splits.csv").read_text()
    for name in ("with space.png", "кошка 猫.png", "n.png", "tiny.png", "bad\\udcffname.png",
                 "sixteen.png", "grey.png", "cmyk.jpg", "rgba.png", "palette.png"):  # read as is
        assert name in trained, name
    for name in (".DS_Store", "._x.jpg", "notes.txt", "loop/"):
        assert name not in trained, name
    summary = result.output
    assert "skipped 6 unreadable files" in summary and "dropped 1 classes" in summary
    assert "converted 5 files TensorFlow cannot read as they are (" in summary
    assert "rotated.jpg" not in summary  # one line for them all; the list is in the report
    assert (out / "model.keras").is_file() and (out / "report.html").is_file()


def test_the_same_folder_is_refused_under_strict(corpus, tmp_path):
    result = CliRunner().invoke(cli, ["plan", "--backbone", "lenet5", "--weights", "none",
                                      "--data", str(corpus), "--set", "data.strict=true"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no training images" in result.output or "data.strict is on" in result.output
