"""Untrusted files run no code: model files load in Keras' safe mode, recipes with a safe YAML
loader."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest
from click.testing import CliRunner

from tests.conftest import make_image_folder
from tlkit.cli.main import cli


@pytest.fixture()
def lambda_model(tmp_path):
    """A .keras file whose Lambda layer would create a file if its code ever ran."""
    marker = str(tmp_path / "code-ran")
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Lambda(lambda t: (open(marker, "w").close(), t)[1], name="evil")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    path = tmp_path / "evil.keras"
    model.save(path)
    Path(marker).unlink(missing_ok=True)  # building the model above ran it once, here
    return path, Path(marker)


def test_predict_refuses_a_model_with_code_and_runs_none(lambda_model, tmp_path):
    path, marker = lambda_model
    image = make_image_folder(tmp_path / "imgs", classes=2, per_class=1) / "class_0"
    result = CliRunner().invoke(cli, ["predict", str(path), str(image)])
    assert result.exit_code == 2 and "Lambda" in result.output
    assert "arbitrary code" in result.output and "Traceback" not in result.output
    assert not marker.exists()


def test_weights_with_code_are_refused(lambda_model, tmp_path):
    path, marker = lambda_model
    data = make_image_folder(tmp_path / "data", classes=2, per_class=6)
    result = CliRunner().invoke(cli, ["finetune", "--backbone", "lenet5", "--weights", str(path),
                                      "--data", str(data), "--epochs", "1",
                                      "--output", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "Lambda" in result.output and not marker.exists()


def test_a_recipe_with_a_python_tag_is_an_error_naming_the_line(tmp_path):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"name: x\nseed: !!python/object/apply:os.system [\"touch {marker}\"]\n")
    result = CliRunner().invoke(cli, ["finetune", "--recipe", str(recipe), "--dry-run"])
    assert result.exit_code == 2
    assert "line 2" in result.output and "python/object/apply" in result.output
    assert not marker.exists()
