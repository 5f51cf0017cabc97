"""``tlkit recipes list|show|validate``."""

from __future__ import annotations

import click

from tlkit.cli._run import handle_errors
from tlkit.cli.finetune import recipe_options


@click.group()
def recipes() -> None:
    """List, show and validate recipes."""


@recipes.command("list")
@handle_errors
def list_command() -> None:
    """Shipped recipes with their descriptions."""
    from tlkit.recipes import shipped_dir, shipped_recipes

    items = shipped_recipes()
    width = max(len(n) for n in items) if items else 0
    for name, description in items.items():
        click.echo(f"{name:<{width}}  {description}")
    click.echo(f"\n{len(items)} recipes in {shipped_dir()}; run one with "
               "`tlkit finetune --recipe NAME`.")


@recipes.command("show")
@click.argument("name_or_file", required=False)
@recipe_options
@handle_errors
def show(name_or_file, recipes, sets) -> None:
    """Print the fully resolved recipe (defaults + files + --set) as YAML."""
    from tlkit.recipes import recipe_to_yaml, resolve_recipe

    sources = ([name_or_file] if name_or_file else []) + list(recipes)
    click.echo(recipe_to_yaml(resolve_recipe(sources, sets)), nl=False)


@recipes.command("validate")
@click.argument("files", nargs=-1, required=True)
@handle_errors
def validate(files) -> None:
    """Check recipe files (exit 2 with the problems if one is invalid)."""
    from tlkit.recipes import resolve_recipe

    for f in files:
        resolve_recipe([f])
        click.echo(f"{f}: ok")
