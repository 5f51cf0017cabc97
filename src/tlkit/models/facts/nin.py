"""Network in Network's facts: its mlpconv blocks and registry entry.

Reference: M. Lin, Q. Chen and S. Yan, "Network In Network", ICLR 2014; the ImageNet layer
sizes of the authors' released Caffe model (``nin_imagenet``). Built by :mod:`tlkit.models.nin`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlkit.models.info import FreezeGroup, ModelInfo

PAPER = "Lin, Chen & Yan, Network In Network, ICLR 2014"
DEFAULT_SIZE = 224
MIN_SIZE = 67


@dataclass(frozen=True)
class MLPConv:
    """One mlpconv block: a spatial conv, then 1x1 convs (the micro MLP), then max pooling.

    Attributes:
        filters: Channels of every conv in the block.
        kernel: Side of the spatial conv.
        strides: Stride of the spatial conv.
        padding: "valid" or "same" for the spatial conv.
        mlp: Number of 1x1 convs after it.
        pool: 3x3/2 max pooling after the block.
        dropout: Dropout rate after the block (the Caffe model's one dropout, before block 4).
    """

    filters: int
    kernel: int
    strides: int = 1
    padding: str = "same"
    mlp: int = 2
    pool: bool = True
    dropout: float = 0.0


BLOCKS = (
    MLPConv(96, 11, 4, padding="valid"),
    MLPConv(256, 5),
    MLPConv(384, 3, dropout=0.5),
    MLPConv(1024, 3, mlp=1, pool=False),
)
"""224 -> block1 54 -> pool 26 -> block2 -> pool 12 -> block3 -> pool 5 -> block4 (5x5x1024).
The last block's third layer is the classifier (a 1x1 conv to ``classes`` maps)."""

MODELS = (
    ModelInfo(
        id="nin",
        family="nin",
        builder="tlkit.models.nin:NiN",
        paper=PAPER,
        default_size=DEFAULT_SIZE,
        min_size=MIN_SIZE,
        preprocessing="tf",
        feature_size=BLOCKS[-1].filters,
        weight_layers=sum(b.mlp + 1 for b in BLOCKS) + 1,
        freeze_groups=tuple(
            FreezeGroup(f"mlpconv{i}", rf"^mlpconv{i}_(conv[1-{b.mlp + 1}]|pool|dropout)$")
            for i, b in enumerate(BLOCKS, start=1)
        ),
        aliases=("network_in_network",),
        description="Network in Network: mlpconv blocks, global average pooling, no FC",
    ),
)
