"""``tlkit predict`` and ``tlkit evaluate``."""

from __future__ import annotations

import json

import click

from tlkit.cli._run import handle_errors, quiet_tensorflow


@click.command()
@click.argument("run_or_model", type=click.Path(exists=True))
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def predict(run_or_model, images, top_k, as_json) -> None:
    """Classify IMAGES (files or folders) with a run directory, a .keras model, or an exported
    artifact (SavedModel folder, .tflite, .onnx from tlkit export)."""
    quiet_tensorflow()
    from tlkit.evaluate import predict_files

    results, skipped = predict_files(run_or_model, list(images), top_k=top_k)
    if as_json:
        click.echo(json.dumps({"predictions": results, "skipped": skipped}, indent=2))
        return
    for r in results:
        tops = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])
        click.echo(f"{r['path']}: {tops}")
    for s in skipped:
        click.echo(f"skipped {s['path']}: {s['reason']}", err=True)


@click.command()
@click.argument("run_or_model", type=click.Path(exists=True))
@click.option("--data", required=True, help="DIR, csv:FILE, tfds:NAME or builtin:NAME.")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all",
              show_default=True, help="Which split of a source that has split folders.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--output", type=click.Path(file_okay=False),
              help="Also write evaluation.json, confusion_matrix.png and per_class.csv here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def evaluate(run_or_model, data, split, batch_size, output, as_json) -> None:
    """Top-1, top-5, confusion matrix and per-class scores of a model on labelled data."""
    quiet_tensorflow()
    from tlkit.evaluate import evaluate as run_evaluation
    from tlkit.evaluate import write_evaluation
    from tlkit.reports import format_per_class

    result, loaded, _ = run_evaluation(run_or_model, data, batch_size=batch_size, split=split)
    if output:
        write_evaluation(output, result, loaded.class_names)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    top5 = f"  top-5 {result.top5:.4f}" if result.top5 is not None else ""
    click.echo(f"{result.count} images: top-1 {result.top1:.4f}{top5}")
    click.echo(format_per_class(result.per_class))
