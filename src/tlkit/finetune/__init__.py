"""``finetune(recipe)``: a folder of images in, a trained classifier and its reports out.

How a run flows: :func:`finetune` reads the recipe once and hands each step only what it needs.

==========  ========================================  ====================================
step        what it produces                          where it lives
==========  ========================================  ====================================
context     run directory, resume, strategy, chief    ``tlkit/finetune/context.py``
inputs      checked data, class weights, PCA stats,   ``tlkit/finetune/inputs.py``
            augmenter                                 (``tlkit/data``, ``tlkit/augment``)
record      labels.json, recipe.yaml, pca_stats.json  ``tlkit/finetune/reports.py``
plan        stages, optimizer, schedule, monitor,     ``tlkit/train/plan.py``
            checkpoints, precision
model       the transfer model (no weights yet)       ``tlkit/finetune/model.py``
                                                      (``tlkit/models/heads.py``)
freezer     each stage's freeze policy; refuses to    ``tlkit/freeze/freezer.py``
            freeze random weights
weights     the starting weights and their report     ``tlkit/finetune/model.py``
                                                      (``tlkit/weights``)
lr          ``lr: suggested``: the range test's rate  ``tlkit/finetune/lr_find.py``
                                                      (``tlkit/train/lr_range.py``)
choice      ``auto`` resolved (freeze search or the   ``tlkit/finetune/freeze_choice.py``
            rule), the linear probe                   (``tlkit/train/search.py``, ``probe.py``)
route       images, or cached features of a frozen    ``tlkit/train/routes.py``,
            backbone (``tlkit/train/feature_store.py``)  ``tlkit/train/feature_route.py``
training    ``route.train(plan, hooks, run)``: stages ``tlkit/train/trainer.py``,
            and epochs (hooks checkpoint, schedule,   ``tlkit/train/hooks.py``; the
            stop early, guard, log), or the solver    solver in ``tlkit/train/probe.py``
reports     scores of the best model, plots, metrics  ``tlkit/finetune/reports.py``
                                                      (``tlkit/evaluation``)
labels      likely label errors (out of fold,         ``tlkit/finetune/data_check.py``
            confident learning), in the data report   (``tlkit/data/mistakes.py``)
==========  ========================================  ====================================

Everything a run writes is written atomically, under the names :class:`tlkit.rundir.RunDir`
gives; only the chief writes the run's outputs.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tlkit.errors import UserError
from tlkit.evaluation.page import write_report
from tlkit.finetune.context import INPUTS_FILE, RunContext, place_run, resolve_run_dir
from tlkit.finetune.data_check import check_labels
from tlkit.finetune.evidence import Outcome, train_with_evidence
from tlkit.finetune.freeze_choice import (
    check_policies,
    choose_freeze,
    has_checkpoint,
    linear_probe,
    stage_summary,
)
from tlkit.finetune.inputs import prepare_inputs
from tlkit.finetune.lr_find import resolve_suggested_lr
from tlkit.finetune.model import (
    build_run_model,
    check_before_data,
    checked_image_size,
    dtype_policy,
    load_start_weights,
    make_route,
    trained_on,
    weights_source,
)
from tlkit.finetune.reports import final_reports, write_run_record
from tlkit.freeze.freezer import Freezer
from tlkit.io import atomic_write_json
from tlkit.models.heads import head_layers
from tlkit.recipes import resolve_backbone, run_name
from tlkit.recipes.regime import DEFAULT_NAME
from tlkit.rundir import RunDir
from tlkit.train import (
    ImageInput,
    PreciseBatchNorm,
    TrainPlan,
    is_linear_head,
    plan_feature_cache,
    standard_hooks,
    statistics_sample,
)

__all__ = ["RunResult", "describe_result", "finetune", "resolve_run_dir"]


@dataclass
class RunResult:
    """What a fine-tune produced."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    fast_path: bool = False
    chief: bool = True
    #: The run directory already held this finished run; nothing was done.
    done_before: bool = False


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def finetune(
    recipe,
    *,
    overwrite: bool = False,
    resume: bool = True,
    log: Callable[[str], None] = _stderr,
    progress: bool = True,
) -> RunResult:
    """Fine-tune ``recipe.model.backbone`` on ``recipe.data`` as the recipe says.

    Args:
        recipe: A resolved :class:`tlkit.recipes.schema.Recipe`.
        overwrite: Replace an existing run directory.
        resume: Continue an unfinished run in the run directory (after a crash or kill).
        log: Where progress messages go.
        progress: Show progress bars (data check).

    Returns:
        A :class:`RunResult` with the run directory and final metrics.
    """
    started = time.time()
    recipe = resolve_backbone(recipe, log=log)
    info = recipe.model.backbone_info()
    size = checked_image_size(info, recipe.model.image_size)
    check_before_data(recipe, info, size)
    named = recipe.name == DEFAULT_NAME
    recipe, fingerprint, where, status = place_run(recipe, overwrite=overwrite, resume=resume)
    if named:
        log(f"run name: {recipe.name} (the backbone and the data; --name sets another)")
    if status == "done":
        log(f"{where} already holds this run, finished (the same recipe and the same files in "
            f"{recipe.data.source}): nothing to do. --overwrite trains it again there; --name "
            "starts another")
        return RunResult(run_dir=where, metrics=RunDir(where).metrics(), done_before=True)
    run = RunContext.open(
        recipe.output, run_name(recipe), recipe.train.strategy, seed=recipe.seed,
        overwrite=overwrite, resume=resume, log=log,
    )
    if run.chief and not run.resuming:
        atomic_write_json(run.run_dir / INPUTS_FILE, {"fingerprint": fingerprint})
    try:
        return _run(recipe, info, size, run, started, resume=resume, log=log, progress=progress)
    except UserError:
        if run.discard_if_unstarted():
            log(f"run directory {run.run_dir} removed: the run stopped before it started")
        raise
    finally:
        run.close()


