"""Helpers of the trainer tests: the CLI in a subprocess, free ports, tiny in-process trainers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

#: A small, fast run: LeNet-5 from scratch at 32x32, no augmentation, no progress bars, every
#: layer trained (so the cached-feature fast path, which needs a frozen backbone, stays off).
LENET = [
    "--backbone",
    "lenet5",
    "--weights",
    "none",
    "--image-size",
    "32",
    "--freeze",
    "none",
    "--set",
    "augment.preset=none",
    "--set",
    "train.verbose=0",
]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a ``tlkit`` subprocess: quiet TensorFlow, no TF_CONFIG leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "TLKIT_LOGICAL_CPUS")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "TLKIT_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def tlkit_command(*args) -> list[str]:
    return [sys.executable, "-m", "tlkit.cli.main", *(str(a) for a in args)]


def run_tlkit(*args, cwd: Path, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """Run ``tlkit ARGS`` to the end; a hang fails the test instead of hanging it."""
    return subprocess.run(
        tlkit_command(*args),
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free a moment ago on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of a ``.weights.h5`` file by its path inside the file."""
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as fh:
        fh.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return out


def tiny_recipe(**train):
    """A validated recipe for LeNet-5 at 32x32 with ``train`` overrides."""
    from tlkit.recipes.schema import Recipe

    return Recipe.model_validate(
        {
            "name": "tiny",
            "model": {
                "backbone": "lenet5",
                "image_size": 32,
                "head": {"type": "avg", "dropout": 0.0},
            },
            "weights": {"source": "none"},
            "freeze": {"policy": "none"},
            "augment": {"preset": "none"},
            "train": {"epochs": 1, "batch_size": 8, "verbose": 0, **train},
        }
    )


def tiny_data(n: int = 24, classes: int = 3, seed: int = 0):
    """``(images 0..255 float32 [n, 32, 32, 3], one-hot labels)``: one bright channel per class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.uniform(0, 60, (n, 32, 32, 3)).astype("float32")
    images[np.arange(n), :, :, labels % 3] += 150
    return images, np.eye(classes, dtype="float32")[labels]


def tiny_trainer(run_dir: Path, recipe, strategy=None, n: int = 24, hooks=None):
    """A :class:`~tlkit.train.trainer.Trainer` on a fresh LeNet-5 built under ``strategy``."""
    import tensorflow as tf

    from tlkit.freeze import Freezer
    from tlkit.models import get_model_info
    from tlkit.models.heads import build_transfer_model
    from tlkit.train.plan import TrainPlan
    from tlkit.train.trainer import Datasets, Trainer

    strategy = strategy or tf.distribute.get_strategy()
    info = get_model_info("lenet5")
    with strategy.scope():
        model = build_transfer_model(info, 3, image_size=32, head=recipe.model.head)
    x, y = tiny_data(n)
    batch = recipe.train.batch_size
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    val_ds = tf.data.Dataset.from_tensor_slices((x[:8], y[:8])).batch(batch)
    return Trainer(
        model,
        TrainPlan.from_recipe(recipe, train_images=n),
        Datasets(train_ds, val_ds),
        run_dir,
        hooks,
        strategy=strategy,
        freezer=Freezer(model, info, recipe.freeze, train_images_per_class=n / 3),
        log=lambda m: None,
    )
