"""docs/benchmarks.md is rendered from results files: tables, machine, command; --check. The
harness refuses to write results from uncommitted code unless told to (--allow-dirty).

Runs the generator on a made-up results file in a temporary folder (never the real docs), the
harness in a real temporary git repository, and imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "scripts" / "make_benchmarks_doc.py"

RESULT = {
    "benchmark": "toy",
    "command": "python benchmarks/toy.py --size 32",
    "machine": {
        "date": "2026-01-02T03:04:05+00:00",
        "cpu": "Test CPU 9000",
        "arch": "x86_64",
        "cores": 2,
        "memory_gib": 7.8,
        "gpus": [],
        "load_average": [1.5, 1.2, 1.0],
        "versions": {"Python": "3.11.7", "TensorFlow": "2.21.0", "Keras": "3.15.1"},
        "git": {"commit": "abc1234", "dirty": True},
    },
    "settings": {"size": 32, "quick": False, "json": None, "no_save": False},
    "tables": [
        {
            "title": "Toy speed",
            "columns": ["runner", "images/s", "CPU ms / image"],
            "rows": [["tlkit", 2217.4, 0.861], ["keras", 186.0, None]],
        }
    ],
    "ratios": [{"name": "tlkit / keras", "value": 11.92, "rounds min": 11.5, "rounds max": 12.3}],
    "notes": ["Goal, at least 10x: met (11.9x)."],
}
NOTES = "## Toy benchmark\n\nCompares two toys doing the same work.\n\n<!-- results -->\n\n- Read it well.\n"


def generate(tmp_path: Path, *extra: str, notes: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(GENERATOR), "--results", str(tmp_path / "results")]
    command += ["--notes", str(notes or tmp_path / "notes"), "--output", str(tmp_path / "b.md")]
    return subprocess.run([*command, *extra], capture_output=True, text=True, timeout=60)


def fake_results(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "results" / "toy.json").write_text(json.dumps(RESULT))
    (tmp_path / "notes" / "toy.md").write_text(NOTES)
    (tmp_path / "notes" / "unrun.md").write_text("## Not yet\n\nSomething slow.\n")


def test_renders_tables_machine_and_command(tmp_path):
    fake_results(tmp_path)
    done = generate(tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "b.md").read_text()
    assert "## Toy benchmark\n\nCompares two toys doing the same work." in text
    assert (
        "Measured 2026-01-02 03:04:05 UTC on a 2-core x86_64 CPU (Test CPU 9000), 7.8 GiB memory, "
        "no GPU, load average 1.50 at start; Python 3.11.7, TensorFlow 2.21.0, Keras 3.15.1 "
        "(commit abc1234, uncommitted changes)."
    ) in text
    assert "> Measured with uncommitted changes on top of commit abc1234: these figures" in text
    assert "```sh\npython benchmarks/toy.py --size 32\n```" in text
    assert "| runner | images/s | CPU ms / image |\n|---|---:|---:|" in text
    assert "| tlkit | 2217 | 0.861 |" in text
    assert "| keras | 186 |  |" in text
    assert "| tlkit / keras | 11.9 | 11.5 | 12.3 |" in text
    assert "- Goal, at least 10x: met (11.9x)." in text
    assert text.index("- Goal") < text.index("- Read it well.")
    assert "`size=32`" in text and "no_save" not in text
    unrun = text[text.index("## Not yet") :]
    assert "Not run on this version yet" in unrun and "python benchmarks/unrun.py" in unrun


def test_check_fails_on_stale_and_passes_on_fresh(tmp_path):
    fake_results(tmp_path)
    assert generate(tmp_path, "--check").returncode == 1  # no page yet
    assert generate(tmp_path).returncode == 0
    assert generate(tmp_path, "--check").returncode == 0
    page = tmp_path / "b.md"
    page.write_text(page.read_text().replace("2217", "9999"))
    stale = generate(tmp_path, "--check")
    assert stale.returncode == 1 and "out of date" in stale.stdout
    assert "9999" in page.read_text()  # --check writes nothing


def test_real_notes_render_without_results(tmp_path):
    (tmp_path / "results").mkdir()
    done = generate(tmp_path, notes=ROOT / "benchmarks" / "notes")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "b.md").read_text()
    for title, name in [
        ("Training throughput", "train_throughput"),
        ("Augmentation throughput", "augment_throughput"),
        ("Frozen fine-tune against its floor", "frozen_finetune"),
    ]:
        assert f"## {title}\n" in text and f"python benchmarks/{name}.py\n" in text
    assert "FancyPCA" in text and "not like-for-like" in text.lower()


def test_harness_writes_what_the_generator_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import harness

    monkeypatch.setattr(harness, "dirty_reasons", lambda root=None: [])  # whatever this tree is

    def parse(argv):
        parser = argparse.ArgumentParser()
        parser.add_argument("--size", type=int, default=224)
        return harness.parse_args(parser, argv, quick={"size": 8})

    out = tmp_path / "results" / "toy.json"
    argv = ["--quick", "--json", str(out)]
    args = parse(argv)
    assert args.size == 8 and parse([*argv, "--size", "16"]).size == 16
    assert parse([]).size == 224 and not parse([]).quick
    run = harness.Run("toy", args, argv)
    table = {"title": "T", "columns": ["a", "b"], "rows": [["x", float("nan")]]}
    run.finish([table], [{"name": "r", "value": 2.0}], ["a note"])
    doc = json.loads(out.read_text())  # strict JSON: the NaN became null
    assert doc["command"] == f"python benchmarks/toy.py --quick --json {out}"
    assert doc["tables"][0]["rows"] == [["x", None]] and doc["settings"]["size"] == 8
    assert {"date", "cpu", "cores", "versions"} <= set(doc["machine"])
    assert "| x |  |" in capsys.readouterr().out.replace("n/a", "")
    assert generate(tmp_path).returncode == 0
    assert "Quick (smoke-test) settings" in (tmp_path / "b.md").read_text()
    assert harness.rate_from_ends([0.0, 5.0, 6.0, 7.5, 8.5], per_step=4, warmup=2) == 4.0


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run([*command, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A committed checkout like this one (src/tlkit, benchmarks, results, notes, docs), which
    the harness takes for its own; its tlkit is the one ``import tlkit`` would find."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import harness

    root = tmp_path / "checkout"
    files = {
        "src/tlkit/__init__.py": "",
        "benchmarks/toy.py": "",
        "benchmarks/results/toy.json": "{}",
        "benchmarks/notes/toy.md": "## Toy",
        "docs/a.md": "a",
        "pyproject.toml": "",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "start")
    monkeypatch.setattr(harness, "ROOT", root)
    monkeypatch.delitem(sys.modules, "tlkit", raising=False)
    monkeypatch.syspath_prepend(str(root / "src"))
    return root, harness


def test_dirty_means_uncommitted_code_not_outputs_or_junk(repo):
    root, harness = repo
    assert harness.tree_changes(root) == [] and harness.dirty_reasons(root) == []
    (root / "junk.txt").write_text("untracked, outside what is measured")
    (root / "docs" / "a.md").write_text("edited docs")
    (root / "benchmarks" / "results" / "toy.json").write_text('{"new": "results"}')
    (root / "benchmarks" / "notes" / "toy.md").write_text("## Toy, edited")
    assert harness.tree_changes(root) == [] and harness.dirty_reasons(root) == []
    (root / "src" / "tlkit" / "__init__.py").write_text("X = 1\n")
    (root / "benchmarks" / "new.py").write_text("")  # new, not ignored: it could be imported
    git(root, "add", "benchmarks/new.py")
    (root / "benchmarks" / "other.py").write_text("")
    changes = ["benchmarks/new.py", "benchmarks/other.py", "src/tlkit/__init__.py"]
    assert harness.tree_changes(root) == changes
    assert harness.dirty_reasons(root) == [f"uncommitted changes: {', '.join(changes)}"]
    assert harness.tree_changes(root.parent) is None  # not a checkout: no commit to record
    assert "not a git checkout" in harness.dirty_reasons(root.parent)[0]


def test_tlkit_from_another_checkout_is_dirty(repo, monkeypatch):
    root, harness = repo
    elsewhere = root.parent / "elsewhere" / "src"
    (elsewhere / "tlkit").mkdir(parents=True)
    (elsewhere / "tlkit" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(elsewhere))  # clean tree, but this is what gets imported
    assert harness.tree_changes(root) == []
    [reason] = harness.dirty_reasons(root)
    assert f"tlkit is imported from {elsewhere / 'tlkit'}" in reason and "PYTHONPATH" in reason


def parse(harness, argv):
    parser = argparse.ArgumentParser(prog="toy.py")
    parser.add_argument("--size", type=int, default=224)
    return harness.parse_args(parser, argv, quick={"size": 8})


def test_refuses_a_dirty_tree_before_measuring(repo, tmp_path, capsys):
    root, harness = repo
    out = tmp_path / "out.json"
    assert not parse(harness, ["--json", str(out)]).allow_dirty  # clean: goes on
    (root / "src" / "tlkit" / "__init__.py").write_text("X = 1\n")
    with pytest.raises(SystemExit) as stop:
        parse(harness, ["--json", str(out)])  # the results file would come from dirty code
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "refusing to write a results file before measuring" in err
    assert "src/tlkit/__init__.py" in err and "--allow-dirty" in err
    with pytest.raises(SystemExit):
        parse(harness, [])  # the default results file too
    parse(harness, ["--no-save"])  # nothing written: nothing refused
    parse(harness, ["--quick"])  # --quick writes nothing unless --json says where
    args = parse(harness, ["--json", str(out), "--allow-dirty"])
    harness.Run("toy", args, ["--allow-dirty"]).finish(
        [{"title": "T", "columns": ["a"], "rows": []}]
    )
    git_info = json.loads(out.read_text())["machine"]["git"]
    assert git_info["dirty"] and git_info["allow_dirty"]
    assert git_info["changes"] == ["uncommitted changes: src/tlkit/__init__.py"]
    from render import machine_line

    line = machine_line(json.loads(out.read_text())["machine"])
    assert line.endswith(", uncommitted changes, written with --allow-dirty)")


def test_refuses_at_the_end_if_the_tree_changed_during_the_run(repo, tmp_path, monkeypatch):
    root, harness = repo
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = tmp_path / "out.json"
    run = harness.Run("toy", parse(harness, ["--json", str(out)]), [])
    assert run.machine["git"] == {
        "commit": git(root, "rev-parse", "--short", "HEAD").strip(),
        "dirty": False,
    }
    (root / "benchmarks" / "toy.py").write_text("edited while it ran\n")
    with pytest.raises(SystemExit) as stop:
        run.finish([{"title": "T", "columns": ["a"], "rows": []}])
    assert stop.value.code == 2 and not out.exists()
    kept = json.loads((tmp_path / "toy.dirty.json").read_text())  # not lost, but not a result
    assert (
        kept["machine"]["git"]["dirty"]
        and "changed during the run" in kept["machine"]["git"]["changes"]
    )
