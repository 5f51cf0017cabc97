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