def _run(recipe, info, size, run, started, *, resume, log, progress) -> RunResult:
    """The steps of :func:`finetune` once the run directory is held."""
    inputs = prepare_inputs(
        recipe.data, recipe.augment, image_size=size, seed=recipe.seed, run_dir=run.run_dir,
        progress=progress and run.chief, preprocess=recipe.preprocess,
        normalisation=info.preprocessing, log=log,
    )
    if run.chief:
        write_run_record(run.run_dir, recipe, inputs)
    plan = TrainPlan.from_recipe(recipe, train_images=len(inputs.bundle.train))
    pipeline = recipe.data.model_dump(include={"cache", "cache_limit_mb", "num_parallel_calls"})
    images = ImageInput(size, plan.batch_size, recipe.seed, **pipeline, contract=inputs.contract)
    source = weights_source(recipe.weights, info)
    head = recipe.model.head
    with dtype_policy(plan.precision, log=log):
        aux = plan.aux_loss_weight
        model = build_run_model(info, inputs, head, run=run, aux_weight=aux, log=log)
        freezer = Freezer(
            model, info, recipe.freeze, train_images_per_class=inputs.images_per_class,
            pretrained=source.path != "none",
        )
        check_policies(freezer, plan)
        load_start_weights(
            model, info, recipe.weights, source=source.path, include_top=head.type == "paper",
            run=run, log=log,
        )
        plan, lr_record = resolve_suggested_lr(
            recipe, plan, model, freezer, inputs, images, run=run, log=log)
        chosen = choose_freeze(recipe, plan, model, freezer, inputs, run=run, log=log)
        plan = chosen.plan
        outcome = None
        if chosen.candidate:
            outcome = train_with_evidence(
                model, freezer, plan, inputs, images, candidate=chosen.candidate,
                prior=chosen.prior, recipe=recipe, run=run, log=log,
                make_frozen_route=lambda choice: make_route(
                    model, choice, inputs, images, info=info, source=source.path, run=run,
                    cross_fit=True, log=log),
            )
            if outcome is None:  # no comparison possible here: the rule's choice, as usual
                plan = replace(plan, stages=(replace(plan.stages[0], policy=chosen.prior),))
        if outcome is None:
            outcome = _train(recipe, plan, model, freezer, inputs, images, chosen,
                             info=info, source=source, run=run, resume=resume, log=log)
        state, decisions, route = outcome.state, outcome.decisions, outcome.route
        plan = plan.for_route(route.name)
        probe = outcome.probe
        route_choice = outcome.route_choice
    if not run.chief:
        return RunResult(run_dir=run.run_dir, resumed=run.resuming, chief=False)
    metrics, saved = final_reports(
        run.run_dir, inputs, state, route, images, title=recipe.name, monitor=plan.monitor, log=log
    )
    metrics.update(
        backbone=info.id, weights=source.path, image_size=size, **inputs.sizes(),
        freeze=[d.message for d in decisions], custom_loop=outcome.custom_loop,
        resumed=run.resuming, **route.metrics(), seconds=round(time.time() - started, 1),
        start_from=source.record, trained_on=trained_on(recipe, inputs, size),
        stages=stage_summary(plan, probe),
        freeze_search=(outcome.evidence.to_dict() if outcome.evidence
                       else chosen.search.to_dict() if chosen.search else None),
    )
    if lr_record is not None:
        metrics["lr_find"] = {k: lr_record[k] for k in ("lr", "note", "policy", "rule",
                                                         "suggestions", "stopped")}
    if route_choice is not None and route_choice.frozen and not route_choice.use:
        metrics["fast_path_blocked_by"] = route_choice.reason
    atomic_write_json(run.run_dir / RunDir.METRICS, metrics)
    check_labels(run.run_dir, inputs.bundle, route, saved.model, images, seed=recipe.seed, log=log)
    try:
        write_report(
            run.run_dir, bundle=inputs.bundle, log=log, model=saved.model,
            predictions=saved.predictions,
        )
    except Exception as exc:  # noqa: BLE001 - the run is done and saved; the page is extra
        log(f"report: not written ({type(exc).__name__}: {exc}); `tlkit report "
            f"{run.run_dir}` retries")
    state.reported = True  # the run is complete: the same command no longer resumes it
    if not recipe.train.keep_checkpoints:  # nor reads its checkpoint: model.keras holds it all
        state.checkpoint = None
    state.save(run.run_dir)
    if not recipe.train.keep_checkpoints:
        shutil.rmtree(run.run_dir / RunDir.CHECKPOINTS, ignore_errors=True)  # weights, optimizer state
    return RunResult(run.run_dir, metrics, resumed=run.resuming, fast_path=metrics["fast_path"])


