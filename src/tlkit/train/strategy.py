"""Choosing a ``tf.distribute`` strategy from the recipe's ``train.strategy``.

Nothing here initialises the TensorFlow runtime before a strategy is made: logical CPUs
(``TLKIT_LOGICAL_CPUS``) and MultiWorkerMirroredStrategy's collective ops can only be configured
before the first operation runs.
"""

from __future__ import annotations

import json
import os
import types
import warnings

from tlkit.errors import UserError

#: Environment variable: split the CPU into this many logical devices before TensorFlow starts,
#: so ``train.strategy: mirrored`` can be tried (and tested) on a machine without GPUs.
LOGICAL_CPUS_ENV = "TLKIT_LOGICAL_CPUS"

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def resolve_strategy(name: str = "auto"):
    """Return a ``tf.distribute.Strategy`` for ``name``.

    ``auto``: MirroredStrategy for several GPUs, OneDeviceStrategy for one, the default strategy
    on CPU. ``default``: the default (no-op) strategy. ``one_device``: the first GPU, else the CPU.
    ``mirrored``: all local GPUs, or all logical CPUs when there is no GPU (set
    ``TLKIT_LOGICAL_CPUS=N`` to have N of them). ``multi_worker``: MultiWorkerMirroredStrategy
    configured by the ``TF_CONFIG`` variable. ``tpu``: TPUStrategy on the TPU named by
    ``TPU_NAME`` (or a local one).

    Raises:
        UserError: An unknown name, ``multi_worker`` without a valid ``TF_CONFIG``, ``tpu``
            without a reachable TPU, or a bad ``TLKIT_LOGICAL_CPUS``.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise UserError(f"unknown train.strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    logical = os.environ.get(LOGICAL_CPUS_ENV)
    if logical:
        if not logical.isdigit() or int(logical) < 1:
            raise UserError(f"{LOGICAL_CPUS_ENV} must be a whole number >= 1; got {logical!r}")
        split_cpu(int(logical))
    if name == "multi_worker":
        return _multi_worker(tf)
    if name == "tpu":
        return _tpu(tf)
    gpus = tf.config.list_physical_devices("GPU")  # does not start the runtime
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
    # mirrored
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


def _multi_worker(tf):
    if "TF_CONFIG" not in os.environ:
        raise UserError(
            "train.strategy is multi_worker but TF_CONFIG is not set; set it on every worker, "
            'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\' (see docs/training.md)'
        )
    try:
        config = json.loads(os.environ["TF_CONFIG"])
    except ValueError as exc:
        raise UserError(f"TF_CONFIG is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise UserError(
            'TF_CONFIG needs "cluster" (the workers\' host:port list) and "task" (this '
            "process's type and index); see docs/training.md"
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _tpu(tf):
    name = os.environ.get("TPU_NAME", "")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        where = f"TPU_NAME={name!r}" if name else "no TPU_NAME set and no local TPU"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"train.strategy is tpu but no TPU could be reached ({where}: {first_line}); run on "
            "a TPU VM or set TPU_NAME, or choose train.strategy auto"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def describe_strategy(strategy, global_batch: int) -> str:
    """One line: the strategy, its replicas and the per-replica share of the global batch."""
    import tensorflow as tf

    replicas = int(strategy.num_replicas_in_sync)
    kind = type(strategy).__name__
    if kind.startswith("_Default"):
        kind = "default strategy"
    elif isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        spec = strategy.cluster_resolver.cluster_spec()
        workers = sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker"))
        kind = f"MultiWorkerMirroredStrategy over {workers} worker{'s' if workers != 1 else ''}"
    per_replica = global_batch / replicas
    share = f"{per_replica:g}" if per_replica == int(per_replica) else f"~{per_replica:.1f}"
    return (
        f"strategy: {kind}, {replicas} replica{'s' if replicas != 1 else ''} "
        f"(global batch {global_batch}, {share} per replica)"
    )


def is_chief(strategy) -> bool:
    """True on the worker that writes outputs (worker 0 / chief; always true locally)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and ("chief" not in resolver.cluster_spec().as_dict())
    )


def split_cpu(n: int = 2) -> None:
    """Expose ``n`` logical CPUs so MirroredStrategy can be tried without GPUs.

    Must run before TensorFlow's runtime starts (before the first operation); later calls
    leave the devices as they are. ``TLKIT_LOGICAL_CPUS=n`` makes :func:`resolve_strategy` call
    it.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        pass  # already initialised; keep what is there


def build_from_first_replica(model) -> None:
    """Work around Keras 3's first-batch reduce under MirroredStrategy.

    Before every ``fit``/``evaluate`` Keras' TensorFlow trainer averages the replicas' shards
    of the first batch (``strategy.reduce("MEAN", ...)``) only to learn its shapes; with a batch
    that does not split evenly (9 validation images on 2 replicas) that fails with "Inputs to
    operation AddN ... must have the same size and shape" (keras-team/keras#19246). Shapes are
    all it needs, so build from the first replica's shard instead.
    """
    import keras
    import tensorflow as tf

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            local = self.distribute_strategy.experimental_local_results
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v,
                    batch,
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    missing = [name for name in ("_maybe_symbolic_build", "_symbolic_build",
                                 "_distribute_strategy") if not hasattr(model, name)]
    if missing:  # the override would be set and never called: say so instead
        warnings.warn(f"tlkit: Keras {keras.__version__} has no {', '.join(missing)} (private; "
                      "tlkit is tested on Keras >= 3.15.1): a validation batch that does not "
                      "split evenly across replicas may fail (keras-team/keras#19246)",
                      RuntimeWarning, stacklevel=2)
        return
    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)
