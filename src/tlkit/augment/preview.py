"""See what training sees: a grid of original images and augmented versions of each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.augment.augmenter import build_augmenter
from tlkit.augment.pca import compute_pca_stats
from tlkit.errors import UserError
from tlkit.io import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def as_rgb_batch(images: Any) -> np.ndarray:
    """``(N, H, W[, 1 or 3])`` uint8 or float (0..255, or 0..1) -> float32 ``(N, H, W, 3)`` 0..255."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise UserError(f"preview needs images (N, H, W, 3), got shape {array.shape}")
    array = array[..., :3].astype(np.float32)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if np.issubdtype(np.asarray(images).dtype, np.floating) and array.max(initial=0) <= 1.0:
        array = array * 255.0
    return array


def augmented_versions(images: Any, augmenter, count: int, seed: int = 0) -> np.ndarray:
    """``count`` augmented versions of each image: uint8 ``(count, N, S, S, 3)``.

    Runs what training runs: resize to ``augmenter.load_size()``, ``per_image``, then
    ``per_batch`` over all N images together (mixup/cutmix partners come from the same set);
    with ``device: model`` also the layer's pixel ops.
    """
    import tensorflow as tf

    batch = as_rgb_batch(images)
    side = augmenter.load_size()
    loaded = tf.image.resize(batch, [side, side], antialias=True)
    labels = tf.eye(len(batch))
    versions = []
    for j in range(count):
        per_image = tf.stack(
            [augmenter.per_image(loaded[i], [seed, 1000 * j + i]) for i in range(len(batch))]
        )
        if augmenter.config.device == "model":  # what the Keras layer does in training
            per_image = augmenter.per_batch_pixels(per_image, [seed + 1, j])
        mixed, _ = augmenter.per_batch(per_image, labels, [seed + 2, j])
        versions.append(np.clip(np.rint(mixed.numpy()), 0, 255).astype(np.uint8))
    return np.stack(versions)


