"""A finished run's data, rebuilt exactly as the run split it, from its resolved recipe."""

from __future__ import annotations

from pathlib import Path

from tlkit.data import prepare_data
from tlkit.recipes.loader import resolve_recipe
from tlkit.rundir import RunDir


def run_data(run_dir: str | Path):
    """``(recipe, bundle)`` of a run directory: its ``recipe.yaml`` and the data it names, split
    with the run's seed (checked again, nothing written).

    Raises:
        UserError: no ``recipe.yaml`` in the folder.
    """
    path = RunDir(run_dir).require_recipe("cannot rebuild the run's data")
    recipe = resolve_recipe([path])
    return recipe, prepare_data(recipe.data, seed=recipe.seed, run_dir=None, progress=False)
