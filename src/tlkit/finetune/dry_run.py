"""``tlkit plan``: what a fine-tune would do, without training anything.

It reads and counts the data, resolves the weights source, builds the model, and reports the
freeze decision and why, the stages, the route (images or cached features), the freeze table
and an estimate of the time per epoch, timed on a few training steps of a throwaway copy of
the model on random images. Nothing is written and no weights are loaded (only found).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tlkit.errors import TlkitError
from tlkit.finetune.context import place_run
from tlkit.finetune.freeze_choice import check_policies, decide, stage_summary
from tlkit.finetune.inputs import prepare_inputs
from tlkit.finetune.model import (
    build_run_model,
    check_before_data,
    checked_image_size,
    weights_source,
)
from tlkit.freeze.freezer import Freezer
from tlkit.models.heads import head_layers
from tlkit.recipes import resolve_backbone
from tlkit.train import TrainPlan, default_search_epochs, is_linear_head, plan_feature_cache
from tlkit.weights import official_weights_path

#: What ``tlkit finetune`` would do in the run directory, by :func:`locate_run_dir`'s status.
RUN_DIR_STATUS = {
    "new": "a new run directory",
    "resume": "finetune resumes the unfinished run there",
    "restart": "finetune starts again there: the run in it stopped before its first epoch",
    "replace": "--overwrite: finetune replaces the run there",
    "done": "it holds this run, finished, with the same recipe and files: finetune does nothing",
}


def describe_plan(recipe, *, time_steps: int = 3, log: Callable[[str], None] = print) -> dict:
    """Print (through ``log``) and return what :func:`tlkit.finetune.finetune` would do."""
    recipe = resolve_backbone(recipe, log=log)
    info = recipe.model.backbone_info()
    size = checked_image_size(info, recipe.model.image_size)
    check_before_data(recipe, info, size)
    named, _, where, status = place_run(recipe)
    log(f"run: {named.name} -> {where} ({RUN_DIR_STATUS[status]})")
    inputs = prepare_inputs(
        recipe.data, recipe.augment, image_size=size, seed=recipe.seed, run_dir=None,
        progress=False, preprocess=recipe.preprocess, normalisation=info.preprocessing, log=log,
    )
    plan = TrainPlan.from_recipe(recipe, train_images=len(inputs.bundle.train))
    source = weights_source(recipe.weights, info)
    pretrained = source.path != "none"
    log(f"weights: {_weights_line(source.path, info, recipe.model.head.type == 'paper')}")
    strategy = tf.distribute.get_strategy()  # a plan joins no cluster
    model = build_run_model(info, inputs, recipe.model.head, run=_Run(strategy), aux_weight=0.0,
                            log=log)
    freezer = Freezer(model, info, recipe.freeze, train_images_per_class=inputs.images_per_class,
                      pretrained=pretrained)
    check_policies(freezer, plan)
    linear = is_linear_head(head_layers(model))
    # the decision `tlkit finetune` makes, made by the same function (finetune/freeze_choice.py)
    decided = decide(recipe.freeze, plan, freezer, linear=linear,
                     multi_worker=recipe.train.strategy == "multi_worker")
    policy, searching = decided.policy, decided.method in ("evidence", "grid")
    why = decided.why
    if decided.method == "grid":
        epochs = recipe.freeze.auto.search_epochs or default_search_epochs(plan.stages[0].epochs)
        why += (f" ({epochs} epochs each on {1 - recipe.freeze.auto.holdout:.0%} of the training "
                "split, scored on the rest); the table below is the rule's choice")
    elif decided.method == "evidence":
        why += f"; the table below is {policy}'s"
    log(f"freeze: {why}")
    probe = pretrained and recipe.freeze.linear_probe and linear and not recipe.freeze.stages
    stages = [type(plan.stages[0])(policy, plan.stages[0].epochs, plan.stages[0].lr)]
    plan_shown = plan if recipe.freeze.stages else type(plan)(**{**plan.__dict__, "stages": tuple(stages)})
    route = plan_feature_cache(
        model, freezer, plan_shown.stages, head_type=recipe.model.head.type,
        augment=recipe.augment, feature_cache=recipe.train.feature_cache, strategy=strategy,
        solver_head=pretrained and linear,
    )
    lines = stage_summary(plan_shown, probe and not route.use)
    if route.use:
        lines = ["the head fitted on cached features by a solver, to convergence (no epochs)"]
        if recipe.train.frozen_head == "cross_fit" and len(inputs.bundle.val):
            lines = ["the head fitted on the cached features of every labelled image (train and "
                     "val) by a solver, its C, mirroring and temperature by 5-fold "
                     "cross-validation (no epochs)"]
    for line in lines:
        log(line)
    if route.use:
        log(f"route: cached features: {route.reason}")
    else:
        log("route: images" + (f" (no feature cache: {route.reason})" if route.frozen else ""))
    decision = freezer.apply(plan_shown.stages[0].policy)
    log(decision.message)
    log(freezer.table())
    seconds = None if route.use else _time_per_epoch(model, inputs, plan, time_steps)
    if seconds is not None:
        log(f"time per epoch: about {seconds:.1f}s ({plan.steps_per_epoch} steps of "
            f"{plan.batch_size}; timed on {time_steps} steps of random images on this machine)")
    return {"policy": policy, "searching": searching, "method": decided.method,
            "candidate": decided.candidate, "prior": decided.prior, "linear_probe": probe,
            "route": "cached features" if route.use else "images", "stages": lines,
            "pretrained": pretrained, "weights": source.path, "seconds_per_epoch": seconds,
            "train_images": len(inputs.bundle.train), "classes": inputs.bundle.num_classes}


class _Run:
    """The part of a run context that building the model needs."""

    def __init__(self, strategy):
        self.strategy = strategy


def _weights_line(path: str, info, include_top: bool) -> str:
    if path == "none":
        return f"none: {info.id} trains from scratch"
    if path == "imagenet":
        try:
            found = official_weights_path(info.official_weights, include_top, model_id=info.id,
                                          download=False)
        except TlkitError as exc:
            return f"imagenet, NOT on this machine: {exc}"
        return f"imagenet ({found})"
    return path


def _time_per_epoch(model, inputs, plan, steps: int) -> float | None:
    import keras

    if steps <= 0:
        return None
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    batch = min(plan.batch_size, 64)
    x = np.random.default_rng(0).integers(0, 255, (batch, inputs.image_size, inputs.image_size, 3))
    y = keras.utils.to_categorical(np.arange(batch) % inputs.bundle.num_classes,
                                   inputs.bundle.num_classes)
    model.train_on_batch(x.astype("uint8"), y)  # the first step traces
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x.astype("uint8"), y)
    per_step = (time.perf_counter() - started) / steps * plan.batch_size / batch
    return per_step * plan.steps_per_epoch
