"""The run's model: the transfer model, its starting weights, and the route that trains it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from tlkit.augment.layer import augmentation_layer
from tlkit.errors import UserError
from tlkit.finetune.context import RunContext
from tlkit.finetune.inputs import Inputs
from tlkit.freeze.config import KEYWORD_POLICIES
from tlkit.freeze.policy import plan_freeze
from tlkit.io import atomic_write_json
from tlkit.models.heads import build_transfer_model, is_head_layer
from tlkit.models.registry import ModelInfo
from tlkit.rundir import RunDir
from tlkit.train import FeatureCachePlan, FeatureRoute, ImageInput, ImageRoute
from tlkit.weights import load_backbone_weights


def checked_image_size(info: ModelInfo, image_size: int | None) -> int:
    """The recipe's ``model.image_size``, or the architecture's own; at least its minimum."""
    size = image_size or info.default_size
    if size < info.min_size:
        raise UserError(
            f"{info.id} needs images of at least {info.min_size}x{info.min_size}; "
            f"model.image_size is {size}"
        )
    return size


@contextlib.contextmanager
def dtype_policy(name: str, log: Callable[[str], None] = print) -> Iterator[None]:
    """Keras' global dtype policy set to ``name`` for the block (models built in it use it)."""
    if name != "float32":
        log(f"precision: {name} (classifier output in float32)")
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy("float32")


def check_before_data(recipe, info: ModelInfo, image_size: int) -> None:
    """What can be checked before the data is read (seconds, where the data check takes longer
    and prints a screenful first): the ``--weights`` source, and an explicit freeze point (a
    group or unit name, or a layer count) against the model built with two placeholder classes.

    Raises:
        UserError: the weights cannot be found, the freeze point does not exist.
    """
    source = weights_source(recipe.weights, info)
    if str(recipe.freeze.policy) in KEYWORD_POLICIES or recipe.train.strategy == "multi_worker":
        return  # (a model built before MultiWorkerMirroredStrategy starts would break it)
    keras.backend.clear_session()
    model = build_transfer_model(info, 2, image_size=image_size, head=recipe.model.head)
    plan_freeze(model, info, config=recipe.freeze, pretrained=source.path != "none")
    keras.backend.clear_session()  # the run builds its own, with its own layer names


def build_run_model(
    info: ModelInfo,
    inputs: Inputs,
    head,
    *,
    run: RunContext,
    aux_weight: float,
    log: Callable[[str], None] = print,
) -> keras.Model:
    """The transfer model for the data's classes, built in the strategy's scope (no weights).

    Args:
        info: The backbone's registry entry.
        inputs: The run's inputs (classes, image size, augmenter for ``device: model``).
        head: The recipe's ``model.head``.
        run: The run context (its strategy's scope builds the model).
        aux_weight: GoogLeNet's auxiliary classifiers train when this loss weight is above 0.
        log: Where messages go.
    """
    with run.strategy.scope():
        return build_transfer_model(
            info,
            inputs.bundle.num_classes,
            image_size=inputs.image_size,
            head=head,
            aux_classifiers=_use_aux(info, head.type, aux_weight, inputs.image_size, log),
            augment_layer=augmentation_layer(inputs.augmenter),
        )


def _use_aux(info: ModelInfo, head_type: str, weight: float, image_size: int, log) -> bool:
    """Auxiliary classifiers (GoogLeNet) train with the paper head when their weight is > 0."""
    if head_type != "paper" or info.aux_min_size is None or weight <= 0:
        return False
    if image_size < info.aux_min_size:
        log(
            f"auxiliary classifiers need images of at least {info.aux_min_size}px; "
            f"training {info.id} without them at {image_size}px"
        )
        return False
    log(f"auxiliary classifiers on (loss weight {weight}; training only, not in model.keras)")
    return True


@dataclass(frozen=True)
class WeightsSource:
    """Where a run's starting weights come from.

    Attributes:
        path: ``imagenet``, ``none`` or a weights file (a run directory resolved to its
            ``model.keras``).
        record: What ``metrics.json`` says about it: the file and, for a previous tlkit run,
            its backbone, data and scores.
    """

    path: str
    record: dict[str, Any]


