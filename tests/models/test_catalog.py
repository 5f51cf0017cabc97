"""The shipped model listing (the registry's facts with the counts of
``tlkit/model_catalog.json``) agrees with the registry and with the built models."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import pytest

from tlkit.cli.models import shipped_catalog
from tlkit.models import list_models, model_ids, summary


@pytest.fixture(scope="module")
def catalog():
    rows = shipped_catalog()
    assert rows is not None, (
        f"{resources.files('tlkit') / 'model_catalog.json'} does not count every registered "
        "model: run scripts/make_architectures_doc.py"
    )
    return rows


def test_every_registered_model_is_listed_with_the_registry_facts(catalog):
    assert [row["id"] for row in catalog] == model_ids()
    facts = list_models(with_stats=False)
    stats = ("params", "gmacs")
    assert [{k: v for k, v in row.items() if k not in stats} for row in catalog] == facts


@pytest.mark.parametrize(
    "model_id", ["lenet5", "lenet5_paper", "alexnet", "nin", "googlenet", "resnet18"]
)
def test_the_listed_counts_are_the_built_models(catalog, model_id):
    row = next(r for r in catalog if r["id"] == model_id)
    built = summary(model_id)
    assert row["params"] == built.total_params
    assert row["gmacs"] == pytest.approx(built.total_macs / 1e9, rel=1e-3)


def test_tlkit_models_answers_without_tensorflow(catalog):
    code = (
        "import sys\nfrom tlkit.cli.main import cli\n"
        "try:\n    cli(['models', '--json'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listing, loaded = out.stdout.rsplit("LOADED", 1)
    assert loaded.strip() == "[]"
    assert json.loads(listing) == catalog
