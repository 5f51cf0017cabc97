"""``tlkit models`` fits a terminal of 80 to 100 columns and still says everything: grouped by
family under its paper; ``--wide`` one line a model; ``tlkit summary`` a model's description."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tlkit.cli.main import cli


def run(*args, columns: int | None = None):
    env = {"COLUMNS": str(columns)} if columns else {}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def catalog():
    return json.loads(run("models", "--json"))


@pytest.mark.parametrize(("columns", "widest"), [(None, 100), (100, 100), (80, 80), (300, 100)])
@pytest.mark.parametrize("flags", [(), ("--no-stats",)], ids=["stats", "no-stats"])
def test_every_line_fits_the_terminal(columns, widest, flags):
    lines = run("models", *flags, columns=columns).splitlines()
    too_wide = [line for line in lines if len(line) > widest]
    assert not too_wide, f"{len(too_wide)} lines over {widest} columns: {too_wide[:3]}"


def test_the_listing_keeps_every_fact_it_had(catalog):
    text = run("models", columns=100)
    flat = " ".join(text.split())  # paper titles may wrap onto a second line
    lines = text.splitlines()
    for row in catalog:
        line = next(line for line in lines if line.split()[:1] == [row["id"]])
        assert row["input"] in line and f"{row['params']:,}" in line and str(row["gmacs"]) in line
        assert (row["weights_from"] or "-") in line
        assert f"{row['family']}: {' '.join(row['paper'].split())}" in flat


def test_models_are_grouped_under_one_header_per_family_and_paper(catalog):
    headers = [line for line in run("models").splitlines() if line and not line.startswith(" ")]
    groups = {(row["family"], row["paper"]) for row in catalog}
    assert len(headers) == len(groups)  # the AlexNet family has two papers (AlexNet, ZFNet)


def test_wide_is_one_line_a_model_with_paper_and_description(catalog):
    lines = run("models", "--wide").splitlines()
    for row in catalog:
        line = next(line for line in lines if line.split()[:1] == [row["id"]])
        assert row["paper"] in line and row["description"] in line


def test_summary_names_the_model_and_its_paper():
    text = run("summary", "alexnet_2tower", "--input-size", "67", "--no-top")
    assert "two GPU towers" in text and "paper: Krizhevsky" in text
