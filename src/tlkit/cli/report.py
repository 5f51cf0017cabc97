"""``tlkit report``."""

from __future__ import annotations

import click

from tlkit.cli._run import handle_errors, quiet_tensorflow


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@handle_errors
def report(run_dir) -> None:
    """Write RUN_DIR/report.html: one self-contained page (images embedded, no network) with
    the run's summary, data, freeze decision, curves, confusion matrix, per-class scores,
    calibration, highest-loss images, Grad-CAM maps, evaluations, exports and recipe."""
    quiet_tensorflow()
    from tlkit.errors import UserError
    from tlkit.evaluation.page import write_report
    from tlkit.recipes.rundata import run_data
    from tlkit.rundir import RunDir

    if not RunDir(run_dir).has_model():
        raise UserError(f"{run_dir} is not a finished run directory (no {RunDir.MODEL})")
    _, bundle = run_data(run_dir)
    write_report(run_dir, bundle=bundle, log=lambda m: click.echo(m))
