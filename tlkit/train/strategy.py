"""Choosing a ``tf.distribute`` strategy from the recipe's ``train.strategy``."""

from __future__ import annotations

import json
import os

from tlkit.errors import UserError


def resolve_strategy(name: str = "auto"):
    """Return a ``tf.distribute.Strategy`` for ``name``.

    ``auto``: MirroredStrategy for several GPUs, OneDeviceStrategy for one, the default strategy
    on CPU. ``mirrored``: all local GPUs (or all logical CPUs when there is no GPU).
    ``multi_worker``: MultiWorkerMirroredStrategy configured by the ``TF_CONFIG`` variable.
    ``tpu``: TPUStrategy on the TPU named by ``TPU_NAME`` (or a local one).
    """
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy("/gpu:0")
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UserError(
                "train.strategy is multi_worker but TF_CONFIG is not set; set it on every worker, "
                'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}\' (see docs/training.md)'
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError as exc:
            raise UserError(f"TF_CONFIG is not valid JSON: {exc}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"unknown train.strategy {name!r}")


def is_chief(strategy) -> bool:
    """True on the worker that writes outputs (worker 0 / chief; always true locally)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and (
        "chief" not in resolver.cluster_spec().as_dict()
    )


def split_cpu(n: int = 2) -> None:
    """Expose ``n`` logical CPUs so MirroredStrategy can be tried without GPUs (call first)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        pass  # already initialised; keep what is there
