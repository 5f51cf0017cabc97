"""GoogLeNet's facts: the inception modules of the paper's Table 1 and its registry entry.

Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke and Rabinovich, "Going Deeper
with Convolutions", CVPR 2015 (arXiv:1409.4842). Built by :mod:`tlkit.models.googlenet`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlkit.models.info import FreezeGroup, ModelInfo

PAPER = "Szegedy et al. Going Deeper with Convolutions. CVPR 2015 (arXiv:1409.4842)"


@dataclass(frozen=True)
class InceptionModule:
    """One row of Table 1: the filters of an inception module's branches."""

    name: str
    conv1x1: int
    reduce3x3: int
    conv3x3: int
    reduce5x5: int
    conv5x5: int
    pool_proj: int

    @property
    def stage(self) -> int:
        return int(self.name[0])

    @property
    def out_channels(self) -> int:
        return self.conv1x1 + self.conv3x3 + self.conv5x5 + self.pool_proj


INCEPTION_MODULES: tuple[InceptionModule, ...] = (
    InceptionModule("3a", 64, 96, 128, 16, 32, 32),
    InceptionModule("3b", 128, 128, 192, 32, 96, 64),
    InceptionModule("4a", 192, 96, 208, 16, 48, 64),
    InceptionModule("4b", 160, 112, 224, 24, 64, 64),
    InceptionModule("4c", 128, 128, 256, 24, 64, 64),
    InceptionModule("4d", 112, 144, 288, 32, 64, 64),
    InceptionModule("4e", 256, 160, 320, 32, 128, 128),
    InceptionModule("5a", 256, 160, 320, 32, 128, 128),
    InceptionModule("5b", 384, 192, 384, 48, 128, 128),
)

# Each aux head starts with a 5x5/3 average pool, so inception4a's map must be at least 5x5.
# inception4a sits behind four stride-2 layers with "same" padding: side ceil(s / 16).
AUX_MIN_SIZE = 16 * 4 + 1

MODELS = (
    ModelInfo(
        id="googlenet",
        family="googlenet",
        builder="tlkit.models.googlenet:GoogLeNet",
        paper=PAPER,
        default_size=224,
        min_size=32,
        preprocessing="tf",
        feature_size=INCEPTION_MODULES[-1].out_channels,
        weight_layers=22,
        freeze_groups=(
            FreezeGroup("stem", r"^(conv1_|pool1_|norm1_|conv2_|norm2_|pool2_)"),
            FreezeGroup("inception3", r"^(inception3|pool3_)"),
            FreezeGroup("inception4", r"^(inception4|pool4_)"),
            FreezeGroup("inception5", r"^inception5"),
        ),
        unit_pattern=r"^(inception\d[a-e])_",
        aliases=("inception_v1", "inceptionv1"),
        aux_min_size=AUX_MIN_SIZE,
        description="GoogLeNet / Inception v1 (Szegedy et al. 2015), nine inception modules.",
    ),
)
