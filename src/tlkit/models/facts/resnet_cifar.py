"""The CIFAR-10 ResNets of He et al. (2016), section 4.2, and their plain twins, as facts.

6n + 2 weighted layers: a 3x3 conv with 16 filters, three stages of n basic blocks (2n 3x3
convs) with 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps (the first conv of stages 2 and
3 has stride 2), global average pooling and a 10-way classifier. Every shortcut is an identity
(the paper's option A): where the map halves and the filters double, the shortcut subsamples
and pads the new channels with zeros, so the residual and plain networks have exactly the same
weights. Parameter counts, from the paper's Table 6: 0.27M (20 layers), 0.46M (32), 0.66M (44),
0.85M (56), 1.7M (110). Built by :mod:`tlkit.models.resnet_cifar`.
"""

from __future__ import annotations

from tlkit.models.info import FreezeGroup, ModelInfo

PAPER = (
    "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016 "
    "(arXiv:1512.03385), section 4.2"
)
STAGE_FILTERS = (16, 32, 64)
"""Filters of the three stages (maps of 32, 16 and 8 pixels at the paper's 32x32 input)."""

#: depth -> the paper's parameter count (Table 6), in millions.
PAPER_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}
DEPTHS = tuple(PAPER_PARAMS_M)

FREEZE_GROUPS = (
    FreezeGroup("stem", r"^conv1_"),
    FreezeGroup("conv2", r"^conv2_"),
    FreezeGroup("conv3", r"^conv3_"),
    FreezeGroup("conv4", r"^conv4_"),
)
UNIT_PATTERN = r"^(conv\d_block\d+)_"


def blocks_per_stage(depth: int) -> int:
    """n of a 6n + 2 layer network."""
    if depth not in PAPER_PARAMS_M:
        raise ValueError(f"CIFAR ResNet depth must be one of {DEPTHS}, got {depth}")
    return (depth - 2) // 6


def model_id(depth: int, shortcuts: bool) -> str:
    return f"{'resnet' if shortcuts else 'plain'}{depth}"


def builder_name(depth: int, shortcuts: bool) -> str:
    return f"{'ResNet' if shortcuts else 'PlainNet'}{depth}"


def description(depth: int, shortcuts: bool) -> str:
    """One line on the CIFAR network of ``depth`` layers (listings, docstrings)."""
    n = blocks_per_stage(depth)
    if shortcuts:
        return (
            f"CIFAR ResNet-{depth} (6n+2, n={n}; 16/32/64 filters, identity shortcuts), "
            f"{PAPER_PARAMS_M[depth]}M params, He et al. 2016 section 4.2."
        )
    return (
        f"CIFAR Plain-{depth}: ResNet-{depth}'s layers without shortcuts (the degradation "
        "baseline of He et al. 2016, Fig. 6)."
    )


MODELS = tuple(
    ModelInfo(
        id=model_id(depth, shortcuts),
        family="resnet_cifar",
        builder=f"tlkit.models.resnet_cifar:{builder_name(depth, shortcuts)}",
        paper=PAPER,
        default_size=32,
        min_size=8,
        preprocessing="tf",
        feature_size=STAGE_FILTERS[-1],
        weight_layers=depth,
        freeze_groups=FREEZE_GROUPS,
        unit_pattern=UNIT_PATTERN,
        aliases=(f"{'resnet' if shortcuts else 'plain'}_{depth}",)
        + (() if shortcuts else (f"plainnet{depth}",)),
        description=description(depth, shortcuts),
    )
    for shortcuts in (True, False)
    for depth in DEPTHS
)
