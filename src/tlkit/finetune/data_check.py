"""The label check at the end of a run: likely label errors among the labelled images (train and
val), reported in ``data_report.json``, the log and ``report.html``; nothing is relabelled.

Where the probabilities come from, cheapest first:

* a head cross-fitted on the frozen backbone's cached features (the cached-feature route,
  :mod:`tlkit.train.crossfit`): its out-of-fold probabilities already exist, nothing is
  computed;
* otherwise the trained model's pooled features of the training and validation images, one
  forward pass in inference mode (:func:`tlkit.train.feature_store.compute_features`, no
  mirror), and a logistic regression cross-fitted on them (5 folds, a few seconds on a
  CPU). After fine-tuning, the backbone has partly learned the wrong labels too, so this
  finds fewer of them than frozen features do.

Confident learning then ranks the doubtful labels (:func:`tlkit.data.mistakes.find_label_issues`).
A check that fails says why in one line and never stops the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tlkit.data.mistakes import find_label_issues, label_issue_line
from tlkit.evaluation.loading import load_trained
from tlkit.io import atomic_write_json
from tlkit.rundir import RunDir
from tlkit.train import feature_store as store
from tlkit.train.crossfit import cross_fit_linear_head

#: Above this many labelled images a run without cached features skips the extra pass.
MAX_LABEL_CHECK_IMAGES = 20_000


def labelled_items(bundle) -> list[dict]:
    """``{path, split}`` of the training then the validation images (the cross-fit's order)."""
    return [{"path": o, "split": name} for name in ("train", "val")
            for o in getattr(bundle, name).origins]


def out_of_fold_probabilities(route, model, bundle, images, *, seed: int = 0):
    """``(probabilities [N, classes], labels [N])`` of the train and val images, each predicted
    by a head that never saw it: the route's cross-fit when it has one, else a logistic
    regression cross-fitted on the trained model's pooled features. None when neither can be
    had (too many images, a class with one image)."""
    crossed = getattr(route, "cross_fitted", lambda: None)()
    if crossed is not None:
        return crossed[0].probabilities, crossed[0].labels
    n = len(bundle.train) + len(bundle.val)
    if n > MAX_LABEL_CHECK_IMAGES:
        return None
    model = model() if callable(model) and not hasattr(model, "layers") else model
    extract = store.extraction_function(model)
    parts = [store.compute_features(model, split, image_size=images.image_size,
                                    batch_size=store.feature_batch_size(images.batch_size,
                                                                        images.image_size),
                                    extract=extract, contract=images.contract)
             for split in (bundle.train, bundle.val) if len(split)]
    features = np.concatenate([f for f, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    if features.ndim > 2:  # a head fed a feature map: its spatial mean is the pooled feature
        features = features.reshape(len(features), -1, features.shape[-1]).mean(axis=1)
    fitted = cross_fit_linear_head(features, labels, bundle.num_classes, seed=seed,
                                   cs=(0.01, 0.1, 1.0))
    return None if fitted is None else (fitted.probabilities, fitted.labels)


def check_labels(run_dir: Path | None, bundle, route, model, images, *, seed: int = 0,
                 log: Callable[[str], None] = print) -> dict:
    """Find likely label errors, put them in ``bundle.report.label_issues`` and rewrite
    ``run_dir/data_report.json``; log one line. Returns what was found (``{}`` if not run).

    ``model``: the trained Keras model, or None to load ``run_dir``'s ``model.keras`` (only
    when the route has no out-of-fold probabilities of its own)."""
    if model is None and run_dir is not None:
        model = lambda: load_trained(run_dir).model  # noqa: E731 - loaded only if needed
    try:
        got = out_of_fold_probabilities(route, model, bundle, images, seed=seed)
        if got is None:
            log("label check: not run (too many images, or a class with a single image)")
            return {}
        probabilities, labels = got
        found = find_label_issues(labels, probabilities, labelled_items(bundle),
                                  bundle.class_names)
        source = ("out-of-fold probabilities of the head cross-fitted on the cached features"
                  if getattr(route, "cross_fitted", lambda: None)() is not None else
                  "the trained model's pooled features, a logistic regression cross-fitted on "
                  "them")
        found["summary"]["probabilities"] = source
    except Exception as exc:  # noqa: BLE001 - a report, never a reason to lose the run
        log(f"label check: not run ({type(exc).__name__}: {exc})")
        return {}
    bundle.report.label_issues = found
    if run_dir is not None:
        atomic_write_json(RunDir(run_dir) / RunDir.DATA_REPORT, bundle.report.as_dict())
    log(label_issue_line(found))
    return found
