"""Augmentation: graph-native batched ops, dataset PCA statistics, an albumentations backend.

Configuration (:class:`AugmentConfig`, :func:`augment_preset`) and PCA statistics
(:func:`compute_pca_stats`, :class:`PCAStats`) import without TensorFlow; the ops, the
:class:`Augmenter`, the Keras layer and the preview load TensorFlow when first used.

    from tlkit.augment import augment_preset, build_augmenter, compute_pca_stats
    config = augment_preset("paper_alexnet")
    aug = build_augmenter(config, image_size=224, pca=compute_pca_stats(train_batches))
"""

from __future__ import annotations

import importlib

from tlkit.augment.config import (
    PRESETS,
    AugmentConfig,
    augment_preset,
)
from tlkit.augment.pca import IMAGENET_PCA, PCAStats, compute_pca_stats

_PIXEL_OPS = (
    "colour_shift", "random_contrast", "random_saturation", "pca_colour", "add_channel_offsets",
    "pca_offsets", "mixup", "cutmix", "clip_pixels",
)
_LAZY = {
    "Augmenter": "tlkit.augment.augmenter",
    "build_augmenter": "tlkit.augment.augmenter",
    "resolve_pca_stats": "tlkit.augment.augmenter",
    "seed_stream": "tlkit.imageops",
    "AugmentationLayer": "tlkit.augment.layer",
    "with_augmentation": "tlkit.augment.layer",
    "augmentation_layer": "tlkit.augment.layer",
    "preview_grid": "tlkit.augment.preview",
    "build_compose": "tlkit.augment.albumentations_backend",
    "rand_augment": "tlkit.augment.policies",
    "trivial_augment": "tlkit.augment.policies",
    **{
        name: "tlkit.augment.pixels" if name in _PIXEL_OPS else "tlkit.augment.ops"
        for name in (
            "flip_left_right",
            "random_crop",
            "resized_crop",
            "crop_window",
            "resize_window",
            "mirror_if",
            "scale_jitter",
            "scale_jitter_size",
            "rescale_shortest_side",
            "random_affine",
            "rotate",
            "shear",
            "local_warp",
            "colour_shift",
            "random_contrast",
            "random_saturation",
            "pca_colour",
            "add_channel_offsets",
            "pca_offsets",
            "mixup",
            "cutmix",
            "clip_pixels",
        )
    },
}

__all__ = [
    "PRESETS",
    "AugmentConfig",
    "augment_preset",
    "IMAGENET_PCA",
    "PCAStats",
    "compute_pca_stats",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tlkit.augment' has no attribute {name!r}")
