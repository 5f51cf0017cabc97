"""``freeze.auto.search: evidence``: the frozen backbone against fine-tuning, judged on the
validation images with their noise counted.

Two models are compared, each scored on every validation image by a model that never saw it:

* **frozen**: the pretrained backbone frozen, its head fitted by a solver on every labelled
  image (train and val) with C and temperature by k-fold cross-validation
  (:mod:`tlkit.train.crossfit`); each validation image is predicted out of fold. Cheap: one
  pass of the backbone and a few seconds of solver.
* **tuned**: the fine-tuning policy (the rule's, or ``none`` where the rule says ``all``)
  trained as any run trains it: the head first fitted on the frozen features of the training
  split (the probe), the pretrained layers at ``freeze.pretrained_lr`` of the head's rate,
  BatchNorm in inference mode, the best epoch kept on the validation loss. It is stopped once
  its validation loss trails the frozen model's by more than three standard errors after half
  its epochs (hopeless: training it on would only cost time).

The per-image difference in validation log loss (each model calibrated as it would be kept:
the frozen head's temperature is inside it, the tuned model gets the temperature a run fits on
val) gives a mean and a standard error; the policy the rule did not choose has to win by more
than ``margin_se`` of them, else the rule's stands.
The winner is the run's model, continued rather than trained again: the tuned run as it
finished, or the frozen backbone with its cross-fitted head. Everything is written to
``freeze_search.json``, so a resumed run keeps its decision.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from tlkit.evaluation.calibration import fit_temperature, rescale
from tlkit.evaluation.loading import load_trained
from tlkit.evaluation.scoring import predict_dataset
from tlkit.io import atomic_write_json
from tlkit.models.heads import head_layers
from tlkit.rundir import RunDir
from tlkit.train import (
    EarlyStopping,
    Hook,
    ImageRoute,
    Stage,
    TrainState,
    fit_linear_head,
    plan_feature_cache,
    set_linear_head,
    standard_hooks,
)

EVIDENCE_FILE = RunDir.FREEZE_SEARCH
#: The tuned model's temperature bounds in the comparison (not a run's: see choose_temperature).
EVIDENCE_T_BOUNDS = (0.05, 20.0)
FROZEN = "all"
#: Fine-tuning is stopped when its validation loss trails the frozen model's by this many
#: standard errors after half its epochs.
HOPELESS_SE = 3.0
#: A difference in mean log loss below this (nats) is no difference (two perfect models).
MIN_EFFECT = 1e-3


@dataclass
class Evidence:
    """What the comparison measured and decided (``freeze_search.json``)."""

    method: str
    prior: str
    candidate: str
    chosen: str
    images: int
    frozen_loss: float
    tuned_loss: float
    frozen_accuracy: float
    tuned_accuracy: float
    difference: float
    se: float
    margin_se: float
    tuned_epochs: int
    stopped_hopeless: bool
    seconds: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Evidence:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def table(self) -> str:
        """What the user reads: both scores with their noise, and the choice."""
        return "\n".join([
            f"freeze decision on {self.images} validation images, each scored by a model that "
            "never saw it:",
            f"  {'policy':<8} {'val loss':>9} {'val acc':>8}",
            f"  {FROZEN:<8} {self.frozen_loss:>9.4f} {self.frozen_accuracy:>8.3f}  (head "
            "cross-fitted on every labelled image)",
            f"  {self.candidate:<8} {self.tuned_loss:>9.4f} {self.tuned_accuracy:>8.3f}  "
            f"({self.tuned_epochs} epochs{', stopped: hopeless' if self.stopped_hopeless else ''})",
            f"  chose {self.chosen}: {self.reason}",
        ])


def per_image_loss(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    picked = np.asarray(probabilities)[np.arange(len(labels)), labels]
    return -np.log(np.clip(picked, 1e-12, 1.0))


def judge(frozen: np.ndarray, tuned: np.ndarray, labels: np.ndarray, *, prior: str,
          candidate: str, margin_se: float) -> tuple[str, float, float, str]:
    """``(chosen, mean difference, its standard error, why)`` from per-image probabilities:
    the difference is frozen's log loss minus tuned's (positive: fine-tuning is better)."""
    d = per_image_loss(frozen, labels) - per_image_loss(tuned, labels)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("inf")
    better, worse = (candidate, FROZEN) if mean > 0 else (FROZEN, candidate)
    gap = f"{better} is better by {abs(mean):.4f} in log loss, {abs(mean) / se if se else 0:.1f} standard errors"
    if better == prior:
        return prior, mean, se, f"{gap}; the rule's choice too"
    if abs(mean) < MIN_EFFECT:
        return prior, mean, se, f"{gap}: no real difference, kept the rule's {prior}"
    if abs(mean) > margin_se * se:
        return better, mean, se, f"{gap} (more than the {margin_se:g} needed to overrule the rule's {prior})"
    return prior, mean, se, (f"{gap}, not the {margin_se:g} needed to overrule the rule's "
                             f"{prior}: kept {prior}")


class HopelessStop(Hook):
    """Stop fine-tuning once its validation loss trails the frozen model's by more than
    ``margin`` standard errors of the frozen model's per-image losses, from ``after`` epochs."""

    def __init__(self, reference: float, se: float, margin: float, after: int):
        super().__init__()
        self.reference, self.se, self.margin, self.after = reference, se, margin, after
        self.stopped = False

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        loss = (logs or {}).get("val_loss")
        if loss is None or t.state.epoch < self.after or t.stop_training:
            return
        if loss > self.reference + self.margin * self.se:
            t.log(f"fine-tuning stopped: its validation loss {loss:.4f} is behind the frozen "
                  f"backbone's {self.reference:.4f} by more than {self.margin:g} standard "
                  f"errors after {t.state.epoch} epochs")
            self.stopped = True
            t.state.stopped_early = True
            t.stop_training = True


