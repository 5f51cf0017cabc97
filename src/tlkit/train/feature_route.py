"""The cached-feature route: a frozen backbone runs once per image, the head is fitted on its
features (see :mod:`tlkit.train.routes` for when a run takes it, and the face it shares with
the image route).

A linear head is fitted by a solver, by default on every labelled image with its L2 strength
and temperature chosen by k-fold cross-validation (:mod:`tlkit.train.crossfit`); the
validation images are then scored out of fold. ``train.frozen_head: train_split`` fits it on
the training split alone and scores val with it, as tlkit did before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tlkit.io import atomic_path, atomic_write_json
from tlkit.models.heads import build_head_model, head_layers
from tlkit.rundir import RunDir
from tlkit.train import feature_store as store
from tlkit.train.crossfit import CrossFit, cross_fit_linear_head
from tlkit.train.probe import fit_head_layers, fit_linear_head, is_linear_head, set_linear_head
from tlkit.train.routes import Trained
from tlkit.train.state import TrainState


class FeatureRoute:
    """Fit ``model``'s head on the cached features of its frozen part.

    Computes or reuses the features (a resumed run must find the key it started with) and
    builds the head-only model :attr:`model`; :meth:`train` fits it by a solver, to
    convergence. ``model.keras`` is the full image model, which shares the head's layers.

    Args:
        full_model: The transfer model (weights loaded).
        plan: The :func:`plan_feature_cache` decision (``use`` true).
        bundle: The run's data.
        run_dir: The run directory (the store lives in it).
        images: The image size and batch (features are computed from the evaluation images).
        info: The backbone's registry entry (id and preprocessing are part of the key).
        weights_source: Where the backbone's weights came from (part of the cache key).
        class_weight: ``{class index: weight}`` as sample weights, or None.
        holdout: Share of the training features that chooses the solver's strength when the
            head is not cross-fitted.
        strategy: The strategy whose scope builds the head model.
        resuming: The run continues from a checkpoint.
        cross_fit: Fit a linear head on every labelled image (train and val) by k-fold
            cross-validation, and score val out of fold (:mod:`tlkit.train.crossfit`).
        log: Where messages go.
    """

    name = "cached features"

    def __init__(
        self,
        full_model,
        plan,
        bundle,
        *,
        run_dir: Path,
        images,
        info,
        weights_source: str = "",
        class_weight=None,
        holdout: float = 0.25,
        strategy=None,
        resuming: bool = False,
        cross_fit: bool = True,
        log=print,
    ):
        self.full_model = full_model
        self.cross_fit = cross_fit
        self.class_weight, self.holdout, self.seed = class_weight, holdout, images.seed
        self.crossed: CrossFit | None = None
        splits = {"train": bundle.train, **({"val": bundle.val} if len(bundle.val) else {})}
        parts = store.key_parts(
            full_model,
            splits,
            backbone=info.id,
            image_size=images.image_size,
            preprocessing=info.preprocessing,
            weights_source=weights_source,
            contract=images.contract,
        )
        key = store.cache_key(parts)
        if resuming:
            store.check_resumable(run_dir, key)
        self.features = store.cached_features(
            full_model,
            splits,
            run_dir=run_dir,
            key=key,
            image_size=images.image_size,
            batch_size=store.feature_batch_size(images.batch_size, images.image_size),
            mirror=plan.mirror_p > 0,
            parts=parts,
            contract=images.contract,
            log=log,
        )
        with (strategy or tf.distribute.get_strategy()).scope():
            self.model = build_head_model(full_model)
        self._best_head: list[np.ndarray] | None = None

    def train(self, plan, hooks: list, run, *, freezer, resume: bool = True,
              log: Callable[[str], None] = print) -> Trained:
        """Fit the head on the cached features to convergence and save ``model.keras`` and a
        finished ``state.json`` (one row of history; no epochs, so ``hooks`` have nothing to
        watch). A finished run with the same plan is not fitted again."""
        state = TrainState.load(run.run_dir) if resume else None
        decision = freezer.apply(plan.stages[0].policy)
        log(decision.message)
        log(freezer.table())
        if state is not None and state.finished and state.recipe_digest == plan.digest:
            log(f"{run.run_dir}: this run already finished")
            return Trained(state, [decision])
        fitted = self.fit(class_weight=self.class_weight, holdout=self.holdout, seed=self.seed,
                          lr=plan.stages[0].lr)
        log(fitted["message"])
        state = self.finished_state(plan.digest)
        if plan.monitor in state.history[0]:
            state.best, state.best_epoch = state.history[0][plan.monitor], 1
        if run.chief:
            self.save_finished(run.run_dir, fitted, state)
        return Trained(state, [decision])

    def finished_state(self, digest: str) -> TrainState:
        """The state of a run whose head was fitted: one history row of :meth:`scores`."""
        row = {"epoch": 1, "stage": 1, **self.scores(), "lr": 0.0, "steps": 0}
        return TrainState(recipe_digest=digest, stage=1, epoch=1, stage_epoch=0, history=[row],
                          finished=True)

    def save_finished(self, run_dir: Path, fitted: dict[str, Any], state: TrainState) -> None:
        """``model.keras`` with the fitted head, ``head_fit.json`` and ``state.json``."""
        with atomic_path(Path(run_dir) / RunDir.MODEL) as tmp:
            self.inference_model().save(tmp)
        atomic_write_json(Path(run_dir) / RunDir.HEAD_FIT, fitted["summary"])
        state.save(run_dir)

    def fit(self, *, class_weight=None, holdout: float = 0.25, seed: int = 0, lr: float = 1e-3):
        """Train the head on the cached features to convergence.

        A linear head is fitted by a full-batch solver (:mod:`tlkit.train.probe`): with
        ``cross_fit`` on every labelled image, C and the temperature by k-fold
        cross-validation (:mod:`tlkit.train.crossfit`); else on the training features, C
        chosen on a held-out part of them (mirrored features are extra examples either way).
        A head with hidden layers trains until its held-out loss stops improving. Returns a
        summary.
        """
        f, head = self.features, head_layers(self.full_model)
        num_classes = int(self.model.outputs[0].shape[-1])
        if is_linear_head(head):
            if self.cross_fit and f.val is not None:
                x, y, flipped = self._pool()
                self.crossed = cross_fit_linear_head(
                    x, y, num_classes, flipped=flipped, class_weight=class_weight, seed=seed,
                )
            if self.crossed is not None:
                set_linear_head(head, self.crossed.head)
                return {"summary": self.crossed.summary(), "message": self.crossed.describe()}
            fitted = fit_linear_head(
                f.train, f.train_labels, num_classes, flipped=f.train_flipped,
                class_weight=class_weight, holdout=holdout, seed=seed,
            )
            set_linear_head(head, fitted)
            return {"summary": fitted.summary(), "message": fitted.describe()}
        summary = fit_head_layers(
            self.model, f.train, f.train_labels, num_classes, lr=lr, holdout=holdout, seed=seed
        )
        return {
            "summary": summary,
            "message": f"head trained on frozen features by {summary['solver']}: "
            f"{summary['epochs']} epochs, {summary['seconds']:.1f}s",
        }

    def _pool(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Every labelled image's features, labels and mirrored features (train, then val)."""
        f = self.features
        flipped = None
        if f.train_flipped is not None and f.val_flipped is not None:
            flipped = np.concatenate([f.train_flipped, f.val_flipped])
        return (np.concatenate([f.train, f.val]),
                np.concatenate([f.train_labels, f.val_labels]), flipped)

    def out_of_fold(self, split_name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(probabilities, labels)`` of a split predicted out of fold by the cross-fitted
        head (None when the head was not cross-fitted, or for another split)."""
        if self.crossed is None or split_name not in ("train", "val"):
            return None
        n = len(self.features.train_labels)
        part = slice(0, n) if split_name == "train" else slice(n, None)
        return self.crossed.probabilities[part], self.crossed.labels[part]

    def cross_fitted(self) -> tuple[CrossFit, int] | None:
        """The cross-fitted head's evidence and how many of its images are the training
        split's (the rest are val's), or None when the head was fitted otherwise."""
        if self.crossed is None:
            return None
        return self.crossed, len(self.features.train_labels)

    def scores(self) -> dict[str, float]:
        """Accuracy and loss of the head on the cached train and val features (a history row);
        val out of fold when the head was cross-fitted."""
        row = {}
        splits = [("", self.features.train, self.features.train_labels)]
        if self.features.val is not None:
            splits.append(("val_", self.features.val, self.features.val_labels))
        for prefix, x, y in splits:
            oof = self.out_of_fold("val") if prefix == "val_" else None
            if oof is not None:
                probs = oof[0]
            else:
                probs = keras.ops.convert_to_numpy(
                    self.model.predict(x, batch_size=1024, verbose=0))
            picked = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
            row[f"{prefix}accuracy"] = float(np.mean(np.argmax(probs, axis=1) == y))
            row[f"{prefix}loss"] = float(-np.mean(np.log(picked)))
        return row

    def inference_model(self) -> keras.Model:
        """The full image model, which holds the trained head; called when the trainer saves
        the best model, so the head's weights at that moment are remembered too."""
        self._best_head = [np.array(w) for w in self.model.get_weights()]
        return self.full_model

    def saved_in_memory(self) -> keras.Model | None:
        """The full model with the head this process saved last (None if it saved none)."""
        if self._best_head is None:
            return None
        self.model.set_weights(self._best_head)  # the head's layers are the full model's
        return self.full_model

    def cached_predictions(self, split_name: str, best: Callable[[], keras.Model]):
        """``(probabilities, labels)`` of a cached split under the best head, else None.

        A cross-fitted head gives val out of fold (a head that saw the image would flatter
        itself). Otherwise the best head is the one this process saved last, or, in a resumed
        run that saved none, the head of ``best()`` (the saved ``model.keras``), copied by
        layer name.
        """
        if split_name != "val" or self.features.val is None:
            return None
        if self.out_of_fold("val") is not None:
            return self.out_of_fold("val")
        if self._best_head is not None:
            self.model.set_weights(self._best_head)
        else:
            saved = best()
            for layer in self.model.layers:
                if layer.weights:
                    layer.set_weights(saved.get_layer(layer.name).get_weights())
        features = self.features.val
        probs = [
            keras.ops.convert_to_numpy(self.model(chunk, training=False))
            for chunk in np.array_split(features, max(1, len(features) // 1024))
        ]
        return np.concatenate(probs), self.features.val_labels

    def metrics(self) -> dict[str, Any]:
        return {"fast_path": True, "feature_cache": self.features.key}

