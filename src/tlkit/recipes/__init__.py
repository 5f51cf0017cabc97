"""Recipes: typed run settings, merged from defaults, files, ``--set`` and flags.

``resolve_recipe(["recipes/vgg16-small.yaml"], ["train.epochs=3"], {"data": "./photos"})``
returns a validated :class:`tlkit.recipes.schema.Recipe`.
"""

from tlkit.recipes.backbone import choose_backbone, resolve_backbone
from tlkit.recipes.loader import (
    FLAG_KEYS,
    RecipeError,
    deep_merge,
    parse_set,
    read_recipe_source,
    recipe_to_yaml,
    regime_for,
    resolve_recipe,
    shipped_dir,
    shipped_recipes,
    validate_recipe,
)
from tlkit.recipes.regime import data_label, resolve_run_recipe, run_name

__all__ = [
    "FLAG_KEYS", "RecipeError", "deep_merge", "parse_set", "read_recipe_source",
    "recipe_to_yaml", "regime_for", "resolve_recipe", "shipped_dir", "shipped_recipes",
    "validate_recipe", "resolve_run_recipe", "run_name", "data_label", "choose_backbone",
    "resolve_backbone",
]