@dataclass
class Outcome:
    """The trained model the run reports: its state, freeze decisions, route and evidence."""

    state: TrainState
    decisions: list
    route: object
    evidence: Evidence | None
    custom_loop: bool = False
    #: The head was fitted on frozen features before training (a linear probe).
    probe: bool = False
    #: The cached-feature decision of the trained policy, when one was made.
    route_choice: object = None


def train_with_evidence(model, freezer, plan, inputs, images, *, candidate: str, prior: str,
                        recipe, make_frozen_route, run, log) -> Outcome | None:
    """Compare the frozen backbone with ``candidate`` and keep the better (module docstring).

    ``make_frozen_route(choice)`` builds the cached-feature route for the frozen policy.
    Returns None when the comparison cannot be made here (no validation split, a class with
    one image, a backbone whose features cannot be cached): the caller trains the rule's
    choice as usual.
    """
    started = time.perf_counter()
    auto = recipe.freeze.auto
    if not len(inputs.bundle.val):
        return None
    choice = plan_feature_cache(
        model, freezer, (Stage(FROZEN, plan.stages[0].epochs, plan.stages[0].lr),),
        head_type=recipe.model.head.type, augment=recipe.augment,
        feature_cache=recipe.train.feature_cache, strategy=run.strategy, solver_head=True,
    )
    if not choice.use:
        log(f"freeze decision: no comparison ({choice.reason}); training the rule's {prior}")
        return None
    start = model.get_weights()
    freezer.apply(FROZEN)
    frozen = make_frozen_route(choice)
    fitted = frozen.fit(class_weight=inputs.class_weight, seed=recipe.seed)
    oof = frozen.out_of_fold("val")
    if oof is None:
        return None
    log(fitted["message"])
    frozen_head = [np.array(w.numpy()) for w in _head_weights(model)]
    stored = run.run_dir / EVIDENCE_FILE
    done = _stored(stored) if run.resuming else None

    model.set_weights(start)
    # the best epoch by validation loss: the measure the comparison uses
    tuned_plan = replace(plan, stages=(replace(plan.stages[0], policy=candidate),),
                         monitor="val_loss")
    hopeless = None
    if done is None or done.chosen == candidate:
        f = frozen.features  # the probe: the training split only, as the run trains on it
        probe = fit_linear_head(f.train, f.train_labels, inputs.bundle.num_classes,
                                flipped=f.train_flipped, class_weight=inputs.class_weight,
                                holdout=auto.holdout, seed=recipe.seed)
        set_linear_head(head_layers(model), probe)
        hooks, hopeless = _hooks_against(oof, plan.stages[0].epochs)
        route = ImageRoute(model, inputs.bundle, images, augmenter=inputs.augmenter,
                           class_weight=inputs.class_weight)
        log(f"freeze decision: fine-tuning ({candidate}) against the frozen backbone; the rule "
            f"says {prior}")
        trained = route.train(tuned_plan, hooks, run, freezer=freezer, resume=run.resuming,
                              log=log)
        state = trained.state
        if done is None:
            tuned = predict_dataset(load_trained(run.run_dir).model,
                                    images.dataset(inputs.bundle.val, inputs.bundle.num_classes))
            done = _weigh(oof, tuned, prior=prior, candidate=candidate, margin_se=auto.margin_se,
                          epochs=int(state.epoch), stopped=hopeless.stopped,
                          seconds=time.perf_counter() - started)
            if run.chief:
                atomic_write_json(stored, done.to_dict())
        log(done.table())
        if done.chosen == candidate:
            return Outcome(state, trained.decisions, route, done, trained.custom_loop,
                           probe=True)
    else:
        log(done.table())
    # the frozen backbone won: the pretrained weights and the cross-fitted head
    model.set_weights(start)
    for weight, value in zip(_head_weights(model), frozen_head, strict=True):
        weight.assign(value)
    decision = freezer.apply(FROZEN)
    log(decision.message)
    state = frozen.finished_state(tuned_plan.digest)
    if run.chief:
        frozen.save_finished(run.run_dir, fitted, state)
    return Outcome(state, [decision], frozen, done, route_choice=choice)


