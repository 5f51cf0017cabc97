"""What trains when: the freeze decision of a run, from its weights and its data.

* No pretrained weights: everything trains, BatchNorm included (``auto`` is ``none``; a policy
  that freezes anything is refused before training starts).
* Pretrained weights and ``freeze.policy: auto``: the image-count rule is the prior. With
  ``freeze.auto.search: evidence`` (the default) the frozen backbone, its head cross-fitted on
  every labelled image, is weighed against fine-tuning on the validation images
  (:mod:`tlkit.finetune.evidence`), from ``freeze.auto.finetune_from`` images per class (below
  it the frozen backbone is kept without trying: docs/defaults-suite.md); ``grid`` tries every
  freeze point on a held-out part of the training split
  (:mod:`tlkit.train.search`); ``off`` keeps the rule. The result is kept in
  ``freeze_search.json`` so a resumed run trains what it started.
* Pretrained weights: the new head is first fitted on the frozen features to convergence (a
  linear probe), then the training stage starts from it (Kumar et al., ICLR 2022: fine-tuning
  with a random head distorts the pretrained features), the pretrained layers at
  ``freeze.pretrained_lr`` times the head's learning rate.
* ``all`` (chosen or asked for) with a linear head: the head on cached features (of the
  images and, with mirroring, their mirrors), fitted to convergence by a solver
  (:meth:`tlkit.train.feature_route.FeatureRoute.train`), not a fixed number of epochs; augmentation
  other than mirroring is left out (it scored lower: docs/transfer-study.md).

A recipe with its own ``freeze.stages`` gets exactly those stages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import tensorflow as tf

from tlkit.io import atomic_write_json
from tlkit.models.heads import head_layers
from tlkit.rundir import RunDir
from tlkit.train import (
    HeadFit,
    SearchResult,
    Stage,
    TrainPlan,
    compute_features,
    default_search_epochs,
    fit_linear_head,
    is_linear_head,
    search_freeze,
    set_linear_head,
)

SEARCH_FILE = RunDir.FREEZE_SEARCH


def check_policies(freezer, plan: TrainPlan) -> None:
    """Refuse, before anything trains, a stage that would freeze random weights (exit 2)."""
    for stage in plan.stages:
        freezer.plan(stage.policy)


@dataclass
class FreezeChoice:
    """The run's stages with ``auto`` resolved, and what led there.

    Attributes:
        plan: The stages to train (for ``evidence``, the fine-tuning candidate's).
        probe_first: Fit the head on frozen features before training.
        search: The grid search's result (``search: grid``), if one ran.
        reason: Why, in a line.
        candidate: ``search: evidence``: the fine-tuning policy weighed against the frozen
            backbone (:mod:`tlkit.finetune.evidence`); None when nothing is weighed.
        prior: The image-count rule's choice.
    """

    plan: TrainPlan
    probe_first: bool
    search: SearchResult | None
    reason: str
    candidate: str | None = None
    prior: str | None = None


@dataclass(frozen=True)
class Decision:
    """What ``freeze:`` decides before anything trains: :func:`decide` for ``tlkit plan`` and
    ``tlkit finetune`` alike (the one place that decides).

    Attributes:
        policy: The policy to train first (``auto`` resolved, except for ``grid``'s search).
        method: ``stages`` | ``random`` | ``fixed`` | ``rule`` | ``evidence`` | ``grid``.
        prior: The image-count rule's choice (None when the rule is not consulted).
        candidate: ``evidence``: the fine-tuning policy weighed against the frozen backbone.
        why: One line for the user.
    """

    policy: str
    method: str
    prior: str | None = None
    candidate: str | None = None
    why: str = ""


def decide(freeze, plan: TrainPlan, freezer, *, linear: bool, multi_worker: bool) -> Decision:
    """The freeze decision of a run, from the recipe's ``freeze`` section, its plan, the
    model's freezer (which knows the data size and whether the weights are pretrained), and
    whether the head is linear and the strategy multi-worker (see the module docstring)."""
    policy = plan.stages[0].policy
    if freeze.stages:
        return Decision(policy, "stages", why="the recipe's own stages")
    if not freezer.pretrained:
        return Decision(policy, "random", why="no pretrained weights: everything trains, "
                        "BatchNorm included")
    if policy != "auto":
        return Decision(policy, "fixed", why=f"the policy asked for ({policy})")
    rule, rule_why = freezer.rule()
    auto = freeze.auto
    blocked = None
    if auto.search == "off":
        blocked = "freeze.auto.search is off"
    elif not linear:
        blocked = "the head is not a single dense layer on pooled features"
    elif multi_worker:
        blocked = "multi_worker: every worker would search on its own"
    if blocked:
        return Decision(rule, "rule", rule, why=f"{rule_why} (no search: {blocked})")
    if auto.search == "grid":
        return Decision(rule, "grid", rule, why=f"{rule_why}; the grid search tries "
                        f"{', '.join(freezer.candidates())} and may choose another")
    per_class = freezer.train_images_per_class or 0
    if rule == "all" and per_class < auto.finetune_from:
        return Decision("all", "rule", rule, why=(
            f"{rule_why}; below {auto.finetune_from} training images per class fine-tuning is "
            "not tried (freeze.auto.finetune_from): the frozen backbone's head is cross-fitted "
            "on every labelled image"))
    candidate = "none" if rule == "all" else rule
    return Decision(candidate, "evidence", rule, candidate, why=(
        f"{rule_why}; the frozen backbone (head cross-fitted on every labelled image) and "
        f"fine-tuning ({candidate}) are both scored on the validation images, and the rule's "
        f"{rule} stands unless the other is better by {auto.margin_se:g} standard errors"))


def choose_freeze(
    recipe,
    plan: TrainPlan,
    model,
    freezer,
    inputs,
    *,
    run,
    log: Callable[[str], None] = print,
) -> FreezeChoice:
    """Resolve ``auto`` (:func:`decide`, then the grid search when asked for) and decide on
    the linear probe (see the module docstring)."""
    linear = is_linear_head(head_layers(model))
    multi = isinstance(run.strategy, tf.distribute.MultiWorkerMirroredStrategy)
    decision = decide(recipe.freeze, plan, freezer, linear=linear, multi_worker=multi)
    if decision.method in ("stages", "random"):
        return FreezeChoice(plan, False, None, decision.why)
    search = None
    policy = decision.policy
    if decision.method == "grid":
        policy, search, why = _grid_search(recipe, plan, model, freezer, inputs, run, log)
        log(why)
    elif decision.method in ("rule", "evidence"):
        log(f"freeze: {decision.why}")
    stage = replace(plan.stages[0], policy=policy)
    plan = replace(plan, stages=(stage,))
    # The head starts converged whatever trains next (a frozen backbone on augmented images
    # included); the feature route skips the probe, its solver fit is the whole training.
    return FreezeChoice(plan, recipe.freeze.linear_probe and linear, search, decision.why,
                        decision.candidate, decision.prior)


def _grid_search(recipe, plan, model, freezer, inputs, run, log):
    stored = run.run_dir / SEARCH_FILE
    if run.resuming and stored.exists():
        result = SearchResult.from_dict(json.loads(stored.read_text()))
        return result.chosen, result, f"freeze search: resuming with its choice, {result.chosen}"
    rule, rule_why = freezer.rule()
    auto = recipe.freeze.auto
    epochs = auto.search_epochs or default_search_epochs(plan.stages[0].epochs)
    log(f"freeze search: trying {', '.join(freezer.candidates())} ({rule_why.split(' -> ')[0]}; "
        f"the rule's choice is {rule})")
    with run.strategy.scope():
        result = search_freeze(
            model, freezer, inputs.bundle.train,
            num_classes=inputs.bundle.num_classes, image_size=inputs.image_size,
            batch_size=plan.batch_size, optimizer=plan.optimizer, lr=plan.stages[0].lr,
            epochs=epochs, holdout=auto.holdout, seed=recipe.seed, contract=inputs.contract,
            log=log,
        )
    if run.chief:
        atomic_write_json(stored, result.to_dict())
    return result.chosen, result, result.table()


def linear_probe(
    model, inputs, *, batch_size: int, holdout: float, seed: int,
    log: Callable[[str], None] = print,
) -> HeadFit:
    """Fit the head of ``model`` on its frozen backbone's features of the training split, to
    convergence, and put it in place (the fine-tuning stage starts from it)."""
    features, labels = compute_features(
        model, inputs.bundle.train, image_size=inputs.image_size, batch_size=max(batch_size, 64),
        contract=inputs.contract,
    )
    fitted = fit_linear_head(
        features, labels, inputs.bundle.num_classes, class_weight=inputs.class_weight,
        holdout=holdout, seed=seed,
    )
    set_linear_head(head_layers(model), fitted)
    log(f"linear probe: {fitted.describe()}; fine-tuning starts from this head")
    return fitted


def has_checkpoint(run_dir: Path) -> bool:
    """A resumed run continues from a checkpoint (its head is in there, no probe needed)."""
    path = Path(run_dir) / RunDir.STATE
    if not path.exists():
        return False
    return bool(json.loads(path.read_text()).get("checkpoint"))


def stage_summary(plan: TrainPlan, probe_first: bool) -> list[str]:
    """One line per step of training, for ``tlkit plan`` and the log."""
    lines = []
    if probe_first:
        lines.append("linear probe: the head fitted on frozen features (solver, to convergence)")
    for i, stage in enumerate(plan.stages, 1):
        lr = ("the suggested lr (a range test before training)" if math.isnan(stage.lr)
              else f"lr {stage.lr:g}")
        lines.append(f"stage {i}: policy {stage.policy}, {stage.epochs} epochs at {lr}")
    return lines


__all__ = [
    "FreezeChoice",
    "Stage",
    "Decision",
    "check_policies",
    "choose_freeze",
    "decide",
    "has_checkpoint",
    "linear_probe",
    "stage_summary",
]

