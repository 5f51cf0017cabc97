"""The feature store: a frozen backbone's features on disk, keyed to be reused only when valid.

Layout: ``<run_dir>/feature_cache/<key>/{train,train_flipped,val,val_flipped}.npy`` with
``{train,val}_labels.npy``, ``info.json`` (what the key hashes) and, for a backbone without
pretrained weights, its initial weights (``backbone.weights.h5``, for a resumed run);
``feature_cache/active.json`` names the key the run trains with. Every file is written
atomically, so an interrupted run recomputes only what it had not finished.

The key hashes the data (the splits' origins, labels, file sizes and times or in-memory pixels),
the backbone's weight values (so the weights source and file are covered, and a seeded random
initialisation too), the backbone id, image size, preprocessing, the feature layer and the dtype
policy. Which runs use the store, and the datasets built on it, are the cached-feature route's
business (:mod:`tlkit.train.routes`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tlkit.data.pipeline import iterate_images
from tlkit.errors import UserError
from tlkit.io import atomic_path, atomic_write_json
from tlkit.models.heads import feature_extractor, head_layers, is_head_layer

CACHE_DIR = "feature_cache"
ACTIVE_FILE = "active.json"
START_WEIGHTS = "backbone.weights.h5"
KEY_VERSION = 2  # 2: the contract's geometry is part of the key


def data_digest(split) -> str:
    """Hash of a split: origins and labels, plus file sizes and times or in-memory pixels."""
    h = hashlib.sha1()
    h.update(json.dumps(list(split.origins)).encode())
    h.update(np.asarray(split.labels, np.int64).tobytes())
    if split.in_memory:
        images = split.images
        for image in [images] if isinstance(images, np.ndarray) else images:
            h.update(np.ascontiguousarray(image).tobytes())
    else:
        for origin in split.origins:
            try:
                st = os.stat(origin)
            except OSError:
                continue
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def weights_digest(model: keras.Model) -> str:
    """Hash of the values of every weight outside the head (BatchNorm statistics included)."""
    h = hashlib.sha1()
    for layer in model.layers:
        if is_head_layer(layer.name):
            continue
        for weight in layer.weights:
            value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
            h.update(f"{weight.path}:{value.shape}:{value.dtype}".encode())
            h.update(value.tobytes())
    return h.hexdigest()


def key_parts(
    model: keras.Model,
    splits: dict[str, Any],
    *,
    backbone: str,
    image_size: int,
    preprocessing: str,
    weights_source: str = "",
    contract=None,
) -> dict[str, Any]:
    """What the cache key hashes, as a dict (written to ``info.json`` beside the features)."""
    first = head_layers(model)[0]
    view = contract.to_dict() if contract is not None else None
    geometry = None if view is None else {k: view[k] for k in ("resize", "eval_size")}
    return {
        "version": KEY_VERSION,
        "backbone": backbone,
        "image_size": int(image_size),
        "preprocessing": preprocessing,
        "geometry": geometry,
        "features": f"{first.input._keras_history.operation.name}:{tuple(first.input.shape[1:])}",
        "dtype_policy": keras.config.dtype_policy().name,
        "weights_source": str(weights_source),
        "weights": weights_digest(model),
        "data": {name: data_digest(split) for name, split in sorted(splits.items())},
    }


def cache_key(parts: dict[str, Any]) -> str:
    """A short hash of :func:`key_parts`."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class CachedFeatures:
    """Features of the training and validation images, as the head sees them."""

    key: str
    folder: Path
    train: np.ndarray
    train_labels: np.ndarray
    train_flipped: np.ndarray | None = None
    val: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    val_flipped: np.ndarray | None = None
    computed: list[str] = field(default_factory=list)

    @property
    def reused(self) -> bool:
        return not self.computed


def cache_root(run_dir: Path) -> Path:
    return Path(run_dir) / CACHE_DIR


def active_key(run_dir: Path) -> str | None:
    """The key the run in ``run_dir`` trained with (for a resumed run)."""
    path = cache_root(run_dir) / ACTIVE_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("key")


#: Pixels per feature batch: 64 images at 224x224 (inference only; no gradients are kept).
FEATURE_BATCH_PIXELS = 64 * 224 * 224