def _hooks_against(oof, epochs: int) -> tuple[list[Hook], HopelessStop]:
    """The trainer's hooks with a :class:`HopelessStop` against the frozen head's out-of-fold
    loss, right after early stopping."""
    losses = per_image_loss(*oof)
    # lenient: fine-tuning often dips before it gains, so only a large gap after half the
    # epochs stops it
    hopeless = HopelessStop(float(losses.mean()), float(losses.std() / math.sqrt(len(losses))),
                            HOPELESS_SE, after=max(1, math.ceil(epochs / 2)))
    hooks = standard_hooks()
    hooks.insert(next(i for i, h in enumerate(hooks) if isinstance(h, EarlyStopping)) + 1,
                 hopeless)
    return hooks, hopeless


def _weigh(oof, tuned, *, prior: str, candidate: str, margin_se: float, epochs: int,
           stopped: bool, seconds: float) -> Evidence:
    """The evidence of the frozen head's out-of-fold predictions against the tuned model's on
    the same validation images, compared calibrated: the frozen head's temperature is inside
    it; the tuned model gets its val fit in the bounds issue 25's five-seed suite measured this
    rule with."""
    tuned = (rescale(tuned[0], fit_temperature(*tuned, bounds=EVIDENCE_T_BOUNDS)), tuned[1])
    chosen, mean, se, why = judge(oof[0], tuned[0], oof[1], prior=prior, candidate=candidate,
                                  margin_se=margin_se)
    return Evidence(
        "evidence", prior, candidate, chosen, len(oof[1]),
        float(per_image_loss(*oof).mean()), float(per_image_loss(*tuned).mean()),
        float(np.mean(oof[0].argmax(1) == oof[1])),
        float(np.mean(tuned[0].argmax(1) == tuned[1])), mean, se, margin_se,
        epochs, stopped, seconds, why,
    )


def _head_weights(model) -> list:
    return [w for layer in head_layers(model) for w in layer.weights]


def _stored(path) -> Evidence | None:
    try:
        return Evidence.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
