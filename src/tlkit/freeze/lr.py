"""Per-group learning-rate multipliers (discriminative fine-tuning, as fastai's layer groups).

``variable_multipliers`` turns ``{group: multiplier}`` into ``{variable.path: multiplier}``.
Two ways to use it:

* :func:`apply_lr_multipliers` (recommended, works with every Keras optimizer, SGD and Adam
  alike, inside ``model.fit`` and ``tf.distribute``): scales the learning rate that the
  optimizer's ``update_step`` sees for each variable. Call it on the optimizer passed to
  ``compile``; recompiling with a new optimizer needs a new call.
* :func:`scale_gradients` for a custom training step: multiplies each gradient. This equals
  a learning-rate multiplier for SGD (with or without momentum) only; Adam-style optimizers
  normalise gradients, so scaling them has almost no effect there.

Weight decay applied by the optimizer itself (AdamW's ``weight_decay``) is not scaled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import keras

from tlkit.errors import TlkitError, UnknownNameError
from tlkit.freeze.groups import freeze_groups
from tlkit.models.registry import ModelInfo


def variable_multipliers(
    model: keras.Model, info: ModelInfo, multipliers: Mapping[str, float]
) -> dict[str, float]:
    """Map group multipliers (``{"block5": 0.1, "head": 1.0}``) to ``{variable.path: m}``.

    Variables of groups not named keep the optimizer's learning rate (no entry).

    Raises:
        UnknownNameError: a group name that the model does not have.
    """
    groups = {g.name: g for g in freeze_groups(model, info)}
    out: dict[str, float] = {}
    for name, multiplier in multipliers.items():
        key = name.strip().lower()
        if key not in groups:
            raise UnknownNameError("freeze group", name, groups)
        for layer in groups[key].layers:
            for variable in layer.weights:
                out[variable.path] = float(multiplier)
    return out


def scale_gradients(
    grads_and_vars: Iterable[tuple[Any, Any]], multipliers: Mapping[str, float]
) -> list[tuple[Any, Any]]:
    """Multiply each gradient by its variable's multiplier (keyed by ``variable.path``).

    For a custom ``train_step``: ``optimizer.apply_gradients(scale_gradients(zip(grads,
    model.trainable_variables), multipliers))``. Exact for SGD only (see the module doc).
    """
    out = []
    for grad, var in grads_and_vars:
        m = multipliers.get(getattr(var, "path", None), 1.0)
        if grad is not None and m != 1.0:
            if hasattr(grad, "indices") and hasattr(grad, "values"):  # tf.IndexedSlices
                grad = type(grad)(grad.values * m, grad.indices, grad.dense_shape)
            else:
                grad = grad * m
        out.append((grad, var))
    return out


def apply_lr_multipliers(optimizer, multipliers: Mapping[str, float]):
    """Make ``optimizer`` scale its learning rate per variable by ``multipliers``.

    Wraps the instance's ``update_step`` (the per-variable update every Keras 3 optimizer
    runs, on every backend and under ``tf.distribute``). A ``LossScaleOptimizer`` is handled
    through its inner optimizer. Calling it again replaces the previous multipliers.

    ``update_step`` gets the backend's variable (a ``tf.Variable`` on TensorFlow, which has no
    Keras ``path``), so its path is looked up through the optimizer's private
    ``_get_variable_index`` and ``_trainable_variables`` (Keras >= 3.15.1). Without them, or when
    they give no path of the table for a step that updates variables of the table, a
    :class:`~tlkit.errors.TlkitError` says so: a multiplier silently not applied would train
    the pretrained layers at the head's rate.

    Args:
        optimizer: A Keras 3 optimizer instance.
        multipliers: ``{variable.path: multiplier}`` from :func:`variable_multipliers`.

    Returns:
        The same optimizer.
    """
    target = getattr(optimizer, "inner_optimizer", optimizer)
    missing = [name for name in PRIVATE if not hasattr(target, name)]
    if missing:
        raise TlkitError(_unsupported(target, f"has no {' or '.join(missing)}"))
    base = target.__dict__.get("_tlkit_update_step") or target.update_step
    base_apply = target.__dict__.get("_tlkit_apply") or target.apply
    table = {path: float(m) for path, m in multipliers.items() if float(m) != 1.0}
    seen: set[str] = set()

    def update_step(gradient, variable, learning_rate):
        try:
            path = target._trainable_variables[target._get_variable_index(variable)].path
        except (AttributeError, KeyError, IndexError, TypeError) as exc:
            raise TlkitError(
                _unsupported(target, f"cannot find a variable's path ({exc!r})")
            ) from exc
        seen.add(path)
        if path in table:
            learning_rate = learning_rate * table[path]
        return base(gradient, variable, learning_rate)

    def apply(grads, trainable_variables=None):
        # Runs in Python (eagerly, or once per trace): the update steps it caused are known.
        seen.clear()
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)  # read twice: once here
        result = base_apply(grads, trainable_variables)
        if trainable_variables is not None:
            pairs = zip(grads, trainable_variables, strict=False)
            wanted = {v.path for g, v in pairs if g is not None and getattr(v, "path", "") in table}
            if wanted and not wanted & seen:
                raise TlkitError(_unsupported(
                    target, f"did not pass {sorted(wanted)[0]!r} (or any variable with a "
                    "multiplier) through update_step with its path"))
        return result

    target._tlkit_update_step = base
    target.update_step = update_step
    target._tlkit_apply = base_apply
    target.apply = apply
    return optimizer


#: The optimizer's private attributes :func:`apply_lr_multipliers` reads.
PRIVATE = ("_get_variable_index", "_trainable_variables")


def _unsupported(target, what: str) -> str:
    return (
        f"per-group learning rates (freeze.pretrained_lr, freeze.lr_multipliers): Keras "
        f"{keras.__version__}'s {type(target).__name__} {what}; tlkit reads the optimizer's "
        f"private {' and '.join(PRIVATE)} and is tested on Keras >= 3.15.1. Install that Keras, "
        "or train without multipliers (--set freeze.pretrained_lr=1.0)"
    )
