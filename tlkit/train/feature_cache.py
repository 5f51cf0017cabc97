"""The cached-feature fast path: a frozen backbone's features computed once, the head trained on them.

When the backbone is frozen for the whole run (BatchNorm in inference mode) and augmentation is
off or mirroring only, every epoch would push the same images through the same function. So
the frozen part of the model (preprocessing, backbone, global pooling) runs once per image
(twice with mirroring: the image and its mirror), the features go to disk in the run
directory, and the head trains on them: a ``keras.Model`` from a features input through the
*same* head layer objects, so the full model holds the trained head and is what gets saved.

Layout: ``<run_dir>/feature_cache/<key>/{train,train_flipped,val}.npy`` with
``{train,val}_labels.npy``, ``info.json`` and, with ``weights: none``, the random initial
weights (``backbone.weights.h5``, for a resumed run); every file is written atomically. The key hashes the data (the
splits' origins, labels, file sizes and times or in-memory pixels), the backbone's weight
values (so the weights source and file are covered, and a seeded random initialisation too),
the backbone id, image size, preprocessing, the feature layer and the dtype policy.
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

from tlkit.errors import UserError
from tlkit.io import atomic_path, atomic_write_json

CACHE_DIR = "feature_cache"
ACTIVE_FILE = "active.json"
START_WEIGHTS = "backbone.weights.h5"
KEY_VERSION = 1

#: Layers that behave differently in training even when frozen: features computed once would
#: leave out their noise, so a backbone holding one trains the slow way.
_STOCHASTIC = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)


def is_head_layer(name: str) -> bool:
    """The new head's layers: ``head_*`` and ``predictions`` (auxiliary classifiers too)."""
    return name.startswith(("head_", "aux")) or name == "predictions"


@dataclass
class FastPathPlan:
    """Whether a run trains on cached features, and why (not).

    Attributes:
        use: Train the head on cached features.
        frozen: The backbone is frozen for the whole run (the fast path's precondition).
        reason: Why the fast path is used, or why a frozen run cannot use it.
        decision: The freeze decision of the run's single stage (``None`` with several).
        mirror_p: Mirror probability when mirroring is the augmentation (0 without).
        stage: The run's single :class:`~tlkit.train.trainer.Stage`.
    """

    use: bool
    frozen: bool
    reason: str
    decision: Any = None
    mirror_p: float = 0.0
    stage: Any = None


def cacheable_augmentation(config) -> tuple[bool, float, str]:
    """``(cacheable, mirror probability, what is in the way)`` for an ``augment`` section.

    Nothing enabled, or mirroring alone (the built-in backend), can be cached: mirroring by
    keeping the features of both the image and its mirror.
    """
    if config is None:
        return True, 0.0, ""
    if config.backend != "tf":
        return False, 0.0, "the albumentations backend changes every image every epoch"
    ops = config.enabled_ops
    extra = [op for op in ops if op != "mirror"]
    if extra:
        return (
            False,
            0.0,
            (
                f"augmentation {', '.join(extra)} changes every image every epoch (only mirroring "
                "can be cached)"
            ),
        )
    return True, (float(config.mirror.p) if "mirror" in ops else 0.0), ""


