"""What a run writes besides training: its record (labels, resolved recipe, PCA statistics,
weights report) and, at the end, the scores of the best model and the reports."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from tlkit.evaluation.calibration import (
    CALIBRATION_FILE,
    calibrate_run,
    choose_temperature,
    is_calibrated,
    rescale,
    save_calibration,
)
from tlkit.evaluation.figures import plot_confusion_matrix, plot_curves
from tlkit.evaluation.loading import load_trained
from tlkit.evaluation.scoring import evaluate_predictions, predict_dataset
from tlkit.evaluation.tables import format_per_class, write_history_csv, write_per_class_csv
from tlkit.finetune.inputs import Inputs
from tlkit.io import atomic_path, atomic_write_json, atomic_write_text
from tlkit.recipes import recipe_to_yaml
from tlkit.rundir import RunDir
from tlkit.train import ImageInput

#: Probabilities a run's report uses instead of the saved model's, when they differ (out of fold).


def save_predictions(run_dir: Path, split: str, probabilities) -> None:
    """Keep ``probabilities`` of ``split`` (in split order) for ``tlkit report`` to reuse."""
    import numpy as np

    with atomic_path(RunDir(run_dir).predictions(split)) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(probabilities))  # as held: the report from disk is the same page


def cross_validation_record(crossed) -> dict[str, Any]:
    """What ``metrics.json`` says of a cross-fitted head's out-of-fold evidence."""
    return {"images": int(len(crossed.labels)), "folds": crossed.folds,
            "accuracy": crossed.accuracy, "accuracy_se": crossed.accuracy_se,
            "log_loss": float(crossed.losses().mean()), "mirrored": crossed.mirrored}


def cross_fit_calibration(run_dir: Path, crossed, train_count: int, model, *, test=None,
                          log: Callable[[str], None] = print) -> tuple[dict[str, Any], Any]:
    """Calibrate a head cross-fitted on every labelled image: its out-of-fold probabilities
    (no image predicted by a head that saw it) decide the temperature as a run's validation
    split does (:func:`~tlkit.evaluation.calibration.choose_temperature`: cross-validated,
    bounded, kept only when it helps out of fold), with all labelled images instead of a
    fifth of them. ``calibration.json`` and ``reliability.png`` say so, with the
    cross-validated accuracy and its standard error."""
    raw = crossed.probabilities_before()
    choice = choose_temperature(raw, crossed.labels)
    scored = {"val": (raw[train_count:], crossed.labels[train_count:]),
              "all": (raw, crossed.labels)}
    if test is not None:  # never seen by the head or the temperature: the check out of sample
        scored["test"] = test
    log(f"cross-validation: {crossed.folds}-fold over all {len(crossed.labels)} labelled images: "
        f"accuracy {crossed.accuracy:.3f} ± {crossed.accuracy_se:.3f} (what to expect on new "
        "images)")
    return save_calibration(run_dir, choice, scored, model, "out_of_fold",
                            extra={"folds": crossed.folds,
                                   "cross_validation": cross_validation_record(crossed)},
                            shown="all", log=log)


def write_run_record(run_dir: Path, recipe, inputs: Inputs) -> None:
    """``labels.json``, ``preprocessing.json`` (the run's :class:`~tlkit.contract.Contract`),
    ``recipe.yaml`` and, with PCA colour, ``pca_stats.json``.

    ``recipe.yaml`` is the resolved recipe plus the PCA statistics this run computed, so
    ``tlkit finetune --recipe RUN/recipe.yaml`` repeats the run without computing them again.
    """
    atomic_write_json(run_dir / RunDir.LABELS, {"class_names": inputs.bundle.class_names})
    inputs.contract.save(run_dir)
    if inputs.pca_computed:
        recipe = recipe.model_copy(update={"augment": recipe.augment.with_pca_stats(inputs.pca)})
    atomic_write_text(run_dir / RunDir.RECIPE, recipe_to_yaml(recipe))
    if inputs.pca is not None:
        atomic_write_json(run_dir / RunDir.PCA_STATS, inputs.pca.to_dict())


