"""Optimizers as the papers use them: weight decay on kernels only (not biases, not BatchNorm).

Per-group learning-rate multipliers live in :mod:`tlkit.freeze.lr`."""

from __future__ import annotations

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
