"""benchmarks/paper_claims.py's verdict rule and its claims' arms (no training: the study itself
is a benchmark, docs/paper-claims.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paper_claims  # noqa: E402


@pytest.mark.parametrize(
    ("diffs", "null", "word"),
    [
        ([0.05, 0.06, 0.04], False, "reproduced"),
        ([-0.05, -0.06, -0.04], False, "contradicted"),
        ([0.05, -0.04, 0.01], False, "not measurable at this scale"),
        ([0.05, -0.04, 0.01], True, "reproduced"),  # "does not improve": no clear gain
        ([0.05, 0.06, 0.04], True, "contradicted"),
        ([0.05, 0.06], False, "not measured"),  # the issue asks for three seeds at least
    ],
)
def test_verdict_is_two_standard_errors_in_the_papers_direction(diffs, null, word):
    assert paper_claims.verdict(diffs, null)[0] == word


def test_every_comparison_names_arms_the_claim_trains():
    derived = {"ensemble", "single", "dense", "multicrop",
               "multicrop & dense"}
    for comp in paper_claims.COMPARISONS:
        arms = {a.name for a in paper_claims.ARMS.get(comp.claim, [])} | derived
        assert {comp.better, comp.worse} <= arms, comp.key


def test_the_arms_use_shipped_recipes_and_registered_backbones():
    from tlkit.models import get_model_info
    from tlkit.recipes import resolve_recipe

    for arms in paper_claims.ARMS.values():
        for arm in arms:
            recipe = resolve_recipe([arm.recipe], [f"model.backbone={arm.backbone}", *arm.sets])
            assert get_model_info(recipe.model.backbone).id == arm.backbone
