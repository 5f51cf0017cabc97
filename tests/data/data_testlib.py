"""Image generators shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "fox": (40, 40, 200)}


def make_image(path: Path, colour=(128, 128, 128), size: int = 32, seed: int = 0, fmt=None) -> Path:
    """A noisy image of ``colour`` (noise keeps images distinct, so no accidental duplicates)."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, np.int16)[None, None, :]
    noise = rng.integers(-30, 31, size=(size, size, 3))
    array = np.clip(base + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, "RGB").save(path, format=fmt)
    return path


def make_class_folder(root: Path, counts: dict[str, int], ext: str = ".png", start: int = 0):
    """``root/<class>/<i><ext>`` for each class; returns ``root``."""
    seed = start
    for name, n in counts.items():
        for i in range(n):
            seed += 1
            make_image(root / name / f"{i:03d}{ext}", COLOURS.get(name, (128, 128, 128)), seed=seed)
    return root
