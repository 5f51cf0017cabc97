"""The one way to an architecture's ImageNet weights file, whatever kind of source it has."""

from __future__ import annotations

from pathlib import Path

from tlkit.errors import WeightsError
from tlkit.weights.converted import ConvertedWeights
from tlkit.weights.official import OfficialWeights

#: Where an architecture's ImageNet weights come from (``ModelInfo.official_weights``).
ImageNetWeights = OfficialWeights | ConvertedWeights


def official_weights_path(
    official: ImageNetWeights | None,
    include_top: bool,
    *,
    model_id: str,
    download: bool = True,
) -> Path:
    """Return the local path of an architecture's ImageNet weights file.

    For keras.applications' files: Keras' cache first (checking the md5 hash), then a
    download through ``keras.utils.get_file`` unless ``download`` is False or
    ``TLKIT_OFFLINE=1``. For weights converted from another checkpoint
    (:class:`ConvertedWeights`): the converted file in Keras' cache, else a conversion from
    the installed package or a downloaded checkpoint.

    Raises:
        WeightsError: the architecture has no ImageNet weights, or they are not on this
            machine and cannot be fetched (the message says what to install or download, and
            where to put it), or a file's hash is wrong.
    """
    if official is None:
        raise WeightsError(
            f"{model_id} has no ImageNet weights (architectures with them: `tlkit models`). "
            "Train from scratch with --weights none, or start from "
            f"a backbone you pretrained: --weights RUN_DIR after `tlkit pretrain --backbone "
            f"{model_id} --data LARGER_LABELLED_SET` (docs/transfer.md)."
        )
    return official.locate(include_top, model_id=model_id, download=download)
