"""Reading single image files with PIL: any mode to 8-bit RGB, and the reasons a file is bad."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tlkit.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: Modes TensorFlow's JPEG decoder reads as PIL's ``convert("RGB")`` does (within the JPEG
#: decoders' rounding); CMYK and YCCK only with an Adobe APP14 marker (see conversion_reason).
_JPEG_AS_IS = {"L", "RGB", "CMYK"}
#: Modes TensorFlow's PNG decoder reads as :func:`to_rgb` does: 1, 2, 4 and 8-bit grey and
#: palette, 16-bit grey (the high byte, within one level of PIL's rounding), RGB of either depth
#: (PIL reads 16-bit RGB as 8-bit), and alpha modes while every pixel is opaque.
_PNG_AS_IS = {"1", "L", "P", "RGB", "I;16", "I;16B", "I;16L", "LA", "RGBA"}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class BadImageError(UserError):
    """An image file that cannot be read: missing, empty, not an image, truncated or corrupt."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"cannot read image {os.fspath(path)}: {reason}")
        self.path, self.reason = os.fspath(path), reason


def is_image_file(name: str) -> bool:
    """Whether ``name`` has an image extension (case-insensitive) and is not hidden."""
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes; :class:`BadImageError` when it is missing or unreadable."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise BadImageError(path, "file not found") from None
    except OSError as exc:
        raise BadImageError(path, f"cannot open file ({exc.strerror or exc})") from None


def read_image(path: str | os.PathLike, data: bytes | None = None) -> Image.Image:
    """Open, verify and fully load an image; raise :class:`BadImageError` with the reason.

    Args:
        path: The file.
        data: Its bytes, if already read.
    """
    if data is None:
        data = read_bytes(path)
    if not data:
        raise BadImageError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as probe:
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image (unknown format)") from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(path, f"too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        reason = "truncated file" if "truncated" in text.lower() else f"corrupt ({text})"
        raise BadImageError(path, reason) from None
    return image


def conversion_reason(image: Image.Image, data: bytes | None = None) -> str | None:
    """Why TensorFlow's decoder would not read ``image`` as :func:`to_rgb` does, or ``None``.

    ``tf.io.decode_image(..., channels=3)`` (and ``decode_and_crop_jpeg``, which training
    uses) widens grey and palette images to RGB and scales 16-bit PNGs to 8 bits itself, so
    those are read as they are. It ignores EXIF orientation and alpha, inverts CMYK JPEGs that
    lack Adobe's APP14 marker, misreads palette BMPs, cannot read TIFF, and fails on WebP with
    alpha or animation: such files get an RGB PNG copy. Each case was checked against TF's
    decoder (docs/data.md, "What is converted").

    Args:
        image: The file as :func:`read_image` opened it.
        data: Its bytes (not needed: PIL's header fields say all; kept for older callers).

    Returns:
        A short reason (``"EXIF-rotated"``, ``"transparent pixels"``, ``"CMYK without Adobe
        marker"``, ``"TIFF format"``, ``"mode I"``), or ``None`` for a file to read as is.
    """
    fmt = image.format or "unknown"
    if fmt not in ("JPEG", "PNG"):
        return f"{fmt} format"
    if _orientation(image) not in (None, 1):
        return "EXIF-rotated"
    if fmt == "JPEG":
        if image.mode not in _JPEG_AS_IS:
            return f"mode {image.mode}"
        if image.mode == "CMYK" and "adobe" not in image.info:
            return "CMYK without Adobe marker"
        return None
    if image.mode not in _PNG_AS_IS:
        return f"mode {image.mode}"
    if _has_alpha(image) and image.convert("RGBA").getchannel("A").getextrema()[0] < 255:
        return "transparent pixels"
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: alpha composited on white, 16-bit and float scaled down.

    EXIF orientation is applied, and an animation gives its first frame.
    """
    if _orientation(image) not in (None, 1):
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = Image.fromarray(_scale_to_uint8(np.asarray(image), mode), "L")
        mode = "L"
    if mode == "RGB":
        return image
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    """Whether :func:`to_rgb` composites ``image`` on white (an alpha channel, or a tRNS
    colour in a grey or palette image; a 16-bit grey image's tRNS is dropped with its depth)."""
    mode = image.mode
    return mode in _ALPHA_MODES or (mode in ("P", "L", "1") and "transparency" in image.info)


def _scale_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    array = np.nan_to_num(array.astype(np.float64))
    peak = array.max() if array.size else 0.0
    if mode.startswith("I;16") or (mode == "I" and peak > 255):
        array = array / 257.0
    elif mode == "F" and peak <= 1.0:
        array = array * 255.0
    return np.clip(np.round(array), 0, 255).astype(np.uint8)


def _orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(0x0112)
    except Exception:  # broken EXIF blocks are common and harmless for the pixels
        return None


def decode_for_model(path: str | os.PathLike):
    """An image file as training decodes it: uint8 RGB ``[H, W, 3]``.

    Files TensorFlow reads as they are (:func:`conversion_reason` is ``None``: JPEG and PNG,
    grey and palette included) go to TensorFlow's decoder, as in the training pipeline
    (``tf.io.decode_jpeg`` and PIL disagree on a few levels in most pixels); anything else
    (EXIF-rotated, transparent, CMYK without Adobe marker, other formats) is converted by PIL
    exactly as the data check converts training files (:func:`to_rgb`).

    Raises:
        BadImageError: The file is missing, empty, not an image, truncated or corrupt.
    """
    data = read_bytes(path)
    image = read_image(path, data)
    if conversion_reason(image, data) is not None:
        return np.asarray(to_rgb(image), dtype=np.uint8)
    import tensorflow as tf

    from tlkit.imageops import decode_rgb

    try:
        return decode_rgb(data).numpy()
    except tf.errors.OpError as exc:
        raise BadImageError(path, f"corrupt ({exc.message.splitlines()[0]})") from None


def load_for_model(paths, contract) -> tuple[list[np.ndarray], list, list[dict[str, str]]]:
    """Image files decoded (:func:`decode_for_model`) and shaped by ``contract``
    (:meth:`tlkit.contract.Contract.view`) as the run's validation images were.

    Returns:
        ``(arrays, kept paths, skipped)``: uint8 ``[input_size, input_size, 3]`` arrays, the
        files they came from, and ``{path, reason}`` for each file that is not a readable image.
    """
    arrays, kept, skipped = [], [], []
    for path in paths:
        try:
            image = decode_for_model(path)
        except BadImageError as exc:
            skipped.append({"path": str(path), "reason": exc.reason})
            continue
        arrays.append(np.asarray(contract.view(image)))
        kept.append(path)
    return arrays, kept, skipped


def load_image_file(path: str | os.PathLike, image_size: int | None = None) -> np.ndarray:
    """Read any image file as float32 RGB in 0..255, optionally resized to a square.

    Uses the same conversion as the data doctor and the same resize as the tf.data pipeline
    (bilinear, antialiased, rounded to 8 bits), so a prediction sees what training saw.

    Args:
        path: Image file of any format and mode PIL reads.
        image_size: Side of the square output; ``None`` keeps the original size.

    Returns:
        float32 array ``(H, W, 3)``.

    Raises:
        BadImageError: The file is missing, empty, not an image, truncated or corrupt.
    """
    array = np.asarray(to_rgb(read_image(path)), dtype=np.uint8)
    if image_size is None:
        return array.astype(np.float32)
    from tlkit.imageops import resize_uint8  # TensorFlow: only when resizing

    return resize_uint8(array, image_size).numpy().astype(np.float32)
