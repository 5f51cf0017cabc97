"""What the data check copies, and what it leaves to TensorFlow's decoder.

Each case is decided by TensorFlow's real decoder: a file is read as it is when
``tf.io.decode_image(..., channels=3)`` gives the pixels PIL's conversion (:func:`to_rgb`)
gives; otherwise the check writes an RGB PNG copy. Temporary copies (no run folder) leave with
the process.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tlkit.data import DataConfig, check_data, load_data, prepare_data
from tlkit.data.bundle import DataReport
from tlkit.data.images import conversion_reason, read_image, to_rgb
from tlkit.data.pipeline import decoded_images
from tlkit.imageops import decode_window, whole_image

#: Largest difference, in 8-bit levels, between two JPEG decoders on the same smooth file
#: (TensorFlow's default IDCT is libjpeg's fast integer one, PIL's the slow accurate one; on
#: noisy pictures they differ by up to ~12 levels, plain RGB JPEGs included). Measured here: 2
#: on grey, 3 on colour, 5 on CMYK (four channels' rounding combined); means near 1.
JPEG_TOLERANCE = 6


def _gradient(height: int, width: int, channels: int, seed: int | None = None) -> np.ndarray:
    """A smooth picture; with a ``seed``, some noise too (so no two are alike)."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 8, x.shape) if seed is not None else 0
    layers = [127 + 100 * np.sin((x * 3 + y * 2 + 50 * c) / 30) + noise for c in range(channels)]
    return np.stack(layers, -1).astype(np.uint8).squeeze()


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rotated(mode: str = "RGB") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was held sideways: rotate 90 degrees to view
    image = Image.fromarray(_gradient(24, 40, 3)).convert(mode)
    return _encode(image, "JPEG", quality=95, exif=exif.tobytes())


def _without_adobe_marker(jpeg: bytes) -> bytes:
    """``jpeg`` without its APP14 (Adobe) segment: CMYK whose inversion is left unsaid."""
    out, i = bytearray(jpeg[:2]), 2
    while jpeg[i + 1] != 0xDA:  # up to the start of scan
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if jpeg[i + 1] != 0xEE:
            out += jpeg[i : i + 2 + length]
        i += 2 + length
    return bytes(out + jpeg[i:])


def _cmyk(adobe: bool) -> bytes:
    image = Image.fromarray(_gradient(24, 32, 4), "CMYK")
    data = _encode(image, "JPEG", quality=95, subsampling=0)
    return data if adobe else _without_adobe_marker(data)


def _alpha(mode: str, opaque: bool) -> bytes:
    colour = _gradient(24, 32, 3 if mode == "RGBA" else 1)
    alpha = np.full(colour.shape[:2], 255, np.uint8)
    if not opaque:
        alpha[:, :16] = 40
    return _encode(Image.fromarray(np.dstack([colour, alpha]), mode), "PNG")


def _palette(transparent: bool) -> bytes:
    image = Image.fromarray(_gradient(24, 32, 3)).convert("P", palette=Image.Palette.ADAPTIVE)
    return _encode(image, "PNG", **({"transparency": 0} if transparent else {}))


def _grey16() -> bytes:
    levels = (_gradient(24, 32, 1).astype("<u2") * 256 + 100).tobytes()
    return _encode(Image.frombytes("I;16", (32, 24), levels), "PNG")


READ_AS_IS = {
    "grey JPEG": lambda: _encode(Image.fromarray(_gradient(30, 44, 1), "L"), "JPEG", quality=90),
    "grey progressive JPEG": lambda: _encode(
        Image.fromarray(_gradient(30, 44, 1), "L"), "JPEG", progressive=True
    ),
    "colour JPEG": lambda: _encode(
        Image.fromarray(_gradient(30, 44, 3)), "JPEG", quality=90, subsampling=0
    ),
    "CMYK JPEG with Adobe marker": lambda: _cmyk(adobe=True),
    "grey PNG": lambda: _encode(Image.fromarray(_gradient(24, 32, 1), "L"), "PNG"),
    "1-bit PNG": lambda: _encode(Image.fromarray(_gradient(24, 32, 1) > 128), "PNG"),
    "palette PNG": lambda: _palette(transparent=False),
    "16-bit grey PNG": _grey16,
    "opaque RGBA PNG": lambda: _alpha("RGBA", opaque=True),
    "opaque LA PNG": lambda: _alpha("LA", opaque=True),
}

