"""Optimizers as the papers use them: weight decay on kernels only, per-group learning rates."""

from __future__ import annotations

from collections.abc import Mapping

import keras

# Variables whose names contain these are never decayed: biases and BatchNorm's gamma/beta.
NO_DECAY = ["bias", "gamma", "beta"]


def build_optimizer(cfg, learning_rate: float | None = None) -> keras.optimizers.Optimizer:
    """Keras optimizer from an ``OptimizerConfig``.

    Weight decay (the papers' 5e-4) is applied to convolution and dense kernels only, not to
    biases or BatchNorm parameters. Keras applies it decoupled (``w -= lr * wd * w``), which for
    SGD is the gradient of an L2 penalty of ``wd / 2 * |w|^2``, as in the papers.
    """
    lr = float(learning_rate if learning_rate is not None else cfg.lr)
    common = {"learning_rate": lr, "clipnorm": cfg.clipnorm}
    wd = cfg.weight_decay or None
    if cfg.name == "sgd":
        opt = keras.optimizers.SGD(
            momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd, **common
        )
    elif cfg.name == "adam":
        opt = keras.optimizers.Adam(weight_decay=wd, **common)
    elif cfg.name == "adamw":
        opt = keras.optimizers.AdamW(weight_decay=cfg.weight_decay or 0.004, **common)
    else:  # the schema prevents this
        raise ValueError(f"unknown optimizer {cfg.name!r}")
    if wd or cfg.name == "adamw":
        opt.exclude_from_weight_decay(var_names=NO_DECAY)
    return opt


def apply_lr_multipliers(optimizer, multipliers: Mapping[str, float]) -> None:
    """Scale the learning rate per variable (``{variable path: multiplier}``).

    Works for every Keras 3 optimizer on every distribution path: both the plain and the
    ``tf.distribute`` update call ``optimizer.update_step(grad, var, lr)`` per variable, and
    this wraps that call on the instance.
    """
    multipliers = {k: float(v) for k, v in multipliers.items() if float(v) != 1.0}
    if not multipliers:
        return
    original = optimizer.update_step

    def update_step(gradient, variable, learning_rate):
        scale = multipliers.get(variable.path)
        if scale is not None:
            learning_rate = learning_rate * scale
        return original(gradient, variable, learning_rate)

    optimizer.update_step = update_step
