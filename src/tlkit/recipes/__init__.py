"""Recipes: typed run settings, merged from defaults, files, ``--set`` and flags.

``resolve_recipe(["recipes/vgg16-small.yaml"], ["train.epochs=3"], {"data": "./photos"})``
returns a validated :class:`tlkit.recipes.schema.Recipe`.
"""

from tlkit.recipes.loader import (
    FLAG_KEYS,
    RecipeError,
    deep_merge,
    parse_set,
    read_recipe_source,
    recipe_to_yaml,
    resolve_recipe,
    shipped_dir,
    shipped_recipes,
    validate_recipe,
)

load_recipe = resolve_recipe

__all__ = [
    "FLAG_KEYS", "RecipeError", "deep_merge", "parse_set", "read_recipe_source",
    "recipe_to_yaml", "resolve_recipe", "load_recipe", "shipped_dir", "shipped_recipes",
    "validate_recipe",
]
