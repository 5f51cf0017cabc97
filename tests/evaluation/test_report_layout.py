"""report.html reads well in a real browser, at desktop (1280 px) and phone (390 px) widths, for
each main kind of run: from scratch, a head fitted by the solver on a frozen backbone, the
freeze search on a pretrained backbone, and a resumed run. No element leaves the page sideways
(a wide table scrolls inside its own box), no block covers the next, tables have no empty
header row or cell, no label is repeated in its value, results come before data issues, and a
run without epochs says what was fitted instead of drawing one dot."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import make_image_folder
from tlkit.cli.main import cli
from tlkit.evaluation.figures import curves_figure, has_curves

CRASH_AT = Path(__file__).parents[1] / "reliability" / "crash_at.py"
WIDTHS = (390, 1280)

#: Runs in the report's frame after layout; posts what it measured to the page around it.
PROBE = r"""<script>
addEventListener('load', () => {
  for (const d of document.querySelectorAll('details')) d.open = true;
  const width = document.documentElement.clientWidth;
  const scrollsInBox = el => {
    for (let a = el.parentElement; a; a = a.parentElement)
      if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX)) return true;
    return false;
  };
  const name = el => el.tagName.toLowerCase() + ': ' + el.textContent.trim().slice(0, 60);
  const overflowing = [...document.body.querySelectorAll('*')].filter(el => {
    if (el.tagName === 'SCRIPT') return false;
    const r = el.getBoundingClientRect();
    return r.width && (r.right > width + 1 || r.left < -1) && !scrollsInBox(el);
  }).map(name);
  const blocks = [...document.body.children].filter(el => el.tagName !== 'SCRIPT');
  const overlapping = [];
  for (let i = 1; i < blocks.length; i++) {
    const a = blocks[i - 1].getBoundingClientRect(), b = blocks[i].getBoundingClientRect();
    if (a.height && b.height && b.top < a.bottom - 1)
      overlapping.push(name(blocks[i - 1]) + ' / ' + name(blocks[i]));
  }
  const tables = [...document.querySelectorAll('table')].map(t => [...t.rows].map(
    r => [...r.cells].map(c => [c.tagName.toLowerCase(), c.textContent.trim()])));
  parent.postMessage(JSON.stringify({
    width, pageWidth: document.documentElement.scrollWidth, overflowing, overlapping, tables,
    headings: [...document.querySelectorAll('h2')].map(h => h.textContent.trim())}), '*');
});
</script>"""


def _layout(page: Path, width: int, tmp: Path) -> dict:
    """What :data:`PROBE` measures of ``page`` laid out ``width`` CSS pixels wide. The page sits
    in an iframe of that width: headless Chromium's window is never narrower than 500 px."""
    probe = tmp / f"probe-{width}.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    frame = tmp / f"frame-{width}.html"
    frame.write_text(
        f'<!doctype html><body style="margin:0"><iframe src="{probe.name}" '
        f'style="width:{width}px;height:900px;border:0"></iframe><pre id="out"></pre><script>'
        "addEventListener('message', m => {document.getElementById('out').textContent = m.data})"
        "</script></body>")
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp / 'profile'}", "--window-size=1400,900",
         "--virtual-time-budget=10000", "--dump-dom", frame.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="out">(.+?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-1000:]
    return json.loads(html.unescape(found.group(1)))