def preview_grid(
    images: Any,
    augmenter,
    *,
    out_path: str | os.PathLike,
    columns: int = 6,
    seed: int = 0,
    title: str | None = None,
    row_labels: list[str] | None = None,
) -> Path:
    """Write a PNG grid: one row per image, the original then ``columns - 1`` augmented versions
    (without an augmenter only the originals, and the title says nothing is enabled).

    Args:
        images: ``(N, H, W, 3)`` uint8 or float images (grey ``(N, H, W)`` is accepted).
        augmenter: An :class:`~tlkit.augment.Augmenter`, or None (originals only).
        out_path: The PNG to write (atomically).
        columns: Images per row, the original included.
        seed: Seeds every augmented version; the same seed draws the same grid.
        title: Optional figure title (e.g. the enabled ops).
        row_labels: A label per row (the image's class), written left of it.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if columns < 2:
        raise UserError("preview needs at least 2 columns (the original and one augmented)")
    originals = np.clip(as_rgb_batch(images), 0, 255).astype(np.uint8)
    n = len(originals)
    if n == 0:
        raise UserError("preview needs at least one image")
    if augmenter is None:  # six identical copies would say nothing; say that instead
        columns = 1
        title = (title + "\n" if title else "") + "training sees the originals"
        versions = originals[None, :0]
    else:
        versions = augmented_versions(originals, augmenter, columns - 1, seed)

    side = originals.shape[2] if augmenter is None else versions.shape[2]
    cell = min(2.5, max(1.0, side / 100))  # about one screen pixel per pixel
    width = cell * columns + (0.8 if row_labels else 0.0) + (2.0 if columns == 1 else 0.0)
    fig = Figure(figsize=(width, cell * n + (0.45 if title else 0.0) + 0.3), dpi=100,
                 layout="constrained")  # the title gets its own room above the column heads
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(n, columns, squeeze=False)
    for i in range(n):
        for j in range(columns):
            ax = axes[i][j]
            ax.imshow(originals[i] if j == 0 else versions[j - 1, i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"augmented {j}", fontsize=8)
            if j == 0 and row_labels:
                ax.set_ylabel(str(row_labels[i]), fontsize=8, rotation=0, ha="right",
                              va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    canvas.draw()
    _write_png(np.asarray(canvas.buffer_rgba())[..., :3], Path(out_path))
    return Path(out_path)


def _write_png(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG", optimize=True)


def load_preview_images(source: str, n: int = 4, *, size: int | None = None,
                        with_labels: bool = False):
    """A few images for a preview: uint8 ``(n, H, W, 3)`` (and, ``with_labels``, each one's
    class: its class folder's name, or the digit).

    ``source`` is a folder (one subfolder per class, or images directly; one image per class in
    turn, unreadable files skipped) or ``builtin:digits`` (scikit-learn's 8x8 digits, scaled to
    0..255 RGB). Images are resized to ``size`` squares (default: the first image's size).

    Raises:
        UserError: a missing folder, or no readable images.
    """
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name != "digits":
            raise UserError(f"unknown builtin data {name!r} for preview; valid: builtin:digits")
        from sklearn.datasets import load_digits

        digits = load_digits()
        picks = [int(np.flatnonzero(digits.target == c)[0]) for c in range(10)][:n]
        grey = (digits.images[picks] * (255.0 / 16.0)).astype(np.uint8)
        images = _resize_all([np.repeat(g[..., None], 3, axis=-1) for g in grey], size or 64)
        return (images, [str(c) for c in range(len(picks))]) if with_labels else images
    folder = Path(source)
    if not folder.is_dir():
        raise UserError(f"--data {source}: not a folder (or use builtin:digits)")
    images, labels = [], []
    for path in _round_robin(folder):
        image = _read_rgb(path)
        if image is not None:
            images.append(image)
            parent = path.relative_to(folder).parts
            labels.append(parent[0] if len(parent) > 1 else "")
        if len(images) == n:
            break
    if not images:
        raise UserError(f"--data {source}: no readable images found")
    resized = _resize_all(images, size or min(256, *images[0].shape[:2]))
    return (resized, labels) if with_labels else resized


def _round_robin(folder: Path):
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [sorted(_image_files(c)) for c in classes] or [sorted(_image_files(folder))]
    for row in range(max(len(g) for g in groups)):
        for group in groups:
            if row < len(group):
                yield group[row]


def _image_files(folder: Path):
    return [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def _read_rgb(path: Path) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception:  # noqa: BLE001 - a bad file is skipped, never fatal
        return None


def _resize_all(images: list[np.ndarray], size: int) -> np.ndarray:
    from PIL import Image

    out = []
    for image in images:
        pil = Image.fromarray(image)
        resample = Image.NEAREST if min(image.shape[:2]) * 4 <= size else Image.BILINEAR
        out.append(np.asarray(pil.resize((size, size), resample)))
    return np.stack(out).astype(np.uint8)


def preview(
    source: str,
    config,
    *,
    image_size: int,
    out_path: str | os.PathLike,
    n: int = 4,
    columns: int = 6,
    seed: int = 0,
) -> dict[str, Any]:
    """Load ``n`` images from ``source``, augment them as training would, write the grid PNG.

    When PCA colour is on without statistics, they are computed from the preview images (a
    training run computes them over the whole training set).

    Returns:
        What was done: ``out``, ``images``, ``ops``, ``load_size``, ``pca_from_preview``.
    """
    images, labels = load_preview_images(source, n, with_labels=True)
    pca_from_preview = config.needs_pca_stats
    pca = compute_pca_stats(images) if pca_from_preview else None
    augmenter = build_augmenter(config, image_size=image_size, pca=pca, seed=seed)
    ops = config.enabled_ops + (["albumentations"] if config.backend == "albumentations" else [])
    title = ", ".join(ops) if ops else "no augmentation enabled"
    path = preview_grid(
        images, augmenter, out_path=out_path, columns=columns, seed=seed, title=title,
        row_labels=labels if any(labels) else None,
    )
    return {
        "out": str(path),
        "images": len(images),
        "ops": ops,
        "image_size": image_size,
        "load_size": augmenter.load_size() if augmenter else image_size,
        "pca_from_preview": pca_from_preview,
    }
