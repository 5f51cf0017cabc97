"""Optimizers as the papers use them: weight decay on kernels only (not biases, not BatchNorm).

Per-group learning-rate multipliers live in :mod:`tlkit.freeze.lr`."""

from __future__ import annotations

import keras

# Variables whose names contain these are never decayed: biases and BatchNorm's gamma/beta.
NO_DECAY = ["bias", "gamma", "beta"]


def build_optimizer(
    cfg, learning_rate: float | None = None, ema_momentum: float | None = None
) -> keras.optimizers.Optimizer:
    """Keras optimizer from an ``OptimizerConfig``.

    Weight decay (the papers' 5e-4) is applied to convolution and dense kernels only, not to
    biases or BatchNorm parameters. Keras applies it decoupled (``w -= lr * wd * w``), which for
    SGD is the gradient of an L2 penalty of ``wd / 2 * |w|^2``, as in the papers.

    With ``ema_momentum`` the optimizer keeps a moving average of the weights (Keras'
    ``use_ema``); the trainer swaps it in to validate and save (:class:`~tlkit.train.Trainer`).
    Keras' ``fit`` ends by overwriting the weights with their average
    (``finalize_variable_values``); tlkit calls ``fit`` once per epoch, so that would restart
    every epoch from the average: this optimizer's ``finalize_variable_values`` does nothing.
    """
    lr = float(learning_rate if learning_rate is not None else cfg.lr)
    common = {"learning_rate": lr, "clipnorm": cfg.clipnorm}
    if ema_momentum is not None:
        common.update(use_ema=True, ema_momentum=float(ema_momentum))
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
    if ema_momentum is not None:
        opt.finalize_variable_values = _keep_trained_weights
    return opt


def _keep_trained_weights(var_list) -> None:
    """An EMA optimizer's ``finalize_variable_values`` (see :func:`build_optimizer`)."""