CONVERTED = {
    "EXIF-rotated JPEG": (_rotated, "EXIF-rotated"),
    "EXIF-rotated grey JPEG": (lambda: _rotated("L"), "EXIF-rotated"),
    "CMYK JPEG without Adobe marker": (lambda: _cmyk(adobe=False), "CMYK without Adobe marker"),
    "RGBA PNG with transparency": (lambda: _alpha("RGBA", opaque=False), "transparent pixels"),
    "LA PNG with transparency": (lambda: _alpha("LA", opaque=False), "transparent pixels"),
    "palette PNG with transparency": (lambda: _palette(transparent=True), "transparent pixels"),
    "TIFF": (lambda: _encode(Image.fromarray(_gradient(24, 32, 3)), "TIFF"), "TIFF format"),
    "WebP with alpha": (
        lambda: _encode(Image.fromarray(_gradient(24, 32, 4), "RGBA"), "WEBP"),
        "WEBP format",
    ),
}


def _tf_decode(data: bytes) -> np.ndarray | None:
    try:
        return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError:
        return None


@pytest.mark.parametrize("case", sorted(READ_AS_IS))
def test_what_tensorflow_reads_right_is_not_converted(case):
    data = READ_AS_IS[case]()
    image = read_image(case, data)
    assert conversion_reason(image, data) is None
    expected = np.asarray(to_rgb(image), np.int16)
    decoded = _tf_decode(data)
    assert decoded is not None and decoded.shape == expected.shape
    tolerance = JPEG_TOLERANCE if image.format == "JPEG" else 1  # 16-bit: TF truncates
    difference = np.abs(decoded.astype(np.int16) - expected)
    assert difference.max() <= tolerance and difference.mean() < 1.5


@pytest.mark.parametrize("case", sorted(CONVERTED))
def test_what_tensorflow_misreads_is_converted(case):
    make, reason = CONVERTED[case]
    data = make()
    image = read_image(case, data)
    assert conversion_reason(image, data) == reason
    expected = np.asarray(to_rgb(image), np.int16)
    decoded = _tf_decode(data)  # the evidence: TF fails, or gives other pixels or shape
    if decoded is not None and decoded.shape == expected.shape:
        assert np.abs(decoded.astype(np.int16) - expected).max() > 3 * JPEG_TOLERANCE


