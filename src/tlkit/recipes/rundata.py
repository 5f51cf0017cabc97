"""A finished run's data, rebuilt exactly as the run split it, from its resolved recipe."""

from __future__ import annotations

from pathlib import Path

from tlkit.data import prepare_data
from tlkit.errors import UserError
from tlkit.recipes.loader import resolve_recipe


def run_data(run_dir: str | Path):
    """``(recipe, bundle)`` of a run directory: its ``recipe.yaml`` and the data it names, split
    with the run's seed (checked again, nothing written).

    Raises:
        UserError: no ``recipe.yaml`` in the folder.
    """
    path = Path(run_dir) / "recipe.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} has no recipe.yaml: cannot rebuild the run's data")
    recipe = resolve_recipe([path])
    return recipe, prepare_data(recipe.data, seed=recipe.seed, run_dir=None, progress=False)