def _train(recipe, plan, model, freezer, inputs, images, chosen, *, info, source, run, resume,
           log) -> Outcome:
    """Train the plan's policy one way (no comparison) on the route it can take: the
    cached-feature route's solver fit, or the trainer on images after the linear probe."""
    head = recipe.model.head
    route_choice = plan_feature_cache(
        model, freezer, plan.stages, head_type=head.type, augment=recipe.augment,
        feature_cache=recipe.train.feature_cache, strategy=run.strategy,
        solver_head=freezer.pretrained and is_linear_head(head_layers(model)),
    )
    probe = chosen.probe_first and not route_choice.use
    if probe and not (resume and has_checkpoint(run.run_dir)):
        with run.strategy.scope():
            linear_probe(
                model, inputs, batch_size=plan.batch_size,
                holdout=recipe.freeze.auto.holdout, seed=recipe.seed, log=log,
            )
    route = make_route(
        model, route_choice, inputs, images, info=info, source=source.path, run=run,
        cross_fit=recipe.train.frozen_head == "cross_fit", holdout=recipe.freeze.auto.holdout,
        log=log,
    )
    plan = plan.for_route(route.name)
    hooks = standard_hooks()
    if any(freezer.plan(s.policy).bn == "train" for s in plan.stages):
        # moving averages lag fast-changing weights: recompute them before each score
        sample = statistics_sample(inputs.bundle.train, images.image_size, contract=inputs.contract)
        hooks.append(PreciseBatchNorm(sample))
    trained = route.train(plan, hooks, run, freezer=freezer, resume=resume, log=log)
    return Outcome(trained.state, trained.decisions, route, None, trained.custom_loop,
                   probe=probe, route_choice=route_choice)


def describe_result(result: RunResult, *, seconds: float | None = None,
                    next_step: str | None = None) -> str:
    """One closing summary line plus where to look: ``seconds`` is the whole command's wall
    time when the caller knows it (else the run's own, which leaves out start-up and the
    report); ``next_step`` replaces the default hint (``tlkit predict``)."""
    if not result.chief:
        return f"worker finished; the chief writes the run's outputs (scratch: {result.run_dir})"
    m = result.metrics
    val = m.get("val") or {}
    cv = m.get("cross_validation") or {}
    if result.done_before:
        parts = [f"nothing done (finished before, in {m.get('seconds', 0):.0f}s)"]
    else:
        parts = [f"done in {_duration(seconds if seconds is not None else m.get('seconds', 0))}"]
    if cv:
        parts.append(f"cross-validated top-1 {cv['accuracy']:.3f} ± {cv['accuracy_se']:.3f} over "
                     f"all {cv['images']} labelled images")
    elif val:
        parts.append(f"val top-1 {val['top1']:.4f}")
    return (
        f"{'; '.join(parts)}. Outputs in {result.run_dir}: report.html (open it in a browser), "
        f"model.keras, metrics.json. Next: {next_step or f'tlkit predict {result.run_dir} IMAGE'}"
    )


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"

