"""Dataset RGB statistics for AlexNet's PCA colour augmentation.

Krizhevsky et al. (2012), section 4.1: "we perform PCA on the set of RGB pixel values throughout
the ImageNet training set. To each training image, we add multiples of the found principal
components, with magnitudes proportional to the corresponding eigenvalues times a random variable
drawn from a Gaussian with mean zero and standard deviation 0.1."

The statistics describe pixels scaled to 0..1 (8-bit values divided by 255), the convention of
the widely used ImageNet numbers (fb.resnet.torch), so datasets are comparable with them. This
module is numpy only; a ``tf.data.Dataset`` is read through ``as_numpy_iterator``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlkit.errors import UserError


@dataclass(frozen=True)
class PCAStats:
    """Eigen-decomposition of the RGB covariance of a training set (pixels in 0..1).

    Attributes:
        eigvals: ``[3]`` eigenvalues, descending.
        eigvecs: ``[3, 3]`` eigenvectors in the columns (``eigvecs[:, i]`` goes with
            ``eigvals[i]``).
        mean: ``[3]`` mean RGB.
        count: number of pixels the statistics were computed from.
    """

    eigvals: np.ndarray
    eigvecs: np.ndarray
    mean: np.ndarray
    count: int

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and ints, for JSON/YAML (the run directory and the resolved recipe)."""
        return {
            "eigvals": [float(v) for v in self.eigvals],
            "eigvecs": [[float(v) for v in row] for row in self.eigvecs],
            "mean": [float(v) for v in self.mean],
            "count": int(self.count),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Any) -> PCAStats:
        """Inverse of :meth:`to_dict`; also accepts a pydantic ``PCAStatsConfig``."""
        if hasattr(data, "model_dump"):
            data = data.model_dump()
        eigvals = np.asarray(data["eigvals"], dtype=np.float64)
        eigvecs = np.asarray(data["eigvecs"], dtype=np.float64)
        if eigvals.shape != (3,) or eigvecs.shape != (3, 3):
            raise UserError(
                f"PCA statistics need eigvals [3] and eigvecs [3, 3], got {eigvals.shape} "
                f"and {eigvecs.shape}"
            )
        mean = data.get("mean")
        mean = np.full(3, np.nan) if mean is None else np.asarray(mean, dtype=np.float64)
        return cls(eigvals, eigvecs, mean, int(data.get("count") or 0))


#: ImageNet's RGB PCA (pixels in 0..1), as published with fb.resnet.torch's lighting transform.
IMAGENET_PCA = PCAStats(
    eigvals=np.array([0.2175, 0.0188, 0.0045]),
    eigvecs=np.array(
        [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]
    ),
    mean=np.array([0.485, 0.456, 0.406]),
    count=0,
)


class _Accumulator:
    """Streaming sums of RGB pixels and their outer products, in float64.

    Sums are taken around a shift (the first batch's mean) so the covariance does not lose
    precision to cancellation on large sets.
    """

    def __init__(self) -> None:
        self.shift: np.ndarray | None = None
        self.count = 0
        self.total = np.zeros(3)
        self.outer = np.zeros((3, 3))

    def add(self, batch: Any) -> None:
        pixels = np.asarray(batch)
        if pixels.shape[-1:] != (3,):
            raise UserError(
                f"PCA statistics need RGB images (last axis 3), got shape {pixels.shape}"
            )
        pixels = pixels.reshape(-1, 3).astype(np.float64)
        if pixels.size == 0:
            return
        if self.shift is None:
            self.shift = pixels.mean(axis=0)
        centred = pixels - self.shift
        self.count += len(centred)
        self.total += centred.sum(axis=0)
        self.outer += centred.T @ centred

    def result(self, value_range: float) -> PCAStats:
        if self.count < 2:
            raise UserError("PCA statistics need at least two pixels; the image set is empty")
        offset = self.total / self.count
        cov = (self.outer - self.count * np.outer(offset, offset)) / (self.count - 1)
        cov /= value_range**2
        eigvals, eigvecs = np.linalg.eigh(cov)
        order = np.argsort(eigvals)[::-1]
        return PCAStats(
            eigvals=np.clip(eigvals[order], 0.0, None),
            eigvecs=eigvecs[:, order],
            mean=(self.shift + offset) / value_range,
            count=self.count,
        )


def compute_pca_stats(
    images: Iterable[Any] | Any,
    *,
    value_range: float = 255.0,
    max_batches: int | None = None,
) -> PCAStats:
    """RGB covariance eigen-decomposition of a training set, in one streaming pass.

    Accumulates the sum and the sum of outer products of every RGB pixel (float64), then takes
    the (n - 1)-normalised covariance and ``np.linalg.eigh``, sorted by descending eigenvalue.
    This is the dataset-wide PCA of AlexNet, not the per-image "FancyPCA" of some libraries.

    Args:
        images: A ``tf.data.Dataset`` or an iterable of numpy batches ``[B, H, W, 3]`` or single
            images ``[H, W, 3]``; elements that are ``(images, labels)`` tuples or dicts with an
            ``"image"`` key are understood. A single numpy array is one batch.
        value_range: Pixel value that maps to 1.0 (255 for 8-bit images).
        max_batches: Stop after this many elements (a sample of a large set).

    Returns:
        :class:`PCAStats` for pixels scaled to 0..1.
    """
    if isinstance(images, np.ndarray):
        images = [images]
    elif hasattr(images, "as_numpy_iterator"):
        images = images.as_numpy_iterator()
    acc = _Accumulator()
    for i, element in enumerate(images):
        if max_batches is not None and i >= max_batches:
            break
        acc.add(_image_part(element))
    return acc.result(value_range)


def _image_part(element: Any) -> Any:
    if isinstance(element, (tuple, list)) and len(element) in (2, 3):
        return element[0]
    if isinstance(element, Mapping):
        return element["image"]
    return element


def resolve_pca_stats(config, pca: PCAStats | Mapping | None = None) -> PCAStats | None:
    """The PCA statistics to use: ``pca`` if given, else the ``augment`` section's
    ``pca_colour.stats`` (``imagenet`` or a dict); None when there are none."""
    if pca is not None:
        return pca if isinstance(pca, PCAStats) else PCAStats.from_dict(pca)
    stats = config.pca_colour.stats
    if stats is None:
        return None
    if stats == "imagenet":
        return IMAGENET_PCA
    return PCAStats.from_dict(stats)