def weights_source(weights, info: ModelInfo) -> WeightsSource:
    """The recipe's ``weights.source`` resolved: ``auto`` is imagenet where official files
    exist, else none; a previous run's directory is its ``model.keras``."""
    source = weights.source
    if source == "auto":
        source = "imagenet" if info.official_weights is not None else "none"
    if source in ("imagenet", "none"):
        return WeightsSource(source, {"source": source})
    path = Path(source).expanduser()
    run = RunDir.of(path)
    if path.is_dir():
        path = run.model
        if not path.is_file():
            raise UserError(
                f"--weights {source}: the folder has no {RunDir.MODEL} (an unfinished run? "
                "re-run it to finish, or point at a weights file)"
            )
    elif not path.is_file():
        raise UserError(f"weights file not found: {path}")
    record: dict[str, Any] = {"source": str(path)}
    if run is not None:
        record["run"] = str(run.path)
        data = run.metrics()
        if data:
            record.update(
                backbone=data.get("backbone"),
                trained_on=data.get("trained_on"),
                val_top1=(data.get("val") or {}).get("top1"),
            )
    return WeightsSource(str(path), record)


def trained_on(recipe, inputs: Inputs, image_size: int) -> dict[str, Any]:
    """What a run learned from (recorded in ``metrics.json``; a run transferring from this
    one copies it into its ``start_from``)."""
    return {
        "data": recipe.data.source,
        "classes": list(inputs.bundle.class_names),
        "train_images": len(inputs.bundle.train),
        "image_size": image_size,
        "backbone": recipe.model.backbone,
    }


def load_start_weights(
    model: keras.Model,
    info: ModelInfo,
    weights,
    *,
    source: str,
    include_top: bool,
    run: RunContext,
    log: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Load the weights training starts from; the chief writes the load report to
    ``weights_report.json``, which is also returned (None when nothing was loaded).

    A resumed run loads them too: the freeze search, the cached features and the linear
    probe start from them, and a checkpoint then replaces what it holds.

    Args:
        model: The transfer model.
        info: Its backbone's registry entry.
        weights: The recipe's ``weights`` section (``allow_partial``).
        source: :attr:`WeightsSource.path`.
        include_top: Load the official file with the classifier (the paper head).
        run: The run context (directory, strategy).
        log: Where messages go.
    """
    if source == "none":
        log(f"no pretrained weights: {info.id} trains from scratch (weights: none)")
        return None
    with run.strategy.scope():
        report = load_backbone_weights(
            model,
            source,
            official=info.official_weights,
            model_id=info.id,
            include_top=include_top,
            head_layers={layer.name for layer in model.layers if is_head_layer(layer.name)},
            allow_partial=weights.allow_partial,
        )
    log(report.format())
    if run.chief:
        atomic_write_json(run.run_dir / RunDir.WEIGHTS_REPORT, report.as_dict())
    return report.as_dict()


def make_route(
    model: keras.Model,
    choice: FeatureCachePlan,
    inputs: Inputs,
    images: ImageInput,
    *,
    info: ModelInfo,
    source: str,
    run: RunContext,
    cross_fit: bool = True,
    holdout: float = 0.25,
    log: Callable[[str], None] = print,
):
    """The :class:`~tlkit.train.FeatureRoute` when ``choice.use``, else the
    :class:`~tlkit.train.ImageRoute`; says which and why. ``cross_fit``: the feature route
    fits a linear head on every labelled image (``train.frozen_head``); else ``holdout`` of
    the training images chooses its strength."""
    if choice.use:
        log(f"fast path: {choice.reason}")
        return FeatureRoute(
            model,
            choice,
            inputs.bundle,
            run_dir=run.run_dir,
            images=images,
            info=info,
            weights_source=source,
            class_weight=inputs.class_weight,
            holdout=holdout,
            strategy=run.strategy,
            resuming=run.resuming,
            cross_fit=cross_fit,
            log=log,
        )
    if choice.frozen:
        log(
            f"fast path: not used although the backbone is frozen: {choice.reason}; every "
            "training step runs the backbone"
        )
    return ImageRoute(
        model, inputs.bundle, images, augmenter=inputs.augmenter, class_weight=inputs.class_weight
    )

