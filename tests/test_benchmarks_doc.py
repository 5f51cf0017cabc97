"""docs/benchmarks.md is rendered from results files: tables, machine, command; --check.

Runs the generator on a made-up results file in a temporary folder (never the real docs) and
imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

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
