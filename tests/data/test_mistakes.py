"""The data's own mistakes on real photos and real files: planted near-copies (re-encoded,
resized, slightly cropped) are found within and across splits and classes, distinct photos are
not, flipped labels rank first, and a run reports both in data_report.json, its log and
report.html (thumbnails included), changing nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import installed_file_or_skip
from tlkit.cli.main import cli
from tlkit.data import check_data, load_data
from tlkit.data.config import DataConfig
from tlkit.data.mistakes import find_label_issues, find_near_duplicates, hamming_pairs
from tlkit.train.crossfit import cross_fit_linear_head


def _photos() -> list[Image.Image]:
    """The 20 ImageNet validation photos that ship with foolbox (224 px JPEGs)."""
    folder = installed_file_or_skip("foolbox", "foolbox/data/imagenet_00_243.jpg").parent
    return [Image.open(p).convert("RGB") for p in sorted(folder.glob("imagenet_*.jpg"))]


def _folder(root: Path, placed: dict[str, Image.Image]) -> Path:
    for name, image in placed.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return root


def _check(root: Path):
    bundle = load_data(DataConfig(source=str(root)), seed=0)
    check_data(bundle, None, progress=False)
    return bundle


def _reencoded(image: Image.Image, quality: int) -> Image.Image:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def test_planted_copies_are_found_across_splits_and_classes(tmp_path):
    photos = _photos()
    placed = {f"{'train' if i < 14 else 'val'}/{'ab'[i % 2]}/p{i:02d}.jpg": p
              for i, p in enumerate(photos)}
    w, h = photos[2].size
    placed |= {
        "val/a/leak_resized.png": photos[0].resize((150, 150), Image.BICUBIC),  # train/a/p00
        "train/b/relabelled_q70.jpg": _reencoded(photos[4], 70),  # train/a/p04, other class
        "train/b/cropped.png": photos[3].crop((4, 3, w - 4, h - 3)),  # train/b/p03, same class
    }
    bundle = _check(_folder(tmp_path / "data", placed))
    found = bundle.report.near_duplicates
    groups = {frozenset(Path(i["path"]).name for i in g["items"]): g["kinds"]
              for g in found["groups"]}
    assert groups == {
        frozenset({"p00.jpg", "leak_resized.png"}): ["cross_split"],
        frozenset({"p04.jpg", "relabelled_q70.jpg"}): ["conflicting_labels"],
        frozenset({"p03.jpg", "cropped.png"}): ["within_split"],
    }
    summary = found["summary"]
    assert summary["held_out_with_train_copy"] == {"val": 1} and summary["images"] == 23
    assert summary["max_distance"] == 10 and "pHash" in summary["method"]
    assert len(bundle.train) == 16 and len(bundle.val) == 7  # reported, nothing removed
    line = bundle.report.format()
    assert "1 image in val has near-copies in train" in line
    assert "1 group of near-copies with different labels" in line


def test_distinct_photos_are_not_flagged(tmp_path):
    photos = _photos()
    placed = {f"{'ab'[i % 2]}/p{i:02d}.jpg": p for i, p in enumerate(photos)}
    for i, p in enumerate(photos[:10]):  # quadrants are other images, not copies
        w, h = p.size
        placed[f"{'ba'[i % 2]}/q{i:02d}.jpg"] = p.crop((0, 0, w // 2, h // 2))
    bundle = _check(_folder(tmp_path / "data", placed))
    assert bundle.report.near_duplicates["groups"] == []
    assert bundle.report.near_duplicates["summary"]["images"] == 30
    assert "near-duplicates" not in bundle.report.format()


def test_hamming_pairs_agree_with_counting_bits_one_pair_at_a_time():
    rng = np.random.default_rng(0)
    values = [int(v) for v in rng.integers(0, 2**63, 300)]
    values += [v ^ (1 << int(b)) for v, b in zip(values[:50], rng.integers(0, 63, 50), strict=True)]
    hashes = [f"{v:016x}" for v in values]
    fast = hamming_pairs(hashes, 12, block=64)
    slow = [(i, j, bin(values[i] ^ values[j]).count("1")) for i in range(len(values))
            for j in range(i + 1, len(values)) if bin(values[i] ^ values[j]).count("1") <= 12]
    assert sorted(fast) == sorted(slow) and len(fast) >= 50


def test_groups_gather_copies_of_one_image_without_chaining_look_alikes():
    rows = [("train", "a"), ("val", "b"), ("test", "a"), ("train", "a"), ("train", "a")]
    items = [{"path": f"f{i}", "split": s, "label": c} for i, (s, c) in enumerate(rows)]
    base = 0x0F0F0F0F0F0F0F0F
    # f1 and f2 are 3 and 4 bits from f0; f3 is 3 bits from f1 but 6 from f0: a chain
    hashes = [base, base ^ 0b111, base ^ 0b1111000, base ^ 0b111111, None]
    found = find_near_duplicates(items, [None if h is None else f"{h:016x}" for h in hashes],
                                 max_distance=4)
    (group,) = found["groups"]
    assert [i["path"] for i in group["items"]] == ["f0", "f1", "f2"]
    assert group["kinds"] == ["conflicting_labels", "cross_split"]
    assert found["summary"]["images"] == 4  # the unhashed image is left out


def test_flipped_labels_of_real_digits_rank_first():
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.flatnonzero(digits.target < 4)[:320]
    x, y = digits.data[keep], digits.target[keep].copy()
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(y), 8, replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, 4, 8)) % 4
    crossed = cross_fit_linear_head(x, y, 4, seed=0)
    items = [{"path": f"digit{i}.png", "split": "train"} for i in range(len(y))]
    found = find_label_issues(y, crossed.probabilities, items, ["0", "1", "2", "3"])
    top = {int(i["path"][5:-4]) for i in found["items"][:8]}
    assert len(top & set(flipped.tolist())) >= 7, (sorted(top), sorted(flipped))
    first = found["items"][0]
    assert first["rank"] == 1 and first["suggested"] != first["label"]
    assert first["p_given"] < 0.5 and found["summary"]["flagged"] >= 7


# --------------------------------------------------------------------------- a whole run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small run on real photos: dark and bright classes, a resized copy of a training photo
    in val, and one bright photo filed under dark."""
    root = tmp_path_factory.mktemp("mistakes")
    photos = [p.resize((64, 64), Image.BICUBIC) for p in _photos()]

    def tone(p, bright):
        a = np.asarray(p, np.float32) * 0.3 + (170 if bright else 0)
        return Image.fromarray(a.clip(0, 255).astype(np.uint8))

    placed = {}
    for i, p in enumerate(photos):
        bright = i >= 10
        split = "val" if i % 10 >= 7 else "train"
        placed[f"{split}/{'bright' if bright else 'dark'}/p{i:02d}.png"] = tone(p, bright)
    for i, p in enumerate(photos[:12]):  # quadrants as more (distinct) images
        w, h = p.size
        bright = i % 2 == 1
        q = tone(p.crop((w // 2, h // 2, w, h)).resize((64, 64)), bright)
        placed[f"train/{'bright' if bright else 'dark'}/q{i:02d}.png"] = q
    placed["train/dark/mislabelled.png"] = placed.pop("train/bright/p15.png")
    placed["val/dark/leak.png"] = placed["train/dark/p01.png"].resize((48, 48), Image.BICUBIC)
    data = _folder(root / "data", placed)
    out = root / "run"
    result = CliRunner().invoke(cli, [
        "finetune", "--backbone", "resnet18", "--weights", "none", "--image-size", "32",
        "--batch-size", "16", "--data", str(data), "--epochs", "2", "--set",
        "augment.preset=none", "--set", "train.verbose=0", "--output", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output, data


def test_a_run_reports_near_copies_and_doubtful_labels_and_changes_nothing(run):
    out, log, data = run
    report = json.loads((out / "data_report.json").read_text())
    near, labels = report["near_duplicates"], report["label_issues"]
    leak = [g for g in near["groups"] if "cross_split" in g["kinds"]]
    assert [sorted(Path(i["path"]).name for i in g["items"]) for g in leak] == [
        ["leak.png", "p01.png"]]
    assert labels["summary"]["images"] == 33 and "cleanlab" in labels["summary"]["method"]
    flagged = [Path(i["path"]).name for i in labels["items"]]
    assert "mislabelled.png" in flagged[:3], flagged
    item = labels["items"][flagged.index("mislabelled.png")]
    assert item["label"] == "dark" and item["suggested"] == "bright" and item["split"] == "train"
    assert re.search(r"near-duplicates \(pHash within 10 bits\): 1 image in val has", log)
    assert re.search(r"label check: \d+ of 33 labelled images may be mislabelled", log)
    assert (data / "train" / "dark" / "mislabelled.png").exists()  # nothing moved
    assert report["counts"]["val"]["dark"] == 4 and report["counts"]["train"]["dark"] == 14


def _section(page: str, title: str) -> str:
    start = page.index(f"<h2>{title}</h2>")
    end = page.find("<h2>", start + 4)
    return page[start:end]


def test_the_report_shows_both_with_thumbnails(run):
    out, _, _ = run
    page = (out / "report.html").read_text()
    near = _section(page, "Near-duplicate images")
    assert "leak.png" in near and "Near-copies across splits (train with val/test is a leak" in near
    assert "1 group of near-copies (2 of 33 images)" in near
    assert near.count('src="data:image/png;base64,') >= 2
    labels = _section(page, "Possible label errors")
    assert "mislabelled.png" in labels and "looks like" in labels
    assert labels.count('src="data:image/png;base64,') >= 1
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings.index("Data") < headings.index("Near-duplicate images") < headings.index(
        "Possible label errors") < headings.index("Resolved recipe")


#: Counts, after load, the thumbnails that decoded in each new section.
PROBE = """<script>addEventListener('load', () => {
  const out = {};
  for (const h of document.querySelectorAll('h2')) {
    let n = 0, ok = 0;
    for (let el = h.nextElementSibling; el && el.tagName !== 'H2'; el = el.nextElementSibling)
      for (const img of el.querySelectorAll('img')) { n++; ok += img.naturalWidth > 0; }
    out[h.textContent] = [n, ok];
  }
  const pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_the_new_sections_render_in_a_real_browser(run, tmp_path):
    out, _, _ = run
    page = (out / "report.html").read_text()
    start, end = page.index("<h2>Near-duplicate images</h2>"), page.index("<h2>Resolved recipe")
    head = page[: page.index("<body>") + len("<body>")]
    only = tmp_path / "mistakes.html"  # the two sections alone, for the probe and the picture
    only.write_text(head + page[start:end] + PROBE + "</body></html>")
    browser = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--virtual-time-budget=5000", "--dump-dom", only.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.+?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-1000:]
    seen = json.loads(found.group(1).replace("&quot;", '"'))
    for section in ("Near-duplicate images", "Possible label errors"):
        shown, decoded = seen[section]
        assert shown >= 1 and decoded == shown, (section, seen)
    shot = tmp_path / "mistakes.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1100,1400", only.as_uri()],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # text and thumbnails drawn, not a blank page
