"""The recipe: one typed document holding every setting of a run.

Sections: ``model``, ``weights``, ``data``, ``freeze``, ``augment``, ``train``, ``output``. The
data, freeze and augment sections are owned by their modules (``tlkit.data.DataConfig``,
``tlkit.freeze.FreezeConfig``, ``tlkit.augment.AugmentConfig``); this module composes them.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from tlkit.augment.config import AugmentConfig
from tlkit.contract import PreprocessConfig
from tlkit.data.config import DataConfig
from tlkit.freeze.config import FreezeConfig
from tlkit.models.head_config import HeadConfig
from tlkit.models.info import ModelInfo
from tlkit.models.registry import get_model_info
from tlkit.section import Section
from tlkit.train.config import TrainSection


class ModelSection(Section):
    backbone: str = Field(
        "auto",
        description="Architecture id (see `tlkit models`), or auto: the best backbone with "
        "ImageNet weights on this machine (efficientnet_lite0 with tlkit[weights]), or the "
        "backbone of the run --weights names.",
    )
    image_size: int | None = Field(
        None, ge=8, description="Square input side; default the architecture's own."
    )
    head: HeadConfig = Field(default_factory=HeadConfig)
    backbone_args: dict[str, bool | int | float | str] = Field(
        default_factory=dict,
        description="Extra arguments of the backbone's builder, for variants the registry has "
        "no id for: {width: 0.25} (VGG at a quarter of the width), {overlapping_pooling: false} "
        "(AlexNet with 2x2/2 pooling). Checked against the builder when the model is built; "
        "keras.applications' own arguments (input_shape, weights...) are tlkit's to set.",
    )

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value.strip().lower() == "auto":
            return "auto"
        return get_model_info(value).id

    @field_validator("backbone_args")
    @classmethod
    def _not_tlkits(cls, value: dict) -> dict:
        taken = sorted(set(value) & set(RESERVED_BUILDER_ARGS))
        if taken:
            raise ValueError(f"{', '.join(taken)}: set by tlkit, not by backbone_args")
        return value

    def backbone_info(self) -> ModelInfo:
        """The backbone's registry entry, with ``backbone_args`` added to its builder arguments.

        Raises:
            UserError: an argument the builder does not take (exit code 2 on the CLI).
        """
        info = get_model_info(self.backbone)
        return info.with_args(self.backbone_args) if self.backbone_args else info


#: Builder arguments tlkit sets itself (keras.applications' signature, and the entry's own).
RESERVED_BUILDER_ARGS = (
    "include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
    "classifier_activation", "name", "config", "aux_classifiers",
)


class WeightsSection(Section):
    source: str = Field(
        "auto",
        description="auto (imagenet where official files exist, else none), imagenet, none, "
        "or a path to .h5 / .weights.h5 / .keras (a previous run's model.keras works).",
    )
    allow_partial: bool = Field(
        False, description="Allow backbone layers the file does not cover (they stay random)."
    )


class OutputSection(Section):
    dir: str | None = Field(None, description="Run directory; default <root>/<recipe name>.")
    root: str = Field("runs", description="Folder holding run directories.")


class Recipe(Section):
    """A whole run. Every field has a default, so an empty recipe is valid."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    seed: int = 42
    model: ModelSection = Field(default_factory=ModelSection)
    weights: WeightsSection = Field(default_factory=WeightsSection)
    data: DataConfig = Field(default_factory=DataConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    output: OutputSection = Field(default_factory=OutputSection)