def feature_batch_size(train_batch: int, image_size: int, cap: int = 128) -> int:
    """The batch for the one forward pass over the data: larger than training's where the
    images are small (ResNet-50 at 64 px: 0.95 s at 128 against 1.32 s at 32 for 206 images on
    2 CPU cores; VGG16 at 96 px the same at either), never above ``FEATURE_BATCH_PIXELS``."""
    fits = max(1, FEATURE_BATCH_PIXELS // (image_size * image_size))
    return max(train_batch, min(cap, 1 << (fits.bit_length() - 1)))


def extraction_function(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """``images -> float32 features`` through ``model``'s frozen part, traced once for any batch."""
    extractor = feature_extractor(model)
    warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
    spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)

    @tf.function(input_signature=[spec])
    def extract(images):
        return tf.cast(extractor(images, training=False), tf.float32)

    return extract


def compute_features(
    model: keras.Model,
    split,
    *,
    image_size: int,
    batch_size: int,
    flipped: bool = False,
    extract: Callable[[tf.Tensor], tf.Tensor] | None = None,
    contract=None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(features [N, D] float32, labels [N])`` of ``split`` in order (mirrored if ``flipped``).

    Images come as the evaluation pipeline gives them (the ``contract``'s evaluation view,
    raw 0..255); the mirror is
    ``tf.reverse`` along the width, as the augmenter's.
    """
    extract = extract or extraction_function(model)
    features, labels = [], []
    for images, batch_labels in iterate_images(split, image_size, batch_size, contract):
        x = tf.constant(images)
        if flipped:
            x = tf.reverse(x, axis=[2])
        features.append(extract(x).numpy())
        labels.append(batch_labels)
    if not features:
        width = int(head_layers(model)[0].input.shape[-1])
        return np.zeros((0, width), np.float32), np.zeros(0, np.int64)
    return np.concatenate(features), np.concatenate(labels).astype(np.int64)


def cached_features(
    model: keras.Model,
    splits: dict[str, Any],
    *,
    run_dir: Path,
    key: str,
    image_size: int,
    batch_size: int,
    mirror: bool,
    parts: dict[str, Any] | None = None,
    contract=None,
    log: Callable[[str], None] = print,
) -> CachedFeatures:
    """Load the features under ``run_dir/feature_cache/key``, computing what is missing.

    ``splits`` maps ``train`` (and ``val`` when present) to :class:`~tlkit.data.Split`. With
    ``mirror`` the mirrored images' features are cached too (the validation images' are extra
    training examples when the head is fitted on every labelled image). Each array is written
    atomically, so an interrupted run recomputes only what it had not finished.
    """
    folder = cache_root(run_dir) / key
    folder.mkdir(parents=True, exist_ok=True)
    if parts is not None and not (folder / "info.json").exists():
        atomic_write_json(folder / "info.json", parts)
    wanted = [("train", "train", False)]
    if mirror:
        wanted.append(("train_flipped", "train", True))
    if "val" in splits and len(splits["val"]):
        wanted.append(("val", "val", False))
        if mirror:
            wanted.append(("val_flipped", "val", True))
    arrays: dict[str, np.ndarray] = {}
    computed, started, extract = [], time.perf_counter(), None
    for name, split_name, flipped in wanted:
        path, labels_path = folder / f"{name}.npy", folder / f"{split_name}_labels.npy"
        if path.exists() and labels_path.exists():
            arrays[name] = np.load(path)
            arrays[f"{split_name}_labels"] = np.load(labels_path)
            continue
        extract = extract or extraction_function(model)
        features, labels = compute_features(
            model,
            splits[split_name],
            image_size=image_size,
            batch_size=batch_size,
            flipped=flipped,
            extract=extract,
            contract=contract,
        )
        _save(path, features)
        if not labels_path.exists():
            _save(labels_path, labels)
        arrays[name], arrays[f"{split_name}_labels"] = features, labels
        computed.append(f"{len(features)} {name.replace('_', ' ')}")
    atomic_write_json(cache_root(run_dir) / ACTIVE_FILE, {"key": key})
    if computed:
        log(
            f"feature cache: computed the features of {', '.join(computed)} images once in "
            f"{time.perf_counter() - started:.1f}s -> {folder}"
        )
    else:
        log(
            f"feature cache: reusing the cached features in {folder} (key {key}); "
            "nothing recomputed"
        )
    return CachedFeatures(
        key=key,
        folder=folder,
        train=arrays["train"],
        train_labels=arrays["train_labels"],
        train_flipped=arrays.get("train_flipped"),
        val=arrays.get("val"),
        val_labels=arrays.get("val_labels"),
        val_flipped=arrays.get("val_flipped"),
        computed=computed,
    )


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def check_resumable(run_dir: Path, key: str) -> None:
    """A resumed run must find the features it started with: its checkpoint holds a head
    trained on them.

    Raises:
        UserError: the run started with another key (other data or backbone weights).
    """
    started_with = active_key(run_dir)
    if started_with not in (None, key):
        raise UserError(
            f"{run_dir} started with other data or backbone weights (feature cache "
            f"{started_with}, now {key}), and its checkpoint holds a head trained on those "
            "features; pass --overwrite to start again there, or choose another --output"
        )