def plan_fast_path(recipe, model, info, strategy, *, train_images_per_class: float) -> FastPathPlan:
    """Decide, without side effects, whether ``recipe`` trains ``model``'s head on cached features.

    Conditions: one freeze stage whose policy freezes every backbone layer (``all``, or
    ``auto`` choosing it; see :func:`tlkit.freeze.plan_freeze`), a pooled head (``avg`` or
    ``max``), no stochastic layer (Dropout...) inside the backbone, augmentation off or
    mirroring only, a strategy other than ``multi_worker``, and ``train.feature_cache: auto``.
    """
    from tlkit.freeze import plan_freeze
    from tlkit.train.trainer import plan_stages

    stages = plan_stages(recipe)
    if len(stages) != 1:
        return FastPathPlan(False, False, f"{len(stages)} freeze stages change what trains")
    decision = plan_freeze(
        model,
        info,
        stages[0].policy,
        train_images_per_class=train_images_per_class,
        config=recipe.freeze,
    )
    trained = [name for name in decision.trainable_layers if not is_head_layer(name)]
    if trained:
        return FastPathPlan(False, False, f"backbone layers train ({trained[0]}...)", decision)

    def no(reason: str) -> FastPathPlan:
        return FastPathPlan(False, True, reason, decision, stage=stages[0])

    if recipe.train.feature_cache == "off":
        return no("train.feature_cache is off")
    if recipe.model.head.type not in ("avg", "max"):
        return no(
            f"model.head.type {recipe.model.head.type!r} starts inside the architecture's own "
            "classifier, whose input is not a pooled feature vector; the cache supports the "
            "avg and max heads"
        )
    stochastic = [
        layer.name
        for layer in model.layers
        if isinstance(layer, _STOCHASTIC) and not is_head_layer(layer.name)
    ]
    if stochastic:
        return no(f"the backbone's {stochastic[0]} adds noise in training even when frozen")
    ok, mirror_p, why = cacheable_augmentation(_augment_config(recipe))
    if not ok:
        return no(why)
    if recipe.train.strategy == "multi_worker" or isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ):
        return no("multi_worker training runs tlkit's own distributed loop on the images")
    mirrored = (
        f", with mirroring (p={mirror_p:g}) from cached mirrored features" if mirror_p else ""
    )
    return FastPathPlan(
        True,
        True,
        f"the backbone is frozen for the whole run: its features are computed once and only "
        f"the head trains{mirrored} (train.feature_cache: off turns this off)",
        decision,
        mirror_p,
        stages[0],
    )


def _augment_config(recipe):
    config = recipe.augment
    return config if config.any_enabled else None


# --------------------------------------------------------------------------- model pieces


def head_layers(model: keras.Model) -> list:
    """The head's layers, input to output: the tail of a flat transfer model.

    Raises:
        ValueError: the head is not a single chain at the end of the model (paper heads).
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    start = next((i for i, layer in enumerate(layers) if is_head_layer(layer.name)), None)
    if start is None or not all(is_head_layer(layer.name) for layer in layers[start:]):
        raise ValueError(f"{model.name} does not end in a chain of head_* layers")
    return layers[start:]


def feature_extractor(model: keras.Model) -> keras.Model:
    """The frozen part of a transfer model: image -> the tensor feeding the head."""
    first = head_layers(model)[0]
    return keras.Model(model.inputs, first.input, name=f"{model.name}_features")


def build_head_model(model: keras.Model) -> keras.Model:
    """A model from a features input through ``model``'s own head layers (weights shared)."""
    layers = head_layers(model)
    features = keras.Input(tuple(layers[0].input.shape[1:]), name="features")
    x = features
    for layer in layers:
        x = layer(x)
    return keras.Model(features, x, name=f"{model.name}_head")


# --------------------------------------------------------------------------- the key


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
) -> dict[str, Any]:
    """What the cache key hashes, as a dict (written to ``info.json`` beside the features)."""
    first = head_layers(model)[0]
    return {
        "version": KEY_VERSION,
        "backbone": backbone,
        "image_size": int(image_size),
        "preprocessing": preprocessing,
        "features": f"{first.input._keras_history.operation.name}:{tuple(first.input.shape[1:])}",
        "dtype_policy": keras.config.dtype_policy().name,
        "weights_source": str(weights_source),
        "weights": weights_digest(model),
        "data": {name: data_digest(split) for name, split in sorted(splits.items())},
    }


