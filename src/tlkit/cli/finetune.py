"""``tlkit finetune``: resolve the recipe, run :func:`tlkit.finetune.finetune`, print the result."""

from __future__ import annotations

import click

from tlkit.cli._run import handle_errors, quiet_tensorflow


def recipe_options(func):
    """``--recipe`` (repeatable) and ``--set`` (repeatable), shared by several commands."""
    func = click.option(
        "--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
        help="Override one recipe value (repeatable), e.g. --set train.optimizer.name=sgd.",
    )(func)
    return click.option(
        "--recipe", "recipes", multiple=True, metavar="NAME_OR_FILE",
        help="Recipe file or shipped name (repeatable; later ones win). See `tlkit recipes list`.",
    )(func)


@click.command()
@recipe_options
@click.option("--backbone", help="Architecture id, e.g. vgg16, resnet50, googlenet (tlkit models).")
@click.option("--data", help="Images: DIR (a subfolder per class), csv:FILE, tfds:NAME or builtin:digits.")
@click.option("--freeze", help="all | none | auto | N (first N weight layers) | block name (block4, conv4, inception4c).")
@click.option("--weights", help="auto | imagenet | none | PATH (.h5, .weights.h5, .keras).")
@click.option("--epochs", type=click.IntRange(min=1))
@click.option("--batch-size", type=click.IntRange(min=1), help="Global batch size.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate.")
@click.option("--image-size", type=click.IntRange(min=8), help="Square input side.")
@click.option("--output", type=click.Path(file_okay=False), help="Run directory (default runs/<name>).")
@click.option("--name", help="Run name (default: the recipe's).")
@click.option("--seed", type=int)
@click.option("--overwrite", is_flag=True, help="Replace the run directory if it exists.")
@click.option("--no-resume", is_flag=True, help="Do not continue an unfinished run in the run directory.")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe and stop.")
@handle_errors
def finetune(recipes, sets, overwrite, no_resume, dry_run, **flags) -> None:
    """Fine-tune a backbone on a folder of images.

    \b
    Examples:
      tlkit finetune --recipe digits-demo
      tlkit finetune --backbone vgg16 --freeze 10 --data ./mydata
      tlkit finetune --recipe recipes/resnet50-small.yaml --data ./mydata --set train.epochs=5
    Re-running the same command after a crash continues from the last checkpoint.
    """
    quiet_tensorflow()
    from tlkit.recipes import recipe_to_yaml, resolve_recipe

    recipe = resolve_recipe(recipes, sets, flags)
    if dry_run:
        click.echo(recipe_to_yaml(recipe), nl=False)
        return
    from tlkit.finetune import describe_result
    from tlkit.finetune import finetune as run

    result = run(recipe, overwrite=overwrite, resume=not no_resume,
                 log=lambda m: click.echo(m, err=True))
    click.echo(describe_result(result))
