"""VGG's facts: the configurations of the paper's Table 1 and their registry entries.

Reference: K. Simonyan and A. Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition", ICLR 2015 (arXiv:1409.1556), Table 1 (configurations) and Table 2
(parameters: 133, 133, 133, 134, 138 and 144 million). Built by :mod:`tlkit.models.vgg`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlkit.models.info import FreezeGroup, ModelInfo
from tlkit.weights import OfficialWeights

WIDTHS = (64, 128, 256, 512, 512)
"""Output channels of blocks 1-5 (the same in every configuration)."""

DEFAULT_SIZE = 224
MIN_SIZE = 32
PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015"


@dataclass(frozen=True)
class VGGConfig:
    """One column of the paper's Table 1.

    Attributes:
        model_id: Registry id of the configuration.
        blocks: Kernel side of every conv layer, per block (3 or the 1x1 convs of C).
        lrn: Whether LRN follows the first conv layer (configuration A-LRN).
    """

    model_id: str
    blocks: tuple[tuple[int, ...], ...]
    lrn: bool = False

    @property
    def weight_layers(self) -> int:
        return sum(len(b) for b in self.blocks) + 3


CONFIGS: dict[str, VGGConfig] = {
    "A": VGGConfig("vgg11", ((3,), (3,), (3, 3), (3, 3), (3, 3))),
    "A-LRN": VGGConfig("vgg11_lrn", ((3,), (3,), (3, 3), (3, 3), (3, 3)), lrn=True),
    "B": VGGConfig("vgg13", ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3))),
    "C": VGGConfig("vgg16_c", ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1))),
    "D": VGGConfig("vgg16", ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))),
    "E": VGGConfig("vgg19", ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3))),
}

_KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
OFFICIAL_WEIGHTS: dict[str, OfficialWeights] = {
    "vgg16": OfficialWeights(
        top=("vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b"),
        notop=(
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "6d6bbae143d832006294945121d1f1fc",
        ),
        base_url=_KERAS_URL + "vgg16/",
        cache_subdir="models",
    ),
    "vgg19": OfficialWeights(
        top=("vgg19_weights_tf_dim_ordering_tf_kernels.h5", "cbe5617147190e668d6c5d5026f83318"),
        notop=(
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "253f8cb515780f3b799900260a226db6",
        ),
        base_url=_KERAS_URL + "vgg19/",
        cache_subdir="models",
    ),
}

_FREEZE_GROUPS = tuple(FreezeGroup(f"block{i}", rf"^block{i}_") for i in range(1, 6)) + (
    FreezeGroup("fc", r"^(flatten|fc\d)"),
)

_ENTRIES = (
    ("A", "vgg11", "VGG11", {}, ("vgg_a",), "VGG configuration A: 8 conv + 3 FC"),
    (
        "A-LRN",
        "vgg11_lrn",
        "VGG",
        {"config": "A-LRN"},
        ("vgg_a_lrn",),
        "VGG configuration A with LRN after the first conv layer",
    ),
    ("B", "vgg13", "VGG13", {}, ("vgg_b",), "VGG configuration B: 10 conv + 3 FC"),
    (
        "C",
        "vgg16_c",
        "VGG",
        {"config": "C"},
        ("vgg_c",),
        "VGG configuration C: 13 conv (three 1x1) + 3 FC",
    ),
    ("D", "vgg16", "VGG16", {}, ("vgg_d",), "VGG16 (configuration D), keras.applications layout"),
    ("E", "vgg19", "VGG19", {}, ("vgg_e",), "VGG19 (configuration E), keras.applications layout"),
)

MODELS = tuple(
    ModelInfo(
        id=model_id,
        family="vgg",
        builder=f"tlkit.models.vgg:{builder}",
        paper=PAPER,
        default_size=DEFAULT_SIZE,
        min_size=MIN_SIZE,
        preprocessing="caffe",
        feature_size=WIDTHS[-1],
        weight_layers=CONFIGS[letter].weight_layers,
        freeze_groups=_FREEZE_GROUPS,
        official_weights=OFFICIAL_WEIGHTS.get(model_id),
        kwargs=kwargs,
        aliases=aliases,
        description=description,
    )
    for letter, model_id, builder, kwargs, aliases, description in _ENTRIES
)
