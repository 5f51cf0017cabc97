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


#: Class and file names a user's folder may hold, each hostile to one format.
ODD_CLASSES = ['commas, and "quotes"', "=HYPERLINK(\"x\")", "<b>html<-b> & co", "+1 -2"]


def test_names_are_escaped_in_every_csv_and_json_written(tmp_path):
    """Class folders and file names with commas, quotes, a spreadsheet formula and HTML: the
    csv module quotes them (splits.csv reads back as a csv: source, path for path), JSON holds
    them verbatim, per_class.csv shows them as text, never as a formula."""
    import csv
    import io
    import json

    from PIL import Image

    from tlkit.data import DataConfig, load_data, save_splits
    from tlkit.evaluation.tables import write_per_class_csv

    for c, name in enumerate(ODD_CLASSES):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (60 * c, 10 * i, 0)).save(folder / f'{name} "{i}", x.png')
    bundle = load_data(DataConfig(source=str(tmp_path / "data")), seed=0)
    assert sorted(bundle.class_names) == sorted(ODD_CLASSES)
    save_splits(bundle, tmp_path / "splits.csv")
    again = load_data(DataConfig(source=f"csv:{tmp_path / 'splits.csv'}"), seed=0)
    for split in ("train", "val"):
        assert getattr(again, split).paths == getattr(bundle, split).paths
    assert sorted(again.class_names) == sorted(ODD_CLASSES)

    write_per_class_csv(tmp_path / "per_class.csv", [
        {"class": n, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}
        for n in [*ODD_CLASSES, "line\nbreak"]])
    rows = list(csv.DictReader(io.StringIO((tmp_path / "per_class.csv").read_text())))
    shown = [row["class"] for row in rows]
    assert shown == ['commas, and "quotes"', "'=HYPERLINK(\"x\")", "<b>html<-b> & co",
                     "'+1 -2", "line\nbreak"]
    assert all(not s.startswith(("=", "+", "-", "@")) for s in shown)

    from tlkit.io import atomic_write_json

    atomic_write_json(tmp_path / "names.json", {"classes": ODD_CLASSES})
    assert json.loads((tmp_path / "names.json").read_text())["classes"] == ODD_CLASSES


def test_nothing_in_tlkit_runs_a_shell():
    """Subprocesses take argument lists (never a shell parsing a user's string); no eval/exec,
    no pickle: a file or class name is data wherever it goes."""
    import re

    source = Path(__file__).parents[1] / "src" / "tlkit"
    pattern = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|\beval\(|\bexec\(|"
                         r"pickle\.load|allow_pickle\s*=\s*True|yaml\.load\(|unsafe_load")
    found = [f"{path.relative_to(source)}:{n}: {line.strip()}"
             for path in source.rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
    # the one unpickler is the restricted one that reads PyTorch state dicts
    unpicklers = [str(path.relative_to(source)) for path in source.rglob("*.py")
                  if re.search(r"Unpickler\b|\bpickle\.loads?\b", path.read_text())]
    assert unpicklers == ["torchfile.py"]
