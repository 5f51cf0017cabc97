"""Recipes: schema, merge order, error messages, shipped recipes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tlkit.recipes import (
    RecipeError,
    recipe_to_yaml,
    resolve_recipe,
    shipped_dir,
    shipped_recipes,
)

SHIPPED = sorted(shipped_recipes())


def test_defaults_are_a_valid_recipe():
    recipe = resolve_recipe()
    assert recipe.model.backbone == "auto"  # resolved per machine: tests/recipes/test_backbone_auto.py
    assert recipe.freeze.policy == "auto"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_validates(name):
    recipe = resolve_recipe([name])
    assert recipe.train.epochs >= 1


def test_there_are_three_regimes_for_the_main_backbones_and_paper_recipes():
    for backbone in ("vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "googlenet", "alexnet",
                     "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        for regime in ("small", "medium", "large"):
            assert f"{backbone}-{regime}" in SHIPPED
    for paper in ("paper-vgg16", "paper-alexnet", "paper-resnet50", "paper-googlenet"):
        assert paper in SHIPPED


def test_paper_vgg_settings():
    r = resolve_recipe(["paper-vgg16"])
    assert r.train.optimizer.name == "sgd" and r.train.optimizer.momentum == 0.9
    assert r.train.optimizer.lr == 0.01 and r.train.optimizer.weight_decay == 5e-4
    assert r.train.schedule.name == "plateau" and r.train.schedule.factor == 0.1
    assert r.model.head.type == "paper" and r.model.head.dropout == 0.5
    assert r.augment.scale_jitter.enabled
    assert resolve_recipe(["paper-alexnet"]).train.batch_size == 128


def test_merge_order_defaults_file_set_flags(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("train: {epochs: 3, batch_size: 8}\nmodel: {backbone: resnet50}\n")
    r = resolve_recipe([f], ["train.epochs=5", "train.optimizer.lr=0.05"], {"epochs": 7})
    assert r.train.epochs == 7  # flag beats --set beats file
    assert r.train.batch_size == 8  # file beats default
    assert r.train.optimizer.lr == 0.05
    assert r.model.backbone == "resnet50"


def test_later_files_win_and_extends_is_followed(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {epochs: 3}\nseed: 1\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\ntrain: {batch_size: 4}\n")
    (tmp_path / "last.yaml").write_text("seed: 9\n")
    r = resolve_recipe([tmp_path / "child.yaml", tmp_path / "last.yaml"])
    assert (r.train.epochs, r.train.batch_size, r.seed) == (3, 4, 9)


def test_typo_suggests_nearest_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  epoch: 3\n")
    with pytest.raises(RecipeError) as err:
        resolve_recipe([f])
    message = str(err.value)
    assert "train.epoch" in message and "train.epochs" in message and str(f) in message


def test_bad_value_names_path_value_and_expectation():
    with pytest.raises(RecipeError) as err:
        resolve_recipe([], ["train.optimizer.lr=-1"])
    message = str(err.value)
    assert "train.optimizer.lr" in message and "-1" in message and "greater than 0" in message


def test_unknown_backbone_is_a_recipe_error_with_suggestion():
    with pytest.raises(RecipeError, match="resnet50"):
        resolve_recipe([], [], {"backbone": "resnet5O"})


def test_unknown_recipe_name_suggests():
    with pytest.raises(Exception, match="vgg16-small"):
        resolve_recipe(["vgg16-smal"])


def test_set_parses_yaml_values():
    r = resolve_recipe([], ["augment.mirror.enabled=true", "freeze.policy=10"])
    assert r.augment.mirror.enabled is True
    assert str(r.freeze.policy) == "10"


def test_resolved_yaml_roundtrips(tmp_path):
    r = resolve_recipe(["vgg16-medium"], ["train.epochs=2"])
    f = tmp_path / "resolved.yaml"
    f.write_text(recipe_to_yaml(r))
    again = resolve_recipe([f])
    assert again.model_dump() == r.model_dump()
    assert yaml.safe_load(f.read_text())["train"]["epochs"] == 2


def test_shipped_recipes_found_after_plain_install(tmp_path):
    """A non-editable `pip install .` carries the recipes inside the package."""
    root = Path(__file__).resolve().parents[2]
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
         "--target", str(target), str(root)],
        check=True, capture_output=True, timeout=300,
    )
    code = textwrap.dedent("""
        import sys
        from tlkit.recipes import shipped_recipes, shipped_dir
        names = shipped_recipes()
        assert "site" in str(shipped_dir()), shipped_dir()
        assert "vgg16-small" in names and "digits-demo" in names, names
        print(len(names))
    """)
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(target)},
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == len(SHIPPED)


def test_shipped_dir_is_the_top_level_recipes_folder():
    root = Path(__file__).resolve().parents[2]
    assert (root / "recipes").resolve() == Path(str(shipped_dir())).resolve()


def test_docs_list_every_recipe_key():
    """docs/recipes.md's generated reference is up to date (scripts/make_recipes_doc.py)."""
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "recipes.md").read_text()
    flat = yaml.safe_load(recipe_to_yaml(resolve_recipe()))

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    missing = [k for k in leaves(flat) if f"`{k}`" not in doc]
    assert not missing, f"run scripts/make_recipes_doc.py; missing: {missing}"


