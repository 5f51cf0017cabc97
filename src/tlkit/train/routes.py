"""Training routes: strategy objects that train a run's model one way and say what that adds.

A run trains one of two ways, and both give the same ``model.keras`` (a full image model).
Every route has the same face (:class:`Route`): ``train(plan, hooks, run)`` trains and saves,
``inference_model()`` is what the best model saves, ``saved_in_memory()`` and
``cached_predictions()`` let the reports skip loading and predicting, ``cross_fitted()`` is
the evidence of a cross-fitted head, and ``metrics()`` adds the route's facts to
``metrics.json``. Nothing above ``tlkit.train`` asks which route it holds.

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
from dataclasses import dataclass, field
from typing import Any, Protocol

import keras
import tensorflow as tf

from tlkit.data.pipeline import make_dataset
from tlkit.models.heads import inference_model, is_head_layer
from tlkit.train.state import TrainState
from tlkit.train.trainer import Datasets, Trainer

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


@dataclass
class Trained:
    """What :meth:`Route.train` leaves: the final state, the freeze decisions applied, and
    whether tlkit's own distributed loop ran (``Model.fit`` could not)."""

    state: TrainState
    decisions: list = field(default_factory=list)
    custom_loop: bool = False


class Route(Protocol):
    """The face every training route has (:class:`ImageRoute`, :class:`FeatureRoute`).

    ``run`` is the run's context: ``run_dir``, ``strategy``, ``chief``.
    """

    name: str

    def train(self, plan, hooks: list, run, *, freezer, resume: bool = True,
              log: Callable[[str], None] = print) -> Trained:
        """Train ``plan`` (a :class:`~tlkit.train.plan.TrainPlan`) with ``hooks``; save
        ``model.keras`` and ``state.json`` in ``run.run_dir``."""

    def inference_model(self) -> keras.Model:
        """The full image model as ``model.keras`` saves it."""

    def saved_in_memory(self) -> keras.Model | None:
        """The model ``model.keras`` holds when this process has it in memory, else None."""

    def cached_predictions(self, split_name: str, best: Callable[[], keras.Model]):
        """``(probabilities, labels)`` of a split without running the images, else None."""

    def cross_fitted(self):
        """``(CrossFit, training images)`` of a cross-fitted head, else None."""

    def metrics(self) -> dict[str, Any]:
        """The route's entries in ``metrics.json`` (``fast_path``, ``feature_cache``)."""


class ImageRoute:
    """Train the whole transfer model on image batches, with the :class:`Trainer`.

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

    def train(self, plan, hooks: list, run, *, freezer, resume: bool = True,
              log: Callable[[str], None] = print) -> Trained:
        """The trainer's stages and epochs on the image batches (see :class:`Route`)."""
        trainer = Trainer(
            self.model, plan, self.datasets, run.run_dir, hooks, strategy=run.strategy,
            freezer=freezer, inference_model=self.inference_model, chief=run.chief, log=log,
        )
        state = trainer.run(resume=resume)
        return Trained(state, trainer.decisions, trainer.used_custom_loop)

    def inference_model(self) -> keras.Model:
        return inference_model(self.model)

    def saved_in_memory(self) -> keras.Model | None:
        """The model ``model.keras`` holds, when this process has it in memory exactly as it
        saved it (else None: load the file)."""
        return None

    def cached_predictions(self, split_name: str, best: Callable[[], keras.Model]):
        """Nothing is cached on this route: the caller predicts on the images."""
        return None

    def cross_fitted(self) -> None:
        """No head is cross-fitted on this route (the run calibrates on val afterwards)."""
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


__all__ = ["FeatureCachePlan", "ImageInput", "ImageRoute", "Route", "Trained",
           "cacheable_augmentation", "plan_feature_cache"]
