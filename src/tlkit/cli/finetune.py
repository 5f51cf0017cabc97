"""``tlkit finetune``, ``tlkit pretrain`` and ``tlkit plan``: one set of options, three ends."""

from __future__ import annotations

import click

from tlkit.cli._run import command_seconds, handle_errors, quiet_tensorflow, resumable_signals


def recipe_options(func):
    """``--recipe`` (repeatable) and ``--set`` (repeatable), shared by several commands."""
    func = click.option(
        "--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
        help="Override one recipe value (repeatable), e.g. --set train.optimizer.name=sgd.",
    )(func)
    return click.option(
        "--recipe", "recipes", multiple=True, metavar="NAME_OR_FILE",
        help="Recipe file or shipped name (repeatable; later ones win). Without one, the regime "
        "recipe for the data's size (regime-small/-medium/-large). See `tlkit recipes list`.",
    )(func)


class LearningRate(click.ParamType):
    """A positive number, or ``suggested`` (the range test picks it before training)."""

    name = "LR|suggested"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "suggested":
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number nor 'suggested'", param, ctx)
        if not number > 0:
            self.fail(f"{value!r} must be above 0", param, ctx)
        return number


def run_options(func):
    """The flags of a run (each sets one recipe key, see ``tlkit.recipes.FLAG_KEYS``)."""
    options = [
        click.option("--backbone", help="Architecture id, e.g. vgg16, resnet50, googlenet (tlkit models)."),
        click.option("--data", help="Images: DIR (a subfolder per class), csv:FILE, idx:DIR, tfds:NAME or builtin:digits."),
        click.option("--freeze", help="all | none | auto | N (first N weight layers) | block name (block4, conv4, inception4c)."),
        click.option("--weights", help="auto | imagenet | none | PATH (.h5, .weights.h5, .keras) | RUN_DIR (a previous run)."),
        click.option("--epochs", type=click.IntRange(min=1)),
        click.option("--batch-size", type=click.IntRange(min=1), help="Global batch size."),
        click.option("--lr", type=LearningRate(), help="Learning rate, or 'suggested': a learning-rate range test picks it (tlkit lr-find shows the curve)."),
        click.option("--image-size", type=click.IntRange(min=8), help="Square input side."),
        click.option("--output", type=click.Path(file_okay=False), help="Run directory (default runs/<name>)."),
        click.option("--name", help="Run name (default: the recipe's, else <backbone>-<data>)."),
        click.option("--seed", type=int),
    ]
    for option in reversed(options):
        func = option(func)
    return recipe_options(func)


def _run(recipes, sets, flags, overwrite, no_resume, dry_run, pretraining=False) -> None:
    quiet_tensorflow()
    from tlkit.recipes import recipe_to_yaml, resolve_run_recipe

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    recipe = resolve_run_recipe(recipes, sets, flags, log=log)
    if dry_run:
        click.echo(recipe_to_yaml(recipe), nl=False)
        return
    from tlkit.finetune import describe_result
    from tlkit.finetune import finetune as run

    resumable_signals()
    result = run(recipe, overwrite=overwrite, resume=not no_resume, log=log)
    next_step = None
    if pretraining:  # a backbone of one's own is for transferring from
        next_step = (f"transfer from it with tlkit finetune --weights {result.run_dir} "
                     "--data SMALL_SET (docs/transfer.md)")
    message = describe_result(result, seconds=command_seconds(), next_step=next_step)
    click.echo(message)


def _run_flags(func):
    func = click.option("--dry-run", is_flag=True, help="Print the resolved recipe and stop.")(func)
    func = click.option("--no-resume", is_flag=True, help="Do not continue an unfinished run in the run directory.")(func)
    return click.option("--overwrite", is_flag=True, help="Replace the run directory if it exists.")(func)


