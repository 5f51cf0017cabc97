"""``tlkit export``."""

from __future__ import annotations

import json

import click

from tlkit.cli._run import handle_errors, quiet_tensorflow
from tlkit.export.formats import FORMATS


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "formats", multiple=True, required=True,
              help=f"{', '.join(FORMATS)}; repeat it or give a comma-separated list.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder for the artifacts "
              "(default RUN_DIR/export).")
@click.option("--allow-drift", is_flag=True, help="Keep an artifact that fails the parity "
              "gate under its normal name and exit 0.")
@click.option("--max-images", type=click.IntRange(min=1), default=500, show_default=True,
              help="Held-out images the parity gate runs on.")
@click.option("--calibration-images", type=click.IntRange(min=1), default=200,
              show_default=True, help="Class-balanced training images for int8 calibration.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def export(run_dir, formats, out, allow_drift, max_images, calibration_images, as_json) -> None:
    """Export a finished run's model and check each artifact in its own runtime.

    Every artifact takes float32 [N, S, S, 3] raw RGB (0..255) shaped as preprocessing.json
    says, which is copied beside it with labels.json. The parity gate compares each with the
    Keras model on the run's held-out images; a failure exits 1 and the artifact is kept as
    *.FAILED-PARITY*, unless --allow-drift.
    """
    quiet_tensorflow()
    from tlkit.export import ExportError, export_run

    chosen = [f.strip() for value in formats for f in value.split(",") if f.strip()]
    report = export_run(
        run_dir, list(dict.fromkeys(chosen)), out=out, allow_drift=allow_drift,
        max_images=max_images, calibration_images=calibration_images,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())
    not_made = [c.format for c in report.checks if not c.path]
    if not_made:
        raise ExportError(f"{', '.join(not_made)} could not be exported (the reason is above)")
    if not report.passed and not allow_drift:
        failed = ", ".join(c.format for c in report.checks if not c.passed)
        raise ExportError(f"{failed} failed the parity gate (kept, marked FAILED-PARITY; "
                          "--allow-drift keeps it under its name)")
