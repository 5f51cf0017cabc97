"""The input side of ``tlkit finetune``: sources, the data doctor, splits, tf.data pipelines.

Typical use::

    bundle = prepare_data(recipe.data, seed=recipe.seed, run_dir=run_dir)
    weights = class_weights(bundle, recipe.data.class_weights, recipe.data.imbalance_threshold)
    train = make_dataset(bundle.train, num_classes=bundle.num_classes, image_size=224,
                         batch_size=32, training=True, seed=0, class_weight=weights)

Importing this package does not import TensorFlow; the pipeline functions load it on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tlkit.data.bundle import DataBundle, DataReport, Split
from tlkit.data.class_weighting import class_weights
from tlkit.data.config import DataConfig
from tlkit.data.doctor import check_data
from tlkit.data.idx import read_idx
from tlkit.data.images import BadImageError, load_image_file
from tlkit.data.sources import load_data
from tlkit.data.splits import save_splits, stratified_split
from tlkit.io import atomic_write_json
from tlkit.rundir import RunDir

if TYPE_CHECKING:
    from tlkit.data.pipeline import iterate_images, make_dataset

__all__ = [
    "BadImageError",
    "DataBundle",
    "DataConfig",
    "DataReport",
    "Split",
    "check_data",
    "class_weights",
    "iterate_images",
    "load_data",
    "load_image_file",
    "make_dataset",
    "prepare_data",
    "read_idx",
    "save_splits",
    "stratified_split",
]

_LAZY = {"make_dataset", "iterate_images"}


def __getattr__(name: str):
    if name in _LAZY:
        from tlkit.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'tlkit.data' has no attribute {name!r}")


def prepare_data(
    config: DataConfig,
    *,
    seed: int = 0,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    check: bool = True,
) -> DataBundle:
    """Load, check and weigh the data, and record it in the run folder.

    Runs :func:`load_data`, :func:`check_data` (unless ``check=False``) and
    :func:`class_weights` (recorded in the report); with a ``run_dir`` writes
    ``data_report.json`` and ``splits.csv`` there, atomically.

    Args:
        config: The recipe's ``data:`` section.
        seed: Seed of the split.
        run_dir: The run's folder, or ``None`` to write nothing.
        progress: Progress bar while checking (only on a terminal).
        check: Run the data doctor.

    Returns:
        The bundle; ``bundle.report.class_weights`` holds the weights when weighting is on.
    """
    bundle = load_data(config, seed=seed)
    if check:
        check_data(bundle, run_dir, progress, min_images_per_class=config.min_images_per_class,
                   strict=config.strict)
    class_weights(bundle, config.class_weights, config.imbalance_threshold)
    if run_dir is not None:
        atomic_write_json(RunDir(run_dir) / RunDir.DATA_REPORT, bundle.report.as_dict())
        save_splits(bundle, RunDir(run_dir) / RunDir.SPLITS)
    return bundle
