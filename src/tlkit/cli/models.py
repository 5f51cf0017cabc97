"""``tlkit models`` and ``tlkit summary``."""

from __future__ import annotations

import json

import click

from tlkit.cli._run import handle_errors, quiet_tensorflow


def shipped_catalog() -> list[dict] | None:
    """The listing shipped with this version (``tlkit/model_catalog.json``, written with
    docs/architectures.md by scripts/make_architectures_doc.py), or None without one."""
    from importlib import resources

    entry = resources.files("tlkit") / "model_catalog.json"
    if not entry.is_file():
        return None
    return json.loads(entry.read_text())["models"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-stats", is_flag=True, help="Leave out the parameter and MAC counts.")
@click.option(
    "--rebuild", is_flag=True,
    help="Build every model to count (slow) instead of printing the shipped listing.",
)
@handle_errors
def models(as_json: bool, no_stats: bool, rebuild: bool) -> None:
    """List every architecture: paper, parameters, GMACs, input, official weights.

    The listing shipped with tlkit answers at once, without TensorFlow; --rebuild builds every
    model from the registry (the tests check that both agree).
    """
    rows = None if rebuild else shipped_catalog()
    if rows is None:
        quiet_tensorflow()
        from tlkit.models import list_models

        def progress(model_id: str) -> None:
            click.echo(f"  counting {model_id} (cached after the first listing)...", err=True)

        rows = list_models(with_stats=not no_stats, progress=progress)
    elif no_stats:
        rows = [{k: v for k, v in row.items() if k not in ("params", "gmacs")} for row in rows]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    cols = ["id", "family", "paper", "input", "params", "gmacs", "official_weights"]
    if no_stats:
        cols = [c for c in cols if c not in ("params", "gmacs")]
    names = {"official_weights": "imagenet weights", "gmacs": "GMACs"}

    def cell(row, col):
        v = row[col]
        if col == "params":
            return f"{v:,}"
        if col == "official_weights":
            return row.get("weights_from") or ("yes" if v else "-")
        return str(v)

    table = [[names.get(c, c) for c in cols]] + [[cell(r, c) for c in cols] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    for i, r in enumerate(table):
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))


@click.command("summary")
@click.argument("model_id")
@click.option("--input-size", type=click.IntRange(min=1), help="Square input side (default: the paper's).")
@click.option("--classes", type=click.IntRange(min=1), help="Classifier width (default 1000; LeNet-5 10).")
@click.option("--no-top", is_flag=True, help="Backbone only (no classifier).")
@click.option("--all-layers", is_flag=True, help="Also show layers without kernel or weights.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def summary_command(model_id, input_size, classes, no_top, all_layers, as_json) -> None:
    """Per-layer table of MODEL_ID: kernel/stride, output, parameters, MACs, receptive field."""
    quiet_tensorflow()
    from tlkit.models import summary

    result = summary(model_id, input_size, include_top=not no_top, classes=classes)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.format(all_layers))
