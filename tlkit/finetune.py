"""``finetune(recipe)``: a folder of images in, a trained classifier and its reports out.

The steps: resolve the run directory, load and check the data, build the augmenter, build the
transfer model inside the strategy's scope, load weights (with a report), train the freeze
stages (the trainer checkpoints and resumes), then evaluate the best model and write the
reports. Everything a run writes is written atomically; only the chief writes.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlkit.errors import UserError, WeightsError
from tlkit.io import atomic_write_json, atomic_write_text

RUN_MARKERS = ("recipe.yaml", "state.json", "feature_cache")


@dataclass
class RunResult:
    """What a fine-tune produced."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    fast_path: bool = False
    chief: bool = True


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_run_dir(recipe, *, overwrite: bool = False, resume: bool = True) -> tuple[Path, bool]:
    """Pick the run directory; returns ``(path, resuming)``.

    A default directory (``runs/<name>``) that holds a finished run moves on to ``runs/<name>-2``
    and so on; an explicit ``output.dir`` that holds a finished run is an error unless
    ``overwrite``. An unfinished run is resumed unless ``resume`` is False.
    """
    from tlkit.train.state import TrainState

    explicit = recipe.output.dir is not None
    base = Path(recipe.output.dir) if explicit else Path(recipe.output.root) / recipe.name
    candidate, n = base, 1
    while True:
        if not candidate.exists() or not any(candidate.iterdir()):
            return candidate, False
        is_run = any((candidate / m).exists() for m in RUN_MARKERS)
        if not is_run:
            raise UserError(
                f"{candidate} exists and is not a tlkit run directory; choose another --output"
            )
        if overwrite:
            shutil.rmtree(candidate)
            return candidate, False
        state = TrainState.load(candidate)
        if state is not None and not state.finished and resume:
            return candidate, True
        if state is None and resume:
            # Crashed before the first epoch finished: start again in the same place, keeping
            # any cached features (keyed by content, they are reused when still valid).
            _clear_run_dir(candidate, keep=("feature_cache",))
            return candidate, False
        if explicit:
            raise UserError(
                f"{candidate} already holds a finished run; pass --overwrite to replace it or "
                "choose another --output"
            )
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")


def _clear_run_dir(run_dir: Path, keep: tuple[str, ...] = ()) -> None:
    for entry in run_dir.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _worker_run_dir(recipe, strategy, *, overwrite: bool, resume: bool) -> tuple[Path, bool]:
    """A non-chief worker's own scratch folder beside the chief's run directory.

    Computed without looking into (or changing) the chief's directory, which the chief alone
    manages. A finished or overwritten worker folder starts again; an unfinished one resumes.
    """
    from tlkit.train.state import TrainState

    base = Path(recipe.output.dir) if recipe.output.dir else Path(recipe.output.root) / recipe.name
    folder = base.parent / f".{base.name}-worker-{strategy.cluster_resolver.task_id}"
    state = TrainState.load(folder) if folder.exists() else None
    if folder.exists() and (overwrite or state is None or state.finished or not resume):
        shutil.rmtree(folder)
        return folder, False
    return folder, state is not None


def _resolve_weights(recipe, info) -> str:
    source = recipe.weights.source
    if source == "auto":
        return "imagenet" if info.official_weights is not None else "none"
    return source


def _load_initial_weights(model, info, recipe, source: str, log) -> dict[str, Any] | None:
    """Load pretrained weights into the backbone; None when training from scratch."""
    from tlkit.weights import load_weights_file, official_weights_path

    if source == "none":
        log(f"no pretrained weights: {info.id} trains from scratch (weights: none)")
        return None
    head = {layer.name for layer in model.layers if _is_head(layer.name)}
    backbone = [layer.name for layer in model.layers if layer.weights and layer.name not in head]
    if source == "imagenet":
        include_top = recipe.model.head.type == "paper"
        path = official_weights_path(info.id, include_top)
        report = load_weights_file(model, path, layers=backbone)
    else:
        if not Path(source).exists():
            raise WeightsError(f"weights file not found: {source}")
        report = load_weights_file(model, source)
        # A previous run's head loads too when it fits; a misfit head is expected, not an error.
        report.mismatched = [m for m in report.mismatched if m[0] not in head]
        report.missing = [m for m in report.missing if m not in head]
    log(report.format())
    if not report.complete and not recipe.weights.allow_partial:
        raise WeightsError(
            f"backbone layers were left unloaded from {report.source} (see above); fix the file "
            "or set weights.allow_partial: true to train those layers from random values"
        )
    return report.as_dict()


