"""Training: the plan, the routes that train it, the trainer and its hooks, strategies and state.

``plan`` (what to train) -> a route (:class:`ImageRoute` on image batches, or
:class:`FeatureRoute` on cached features from ``feature_store``) whose ``train(plan, hooks,
run)`` runs the ``trainer`` (stages and epochs) with ``hooks`` (schedule, NaN guard, best model,
early stopping, checkpoints via ``state``, history, TensorBoard, progress) or the solver
(``probe``, ``crossfit``); ``custom_loop`` is the multi-worker step, ``strategy`` picks the
``tf.distribute`` strategy, ``search`` tries freeze points, ``config`` is the recipe's ``train``
section.

This is the package's public face: the layers above import from ``tlkit.train`` itself::

    from tlkit.train import ImageRoute, TrainPlan, standard_hooks

Each name loads its module (and TensorFlow) on first use, so ``tlkit.train.config`` (the
recipe section) stays light.
"""

from __future__ import annotations

import importlib

#: Public name -> the module of ``tlkit.train`` that defines it.
FACE = {
    "CHECKPOINTS": "state",
    "TrainState": "state",
    "Stage": "plan",
    "TrainPlan": "plan",
    "FeatureCachePlan": "routes",
    "ImageInput": "routes",
    "ImageRoute": "routes",
    "Route": "routes",
    "Trained": "routes",
    "plan_feature_cache": "routes",
    "FeatureRoute": "feature_route",
    "EarlyStopping": "hooks",
    "Hook": "hooks",
    "standard_hooks": "hooks",
    "PreciseBatchNorm": "batchnorm",
    "statistics_sample": "batchnorm",
    "HeadFit": "probe",
    "fit_linear_head": "probe",
    "is_linear_head": "probe",
    "set_linear_head": "probe",
    "compute_features": "feature_store",
    "SearchResult": "search",
    "default_search_epochs": "search",
    "search_freeze": "search",
    "is_chief": "strategy",
    "resolve_strategy": "strategy",
    "Trainer": "trainer",
}

__all__ = sorted(FACE)


def __getattr__(name: str):
    module = FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'tlkit.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
