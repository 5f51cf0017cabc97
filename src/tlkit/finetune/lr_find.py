"""The learning-rate finder on a run's real model, freeze policy and data.

``tlkit lr-find`` (:func:`lr_find`) and ``train.optimizer.lr: suggested`` (``--lr suggested``,
:func:`resolve_suggested_lr`) share one procedure, :func:`find_for_run`:

1. the policy the run trains first: the freeze decision of ``tlkit finetune``
   (:func:`tlkit.finetune.freeze_choice.decide`; for ``freeze.auto`` with evidence, the
   fine-tuning candidate, which is what trains with a learning rate);
2. the range test (:mod:`tlkit.train.lr_range`) from the new head as built (random), as
   fastai's ``lr_find`` runs before ``fine_tune``, on the run's augmented training batches,
   with the run's optimizer, weight decay, per-group rate multipliers and loss;
3. the weights, ``trainable`` flags and random state put back as they were.

Not from the head the linear probe fits, where tlkit's fine-tuning starts: that head is fitted
to convergence on the same training images, so the training loss starts at its floor, the
curve is flat until it blows up and says nothing but where (measured on 20 images per class of
Fashion-MNIST and digits with EfficientNet-Lite0: ``valley`` read noise, 4e-6; a tenth of the
blow-up gave 9e-4 on one and 1.9e-2 on the other, which destroyed the pretrained features, test
top-1 0.10). From the random head the loss falls from log(classes) and ``valley`` reads it:
4e-4 and 6e-4 there.

A policy whose head is fitted by a solver on cached features (the default below
``freeze.auto.finetune_from`` images per class) uses no learning rate: the finetune run keeps
the recipe's default and says so; ``tlkit lr-find`` still runs the test (for the head trained on
images, ``train.feature_cache: off``) and says that.

``tlkit lr-find`` writes only its own folder (``runs/<name>-lr-find/`` by default):
``lr_find.json``, ``lr_find.png`` and the data check's cache.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import tensorflow as tf

from tlkit.errors import UserError
from tlkit.finetune.context import RunContext, run_base
from tlkit.finetune.freeze_choice import decide
from tlkit.finetune.inputs import prepare_inputs
from tlkit.finetune.model import (
    build_run_model,
    check_before_data,
    checked_image_size,
    dtype_policy,
    load_start_weights,
    weights_source,
)
from tlkit.freeze.freezer import Freezer
from tlkit.io import atomic_write_json
from tlkit.models.heads import head_layers
from tlkit.recipes import resolve_backbone, run_name
from tlkit.train import (
    ImageInput,
    ImageRoute,
    Trainer,
    TrainPlan,
    is_linear_head,
    plan_feature_cache,
)
from tlkit.train.config import SUGGESTED
from tlkit.train.lr_range import DEFAULT_RULE, RangeTest, range_test
from tlkit.train.strategy import resolve_strategy
from tlkit.train.trainer import Datasets

LR_FIND_JSON, LR_FIND_PNG = "lr_find.json", "lr_find.png"
#: The rate a run uses where ``suggested`` has nothing to find (a solver fits the head).
FALLBACK_LR = 1e-3


@dataclass
class Finding:
    """A range test on a run's model, and the policy it ran with.

    Attributes:
        test: The curve and its suggestions.
        policy: The freeze policy the test trained.
        why: Why that policy.
        solver: The run fits its head with a solver on cached features: no rate is used.
        seconds: Wall time of the test.
    """

    test: RangeTest
    policy: str
    why: str
    solver: bool
    seconds: float

    def to_dict(self) -> dict:
        return {**self.test.to_dict(), "policy": self.policy, "why": self.why,
                "solver": self.solver, "seconds": round(self.seconds, 1)}


def run_policy(recipe, plan: TrainPlan, model, freezer, strategy) -> tuple[str, str, bool, bool]:
    """``(policy, why, probe first, solver fit)`` of the stage a run trains first (the test
    itself starts from the random head: see the module docstring)."""
    linear = is_linear_head(head_layers(model))
    multi = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    decision = decide(recipe.freeze, plan, freezer, linear=linear, multi_worker=multi)
    probe = decision.method not in ("stages", "random") and recipe.freeze.linear_probe and linear
    stage = replace(plan.stages[0], policy=decision.policy)
    route = plan_feature_cache(
        model, freezer, (stage,), head_type=recipe.model.head.type, augment=recipe.augment,
        feature_cache=recipe.train.feature_cache, strategy=strategy,
        solver_head=freezer.pretrained and linear,
    )
    return decision.policy, decision.why, probe, route.use


def find_for_run(
    recipe, plan: TrainPlan, model, freezer, inputs, images: ImageInput, *, strategy,
    start: float = 1e-6, end: float = 1.0, steps: int = 60, rule: str = DEFAULT_RULE,
    log: Callable[[str], None] = print,
) -> Finding:
    """The range test on ``model`` as the run would train it (see the module docstring); the
    model is left as it was found."""
    started = time.time()
    policy, why, _, solver = run_policy(recipe, plan, model, freezer, strategy)
    saved = [v.numpy() for v in model.variables]
    layers = _all_layers(model)
    flags = [layer.trainable for layer in layers]
    try:
        stage = replace(plan.stages[0], policy=policy)
        route = ImageRoute(model, inputs.bundle, images, augmenter=inputs.augmenter,
                           class_weight=inputs.class_weight)
        trainer = Trainer(model, replace(plan, stages=(stage,)), Datasets(route.datasets.train),
                          run_dir=".", hooks=[], strategy=strategy, freezer=freezer,
                          log=lambda m: None)
        trainer.prepare_stage(0, stage)
        batches = itertools.chain.from_iterable(itertools.repeat(trainer.train_ds))
        log(f"learning-rate range test: policy {policy}, {steps} steps from {start:g} to "
            f"{end:g} (one batch of {plan.batch_size} each)")
        test = range_test(model, batches, start=start, end=end, steps=steps, rule=rule)
    finally:
        for variable, value in zip(model.variables, saved, strict=True):
            variable.assign(value)
        for layer, flag in zip(layers, flags, strict=True):
            layer.trainable = flag
        keras.utils.set_random_seed(recipe.seed)  # the run draws as it would have without it
    return Finding(test, policy, why, solver, time.time() - started)


def _all_layers(model) -> list:
    """Every layer of ``model``, nested models' layers included (depth first)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def resolve_suggested_lr(
    recipe, plan: TrainPlan, model, freezer, inputs, images, *, run,
    log: Callable[[str], None] = print,
) -> tuple[TrainPlan, dict | None]:
    """``plan`` with ``suggested`` rates (NaN in its stages) replaced by the range test's.

    The finding is kept in the run directory (``lr_find.json``, ``lr_find.png``): a resumed
    run reuses it rather than testing again (its checkpoint was trained at that rate).
    Returns the plan and the record for ``metrics.json`` (None when nothing was suggested).
    """
    if not plan.lr_to_find:
        return plan, None
    if isinstance(run.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise UserError("train.optimizer.lr: suggested is not available with multi_worker (the "
                        "range test runs on one machine): run `tlkit lr-find` with the same "
                        "options on one machine and pass its rate with --lr")
    stored = run.run_dir / LR_FIND_JSON
    if run.resuming and stored.exists():
        record = json.loads(stored.read_text())
        log(f"lr: suggested: resuming with the earlier range test's {record['lr']:.2g}")
        return plan.with_lr(record["lr"]), record
    finding = find_for_run(recipe, plan, model, freezer, inputs, images, strategy=run.strategy,
                           log=log)
    if finding.solver:
        lr, note = FALLBACK_LR, (f"not needed: policy {finding.policy} fits the head with a "
                                 f"solver on cached features; {FALLBACK_LR:g} is kept for the "
                                 "record")
    elif finding.test.suggested is None:
        lr, note = FALLBACK_LR, f"{finding.test.describe()}; using {FALLBACK_LR:g}"
    else:
        lr, note = finding.test.suggested, finding.test.describe()
    log(f"lr: suggested: {note}")
    log(finding.test.ascii_plot())
    record = {**finding.to_dict(), "lr": lr, "note": note}
    if run.chief:
        atomic_write_json(stored, record)
        finding.test.plot(run.run_dir / LR_FIND_PNG)
    return plan.with_lr(lr), record


@dataclass
class LRFindResult:
    """What ``tlkit lr-find`` wrote."""

    out_dir: Path
    finding: Finding

    def describe(self) -> str:
        f = self.finding
        lines = [f.test.ascii_plot(), f.test.describe()]
        if f.solver:
            lines.append(
                f"note: with these settings the run fits its head with a solver on cached "
                f"features (policy {f.policy}) and uses no learning rate; this rate is for "
                "training it on images (--set train.feature_cache=off)")
        if f.test.suggested is not None:
            lines.append(f"use it: tlkit finetune ... --lr {f.test.suggested:.2g}   "
                         "(or --lr suggested: the run tests and uses the rate itself)")
        lines.append(f"curve: {self.out_dir / LR_FIND_PNG}, numbers: {self.out_dir / LR_FIND_JSON}")
        return "\n".join(lines)


def lr_find(
    recipe, *, out_dir: str | Path | None = None, start: float = 1e-6, end: float = 1.0,
    steps: int = 60, rule: str = DEFAULT_RULE, log: Callable[[str], None] = print,
) -> LRFindResult:
    """``tlkit lr-find``: the range test for the run ``recipe`` describes, written to
    ``out_dir`` (default: beside the run's directory, ``runs/<name>-lr-find``); no run
    directory is touched."""
    if not (0 < start < end):
        raise UserError(f"--start-lr ({start:g}) must be below --end-lr ({end:g})")
    if steps < 10:
        raise UserError(f"--steps {steps}: at least 10 are needed for a curve")
    recipe = resolve_backbone(recipe, log=log)
    info = recipe.model.backbone_info()
    size = checked_image_size(info, recipe.model.image_size)
    check_before_data(recipe, info, size)
    base = run_base(recipe.output, run_name(recipe))
    out = Path(out_dir) if out_dir else base.with_name(f"{base.name}-lr-find")
    if (out / "state.json").exists():
        raise UserError(f"{out} holds a training run; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    for name in (LR_FIND_JSON, LR_FIND_PNG):
        (out / name).unlink(missing_ok=True)
    strategy = resolve_strategy("default" if recipe.train.strategy == "multi_worker"
                                else recipe.train.strategy)
    keras.utils.set_random_seed(recipe.seed)
    run = RunContext(out, False, strategy, True, recipe.seed)
    inputs = prepare_inputs(
        recipe.data, recipe.augment, image_size=size, seed=recipe.seed, run_dir=out,
        progress=True, preprocess=recipe.preprocess, normalisation=info.preprocessing, log=log,
    )
    plan = TrainPlan.from_recipe(recipe, train_images=len(inputs.bundle.train))
    plan = plan.with_lr(FALLBACK_LR) if plan.lr_to_find else plan
    pipeline = recipe.data.model_dump(include={"cache", "cache_limit_mb", "num_parallel_calls"})
    images = ImageInput(size, plan.batch_size, recipe.seed, **pipeline, contract=inputs.contract)
    source = weights_source(recipe.weights, info)
    with dtype_policy(plan.precision, log=log):
        model = build_run_model(info, inputs, recipe.model.head, run=run,
                                aux_weight=plan.aux_loss_weight, log=log)
        freezer = Freezer(model, info, recipe.freeze,
                          train_images_per_class=inputs.images_per_class,
                          pretrained=source.path != "none")
        load_start_weights(model, info, recipe.weights, source=source.path,
                           include_top=recipe.model.head.type == "paper", run=run, log=log)
        finding = find_for_run(recipe, plan, model, freezer, inputs, images, strategy=strategy,
                               start=start, end=end, steps=steps, rule=rule, log=log)
    atomic_write_json(out / LR_FIND_JSON, {**finding.to_dict(), "recipe": recipe.name})
    finding.test.plot(out / LR_FIND_PNG)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return LRFindResult(out, finding)


__all__ = ["Finding", "LRFindResult", "SUGGESTED", "find_for_run", "lr_find",
           "resolve_suggested_lr", "run_policy"]
