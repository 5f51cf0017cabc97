"""Training routes: what the trainer fits, on which data, and what that adds to the run.

A run trains one of two ways, and both give the same ``model.keras`` (a full image model):

* :class:`ImageRoute`: the transfer model on image batches from the tf.data pipeline
  (augmented for training);
* :class:`FeatureRoute`: when the backbone is frozen for the whole run and augmentation is off
  or mirroring only, every epoch would push the same images through the same function. The
  frozen part runs once per image (twice with mirroring: the image and its mirror), the
  features are kept in the :mod:`~tlkit.train.feature_store`, and the head trains on them: a
  model from a features input through the *same* head layer objects, so the full model holds
  the trained head.

:func:`plan_feature_cache` decides, without side effects, whether a run can take the feature
route, and says why (not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tlkit.data.pipeline import make_dataset
from tlkit.models.heads import build_head_model, head_layers, inference_model, is_head_layer
from tlkit.train import feature_store as store
from tlkit.train.probe import fit_head_layers, fit_linear_head, is_linear_head, set_linear_head
from tlkit.train.trainer import Datasets

#: Layers that behave differently in training even when frozen: features computed once would
#: leave out their noise, so a backbone holding one trains on images.
_STOCHASTIC = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)


@dataclass(frozen=True)
class ImageInput:
    """How images are fed: the model's input side, the batch, and the pipeline's settings
    (the recipe's ``data.cache``, ``data.cache_limit_mb``, ``data.num_parallel_calls``)."""

    image_size: int
    batch_size: int
    seed: int = 0
    cache: str = "auto"
    cache_limit_mb: int = 2048
    num_parallel_calls: int | None = None
    #: The run's preprocessing contract (:class:`tlkit.contract.Contract`); None: squash.
    contract: Any = None

    def dataset(self, split, num_classes: int, *, training: bool = False, **kwargs):
        """:func:`tlkit.data.make_dataset` of ``split`` with these settings."""
        return make_dataset(
            split,
            num_classes=num_classes,
            image_size=self.image_size,
            batch_size=self.batch_size,
            training=training,
            seed=self.seed,
            cache=self.cache,
            cache_limit_mb=self.cache_limit_mb,
            num_parallel_calls=self.num_parallel_calls,
            contract=self.contract,
            **kwargs,
        )


class ImageRoute:
    """Train the whole transfer model on image batches.

    uint8 batches: a quarter of the bytes to batch, prefetch and copy to an accelerator; the
    model's input casts them (benchmarks/augment_throughput.py).
    """

    name = "images"

    def __init__(self, model, bundle, images: ImageInput, *, augmenter=None, class_weight=None):
        self.model = model
        classes = bundle.num_classes
        train = images.dataset(
            bundle.train, classes, training=True, augmenter=augmenter,
            class_weight=class_weight, image_dtype="uint8",
        )
        val = images.dataset(bundle.val, classes, image_dtype="uint8") if len(bundle.val) else None
        self.datasets = Datasets(train, val)

    def inference_model(self) -> keras.Model:
        return inference_model(self.model)

    def saved_in_memory(self) -> keras.Model | None:
        """The model ``model.keras`` holds, when this process has it in memory exactly as it
        saved it (else None: load the file)."""
        return None

    def cached_predictions(self, split_name: str, best: Callable[[], keras.Model]):
        """Nothing is cached on this route: the caller predicts on the images."""
        return None

    def metrics(self) -> dict[str, Any]:
        return {"fast_path": False, "feature_cache": None}


@dataclass(frozen=True)
class FeatureCachePlan:
    """Whether a run trains the head on cached features, and why (not).

    Attributes:
        use: Take the :class:`FeatureRoute`.
        frozen: The backbone is frozen for the whole run (the route's precondition).
        reason: Why the route is used, or why a frozen run cannot use it.
        mirror_p: Mirror probability when mirroring is the augmentation (0 without).
    """

    use: bool
    frozen: bool
    reason: str
    mirror_p: float = 0.0


def cacheable_augmentation(config) -> tuple[bool, float, str]:
    """``(cacheable, mirror probability, what is in the way)`` for an ``augment`` section.

    Nothing enabled, or mirroring alone (the built-in backend), can be cached: mirroring by
    keeping the features of both the image and its mirror.
    """
    if config is None or not config.any_enabled:
        return True, 0.0, ""
    if config.backend != "tf":
        return False, 0.0, "the albumentations backend changes every image every epoch"
    ops = config.enabled_ops
    extra = [op for op in ops if op != "mirror"]
    if extra:
        return (
            False,
            0.0,
            f"augmentation {', '.join(extra)} changes every image every epoch (only mirroring "
            "can be cached)",
        )
    return True, (float(config.mirror.p) if "mirror" in ops else 0.0), ""


def plan_feature_cache(
    model, freezer, stages, *, head_type: str, augment, feature_cache: str = "auto", strategy=None,
    solver_head: bool = False,
) -> FeatureCachePlan:
    """Decide whether ``model``'s head can train on cached features.

    Conditions: one freeze stage whose policy freezes every backbone layer (``all``, or
    ``auto`` choosing it), a pooled head (``avg`` or ``max``), no stochastic layer (Dropout...)
    inside the backbone, augmentation off or mirroring only (or ``solver_head``), a strategy other than
    MultiWorkerMirroredStrategy, and ``feature_cache`` ``auto``.

    Args:
        model: The transfer model.
        freezer: Its :class:`~tlkit.freeze.Freezer` (only planned with, nothing is changed).
        stages: The plan's stages.
        head_type: The recipe's ``model.head.type``.
        augment: The recipe's ``augment`` section.
        feature_cache: The recipe's ``train.feature_cache``.
        strategy: The run's ``tf.distribute`` strategy.
        solver_head: The head is linear and the backbone pretrained: its fit on cached
            features is the solver's, so augmentation other than mirroring (which is cached)
            is left out rather than blocking the route.
    """
    if len(stages) != 1:
        return FeatureCachePlan(False, False, f"{len(stages)} freeze stages change what trains")
    decision = freezer.plan(stages[0].policy)
    trained = [name for name in decision.trainable_layers if not is_head_layer(name)]
    if trained:
        return FeatureCachePlan(False, False, f"backbone layers train ({trained[0]}...)")

    def no(reason: str) -> FeatureCachePlan:
        return FeatureCachePlan(False, True, reason)

    if feature_cache == "off":
        return no("train.feature_cache is off")
    if head_type not in ("avg", "max"):
        return no(
            f"model.head.type {head_type!r} starts inside the architecture's own classifier, "
            "whose input is not a pooled feature vector; the cache supports the avg and max heads"
        )
    stochastic = [
        layer.name
        for layer in model.layers
        if isinstance(layer, _STOCHASTIC) and not is_head_layer(layer.name)
    ]
    if stochastic:
        return no(f"the backbone's {stochastic[0]} adds noise in training even when frozen")
    ok, mirror_p, why = cacheable_augmentation(augment)
    dropped = ""
    if not ok and solver_head and augment.backend == "tf":
        # A pretrained frozen backbone under a linear head: the solver's head on the cached
        # features of the images (and their mirrors) scored above that head trained on for
        # epochs of augmented images, every time it was measured (docs/transfer-study.md).
        mirror_p = float(augment.mirror.p) if "mirror" in augment.enabled_ops else 0.0
        extra = [op for op in augment.enabled_ops if op != "mirror"]
        dropped = f"; {', '.join(extra)} not applied to a frozen backbone's head fit"
        ok = True
    if not ok:
        return no(why)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return no("multi_worker training runs tlkit's own distributed loop on the images")
    mirrored = ""
    if mirror_p:
        mirrored = f", with mirroring (p={mirror_p:g}) from cached mirrored features"
    return FeatureCachePlan(
        True,
        True,
        "the backbone is frozen for the whole run: its features are computed once and only "
        f"the head trains{mirrored}{dropped} (train.feature_cache: off turns this off)",
        mirror_p,
    )


class FeatureRoute:
    """Train ``model``'s head on the cached features of its frozen part.

    Computes or reuses the features (a resumed run must find the key it started with), keeps
    a random initialisation for a resumed run, and builds the head-only model and its
    datasets. The trainer fits :attr:`model` (the head); ``model.keras`` is the full image
    model, which shares the head's layers.

    Args:
        full_model: The transfer model (weights loaded).
        plan: The :func:`plan_feature_cache` decision (``use`` true).
        bundle: The run's data.
        run_dir: The run directory (the store lives in it).
        images: The image size and batch (features are computed from the evaluation images).
        info: The backbone's registry entry (id and preprocessing are part of the key).
        weights_source: Where the backbone's weights came from (part of the cache key).
        class_weight: ``{class index: weight}`` as sample weights, or None.
        strategy: The strategy whose scope builds the head model.
        resuming: The run continues from a checkpoint.
        log: Where messages go.
    """

    name = "cached features"

    def __init__(
        self,
        full_model,
        plan: FeatureCachePlan,
        bundle,
        *,
        run_dir: Path,
        images: ImageInput,
        info,
        weights_source: str = "",
        class_weight=None,
        strategy=None,
        resuming: bool = False,
        log=print,
    ):
        self.full_model = full_model
        splits = {"train": bundle.train, **({"val": bundle.val} if len(bundle.val) else {})}
        parts = store.key_parts(
            full_model,
            splits,
            backbone=info.id,
            image_size=images.image_size,
            preprocessing=info.preprocessing,
            weights_source=weights_source,
            contract=images.contract,
        )
        key = store.cache_key(parts)
        if resuming:
            store.check_resumable(run_dir, key)
        self.features = f = store.cached_features(
            full_model,
            splits,
            run_dir=run_dir,
            key=key,
            image_size=images.image_size,
            batch_size=store.feature_batch_size(images.batch_size, images.image_size),
            mirror=plan.mirror_p > 0,
            parts=parts,
            contract=images.contract,
            log=log,
        )
        with (strategy or tf.distribute.get_strategy()).scope():
            self.model = build_head_model(full_model)
        common = {"num_classes": bundle.num_classes, "batch_size": images.batch_size}
        train = feature_dataset(
            f.train, f.train_labels, training=True, seed=images.seed, flipped=f.train_flipped,
            mirror_p=plan.mirror_p, class_weight=class_weight, **common,
        )
        val = None
        if f.val is not None:
            val = feature_dataset(f.val, f.val_labels, training=False, seed=images.seed, **common)
        self.datasets = Datasets(train, val)
        self._best_head: list[np.ndarray] | None = None

    def fit(self, *, class_weight=None, holdout: float = 0.25, seed: int = 0, lr: float = 1e-3):
        """Train the head on the cached features to convergence (:mod:`tlkit.train.probe`).

        A linear head is fitted by a full-batch solver, its L2 strength chosen on a held-out
        part of the training features (mirrored features are extra examples); a head with
        hidden layers trains until its held-out loss stops improving. Returns a summary.
        """
        f, head = self.features, head_layers(self.full_model)
        num_classes = int(self.model.outputs[0].shape[-1])
        if is_linear_head(head):
            fitted = fit_linear_head(
                f.train, f.train_labels, num_classes, flipped=f.train_flipped,
                class_weight=class_weight, holdout=holdout, seed=seed,
            )
            set_linear_head(head, fitted)
            return {"summary": fitted.summary(), "message": fitted.describe()}
        summary = fit_head_layers(
            self.model, f.train, f.train_labels, num_classes, lr=lr, holdout=holdout, seed=seed
        )
        return {
            "summary": summary,
            "message": f"head trained on frozen features by {summary['solver']}: "
            f"{summary['epochs']} epochs, {summary['seconds']:.1f}s",
        }

    def scores(self) -> dict[str, float]:
        """Accuracy and loss of the head on the cached train and val features (a history row)."""
        row = {}
        splits = [("", self.features.train, self.features.train_labels)]
        if self.features.val is not None:
            splits.append(("val_", self.features.val, self.features.val_labels))
        for prefix, x, y in splits:
            probs = keras.ops.convert_to_numpy(self.model.predict(x, batch_size=1024, verbose=0))
            picked = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
            row[f"{prefix}accuracy"] = float(np.mean(np.argmax(probs, axis=1) == y))
            row[f"{prefix}loss"] = float(-np.mean(np.log(picked)))
        return row

    def inference_model(self) -> keras.Model:
        """The full image model, which holds the trained head; called when the trainer saves
        the best model, so the head's weights at that moment are remembered too."""
        self._best_head = [np.array(w) for w in self.model.get_weights()]
        return self.full_model

    def saved_in_memory(self) -> keras.Model | None:
        """The full model with the head this process saved last (None if it saved none)."""
        if self._best_head is None:
            return None
        self.model.set_weights(self._best_head)  # the head's layers are the full model's
        return self.full_model

    def cached_predictions(self, split_name: str, best: Callable[[], keras.Model]):
        """``(probabilities, labels)`` of a cached split under the best head, else None.

        The best head is the one this process saved last, or, in a resumed run that saved
        none, the head of ``best()`` (the saved ``model.keras``), copied by layer name.
        """
        if split_name != "val" or self.features.val is None:
            return None
        if self._best_head is not None:
            self.model.set_weights(self._best_head)
        else:
            saved = best()
            for layer in self.model.layers:
                if layer.weights:
                    layer.set_weights(saved.get_layer(layer.name).get_weights())
        features = self.features.val
        probs = [
            keras.ops.convert_to_numpy(self.model(chunk, training=False))
            for chunk in np.array_split(features, max(1, len(features) // 1024))
        ]
        return np.concatenate(probs), self.features.val_labels

    def metrics(self) -> dict[str, Any]:
        return {"fast_path": True, "feature_cache": self.features.key}


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