def cache_key(parts: dict[str, Any]) -> str:
    """A short hash of :func:`key_parts`."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- computing


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


def start_weights_path(run_dir: Path, key: str) -> Path:
    return cache_root(run_dir) / key / START_WEIGHTS


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
) -> tuple[np.ndarray, np.ndarray]:
    """``(features [N, D] float32, labels [N])`` of ``split`` in order (mirrored if ``flipped``).

    Images come as the evaluation pipeline gives them (resized, raw 0..255); the mirror is
    ``tf.reverse`` along the width, as the augmenter's.
    """
    from tlkit.data.pipeline import iterate_images

    extract = extract or extraction_function(model)
    features, labels = [], []
    for images, batch_labels in iterate_images(split, image_size, batch_size):
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
    log: Callable[[str], None] = print,
) -> CachedFeatures:
    """Load the features under ``run_dir/feature_cache/key``, computing what is missing.

    ``splits`` maps ``train`` (and ``val`` when present) to :class:`~tlkit.data.Split`. With
    ``mirror`` the mirrored training images' features are cached too. Each array is written
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
        computed=computed,
    )


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


# --------------------------------------------------------------------------- datasets


def feature_dataset(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    batch_size: int,
    training: bool,
    seed: int,
    flipped: np.ndarray | None = None,
    mirror_p: float = 0.0,
    class_weight: dict[int, float] | None = None,
) -> tf.data.Dataset:
    """Batches of ``(features, one-hot labels[, sample weights])`` like the image pipeline's.

    Training shuffles (seeded, a new order every epoch) and, with ``flipped`` and
    ``mirror_p``, takes each example's mirrored features with probability ``mirror_p``, drawn
    per example and per epoch (the image pipeline's mirroring). Class weights become
    per-example sample weights, as in :func:`tlkit.data.make_dataset`.
    """
    n = len(labels)
    table = tf.constant(np.asarray(features, np.float32))
    label_table = tf.constant(np.asarray(labels, np.int64))
    ds = tf.data.Dataset.range(n)
    if training:
        ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    mirror = training and flipped is not None and mirror_p > 0
    if mirror:
        mirrored = tf.constant(np.asarray(flipped, np.float32))
        seeds = tf.data.Dataset.random(seed=seed + 2, rerandomize_each_iteration=True).batch(2)

        def pick(index, s):
            draw = tf.random.stateless_uniform(tf.shape(index), seed=s) < mirror_p
            x = tf.where(draw[:, None], tf.gather(mirrored, index), tf.gather(table, index))
            return x, tf.gather(label_table, index)

        ds = tf.data.Dataset.zip(ds, seeds).map(pick)
    else:
        ds = ds.map(lambda index: (tf.gather(table, index), tf.gather(label_table, index)))
    ds = ds.map(lambda x, y: (x, tf.one_hot(y, num_classes, dtype=tf.float32)))
    if class_weight:
        weights = tf.constant(
            [float(class_weight.get(c, 1.0)) for c in range(num_classes)], tf.float32
        )
        ds = ds.map(lambda x, y: (x, y, tf.linalg.matvec(y, weights)))
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- the run