def _restore_start_weights(model, run_dir: Path, info, recipe, source: str, log) -> None:
    """A resumed fast-path run: the weights it started from (its head comes from the checkpoint)."""
    from tlkit.train.feature_cache import active_key, start_weights_path

    key = active_key(run_dir)
    path = start_weights_path(run_dir, key) if key else None
    if path is not None and path.exists():
        model.load_weights(path)
        log(f"fast path: resuming from the start weights kept in {path}")
    else:
        _load_initial_weights(model, info, recipe, source, log)


def _use_aux(recipe, info, image_size: int, log) -> bool:
    """Auxiliary classifiers (GoogLeNet) train with the paper head when their weight is > 0."""
    if recipe.model.head.type != "paper" or info.aux_min_size is None:
        return False
    if recipe.train.aux_loss_weight <= 0:
        return False
    if image_size < info.aux_min_size:
        log(
            f"auxiliary classifiers need images of at least {info.aux_min_size}px; "
            f"training {info.id} without them at {image_size}px"
        )
        return False
    log(
        f"auxiliary classifiers on (loss weight {recipe.train.aux_loss_weight}; "
        "training only, not in model.keras)"
    )
    return True


def _is_head(name: str) -> bool:
    return name.startswith(("head_", "aux")) or name == "predictions"


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
    import keras

    from tlkit.augment import build_augmenter, compute_pca_stats
    from tlkit.data import class_weights, make_dataset, prepare_data
    from tlkit.models import get_model_info
    from tlkit.models.heads import build_transfer_model
    from tlkit.recipes import recipe_to_yaml
    from tlkit.train.feature_cache import FastPath, plan_fast_path
    from tlkit.train.strategy import is_chief, resolve_strategy
    from tlkit.train.trainer import Trainer

    started = time.time()
    info = get_model_info(recipe.model.backbone)
    image_size = recipe.model.image_size or info.default_size
    if image_size < info.min_size:
        raise UserError(
            f"{info.id} needs images of at least {info.min_size}x{info.min_size}; "
            f"model.image_size is {image_size}"
        )
    strategy = resolve_strategy(recipe.train.strategy)
    chief = is_chief(strategy)
    if chief:
        run_dir, resuming = resolve_run_dir(recipe, overwrite=overwrite, resume=resume)
    else:
        run_dir, resuming = _worker_run_dir(recipe, strategy, overwrite=overwrite, resume=resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    log(f"run directory: {run_dir}" + (" (resuming)" if resuming else ""))
    keras.utils.set_random_seed(recipe.seed)

    bundle = prepare_data(
        recipe.data, seed=recipe.seed, run_dir=run_dir, progress=progress and chief
    )
    log(bundle.report.format())
    num_classes = bundle.num_classes
    if chief:
        atomic_write_json(run_dir / "labels.json", {"class_names": bundle.class_names})
    weights_by_class = class_weights(
        bundle, recipe.data.class_weights, recipe.data.imbalance_threshold
    )
    if weights_by_class:
        log(
            "class imbalance: per-example weights "
            + ", ".join(
                f"{bundle.class_names[c]}={w:.2f}" for c, w in sorted(weights_by_class.items())
            )
        )

    pca = _pca_stats(recipe, bundle, image_size, compute_pca_stats, make_dataset, log)
    # uint8 batches: a quarter of the bytes to batch, prefetch and copy to an accelerator; the
    # model's input casts them (benchmarks/augment_throughput.py)
    augmenter = build_augmenter(
        recipe.augment, image_size=image_size, pca=pca, seed=recipe.seed, output_dtype="uint8"
    )
    if chief:
        atomic_write_text(run_dir / "recipe.yaml", recipe_to_yaml(recipe))
        if pca is not None:
            atomic_write_json(run_dir / "pca_stats.json", pca.to_dict())

    batch = recipe.train.batch_size
    common = {
        "num_classes": num_classes,
        "image_size": image_size,
        "batch_size": batch,
        "seed": recipe.seed,
        "cache": recipe.data.cache,
        "cache_limit_mb": recipe.data.cache_limit_mb,
        "num_parallel_calls": recipe.data.num_parallel_calls,
    }
    steps_per_epoch = -(-len(bundle.train) // batch)
    per_class = len(bundle.train) / max(1, num_classes)

    weights_source = _resolve_weights(recipe, info)
    aux = _use_aux(recipe, info, image_size, log)
    keras.config.set_dtype_policy(recipe.train.precision)
    fast = None
    try:
        with strategy.scope():
            model = build_transfer_model(
                info,
                num_classes,
                image_size=image_size,
                head=recipe.model.head,
                aux_classifiers=aux,
                augment_layer=augmenter.model_layer() if augmenter is not None else None,
            )
        plan = plan_fast_path(recipe, model, info, strategy, train_images_per_class=per_class)
        if plan.use:
            log(f"fast path: {plan.reason}")
        elif plan.frozen:
            log(
                f"fast path: not used although the backbone is frozen: {plan.reason}; every "
                "training step runs the backbone"
            )
        with strategy.scope():
            load_report = None
            if plan.use and resuming:
                _restore_start_weights(model, run_dir, info, recipe, weights_source, log)
            elif not resuming:
                load_report = _load_initial_weights(model, info, recipe, weights_source, log)
        if chief and load_report is not None:
            atomic_write_json(run_dir / "weights_report.json", load_report)
        if recipe.train.precision != "float32":
            log(f"precision: {recipe.train.precision} (classifier output in float32)")

        if plan.use:
            fast = FastPath(
                model,
                plan,
                recipe=recipe,
                info=info,
                bundle=bundle,
                run_dir=run_dir,
                image_size=image_size,
                weights_source=weights_source,
                class_weight=weights_by_class,
                strategy=strategy,
                resuming=resuming,
                log=log,
            )
            trainer = Trainer(
                fast.head_model,
                info=info,
                recipe=fast.trainer_recipe(),
                strategy=strategy,
                run_dir=run_dir,
                train_ds=fast.train_ds,
                val_ds=fast.val_ds,
                steps_per_epoch=steps_per_epoch,
                train_images_per_class=per_class,
                log=fast.trainer_log(log),
                chief=chief,
                inference_model=fast.best_model,
            )
        else:
            train_ds = make_dataset(
                bundle.train,
                training=True,
                augmenter=augmenter,
                class_weight=weights_by_class,
                image_dtype="uint8",
                **common,
            )
            val_ds = (
                make_dataset(bundle.val, training=False, image_dtype="uint8", **common)
                if len(bundle.val)
                else None
            )
            trainer = Trainer(
                model,
                info=info,
                recipe=recipe,
                strategy=strategy,
                run_dir=run_dir,
                train_ds=train_ds,
                val_ds=val_ds,
                steps_per_epoch=steps_per_epoch,
                train_images_per_class=per_class,
                log=log,
                chief=chief,
            )
        state = trainer.run(resume=resume)
    finally:
        keras.config.set_dtype_policy("float32")
    if not chief:
        return RunResult(run_dir=run_dir, resumed=resuming, chief=False)

    predictors = {"val": fast.predict_val} if fast is not None else {}
    metrics = _final_reports(run_dir, bundle, state, recipe, common, log, predictors)
    decisions = [fast.decision] if fast is not None else trainer.decisions
    metrics.update(
        {
            "backbone": info.id,
            "weights": weights_source,
            "image_size": image_size,
            "classes": num_classes,
            "train_images": len(bundle.train),
            "val_images": len(bundle.val),
            "test_images": len(bundle.test),
            "freeze": [d.message for d in decisions],
            "custom_loop": trainer.used_custom_loop,
            "resumed": resuming,
            "fast_path": fast is not None,
            "feature_cache": fast.features.key if fast is not None else None,
            "seconds": round(time.time() - started, 1),
        }
    )
    if plan.frozen and fast is None:
        metrics["fast_path_blocked_by"] = plan.reason
    atomic_write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir=run_dir, metrics=metrics, resumed=resuming, fast_path=fast is not None)


def _pca_stats(recipe, bundle, image_size, compute_pca_stats, make_dataset, log):
    """AlexNet PCA colour statistics: the recipe's if stored, else one pass over the training set.

    Computed statistics go into the resolved recipe (written to the run as recipe.yaml) so a
    re-run reuses them.
    """
    from tlkit.augment.augmenter import resolve_pca_stats

    if not recipe.augment.pca_colour.enabled:
        return None
    if not recipe.augment.needs_pca_stats:
        return resolve_pca_stats(recipe.augment)
    log("PCA colour: computing RGB eigenvectors over the training images (one pass)")
    ds = make_dataset(
        bundle.train,
        num_classes=bundle.num_classes,
        image_size=image_size,
        batch_size=64,
        training=False,
        seed=recipe.seed,
        cache="none",
    )
    stats = compute_pca_stats(batch[0] for batch in ds)
    recipe.augment = recipe.augment.with_pca_stats(stats)
    return stats


def _final_reports(
    run_dir: Path, bundle, state, recipe, common, log, predictors: dict[str, Callable] | None = None
) -> dict[str, Any]:
    """Scores of the best model on val and test; ``predictors`` may supply a split's
    ``(probabilities, labels)`` (the fast path's cached features) instead of the images."""
    from tlkit.data import make_dataset
    from tlkit.evaluate import evaluate_predictions, load_trained, predict_dataset
    from tlkit.reports import (
        format_per_class,
        plot_confusion_matrix,
        plot_curves,
        write_history_csv,
        write_per_class_csv,
    )

    write_history_csv(run_dir / "history.csv", state.history)
    plot_curves(run_dir / "curves.png", state.history, title=f"{recipe.name}")
    metrics: dict[str, Any] = {
        "history": state.history,
        "best_epoch": state.best_epoch,
        "monitor": recipe.train.monitor,
        "best": state.best,
        "epochs": state.epoch,
        "stopped_early": state.stopped_early,
    }
    loaded = None
    for split_name in ("val", "test"):
        split = getattr(bundle, split_name)
        if not len(split):
            continue
        predicted = (predictors or {}).get(split_name)
        predicted = predicted() if predicted is not None else None
        if predicted is None:
            loaded = loaded or load_trained(run_dir)
            predicted = predict_dataset(loaded.model, make_dataset(split, training=False, **common))
        probs, labels = predicted
        result = evaluate_predictions(probs, labels, bundle.class_names)
        metrics[split_name] = {"top1": result.top1, "top5": result.top5, "count": result.count}
        metrics[f"{split_name}_per_class"] = result.per_class
        if split_name == "val" or split_name == "test":
            plot_confusion_matrix(
                run_dir / f"confusion_matrix{'' if split_name == 'val' else '_test'}.png",
                result.matrix,
                bundle.class_names,
                title=f"{split_name} confusion matrix (rows: true class)",
            )
            write_per_class_csv(run_dir / f"per_class_{split_name}.csv", result.per_class)
            atomic_write_text(
                run_dir / f"per_class_{split_name}.txt", format_per_class(result.per_class) + "\n"
            )
        top5 = f", top-5 {result.top5:.4f}" if result.top5 is not None else ""
        log(
            f"{split_name}: top-1 {result.top1:.4f}{top5} on {result.count} images "
            f"(best epoch {state.best_epoch})"
        )
    return metrics


def describe_result(result: RunResult) -> str:
    """One closing summary line plus where to look."""
    if not result.chief:
        return f"worker finished; the chief writes the run's outputs (scratch: {result.run_dir})"
    m = result.metrics
    val = m.get("val") or {}
    parts = [f"done in {m.get('seconds', 0):.0f}s"]
    if val:
        parts.append(f"val top-1 {val['top1']:.4f}")
    return (
        f"{'; '.join(parts)}. Outputs in {result.run_dir}: model.keras, metrics.json, curves.png, "
        f"confusion_matrix.png. Next: tlkit predict {result.run_dir} IMAGE"
    )


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