def _finetune(*args: str) -> None:
    result = CliRunner().invoke(cli, ["finetune", *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layout")
    data = make_image_folder(root / "data", classes=3, per_class=24)
    rng = np.random.default_rng(0)
    for i in range(30):  # GIF and RGBA files the data doctor converts, with long names
        pixels = np.clip(rng.normal(128, 60, (32, 32, 4)), 0, 255).astype(np.uint8)
        folder = data / f"class_{i % 3}"
        if i % 2:
            Image.fromarray(pixels, "RGBA").save(folder / f"a_rather_long_rgba_file_name_{i}.png")
        else:
            Image.fromarray(pixels[..., :3]).save(folder / f"gif_{i}.gif")
    (data / "class_0" / "broken.png").write_bytes(b"not an image")
    common = ["--backbone", "resnet18", "--image-size", "32", "--batch-size", "16",
              "--data", str(data), "--set", "augment.preset=none", "--set", "train.verbose=0"]
    out = {kind: root / kind for kind in ("scratch", "solver", "searched", "resumed")}
    _finetune(*common, "--weights", "none", "--epochs", "5", "--output", str(out["scratch"]))
    pretrained = ["--weights", str(out["scratch"])]
    _finetune(*common, *pretrained, "--freeze", "all", "--output", str(out["solver"]))
    _finetune(*common, *pretrained, "--epochs", "2", "--set", "freeze.auto.finetune_from=5",
              "--output", str(out["searched"]))
    resumed = [*common, "--weights", "none", "--epochs", "3", "--output", str(out["resumed"])]
    crashed = subprocess.run([sys.executable, str(CRASH_AT), "second-checkpoint-done", "--",
                              "finetune", *resumed], capture_output=True, timeout=600)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    _finetune(*resumed)
    assert json.loads((out["resumed"] / "metrics.json").read_text())["resumed"]
    return out


def test_the_off_scale_note_is_a_title_and_no_text_sits_inside_the_axes():
    history = [{"epoch": i + 1, "stage": 1 if i < 3 else 2, "loss": loss, "val_loss": loss / 2,
                "accuracy": 0.5 + i / 20, "val_accuracy": 0.5 + i / 25}
               for i, loss in enumerate([40.0, 0.9, 0.6, 0.5, 0.4, 0.35])]
    fig = curves_figure(history, title="a run", best_epoch=5)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    loss_axes = fig.axes[0]
    assert "off scale, up to 40" in loss_axes.get_title()
    for ax in fig.axes:
        inside = ax.get_window_extent(renderer)
        for text in ax.texts:  # stage labels and any note: above the axes, never over a curve
            box = text.get_window_extent(renderer)
            assert box.y0 >= inside.y1 - 1, (text.get_text(), box, inside)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_a_solver_fit_or_a_single_epoch_has_no_curves():
    assert not has_curves([{"epoch": 1, "stage": 1, "loss": 0.1, "steps": 0}])
    assert not has_curves([{"epoch": 1, "loss": 0.1, "steps": 7}])
    assert has_curves([{"epoch": 1, "loss": 0.2, "steps": 7}, {"epoch": 2, "loss": 0.1, "steps": 7}])


def test_results_come_first_and_data_issues_are_summarised(runs):
    page = (runs["scratch"] / "report.html").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    for result in ("Training", "Confusion matrix (val)", "Per class (val)", "Calibration"):
        assert headings.index(result) < headings.index("Data") < headings.index("Data issues")
    issues = page[page.index("<h2>Data issues</h2>"):page.index("<h2>Resolved recipe</h2>")]
    assert "1 unreadable files skipped: not an image (unknown format) (1)." in issues
    assert "<details><summary>list of 1</summary>" in issues  # each list folded away
    converted = json.loads((runs["scratch"] / "data_report.json").read_text())["converted"]
    if converted:  # counted by reason, e.g. "GIF format (15)"
        assert re.search(rf"{len(converted)} files converted to RGB PNG[^<]*: [^<]+ \(\d+\)\.",
                         issues)
        assert f"<details><summary>list of {len(converted)}</summary>" in issues
    assert "preprocessing: preprocessing" not in page and "<tr><th></th>" not in page


def test_a_run_without_epochs_says_what_was_fitted_instead_of_drawing_a_dot(runs):
    for kind in ("solver", "searched"):
        page = (runs[kind] / "report.html").read_text()
        assert 'alt="training curves' not in page, kind
        assert "No training curves: the backbone was frozen and the head fitted in one solve" in page
        assert re.search(r"5-fold cross-validation over all \d+ labelled images: accuracy", page)
    searched = (runs["searched"] / "report.html").read_text()
    assert "Freeze search on" in searched and "fine-tuned 2 epochs" in searched
    for kind in ("scratch", "resumed"):
        assert 'alt="training curves' in (runs[kind] / "report.html").read_text(), kind
    assert "resumed from a checkpoint" in (runs["resumed"] / "report.html").read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
@pytest.mark.parametrize("kind", ["scratch", "solver", "searched", "resumed"])
def test_every_section_lays_out_cleanly_on_a_phone_and_a_desktop(runs, kind, tmp_path):
    for width in WIDTHS:
        seen = _layout(runs[kind] / "report.html", width, tmp_path)
        where = f"{kind} at {width} px"
        assert seen["width"] == width, where
        assert seen["pageWidth"] <= width, f"{where}: the page scrolls sideways"
        assert seen["overflowing"] == [], f"{where}: {seen['overflowing'][:5]}"
        assert seen["overlapping"] == [], f"{where}: {seen['overlapping'][:5]}"
        headings = seen["headings"]
        assert headings.index("Confusion matrix (val)") < headings.index("Data issues"), where
        for table in seen["tables"]:
            assert table and all(text for _, text in table[0]), f"{where}: empty first row"
            for row in table:
                for _, text in row:
                    assert text, f"{where}: an empty cell in {table[0]}"
                    assert not re.search(r"\b([\w -]+):\s*\1:", text), f"{where}: {text!r}"
                if len(row) == 2 and row[0][0] == "th":  # a label and its value
                    assert not row[1][1].lower().startswith(row[0][1].lower()), f"{where}: {row}"
