"""The recipe's ``data:`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tlkit.section import Section

SplitName = Literal["train", "val", "test"]


class DataConfig(Section):
    """Where the images come from, how they are split, checked, weighted and cached."""

    source: str = Field(
        "builtin:digits",
        description=(
            "Where the images come from: a folder (one subfolder per class, or train/ val/ "
            "[test/] subfolders), 'csv:FILE' (rows path,label[,split]), 'tfds:NAME[:split]' "
            "(a tensorflow_datasets set prepared locally), 'idx:DIR' (IDX files as MNIST ships "
            "them: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], optionally the "
            "t10k- pair as the official test split; class names from an optional classes.txt), "
            "'idx:IMAGES_FILE,LABELS_FILE' (one IDX pair, split like a folder), or "
            "'builtin:digits' / 'builtin:fashion_mnist'."
        ),
    )
    val_split: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="Fraction of each class held out for validation when the source has no val split.",
    )
    test_split: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "Fraction of each class held out for a test split when the source has none; 0 means "
            "no test split. For tfds and builtin sets with an official test split, any value "
            "above 0 uses the official one instead."
        ),
    )
    classes: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            "Keep only these classes (by name; numbers like 5 mean the class named '5'), in the "
            "order the source sorts them, re-indexed 0..k-1; every split is filtered. null keeps "
            "all. An unknown name is an error listing the valid ones."
        ),
    )
    max_per_class: int | None = Field(
        None,
        ge=1,
        description=(
            "Keep at most this many images per class (a random choice seeded by the run seed) "
            "of the pool that train and any carved val/test come from, before they are carved; "
            "an official val or test split (split folders, a csv split column, t10k files, a "
            "tfds split) is not capped. null keeps all."
        ),
    )
    strict: bool = Field(
        False,
        description="Make every skipped, converted or duplicate file and every dropped class "
        "(an empty class folder) an error (exit 2) instead of a report entry.",
    )
    min_images_per_class: int = Field(
        5,
        ge=1,
        description="Classes with fewer training images than this are reported as a warning.",
    )
    class_weights: Literal["auto", "balanced", "none"] = Field(
        "auto",
        description=(
            "Per-class loss weights, applied as per-example sample weights: 'balanced' gives "
            "class c the weight n / (k * count_c); 'auto' does that only when the largest/smallest "
            "class ratio exceeds imbalance_threshold; 'none' never weights."
        ),
    )
    imbalance_threshold: float = Field(
        1.5,
        ge=1.0,
        description="Largest/smallest training class ratio above which class_weights 'auto' balances.",
    )
    cache: Literal["auto", "memory", "none"] = Field(
        "auto",
        description=(
            "Cache decoded, resized images in memory: 'auto' when they fit in cache_limit_mb, "
            "'memory' always, 'none' never."
        ),
    )
    cache_limit_mb: int = Field(
        2048,
        ge=0,
        description="Memory budget for the 'auto' cache (uint8 images at load size).",
    )
    num_parallel_calls: int | None = Field(
        None,
        ge=1,
        description="Parallel reads/decodes in the tf.data pipeline; null lets tf.data tune it.",
    )
    tfds_data_dir: str | None = Field(
        None,
        description=(
            "Folder with prepared tensorflow_datasets sets; default $TFDS_DATA_DIR, then "
            "~/tensorflow_datasets. tlkit never downloads."
        ),
    )
    tfds_split_map: dict[SplitName, str] | None = Field(
        None,
        description=(
            "Which tfds split feeds train/val/test, e.g. {train: 'train[:90%]', val: "
            "'train[90%:]', test: 'test'}. A role left out is carved from train (val) or "
            "left empty (test)."
        ),
    )
    max_in_memory_mb: int = Field(
        2048,
        ge=1,
        description=(
            "Cap on images materialized into memory (tfds sets); further examples are dropped "
            "and the data report says so."
        ),
    )

    @field_validator("classes", mode="before")
    @classmethod
    def _class_names_as_text(cls, value):
        if isinstance(value, str | int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list | tuple):
            value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
            repeated = sorted({v for v in value if isinstance(v, str) and value.count(v) > 1})
            if repeated:
                raise ValueError(f"classes listed twice: {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> DataConfig:
        if self.val_split + self.test_split >= 1.0:
            raise ValueError(
                f"val_split + test_split must be below 1 (got {self.val_split} + "
                f"{self.test_split}); nothing would be left to train on"
            )
        return self
