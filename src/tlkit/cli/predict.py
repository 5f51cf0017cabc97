"""``tlkit predict`` and ``tlkit evaluate``."""

from __future__ import annotations

import json

import click

from tlkit.cli._run import handle_errors, quiet_tensorflow


@click.command()
@click.argument("run_or_model", type=click.Path(exists=True))
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0), default=0.0,
              help="Abstain (say so, name no class) when the top probability is below this. "
              "Probabilities are calibrated when the run fitted a temperature.")
@click.option("--trust", is_flag=True,
              help="Load the model file as a program you trust: Keras files without safe mode, "
              "exported artifacts without the check that they only compute on tensors.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def predict(run_or_model, images, top_k, min_confidence, trust, as_json) -> None:
    """Classify IMAGES (files or folders) with a run directory, a .keras model, or an exported
    artifact (SavedModel folder, .tflite, .onnx from tlkit export)."""
    quiet_tensorflow()
    from tlkit.evaluation.scoring import predict_files

    results, skipped = predict_files(run_or_model, list(images), top_k=top_k,
                                     min_confidence=min_confidence, trust=trust)
    if as_json:
        click.echo(json.dumps({"predictions": results, "skipped": skipped}, indent=2))
        return
    for r in results:
        tops = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])
        if r.get("abstained"):
            click.echo(f"{r['path']}: abstained, not confident enough (best {tops.split(', ')[0]}"
                       f" < {min_confidence:g})")
        else:
            click.echo(f"{r['path']}: {tops}")
    abstained = sum(1 for r in results if r.get("abstained"))
    if abstained:
        click.echo(f"abstained on {abstained} of {len(results)} images (--min-confidence "
                   f"{min_confidence:g})", err=True)
    for s in skipped:
        click.echo(f"skipped {s['path']}: {s['reason']}", err=True)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--data", required=True, help="DIR, csv:FILE, tfds:NAME or builtin:NAME.")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all",
              show_default=True, help="Which split of a source that has split folders.")
@click.option("--method", "methods", multiple=True,
              help="single (default), flip, 10crop, dense, multiscale, multicrop; repeat it or "
              "give a comma-separated list.")
@click.option("--scales", help="Test scales Q for dense, multiscale and multicrop, e.g. "
              "224,256,288 (default: the papers', from the run's sizes).")
@click.option("--max-images", type=click.IntRange(min=1),
              help="Evaluate a class-balanced sample of this many images (the same for every "
              "method and run).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--output", type=click.Path(file_okay=False),
              help="Also write evaluation.json, confusion_matrix.png and per_class.csv here "
              "(a folder inside a run directory puts the table in its report.html).")
@click.option("--trust", is_flag=True,
              help="Load the model file as a program you trust: Keras files without safe mode, "
              "exported artifacts without the check that they only compute on tensors.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def evaluate(runs, data, split, methods, scales, max_images, batch_size, output, trust,
             as_json) -> None:
    """Top-1, top-5, confusion matrix and per-class scores on labelled data.

    RUNS are run directories, .keras files or exported artifacts; several are also evaluated
    as an ensemble (their probabilities averaged). Each --method is one of the papers'
    evaluation methods; with more than one, or several RUNS, a table in the form of VGG's
    Tables 3 and 4 is printed.
    """
    quiet_tensorflow()
    from tlkit.errors import UserError
    from tlkit.evaluation import evaluate_runs, format_table
    from tlkit.evaluation.scoring import evaluate_predictions, write_evaluation
    from tlkit.evaluation.tables import format_per_class

    chosen = [m.strip() for value in methods or ("single",) for m in value.split(",") if m.strip()]
    try:
        qs = [int(q) for q in scales.split(",")] if scales else None
    except ValueError:
        raise UserError(f"--scales takes whole numbers separated by commas, got {scales!r}") from None
    results, bundle = evaluate_runs(list(runs), data, list(dict.fromkeys(chosen)), split=split,
                                    scales=qs, batch_size=batch_size, max_images=max_images,
                                    trust=trust)
    main = results[-1] if len(runs) > 1 else results[0]
    result = evaluate_predictions(main.probabilities, main.labels, bundle.class_names)
    document = {**result.as_dict(), "model": main.model, "method": main.method,
                "methods": [r.as_dict() for r in results]}
    if output:
        write_evaluation(output, result, bundle.class_names, extra=document)
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    if len(results) > 1:
        click.echo(format_table(results))
        click.echo(f"\nper class ({main.model}, {main.method}):")
    top5 = f"  top-5 {result.top5:.4f}" if result.top5 is not None else ""
    click.echo(f"{result.count} images: top-1 {result.top1:.4f}{top5}")
    click.echo(format_per_class(result.per_class))

