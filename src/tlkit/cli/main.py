"""The ``tlkit`` command: a click group whose commands load lazily.

``tlkit --help`` imports neither TensorFlow nor Keras; each command module imports them only
when it runs. Every command is thin: resolve arguments, make one library call, print.
"""

from __future__ import annotations

import importlib

import click

import tlkit

# command name -> "module:attribute" (modules live in tlkit.cli)
COMMANDS = {
    "models": "tlkit.cli.models:models",
    "summary": "tlkit.cli.models:summary_command",
    "finetune": "tlkit.cli.finetune:finetune",
    "pretrain": "tlkit.cli.finetune:pretrain",
    "plan": "tlkit.cli.finetune:plan",
    "lr-find": "tlkit.cli.finetune:lr_find",
    "recipes": "tlkit.cli.recipes:recipes",
    "predict": "tlkit.cli.predict:predict",
    "evaluate": "tlkit.cli.predict:evaluate",
    "export": "tlkit.cli.export:export",
    "report": "tlkit.cli.report:report",
    "augment": "tlkit.cli.augment:augment",
}


class LazyGroup(click.Group):
    """A click group that imports each command's module only when that command is used."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx, cmd_name):
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx, args):
        # An unknown command gets the closest names, like an unknown model id does.
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            from tlkit.errors import closest

            if args and args[0] not in self.list_commands(ctx):
                near = closest(args[0], self.list_commands(ctx))
                if near:
                    raise click.UsageError(
                        f"No such command {args[0]!r}. Did you mean: {', '.join(near)}?"
                    ) from None
            raise exc


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(tlkit.__version__, prog_name="tlkit")
def cli() -> None:
    """tlkit: turn a folder of images into a classifier with the classic CNNs.

    \b
    Try:
      tlkit finetune --recipe digits-demo   a real fine-tune on the embedded digits set
      tlkit finetune --backbone vgg16 --freeze 10 --data ./mydata
      tlkit plan --backbone resnet18 --data ./mydata   what a fine-tune would do, no training
      tlkit pretrain --backbone resnet18 --data BIG     a backbone of your own, to transfer from
      tlkit lr-find --data ./mydata --freeze none        the learning-rate range test, its curve
      tlkit predict runs/digits-demo IMAGE  classify images with a finished run
      tlkit export runs/digits-demo --format onnx   a checked ONNX (or SavedModel, TFLite)
      tlkit report runs/digits-demo         one self-contained report.html of the run
      tlkit models                          every architecture, with its paper figures
      tlkit summary vgg16                   the per-layer table of an architecture

    TensorFlow's start-up logs are hidden; TLKIT_TF_LOGS=1 shows them.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="tlkit")


if __name__ == "__main__":
    main()
