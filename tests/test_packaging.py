"""Packaging: the licence ships, and a folder named ``tlkit`` never shadows the package."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_clone_named_tlkit_beside_the_script_does_not_shadow_the_package(tmp_path):
    """Run from the folder that holds a clone named ``tlkit``: the README's imports work.

    With the package at the repository's top level, an editable install resolved ``tlkit``
    to the clone's root (a namespace package) and ``from tlkit.recipes import resolve_recipe``
    failed; the src layout makes that impossible.
    """
    (tmp_path / "tlkit").symlink_to(ROOT, target_is_directory=True)
    code = textwrap.dedent(
        """
        import tlkit
        from tlkit.recipes import resolve_recipe
        assert tlkit.__file__ is not None, tlkit.__path__
        recipe = resolve_recipe(["digits-demo"], ["train.epochs=2"])
        print(recipe.train.epochs, tlkit.__file__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    epochs, path = out.stdout.split()
    assert epochs == "2" and Path(path).name == "__init__.py"  # the real package, not a folder


def test_the_declared_licence_is_there():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()
