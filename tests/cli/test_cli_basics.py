"""CLI: lazy help, introspection commands, recipes commands, exit codes."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from tlkit.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_does_not_import_tensorflow():
    code = ("import sys; from tlkit.cli.main import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("[]"), out.stdout


def test_models_listing_without_stats():
    result = run("models", "--no-stats")
    assert result.exit_code == 0
    for model_id in ("lenet5", "alexnet", "vgg16", "googlenet", "resnet152", "plain34"):
        assert model_id in result.output


def test_summary_prints_the_layer_table():
    result = run("summary", "vgg16", "--input-size", "32", "--no-top")
    assert result.exit_code == 0, result.output
    assert "block1_conv2" in result.output and "5x5" in result.output  # two 3x3 see 5x5
    assert "14,714,688" in result.output


def test_unknown_model_exits_2_with_suggestion():
    result = CliRunner().invoke(cli, ["summary", "resnet05"])
    assert result.exit_code == 2
    assert "resnet50" in result.output and "Traceback" not in result.output


def test_unknown_command_suggests():
    result = CliRunner().invoke(cli, ["finetun"])
    assert result.exit_code == 2 and "finetune" in result.output


def test_recipes_list_show_validate(tmp_path):
    listed = run("recipes", "list")
    assert listed.exit_code == 0 and "vgg16-small" in listed.output
    shown = run("recipes", "show", "vgg16-small", "--set", "train.epochs=4")
    assert shown.exit_code == 0 and "epochs: 4" in shown.output
    good = tmp_path / "good.yaml"
    good.write_text("model: {backbone: resnet18}\n")
    assert run("recipes", "validate", str(good)).exit_code == 0


def test_bad_recipe_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trian: {epochs: 3}\n")
    result = CliRunner().invoke(cli, ["recipes", "validate", str(bad)])
    assert result.exit_code == 2
    assert "trian" in result.output and "train" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["finetune", "--recipe", str(bad)])
    assert result.exit_code == 2


def test_finetune_dry_run_prints_resolved_recipe():
    result = run("finetune", "--recipe", "digits-demo", "--epochs", "2", "--dry-run")
    assert result.exit_code == 0
    assert "backbone: lenet5" in result.output and "epochs: 2" in result.output


def _tlkit(*args, **env):
    import os

    quiet = ("TF_CPP", "ABSL", "TLKIT_TF")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(quiet)}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tlkit.cli.main", *args],
        capture_output=True, text=True, timeout=180, env=environ,
    )


def test_tensorflow_start_up_logs_are_hidden_unless_asked_for():
    quiet = _tlkit("summary", "lenet5", "--json")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr  # no absl / CUDA / oneDNN lines
    assert "lenet5" in quiet.stdout
    # TLKIT_TF_LOGS=1 leaves TensorFlow's own logging alone (what it prints depends on the
    # machine; on a CPU-only one, "All log messages before absl::InitializeLog()" and CUDA lines)
    loud = _tlkit("summary", "lenet5", "--json", TLKIT_TF_LOGS="1")
    assert loud.returncode == 0 and loud.stdout == quiet.stdout
