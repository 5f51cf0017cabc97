"""The model registry: one entry per architecture with every fact the rest of tlkit needs.

The entries are plain data (:mod:`tlkit.models.facts`, one module a family), registered here
when this module is imported: the registry is complete whenever it can be asked, and asking it
imports neither Keras nor TensorFlow. A builder's module is imported the first time a model is
built (:meth:`ModelInfo.build`). Nothing elsewhere in tlkit branches on an architecture id.
Entries are looked up by lower-case id (``vgg16``, ``resnet50``, ``googlenet``).
"""

from __future__ import annotations

from typing import Any

from tlkit.errors import UnknownNameError
from tlkit.models.facts import (
    alexnet,
    applications,
    efficientnet_lite,
    googlenet,
    lenet,
    nin,
    resnet,
    resnet_cifar,
    vgg,
)
from tlkit.models.info import PREPROCESSING_MODES, FreezeGroup, ModelInfo

__all__ = [
    "PREPROCESSING_MODES", "FreezeGroup", "ModelInfo", "build_model", "get_model_info",
    "model_ids", "register",
]

_REGISTRY: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}


def register(info: ModelInfo) -> ModelInfo:
    """Add ``info`` to the registry (ids are unique and lower case)."""
    if info.id != info.id.lower():
        raise ValueError(f"model ids are lower case: {info.id!r}")
    if info.id in _REGISTRY:
        raise ValueError(f"model id registered twice: {info.id!r}")
    if info.preprocessing not in PREPROCESSING_MODES:
        raise ValueError(f"{info.id}: preprocessing must be one of {PREPROCESSING_MODES}")
    _REGISTRY[info.id] = info
    for alias in info.aliases:
        _ALIASES[alias] = info.id
    return info


def get_model_info(model_id: str) -> ModelInfo:
    """Return the registry entry for ``model_id``.

    Raises:
        UnknownNameError: with the closest valid ids (exit code 2 on the CLI).
    """
    key = str(model_id).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        # "VGG-16", "ResNet50", "vgg_16": compare without separators
        squashed = {_squash(k): k for k in [*_REGISTRY, *_ALIASES]}
        key = _ALIASES.get(squashed.get(_squash(key), key), squashed.get(_squash(key), key))
    if key not in _REGISTRY:
        raise UnknownNameError("model", model_id, _REGISTRY)
    return _REGISTRY[key]


def _squash(name: str) -> str:
    return name.replace("_", "").replace("-", "")


def model_ids() -> list[str]:
    """All registered ids, in registration order."""
    return list(_REGISTRY)


def build_model(model_id: str, **kwargs: Any):
    """Build a registered architecture by id (``build_model("vgg16", include_top=False)``)."""
    return get_model_info(model_id).build(**kwargs)


# The classic architectures first, then keras.applications' families: listings show them so.
for _family in (
    alexnet, efficientnet_lite, googlenet, lenet, nin, resnet, resnet_cifar, vgg, applications
):
    for _info in _family.MODELS:
        register(_info)
