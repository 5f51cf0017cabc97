"""Built-in sets: scikit-learn's digits and Fashion-MNIST (from Debian's package).

Neither downloads anything: a set that is not on this machine is a clear error that says how
to get it here.
"""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import numpy as np

from tlkit.data.assemble import RawParts
from tlkit.data.bundle import DataReport
from tlkit.data.config import DataConfig
from tlkit.data.idx import find_idx_files
from tlkit.data.sources.idx import idx_pair_parts, in_memory
from tlkit.errors import UnknownNameError, UserError

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
#: Folders searched for Fashion-MNIST's idx files, after $TLKIT_FASHION_MNIST_DIR (the first is
#: where Debian's dataset-fashion-mnist package puts them).
FASHION_MNIST_DIRS = (
    "/usr/share/datasets/fashion-mnist",
    "/usr/share/dataset-fashion-mnist",
    "/usr/share/fashion-mnist",
)


def builtin_parts(name: str, config: DataConfig) -> RawParts:
    """``builtin:digits`` (scikit-learn, 1,797 8x8 images) or ``builtin:fashion_mnist``."""
    loaders = {"digits": _digits, "fashion_mnist": _fashion_mnist}
    key = name.strip().lower().replace("-", "_")
    if key not in loaders:
        raise UnknownNameError("builtin data set", name, loaders)
    return loaders[key](config)


def _digits(config: DataConfig) -> RawParts:
    from sklearn.datasets import load_digits

    digits = load_digits()
    gray = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    source = "builtin:digits"
    report = DataReport(source=source)
    report.notes.append("scikit-learn digits: 8x8 images scaled from 0..16 to 0..255")
    return RawParts([str(i) for i in range(10)], report, in_memory(gray, digits.target, source))


def _fashion_mnist(config: DataConfig) -> RawParts:
    folder = _find_fashion_mnist()
    pairs = find_idx_files(folder)
    for role, stem in (("train", "train"), ("test", "t10k")):
        if role not in pairs and (role == "train" or config.test_split > 0):
            raise UserError(f"Fashion-MNIST file {stem}-images-idx3-ubyte[.gz] missing in {folder}")
    parts = idx_pair_parts(pairs, FASHION_MNIST_CLASSES, config, "builtin:fashion_mnist")
    parts.report.notes.insert(0, f"Fashion-MNIST read from {folder}")
    return parts


def _find_fashion_mnist() -> Path:
    candidates = [os.environ.get("TLKIT_FASHION_MNIST_DIR", ""), *FASHION_MNIST_DIRS]
    candidates += _dpkg_dirs("dataset-fashion-mnist")
    for folder in filter(None, candidates):
        if glob.glob(os.path.join(folder, "train-images-idx3-ubyte*")):
            return Path(folder)
    raise UserError(
        "builtin:fashion_mnist needs the Fashion-MNIST idx files (train-images-idx3-ubyte.gz, "
        "...) on this machine; none found in "
        f"{', '.join(filter(None, candidates))}. Install Debian's package "
        "(apt-get install dataset-fashion-mnist) or put the four files of "
        "github.com/zalandoresearch/fashion-mnist in a folder named by $TLKIT_FASHION_MNIST_DIR."
    )


def _dpkg_dirs(package: str) -> list[str]:
    try:
        listing = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({os.path.dirname(p) for p in listing.splitlines() if "idx3-ubyte" in p})
