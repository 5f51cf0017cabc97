"""``tlkit models`` and ``tlkit summary``."""

from __future__ import annotations

import json
import textwrap

import click

from tlkit.cli._run import handle_errors, quiet_tensorflow


def shipped_catalog(with_stats: bool = True) -> list[dict] | None:
    """The listing shipped with this version: the registry's facts (plain data, no Keras) with
    the parameters and GMACs counted by building each model, which ``tlkit/model_catalog.json``
    holds (written with docs/architectures.md by scripts/make_architectures_doc.py). None when
    that file is missing or does not count every registered model."""
    from importlib import resources

    from tlkit.models import list_models

    rows = list_models(with_stats=False)
    if not with_stats:
        return rows
    entry = resources.files("tlkit") / "model_catalog.json"
    if not entry.is_file():
        return None
    counts = {row["id"]: row for row in json.loads(entry.read_text())["models"]}
    if any(row["id"] not in counts for row in rows):
        return None
    return [{**row, "params": counts[row["id"]]["params"], "gmacs": counts[row["id"]]["gmacs"]}
            for row in rows]


#: ``tlkit models``' widest line: it fits a terminal of 80 to 100 columns (--wide is one line
#: a model, every fact on it, for wide terminals and grep).
MAX_WIDTH = 100
HEADINGS = {"official_weights": "ImageNet weights", "gmacs": "GMACs"}


def _cell(row: dict, col: str) -> str:
    value = row[col]
    if col == "params":
        return f"{value:,}"
    if col == "official_weights":
        return row.get("weights_from") or ("yes" if value else "-")
    return str(value)


def _table(rows: list[dict], cols: list[str]) -> list[str]:
    """The one-line-a-model table (``--wide``)."""
    table = [[HEADINGS.get(c, c) for c in cols]] + [[_cell(r, c) for c in cols] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
             for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _by_family(rows: list[dict], cols: list[str], width: int) -> list[str]:
    """Models grouped by family under a header naming the family and its paper (a family whose
    models come from two papers, AlexNet's and ZFNet's, gets a header for each); the last column
    wraps within ``width``."""
    table = [[HEADINGS.get(c, c) for c in cols]] + [[_cell(r, c) for c in cols] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    indent = "  "
    lead = len(indent) + sum(w + 2 for w in widths[:-1])
    last = max(12, width - lead)

    def line(cells: list[str]) -> list[str]:
        head = [v.rjust(w) if col in ("params", "gmacs") else v.ljust(w)
                for v, w, col in zip(cells[:-1], widths, cols, strict=False)]
        tail = textwrap.wrap(cells[-1], last, break_on_hyphens=True) or [""]
        first = (indent + "  ".join([*head, tail[0]])).rstrip()
        return [first, *((" " * lead + more) for more in tail[1:])]

    out = line(table[0])
    out.append(indent + "  ".join("-" * min(w, last) if i == len(widths) - 1 else "-" * w
                                  for i, w in enumerate(widths)))
    families: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        families.setdefault(row["family"], []).append(i)
    for family, members in families.items():
        paper = None
        for i in members:
            if rows[i]["paper"] != paper:
                paper = rows[i]["paper"]
                out.append("")
                out += textwrap.wrap(f"{family}: {paper}", width, subsequent_indent="    ",
                                     break_on_hyphens=False)
            out += line(table[i + 1])
    return out


def _terminal_width() -> int:
    import shutil

    return max(60, min(MAX_WIDTH, shutil.get_terminal_size((MAX_WIDTH, 24)).columns))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--no-stats", is_flag=True, help="Leave out the parameter and MAC counts.")
@click.option("--wide", is_flag=True,
              help="One line a model with its paper and description (about 300 columns).")
@click.option(
    "--rebuild", is_flag=True,
    help="Build every model to count (slow) instead of printing the shipped listing.",
)
@handle_errors
def models(as_json: bool, no_stats: bool, wide: bool, rebuild: bool) -> None:
    """List every architecture by family, under its paper: input, parameters, GMACs, weights.

    The listing shipped with tlkit answers at once, without TensorFlow; --rebuild builds every
    model from the registry (the tests check that both agree). `tlkit summary ID` shows one
    model's description and its per-layer table; --json has every fact of every model.
    """
    rows = None if rebuild else shipped_catalog(with_stats=not no_stats)
    if rows is None:
        quiet_tensorflow()
        from tlkit.models import list_models

        def progress(model_id: str) -> None:
            click.echo(f"  counting {model_id} (cached after the first listing)...", err=True)

        rows = list_models(with_stats=not no_stats, progress=progress)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    stats = [] if no_stats else ["params", "gmacs"]
    if wide:
        lines = _table(rows, ["id", "family", "paper", "input", *stats, "official_weights",
                              "description"])
    else:
        lines = _by_family(rows, ["id", "input", *stats, "official_weights"], _terminal_width())
    click.echo("\n".join(lines))


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
    from tlkit.models import get_model_info, summary

    get_model_info(model_id)  # an unknown id is an error before TensorFlow loads
    quiet_tensorflow()

    result = summary(model_id, input_size, include_top=not no_top, classes=classes)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.format(all_layers))
