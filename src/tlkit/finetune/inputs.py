"""The run's inputs: the checked data, class weights, PCA colour statistics and the augmenter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tlkit.augment.augmenter import build_augmenter, resolve_pca_stats
from tlkit.augment.pca import PCAStats, compute_pca_stats
from tlkit.contract import Contract
from tlkit.data import DataBundle, class_weights, prepare_data
from tlkit.data.pipeline import make_dataset


@dataclass
class Inputs:
    """What the data gives a run.

    Attributes:
        bundle: The splits, class names and data report.
        class_weight: ``{class index: weight}`` applied as sample weights, or None.
        pca: AlexNet PCA colour statistics when PCA colour is on (the recipe's, or
            :attr:`pca_computed` from one pass over the training images).
        pca_computed: True when this run computed :attr:`pca` (it belongs in the run's record).
        augmenter: The training augmenter, or None without augmentation.
        image_size: The model's square input side.
        contract: The run's preprocessing contract (every pipeline of the run follows it).
    """

    bundle: DataBundle
    class_weight: dict[int, float] | None
    pca: PCAStats | None
    pca_computed: bool
    augmenter: Any
    image_size: int
    contract: Contract

    def sizes(self) -> dict[str, int]:
        """Classes and images per split, as ``metrics.json`` records them."""
        b = self.bundle
        return {
            "classes": b.num_classes,
            "train_images": len(b.train),
            "val_images": len(b.val),
            "test_images": len(b.test),
        }

    @property
    def images_per_class(self) -> float:
        """Mean training images per class (the ``auto`` freeze policy's input)."""
        return len(self.bundle.train) / max(1, self.bundle.num_classes)


def prepare_inputs(
    data,
    augment,
    *,
    image_size: int,
    seed: int,
    run_dir=None,
    progress: bool = True,
    preprocess=None,
    normalisation: str = "none",
    log: Callable[[str], None] = print,
) -> Inputs:
    """Load and check the data (:func:`tlkit.data.prepare_data`, which records it in
    ``run_dir``), weigh the classes, and build the augmenter.

    Args:
        data: The recipe's ``data`` section.
        augment: The recipe's ``augment`` section.
        image_size: The model's input side.
        seed: The run's seed (splits, augmentation).
        run_dir: Where ``data_report.json`` and ``splits.csv`` go; None writes nothing.
        progress: Progress bar while checking (only on a terminal).
        preprocess: The recipe's ``preprocess`` section (default centre crop).
        normalisation: The backbone's preprocessing mode, for the contract's record.
        log: Where messages go.
    """
    bundle = prepare_data(data, seed=seed, run_dir=run_dir, progress=progress)
    log(bundle.report.format())
    weights = class_weights(bundle, data.class_weights, data.imbalance_threshold)
    if weights:
        shown = ", ".join(f"{bundle.class_names[c]}={w:.2f}" for c, w in sorted(weights.items()))
        log(f"class imbalance: per-example weights {shown}")
    pca, computed = None, False
    if augment.pca_colour.enabled:
        pca = resolve_pca_stats(augment)
    # the contract needs the augmenter's sizes only; PCA statistics do not change them
    no_pca = augment.pca_colour.model_copy(update={"enabled": False})
    sizes = build_augmenter(augment.model_copy(update={"pca_colour": no_pca}),
                            image_size=image_size, seed=seed)
    contract = Contract.for_run(preprocess, sizes, image_size, normalisation)
    log(contract.describe())
    if augment.pca_colour.enabled and pca is None:
        pca, computed = dataset_pca_stats(bundle, image_size, seed=seed, log=log,
                                          contract=contract), True
    augmenter = build_augmenter(
        augment, image_size=image_size, pca=pca, seed=seed, output_dtype="uint8"
    )
    return Inputs(bundle, weights, pca, computed, augmenter, image_size, contract)


def dataset_pca_stats(
    bundle: DataBundle, image_size: int, *, seed: int, log: Callable[[str], None] = print,
    contract: Contract | None = None,
) -> PCAStats:
    """AlexNet's PCA colour statistics: one pass over the training images at ``image_size``."""
    log("PCA colour: computing RGB eigenvectors over the training images (one pass)")
    ds = make_dataset(
        bundle.train,
        num_classes=bundle.num_classes,
        image_size=image_size,
        batch_size=64,
        training=False,
        seed=seed,
        cache="none",
        contract=contract,
    )
    return compute_pca_stats(batch[0] for batch in ds)
