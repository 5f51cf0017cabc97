"""A strict reader for IDX files, the format MNIST, Fashion-MNIST, KMNIST and EMNIST come in.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the data, big-endian, in C order (LeCun et al., "The
MNIST database of handwritten digits", yann.lecun.com/exdb/mnist). Files are untrusted input:
nothing in them is executed, the header is checked before anything is allocated, and the data
must be exactly as long as the dimensions say.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path

import numpy as np

from tlkit.errors import UserError

#: Type code -> big-endian numpy dtype of the data.
IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
#: Largest number of elements :func:`read_idx` accepts (MNIST's training images are 47 million).
MAX_ELEMENTS = 2**31
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 16 * 2**20
_NAME = re.compile(
    r"^(?:(?P<prefix>.+)-)?(?P<role>train|t10k|test)-(?P<kind>images|labels)"
    r"[-.]idx\d-ubyte(?P<gz>\.gz)?$"
)


class IdxError(UserError, ValueError):
    """A file that is not a well-formed IDX file; the message names the file and the fault."""


def read_idx(path: str | os.PathLike, *, max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    """Read one IDX file, plain or gzipped (recognized by its content, not its name).

    Args:
        path: The file.
        max_elements: Refuse a header whose dimensions multiply to more than this, before
            reading the data.

    Returns:
        The array, with the file's dimensions, in native byte order.

    Raises:
        IdxError: Bad magic number, unknown type code, too many elements, or data shorter or
            longer than the dimensions say; also a file that cannot be read or unzipped.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            zipped = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if zipped:
                with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                    return _parse(fh, path, max_elements, size=None)
            return _parse(raw, path, max_elements, size=os.fstat(raw.fileno()).st_size)
    except FileNotFoundError:
        raise IdxError(f"IDX file {path} does not exist") from None
    except IsADirectoryError:
        raise IdxError(f"IDX file {path} is a folder, not a file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IdxError(f"IDX file {path} is not a readable gzip file: {exc}") from None
    except OSError as exc:
        raise IdxError(f"cannot read IDX file {path}: {exc}") from None


def _parse(fh, path: Path, max_elements: int, size: int | None) -> np.ndarray:
    magic = fh.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0":
        raise IdxError(
            f"{path} is not an IDX file: it starts with {magic.hex(' ') or 'nothing'}, "
            "an IDX file starts with 00 00, a type code and the number of dimensions"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_TYPES:
        valid = ", ".join(f"0x{c:02X} ({t.name})" for c, t in IDX_TYPES.items())
        raise IdxError(f"{path}: unknown IDX type code 0x{code:02X}; valid codes are {valid}")
    header = fh.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise IdxError(f"{path} is truncated: the header names {ndim} dimensions but ends early")
    shape = tuple(int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in range(ndim))
    count = 1
    for dim in shape:
        count *= dim
    if count > max_elements:
        raise IdxError(
            f"{path}: dimensions {' x '.join(map(str, shape))} make {count:,} elements, over "
            f"the limit of {max_elements:,}; refusing to read it"
        )
    dtype = IDX_TYPES[code]
    expected = count * dtype.itemsize
    if size is not None and size != 4 + 4 * ndim + expected:
        _length_error(path, shape, dtype, expected, size - 4 - 4 * ndim)
    data = _read_exactly(fh, expected)
    if len(data) != expected or fh.read(1):
        _length_error(path, shape, dtype, expected, len(data) + (len(data) == expected))
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def _read_exactly(fh, expected: int) -> bytearray:
    """Up to ``expected`` bytes, in chunks: memory grows with the data, not with the header."""
    data = bytearray()
    while len(data) < expected:
        chunk = fh.read(min(_CHUNK, expected - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _length_error(path: Path, shape, dtype: np.dtype, expected: int, found: int) -> None:
    what = "truncated" if found < expected else "longer than its header says"
    found_text = f"{found:,} bytes" if found < expected else "more"
    raise IdxError(
        f"{path} is {what}: dimensions {' x '.join(map(str, shape))} of {dtype.name} need "
        f"{expected:,} bytes of data, the file has {found_text}"
    )


def read_idx_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike):
    """Images and labels from two IDX files that belong together, checked against each other.

    Returns:
        ``(images, labels)``: uint8 ``(N, H, W)`` or ``(N, H, W, C)`` with C 1 or 3, and int64
        ``(N,)`` non-negative labels.

    Raises:
        IdxError: Either file is malformed, the images are not uint8 of that shape, the labels
            are not non-negative integers, or the counts differ.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    channels = images.shape[3] if images.ndim == 4 else 1
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or channels not in (1, 3):
        raise IdxError(
            f"{images_path}: expected uint8 images of shape (N, H, W) or (N, H, W, 3), got "
            f"{images.dtype.name} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise IdxError(
            f"{labels_path}: expected one integer label per image, got {labels.dtype.name} "
            f"{labels.shape}"
        )
    if len(labels) and labels.min() < 0:
        raise IdxError(f"{labels_path}: labels must be non-negative, found {int(labels.min())}")
    if len(labels) != len(images):
        raise IdxError(
            f"{images_path} has {len(images):,} images but {labels_path} has {len(labels):,} "
            "labels; they must be the same count (are they from the same set?)"
        )
    return images, labels.astype(np.int64)


def find_idx_files(folder: str | os.PathLike) -> dict[str, tuple[Path, Path]]:
    """The IDX pairs in a folder: ``{"train": (images, labels), "test": (...)}``.

    Recognizes ``train-images-idx3-ubyte[.gz]`` / ``train-labels-idx1-ubyte[.gz]`` and the
    ``t10k-`` pair (MNIST, Fashion-MNIST), the ``train-images.idx3-ubyte`` spelling, and a
    common prefix with ``test`` for the test pair (EMNIST's ``emnist-digits-test-...``). A
    gzipped file is preferred to a plain one of the same name.

    Raises:
        IdxError: Files of several sets (prefixes) in one folder, or half a pair.
    """
    folder = Path(folder)
    found: dict[tuple[str, str, str], Path] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: (p.suffix != ".gz", p.name)):
        match = _NAME.match(entry.name)
        if match and entry.is_file():
            role = "train" if match["role"] == "train" else "test"
            found.setdefault((match["prefix"] or "", role, match["kind"]), entry)
    prefixes = sorted({key[0] for key in found})
    if len(prefixes) > 1:
        sets = ", ".join(p or "(no prefix)" for p in prefixes)
        raise IdxError(
            f"{folder} holds the IDX files of {len(prefixes)} sets ({sets}); "
            "name one pair as idx:IMAGES_FILE,LABELS_FILE"
        )
    pairs = {}
    for role in ("train", "test"):
        images = found.get((prefixes[0] if prefixes else "", role, "images"))
        labels = found.get((prefixes[0] if prefixes else "", role, "labels"))
        if images and labels:
            pairs[role] = (images, labels)
        elif images or labels:
            have, missing = (images, "labels") if images else (labels, "images")
            raise IdxError(f"{folder}: found {have.name} but no matching {role} {missing} file")
    return pairs


def read_class_names(path: str | os.PathLike) -> list[str]:
    """A ``classes.txt``: line ``i`` names label ``i``; trailing blank lines are ignored.

    Raises:
        IdxError: The same name on two lines.
    """
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise IdxError(f"{path}: class names must differ; repeated: {', '.join(repeated)}")
    return names


def label_names(present: np.ndarray, given: list[str] | None, labels_path) -> tuple[list, list]:
    """Names of the label values ``present`` (sorted), and of the values below the largest
    (or named in ``given``) that have no examples.

    Raises:
        IdxError: A label value with no name in ``given``.
    """
    if given is not None and len(present) and present.max() >= len(given):
        raise IdxError(
            f"{labels_path} has label {int(present.max())} but there are only {len(given)} "
            "class names (line i of classes.txt names label i)"
        )
    every = len(given) if given is not None else int(present.max(initial=-1)) + 1
    name = (lambda v: given[v]) if given is not None else str
    seen = set(present.tolist())
    return [name(int(v)) for v in present], [name(v) for v in range(every) if v not in seen]
