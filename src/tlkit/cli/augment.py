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
    "--preset",
    help="Augmentation preset: none, light, paper_alexnet, paper_vgg, strong, randaugment, "
    "trivialaugment.",
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
    from tlkit.models.registry import get_model_info
    from tlkit.recipes import resolve_backbone, resolve_recipe

    sets = [_prefixed(s, AugmentConfig.model_fields) for s in sets]
    if preset:
        sets.insert(0, f"augment.preset={preset}")
    recipe = resolve_recipe(recipes, sets)
    size = image_size or recipe.model.image_size
    if not size:
        recipe = resolve_backbone(recipe, log=lambda _: None)
    return recipe.augment, size or get_model_info(recipe.model.backbone).default_size, recipe.seed


def _prefixed(assignment: str, augment_fields) -> str:
    """``mirror.p=0.3`` -> ``augment.mirror.p=0.3`` (keys of the augment section need no prefix)."""
    first = assignment.split("=", 1)[0].split(".", 1)[0].strip()
    return f"augment.{assignment}" if first in augment_fields else assignment
