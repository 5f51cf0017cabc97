"""ResNet's facts: the rows of the paper's Table 1 and the registry entries of ResNet-18...152
and their plain twins.

He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385). Built by :mod:`tlkit.models.resnet`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlkit.models.info import FreezeGroup, ModelInfo
from tlkit.weights import OfficialWeights

PAPER = (
    "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016 "
    "(arXiv:1512.03385)"
)
STAGE_FILTERS = (64, 128, 256, 512)
"""Filters of each stage's 3x3 convs (conv2_x ... conv5_x); bottlenecks expand 4x."""
BOTTLENECK_EXPANSION = 4


@dataclass(frozen=True)
class ResNetSpec:
    """One row of the paper's Table 1: block type and residual blocks per stage."""

    block: str
    blocks: tuple[int, int, int, int]

    @property
    def feature_size(self) -> int:
        expansion = BOTTLENECK_EXPANSION if self.block == "bottleneck" else 1
        return STAGE_FILTERS[-1] * expansion


RESNET_SPECS: dict[int, ResNetSpec] = {
    18: ResNetSpec("basic", (2, 2, 2, 2)),
    34: ResNetSpec("basic", (3, 4, 6, 3)),
    50: ResNetSpec("bottleneck", (3, 4, 6, 3)),
    101: ResNetSpec("bottleneck", (3, 4, 23, 3)),
    152: ResNetSpec("bottleneck", (3, 8, 36, 3)),
}

BASE_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# (top md5, notop md5), copied from keras.src.applications.resnet.WEIGHTS_HASHES.
_WEIGHTS_HASHES = {
    50: ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    101: ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    152: ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
OFFICIAL_WEIGHTS: dict[int, OfficialWeights] = {
    depth: OfficialWeights(
        top=(f"resnet{depth}_weights_tf_dim_ordering_tf_kernels.h5", top_hash),
        notop=(f"resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5", notop_hash),
        base_url=BASE_WEIGHTS_URL,
        cache_subdir="models",
    )
    for depth, (top_hash, notop_hash) in _WEIGHTS_HASHES.items()
}

FREEZE_GROUPS = (
    FreezeGroup("stem", r"^(conv1_|pool1_)"),
    FreezeGroup("conv2", r"^conv2_"),
    FreezeGroup("conv3", r"^conv3_"),
    FreezeGroup("conv4", r"^conv4_"),
    FreezeGroup("conv5", r"^conv5_"),
)
UNIT_PATTERN = r"^(conv\d_block\d+)_"


def model_id(depth: int, shortcuts: bool) -> str:
    return f"{'resnet' if shortcuts else 'plain'}{depth}"


def builder_name(depth: int, shortcuts: bool) -> str:
    return f"{'ResNet' if shortcuts else 'PlainNet'}{depth}"


def description(depth: int, shortcuts: bool) -> str:
    """One line on ResNet-``depth`` or its plain twin (listings, the builder's docstring)."""
    spec = RESNET_SPECS[depth]
    if shortcuts:
        return f"ResNet-{depth} ({spec.block} blocks {list(spec.blocks)}), He et al. 2016."
    return (
        f"Plain-{depth}: ResNet-{depth}'s layers without shortcut additions or projection "
        "convs (the degradation baseline of He et al. 2016, section 4.1)."
    )


MODELS = tuple(
    ModelInfo(
        id=model_id(depth, shortcuts),
        family="resnet",
        builder=f"tlkit.models.resnet:{builder_name(depth, shortcuts)}",
        paper=PAPER,
        default_size=224,
        min_size=32,
        preprocessing="caffe",
        feature_size=spec.feature_size,
        weight_layers=depth,
        freeze_groups=FREEZE_GROUPS,
        unit_pattern=UNIT_PATTERN,
        official_weights=OFFICIAL_WEIGHTS.get(depth) if shortcuts else None,
        aliases=(f"{'resnet' if shortcuts else 'plain'}_{depth}",)
        + (() if shortcuts else (f"plainnet{depth}",)),
        description=description(depth, shortcuts),
    )
    for shortcuts in (True, False)
    for depth, spec in RESNET_SPECS.items()
)