class FastPath:
    """Everything a fine-tune needs to train ``model``'s head on cached features.

    Freezes ``model`` as the plan says (so the saved model records it), computes or reuses the
    features, keeps a random initialisation for a resumed run, and builds the head-only model and its
    datasets; a resumed run (``resuming``) must find the key it started with. Hand
    :attr:`head_model`, :meth:`trainer_recipe`, :attr:`train_ds`,
    :attr:`val_ds`, :meth:`trainer_log` and :meth:`best_model` to the
    :class:`~tlkit.train.trainer.Trainer`; ``model.keras`` is then the full image model.
    """

    def __init__(
        self,
        model,
        plan: FastPathPlan,
        *,
        recipe,
        info,
        bundle,
        run_dir: Path,
        image_size: int,
        weights_source: str = "",
        class_weight: dict[int, float] | None = None,
        strategy=None,
        resuming: bool = False,
        log: Callable[[str], None] = print,
    ):
        from tlkit.freeze import apply_freeze

        self.model, self.plan, self.recipe, self.info = model, plan, recipe, info
        self.decision = apply_freeze(
            model,
            info,
            plan.stage.policy,
            train_images_per_class=len(bundle.train) / max(1, bundle.num_classes),
            config=recipe.freeze,
        )
        splits = {"train": bundle.train}
        if len(bundle.val):
            splits["val"] = bundle.val
        parts = key_parts(
            model,
            splits,
            backbone=info.id,
            image_size=image_size,
            preprocessing=info.preprocessing,
            weights_source=weights_source,
        )
        key = cache_key(parts)
        started_with = active_key(run_dir) if resuming else None
        if started_with not in (None, key):
            raise UserError(
                f"{run_dir} started with other data or backbone weights (feature cache "
                f"{started_with}, now {key}), and its checkpoint holds a head trained on those "
                "features; pass --overwrite to start again there, or choose another --output"
            )
        self.features = cached_features(
            model,
            splits,
            run_dir=run_dir,
            key=key,
            image_size=image_size,
            batch_size=recipe.train.batch_size,
            mirror=plan.mirror_p > 0,
            parts=parts,
            log=log,
        )
        start = start_weights_path(run_dir, key)
        if weights_source == "none" and not start.exists():
            # A random initialisation is kept for a resumed run; a weights file is read again.
            with atomic_path(start) as tmp:
                model.save_weights(tmp)
        scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
        with scope:
            self.head_model = build_head_model(model)
        f, classes, batch = self.features, bundle.num_classes, recipe.train.batch_size
        self.train_ds = feature_dataset(
            f.train,
            f.train_labels,
            num_classes=classes,
            batch_size=batch,
            training=True,
            seed=recipe.seed,
            flipped=f.train_flipped,
            mirror_p=plan.mirror_p,
            class_weight=class_weight,
        )
        self.val_ds = None
        if f.val is not None:
            self.val_ds = feature_dataset(
                f.val,
                f.val_labels,
                num_classes=classes,
                batch_size=batch,
                training=False,
                seed=recipe.seed,
            )
        self._best: list[np.ndarray] | None = None

    def trainer_recipe(self):
        """The recipe as the head model sees it: one stage, policy ``all``.

        The freeze policy already ran on the full model; the head model has no backbone, so
        block names, layer counts and backbone learning-rate multipliers mean nothing to it.
        """
        r, stage = self.recipe, self.plan.stage
        freeze = r.freeze.model_copy(
            update={
                "policy": "all",
                "stages": [],
                "lr_multipliers": {k: v for k, v in r.freeze.lr_multipliers.items() if k == "head"},
            }
        )
        optimizer = r.train.optimizer.model_copy(update={"lr": stage.lr})
        train = r.train.model_copy(update={"epochs": stage.epochs, "optimizer": optimizer})
        return r.model_copy(update={"freeze": freeze, "train": train})

    def trainer_log(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log``, with the trainer's freeze lines about the head model told of the full model."""
        from tlkit.freeze import freeze_table, plan_freeze

        head = plan_freeze(self.head_model, self.info, "all")
        replacements = {
            head.message: f"{self.decision.message} (fast path: the head trains on cached "
            "features)",
            freeze_table(self.head_model, self.info).format(): freeze_table(
                self.model, self.info
            ).format(),
        }
        return lambda message: log(replacements.get(message, message))

    def best_model(self):
        """The model to save as ``model.keras`` (the full one); remembers the head's weights."""
        self._best = [np.array(w) for w in self.head_model.get_weights()]
        return self.model

    def predict_val(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The best model's validation probabilities from the cached features, and labels.

        ``None`` when this process did not see the best epoch (a resumed run): then the
        caller evaluates the saved model on the images.
        """
        if self._best is None or self.features.val is None:
            return None
        self.head_model.set_weights(self._best)
        probs = [
            keras.ops.convert_to_numpy(self.head_model(chunk, training=False))
            for chunk in np.array_split(self.features.val, max(1, len(self.features.val) // 1024))
        ]
        return np.concatenate(probs), self.features.val_labels