def test_backbone_args_reach_the_builder():
    from tlkit.models.heads import build_transfer_model

    r = resolve_recipe(["paper-vgg-32"], ["model.backbone=vgg13"])
    assert r.model.backbone_args == {"width": 0.25}
    info = r.model.backbone_info()
    assert info.id == "vgg13" and info.kwargs["width"] == 0.25
    model = build_transfer_model(info, 4, image_size=32, head=r.model.head)
    assert model.get_layer("block5_conv1").filters == 128 and model.get_layer("fc1").units == 1024

    r = resolve_recipe(["paper-alexnet-67"], ["model.backbone_args.overlapping_pooling=false"])
    assert r.model.backbone_args == {"overlapping_pooling": False}
    assert r.model.backbone_info().kwargs == {"overlapping_pooling": False}


def test_backbone_args_tlkit_sets_or_the_builder_lacks_are_refused():
    from tlkit.errors import UserError

    with pytest.raises(RecipeError, match="input_shape: set by tlkit"):
        resolve_recipe([], ["model.backbone=vgg16", "model.backbone_args.input_shape=3"])
    r = resolve_recipe([], ["model.backbone=resnet20", "model.backbone_args.width=0.5"])
    with pytest.raises(UserError, match="resnet20's builder takes no width; its own arguments are: none"):
        r.model.backbone_info()


def test_an_unknown_backbone_arg_is_a_clear_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tlkit.cli.main", "plan", "--backbone", "alexnet", "--data",
         "builtin:digits", "--set", "model.backbone_args.overlap=false"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "alexnet's builder takes no overlap" in done.stderr + done.stdout
    assert "overlapping_pooling" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_the_paper_head_takes_the_recipes_dropout():
    from tlkit.models.heads import build_transfer_model

    for recipe_name, layer in (("paper-vgg-32", "fc1_dropout"), ("paper-alexnet-67", "fc6_dropout")):
        r = resolve_recipe([recipe_name], ["model.head.dropout=0.3"])
        model = build_transfer_model(r.model.backbone_info(), 4, image_size=r.model.image_size,
                                     head=r.model.head)
        assert model.get_layer(layer).rate == 0.3, recipe_name


def test_backbone_args_cannot_redefine_a_registered_variant():
    from tlkit.errors import UserError

    r = resolve_recipe([], ["model.backbone=alexnet_2tower", "model.backbone_args.towers=1"])
    with pytest.raises(UserError, match="towers is what makes alexnet_2tower itself"):
        r.model.backbone_info()