class Saved(NamedTuple):
    """The model ``model.keras`` holds, when this process has it in memory (else None), and
    its probabilities on a split in split order, when known: the report reuses both."""

    model: Any = None
    predictions: dict[str, Any] | None = None


def _score_split(run_dir: Path, name: str, predicted, class_names: list[str], best_epoch,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Split ``name``'s metrics entries from its ``(probabilities, labels)``; writes its
    confusion matrix and per-class tables."""
    result, run = evaluate_predictions(*predicted, class_names), RunDir(run_dir)
    plot_confusion_matrix(run.confusion(name), result.matrix, class_names,
                          title=f"{name} confusion matrix (rows: true class)")
    write_per_class_csv(run.per_class(name), result.per_class)
    atomic_write_text(run.per_class(name, ".txt"), format_per_class(result.per_class) + "\n")
    top5 = f", top-5 {result.top5:.4f}" if result.top5 is not None else ""
    log(f"{name}: top-1 {result.top1:.4f}{top5} on {result.count} images "
        f"(best epoch {best_epoch})")
    return {name: {"top1": result.top1, "top5": result.top5, "count": result.count},
            f"{name}_per_class": result.per_class}


def final_reports(
    run_dir: Path,
    inputs: Inputs,
    state,
    route,
    images: ImageInput,
    *,
    title: str,
    monitor: str,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], Saved]:
    """History, curves and the best model's scores on val and test, with their confusion
    matrices and per-class reports.

    The best model is ``model.keras`` as saved (loaded only when needed);
    ``route.cached_predictions`` may score a split from cached features instead of the images.
    Returns the metrics and what the report can reuse (:class:`Saved`).
    """
    write_history_csv(run_dir / RunDir.HISTORY, state.history)
    plot_curves(run_dir / RunDir.CURVES, state.history, title=title, best_epoch=state.best_epoch)
    metrics: dict[str, Any] = {
        "history": state.history,
        "best_epoch": state.best_epoch,
        "monitor": monitor,
        "best": state.best,
        "epochs": state.epoch,
        "stopped_early": state.stopped_early,
    }
    bundle = inputs.bundle
    # the saved model: the one in memory when the route has it, else model.keras loaded
    best = functools.cache(lambda: route.saved_in_memory() or load_trained(run_dir).model)
    scored = {}

    for name in ("val", "test"):
        split = getattr(bundle, name)
        if not len(split):
            continue
        predicted = route.cached_predictions(name, best)
        if predicted is None:
            predicted = predict_dataset(best(), images.dataset(split, bundle.num_classes))
        scored[name] = predicted
        metrics.update(_score_split(run_dir, name, predicted, bundle.class_names,
                                    state.best_epoch, log))
    calibration_path = run_dir / CALIBRATION_FILE
    saved = None
    crossed = route.cross_fitted()
    if crossed is not None:
        metrics["cross_validation"] = cross_validation_record(crossed[0])
        if scored.get("val") is not None:  # out of fold: the report shows what a user gets
            save_predictions(run_dir, "val", scored["val"][0])
    if crossed is not None and not is_calibrated(best()):
        record, calibrated = cross_fit_calibration(run_dir, *crossed, best(),
                                                   test=scored.get("test"), log=log)
        metrics["calibration"] = record
        saved = Saved(calibrated, {"val": scored["val"][0]} if "val" in scored else None)
    elif scored.get("val") is not None and not is_calibrated(best()):
        record, calibrated = calibrate_run(run_dir, scored, best(), log=log)
        metrics["calibration"] = record
        if calibrated is not None:  # what model.keras now holds, and gives on val
            val = rescale(scored["val"][0], record["temperature"])
            saved = Saved(calibrated, {"val": val})
    elif calibration_path.exists():
        metrics["calibration"] = json.loads(calibration_path.read_text())
    if saved is None:  # the model as loaded (or held) here, if it was needed at all
        saved = Saved(best() if best.cache_info().currsize else None)
    return metrics, saved
