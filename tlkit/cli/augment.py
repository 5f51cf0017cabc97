"""``tlkit augment preview``: a grid of original and augmented images."""

from __future__ import annotations

import click

from tlkit.cli._run import handle_errors, quiet_tensorflow


@click.group()
def augment() -> None:
    """Augmentation tools: see what training sees."""


@augment.command("preview")
@click.option(
    "--data", required=True, help="Image folder (a subfolder per class) or builtin:digits."
)
@click.option(
    "--recipe", "recipes", multiple=True, help="Recipe file or shipped name (repeatable)."
)
@click.option("--set", "sets", multiple=True, help="Override: augment.mirror.p=0.3 (repeatable).")
@click.option(
    "--preset", help="Augmentation preset: none, light, paper_alexnet, paper_vgg, strong."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@click.option(
    "--n", "count", default=4, show_default=True, type=click.IntRange(1, 32), help="Rows."
)
@click.option("--columns", default=6, show_default=True, type=click.IntRange(2, 16))
@click.option(
    "--image-size", type=click.IntRange(min=8), help="Model input side (default: recipe's)."
)
@click.option("--seed", type=int, help="Seed (default: the recipe's).")
@handle_errors
def preview(data, recipes, sets, preset, out, count, columns, image_size, seed) -> None:
    """Write a grid: each row an original image, then augmented versions of it."""
    quiet_tensorflow()
    from tlkit.augment.preview import preview as make_preview

    config, size, recipe_seed = _resolve(recipes, sets, preset, image_size)
    result = make_preview(
        data,
        config,
        image_size=size,
        out_path=out,
        n=count,
        columns=columns,
        seed=recipe_seed if seed is None else seed,
    )
    ops = ", ".join(result["ops"]) or "none (pass --preset or --recipe)"
    click.echo(f"wrote {result['out']}: {result['images']} images x {columns} columns")
    click.echo(f"ops: {ops}; image size {size}, decoded at {result['load_size']}")
    if result["pca_from_preview"]:
        click.echo("PCA colour statistics were computed from the preview images only.")


def _resolve(recipes, sets, preset, image_size):
    """The augment section, input size and seed from recipes, ``--set`` and ``--preset``."""
    from tlkit.augment.config import AugmentConfig

    sets = [_prefixed(s, AugmentConfig.model_fields) for s in sets]
    if preset:
        sets.insert(0, f"augment.preset={preset}")
    try:
        from tlkit.recipes import resolve_recipe
        from tlkit.recipes.schema import Recipe  # noqa: F401 - needs every section's module
    except ImportError:
        return _resolve_sections_only(recipes, sets, image_size)
    recipe = resolve_recipe(recipes, sets)
    size = image_size or recipe.model.image_size or _default_size(recipe.model.backbone)
    return recipe.augment, size, recipe.seed


def _resolve_sections_only(recipes, sets, image_size):
    """Fallback while the full recipe schema is unavailable: merge and validate ``augment``."""
    from pydantic import ValidationError

    from tlkit.augment.config import AugmentConfig
    from tlkit.errors import UserError
    from tlkit.recipes.loader import deep_merge, parse_set, read_recipe_source

    merged: dict = {}
    for source in recipes:
        merged = deep_merge(merged, read_recipe_source(source))
    for assignment in sets:
        merged = deep_merge(merged, parse_set(assignment))
    try:
        config = AugmentConfig.model_validate(merged.get("augment") or {})
    except ValidationError as exc:
        lines = [f"augment.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise UserError("invalid recipe\n  " + "\n  ".join(lines)) from None
    model = merged.get("model") or {}
    size = image_size or model.get("image_size") or _default_size(model.get("backbone", "vgg16"))
    return config, int(size), int(merged.get("seed", 0))


def _prefixed(assignment: str, augment_fields) -> str:
    """``mirror.p=0.3`` -> ``augment.mirror.p=0.3`` (keys of the augment section need no prefix)."""
    first = assignment.split("=", 1)[0].split(".", 1)[0].strip()
    return f"augment.{assignment}" if first in augment_fields else assignment


def _default_size(backbone: str) -> int:
    try:
        from tlkit.models.registry import get_model_info

        return get_model_info(backbone).default_size
    except Exception:  # noqa: BLE001 - the preview does not need a valid backbone
        return 224
