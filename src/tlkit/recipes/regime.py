"""What a run without a recipe gets: the regime recipe for its data size, and a name.

``tlkit finetune --backbone resnet18 --data ./photos`` used to train on the bare defaults (no
augmentation, a constant learning rate, no early stopping), silently unlike ``--recipe
resnet18-small``. Now a run given no ``--recipe`` counts its training images per class
(listing the data, not decoding it) and starts from the regime recipe a recipe for that size
would extend (:func:`tlkit.recipes.regime_for`), with the flags and ``--set`` values on top.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tlkit.data.sources import load_data
from tlkit.recipes.backbone import resolve_backbone
from tlkit.recipes.loader import regime_for, resolve_recipe

DEFAULT_NAME = "run"


def training_images_per_class(recipe) -> float:
    """Mean training images per class of ``recipe.data`` (files listed, not opened)."""
    bundle = load_data(recipe.data, seed=recipe.seed)
    return len(bundle.train) / max(1, bundle.num_classes)


def resolve_run_recipe(
    recipes: Iterable[str | Path] = (),
    sets: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
    *,
    log: Callable[[str], None] = print,
):
    """:func:`~tlkit.recipes.resolve_recipe`, starting from the data size's regime recipe
    when no recipe is given, with ``model.backbone: auto`` resolved
    (:func:`~tlkit.recipes.backbone.resolve_backbone`); says which regime and backbone, and
    why."""
    recipes = list(recipes)
    if recipes:
        return resolve_backbone(resolve_recipe(recipes, sets, flags), log=log)
    bare = resolve_recipe([], sets, flags)
    per_class = training_images_per_class(bare)
    regime = regime_for(per_class)
    log(
        f"no --recipe: {per_class:,.0f} training images per class -> recipes/{regime}.yaml "
        "(its augmentation, schedule and early stopping); pass --recipe to choose another"
    )
    return resolve_backbone(resolve_recipe([regime], sets, flags), log=log)


def data_label(source: str) -> str:
    """A short name for a data source: a folder's or file's name, a builtin or tfds set's."""
    scheme, _, rest = source.partition(":")
    if not rest or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        rest = source
    if scheme in ("builtin", "tfds"):
        label = rest.split(":")[0]
    else:
        label = Path(rest.split(",")[0].rstrip("/\\")).name or "data"
        label = label.rsplit(".", 1)[0] if "." in label else label
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.") or "data"


def run_name(recipe) -> str:
    """``recipe.name``, or, when the recipe leaves the default, ``<backbone>-<data>``."""
    if recipe.name != DEFAULT_NAME:
        return recipe.name
    return f"{recipe.model.backbone}-{data_label(recipe.data.source)}"
