"""``tlkit.train``'s public face: every name it lists resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import tlkit.train as train


def test_every_public_name_resolves_to_its_module():
    for name, module in train.FACE.items():
        value = getattr(train, name)
        assert getattr(value, "__module__", f"tlkit.train.{module}") == f"tlkit.train.{module}" \
            or name.isupper(), name


def test_the_recipe_section_imports_without_tensorflow():
    code = "import sys, tlkit.train.config; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