@click.command()
@run_options
@_run_flags
@handle_errors
def finetune(recipes, sets, overwrite, no_resume, dry_run, **flags) -> None:
    """Fine-tune a backbone on a folder of images.

    \b
    Examples:
      tlkit finetune --recipe digits-demo
      tlkit finetune --backbone vgg16 --freeze 10 --data ./mydata
      tlkit finetune --backbone resnet18 --weights runs/resnet18-fashion-mnist --data ./small
      tlkit finetune --recipe recipes/resnet50-small.yaml --data ./mydata --set train.epochs=5
    Re-running the same command after a crash continues from the last checkpoint.
    """
    _run(recipes, sets, flags, overwrite, no_resume, dry_run)


@click.command()
@run_options
@_run_flags
@handle_errors
def pretrain(recipes, sets, overwrite, no_resume, dry_run, **flags) -> None:
    """Pretrain a backbone from scratch on a larger labelled set, to transfer from later.

    The shipped `pretrain` recipe (no pretrained weights, everything trains, BatchNorm
    included), then your --recipe files, --set values and flags. Transfer with
    `tlkit finetune --weights RUN_DIR --data SMALL_SET`; docs/transfer.md shows it end to end.

    \b
    Example:
      tlkit pretrain --backbone resnet18 --image-size 32 --data idx:/usr/share/datasets/fashion-mnist \\
          --set 'data.classes=[0,1,2,3,4]' --name fmnist-0to4
    """
    _run(("pretrain", *recipes), sets, flags, overwrite, no_resume, dry_run, pretraining=True)


@click.command()
@run_options
@click.option("--no-timing", is_flag=True, help="Skip the timed steps behind the per-epoch estimate.")
@handle_errors
def plan(recipes, sets, no_timing, **flags) -> None:
    """Print what `tlkit finetune` with these options would do; train nothing.

    Data counts, the weights source, the freeze decision and why, the stages, the route
    (images or cached features), the freeze table and an estimate of the time per epoch.
    """
    quiet_tensorflow()
    from tlkit.finetune.dry_run import describe_plan
    from tlkit.recipes import resolve_run_recipe

    log = lambda m: click.echo(m)  # noqa: E731
    recipe = resolve_run_recipe(recipes, sets, flags, log=log)
    describe_plan(recipe, time_steps=0 if no_timing else 3, log=log)


@click.command("lr-find")
@run_options
@click.option("--start-lr", type=click.FloatRange(min=0, min_open=True), default=1e-6,
              show_default=True, help="The test's first rate.")
@click.option("--end-lr", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="The test's last rate (it stops earlier if the loss diverges).")
@click.option("--steps", type=click.IntRange(min=10), default=60, show_default=True,
              help="Batches, one per rate, spaced evenly in log.")
@click.option("--rule", type=click.Choice(["valley", "steep", "minimum", "divergence"]),
              default="valley", show_default=True,
              help="How the suggestion is read off the curve (fastai's rules; divergence: a tenth "
              "of where the loss blew up).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Where lr_find.png and lr_find.json go (default runs/<name>-lr-find).")
@handle_errors
def lr_find(recipes, sets, start_lr, end_lr, steps, rule, out_dir, **flags) -> None:
    """Find a learning rate: the range test on the run's model, freeze policy and data.

    Takes the options of `tlkit finetune`. The learning rate grows exponentially over a
    short run of training steps; the loss curve goes to a PNG and the terminal, with the
    suggested rate and the rule that picked it. Nothing but its own folder is written.

    \b
    Examples:
      tlkit lr-find --data ./photos --freeze none
      tlkit finetune --data ./photos --freeze none --lr 0.0003     # the rate it suggested
      tlkit finetune --data ./photos --freeze none --lr suggested  # or test and use it in one go
    """
    quiet_tensorflow()
    from tlkit.finetune.lr_find import lr_find as find
    from tlkit.recipes import resolve_run_recipe

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    recipe = resolve_run_recipe(recipes, sets, flags, log=log)
    result = find(recipe, out_dir=out_dir, start=start_lr, end=end_lr, steps=steps, rule=rule,
                  log=log)
    click.echo(result.describe())