def _grey_folder(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Two classes of grey JPEGs of mixed sizes, and the ``extra`` files under class a."""
    for c, name in enumerate("ab"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            array = _gradient(28 + 4 * i, 36 + 2 * i, 1, seed=10 * c + i)
            Image.fromarray(array, "L").save(root / name / f"{i}.jpg", quality=90)
    for file, data in (extra or {}).items():
        (root / "a" / file).write_bytes(data)
    return root


def test_grey_jpegs_are_read_by_the_pipeline_as_pil_reads_them(tmp_path):
    folder = _grey_folder(tmp_path / "xrays")
    bundle = prepare_data(
        DataConfig(source=str(folder)), seed=0, run_dir=tmp_path / "run", progress=False
    )
    assert bundle.report.converted == []
    assert not (tmp_path / "run" / "data_cache" / "converted").exists()
    for split in (bundle.train, bundle.val):
        assert split.paths == split.origins  # the originals, no copies
        decoded = [image for image, _ in decoded_images(split).as_numpy_iterator()]
        assert len(decoded) == len(split.paths)
        for path, image in zip(split.paths, decoded, strict=True):
            expected = np.asarray(Image.open(path).convert("RGB"), np.int16)
            assert image.shape == expected.shape and image.dtype == np.uint8
            assert np.abs(image.astype(np.int16) - expected).max() <= JPEG_TOLERANCE, path
            # the decoder random crops use (libjpeg's crop window) reads them the same
            window = decode_window(Path(path).read_bytes(), whole_image).numpy()
            assert np.abs(window.astype(np.int16) - expected).max() <= JPEG_TOLERANCE, path


def test_rotated_and_cmyk_jpegs_are_still_converted(tmp_path):
    extra = {"sideways.jpg": _rotated("L"), "print.jpg": _cmyk(adobe=False)}
    folder = _grey_folder(tmp_path / "photos", extra)
    bundle = prepare_data(
        DataConfig(source=str(folder)), seed=0, run_dir=tmp_path / "run", progress=False
    )
    converted = {Path(c["path"]).name: c for c in bundle.report.converted}
    assert {n: c["reason"] for n, c in converted.items()} == {
        "sideways.jpg": "EXIF-rotated",
        "print.jpg": "CMYK without Adobe marker",
    }
    out = tmp_path / "run" / "data_cache" / "converted"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        Path(c["to"]).name for c in converted.values()
    )
    sideways = np.asarray(Image.open(converted["sideways.jpg"]["to"]))
    assert sideways.shape == (40, 24, 3)  # upright
    paths = bundle.train.paths + bundle.val.paths
    assert sum(p.startswith(str(out)) for p in paths) == 2


def test_conversions_take_one_terminal_line():
    reasons = ["EXIF-rotated"] * 8 + ["CMYK without Adobe marker"] * 4 + ["TIFF format"] * 3
    report = DataReport(
        source="photos",
        checked=True,
        converted=[
            {"path": f"photos/{i}.jpg", "to": f"RUN/data_cache/converted/{i}-abc.png", "reason": r}
            for i, r in enumerate(reasons)
        ],
    )
    lines = [line for line in report.format().splitlines() if "convert" in line]
    assert lines == [
        "  converted 15 files TensorFlow cannot read as they are (8 EXIF-rotated, "
        "4 CMYK without Adobe marker, 3 TIFF format) into RUN/data_cache/converted"
    ]
    assert len(report.as_dict()["converted"]) == 15  # data_report.json keeps the list


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("tlkit-converted-*"))


def test_no_temporary_folder_when_nothing_needs_converting(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    bundle = load_data(DataConfig(source=str(_grey_folder(tmp_path / "grey"))), seed=0)
    report = check_data(bundle, None, progress=False)
    assert report.converted == [] and _leftovers(tmp_path / "tmp") == []


def _run(args: list[str], tmp: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "TLKIT_TF"))}
    env["TMPDIR"] = str(tmp)
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def test_temporary_copies_are_removed_when_the_process_ends(tmp_path):
    """`tlkit plan` (and evaluate, export) converts into the system's temporary directory;
    the folder goes when the process ends: success, an error exit, Ctrl-C."""
    folder = _grey_folder(tmp_path / "photos", {"sideways.jpg": _rotated()})
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tlkit = [
        sys.executable,
        "-m",
        "tlkit.cli.main",
        "plan",
        "--backbone",
        "lenet5",
        "--weights",
        "none",
        "--data",
        str(folder),
        "--no-timing",
    ]
    done = _run(tlkit, tmp, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        "converted 1 files TensorFlow cannot read as they are (1 EXIF-rotated) into "
        f"{tmp}{os.sep}tlkit-converted-" in done.stdout
    )
    assert _leftovers(tmp) == []

    refused = _run([*tlkit, "--set", "data.strict=true"], tmp, tmp_path)  # a user error: exit 2
    assert refused.returncode == 2 and "data.strict is on" in refused.stderr + refused.stdout
    assert _leftovers(tmp) == []

    interrupted = _run(
        [
            sys.executable,
            "-c",
            (
                "import sys, tempfile\n"
                "from tlkit.data import DataConfig, check_data, load_data\n"
                f"bundle = load_data(DataConfig(source={str(folder)!r}), seed=0)\n"
                "report = check_data(bundle, None, progress=False)\n"
                "assert report.converted and report.converted[0]['to'].startswith(tempfile.gettempdir())\n"
                "print('made', report.converted[0]['to'], flush=True)\n"
                "raise KeyboardInterrupt\n"
            ),
        ],
        tmp,
        tmp_path,
    )
    assert "made" in interrupted.stdout and "KeyboardInterrupt" in interrupted.stderr
    assert _leftovers(tmp) == []
