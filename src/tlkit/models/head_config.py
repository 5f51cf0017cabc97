"""The recipe's ``head`` section, without Keras: recipe validation reads it, and
:func:`tlkit.models.heads.build_transfer_model` builds from it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tlkit.section import Section


class HeadConfig(Section):
    """The new classifier put on the backbone, sized to the data's classes."""

    type: Literal["avg", "max", "paper"] = Field(
        "avg",
        description="avg/max: global pooling then a dense softmax; paper: the architecture's "
        "own classifier (e.g. VGG's FC-4096 x2 with dropout), sized to the data's classes.",
    )
    dropout: float = Field(
        0.2, ge=0.0, lt=1.0,
        description="Dropout before the classifier; with type paper, the rate of the "
        "architecture's own dropout layers where it has them (VGG's fc1/fc2, AlexNet's and "
        "ZFNet's fc6/fc7; the papers' 0.5).",
    )
    hidden_units: list[int] = Field(
        default_factory=list, description="Dense ReLU layers between pooling and classifier."
    )
