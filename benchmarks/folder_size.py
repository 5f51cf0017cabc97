"""Folder size: the data check and the frozen path on 2,000 and 20,000 images, per image.

Fashion-MNIST's training images (Debian's ``dataset-fashion-mnist``) written as 128 px JPEGs in a
folder of class subfolders, as users have them: every other image grey (one channel), the rest
colour (the grey image tinted by a random colour per image, three channels); quality 90, no
EXIF. The first ``N / 10`` images of each class, for each ``--sizes`` N. Then, each in its own
process, on the same machine, one after another:

* **scan**: ``tlkit.data.load_data`` + ``check_data``, timed inside the process (the data check every run starts with:
  every file opened and decoded once, hashed, converted only if TensorFlow's decoder would
  misread it), into a fresh run folder;
* **frozen path**: ``tlkit finetune --backbone efficientnet_lite0 --freeze all --image-size 128
  --data DIR`` (Google's ImageNet weights; the defaults otherwise: the regime recipe for the
  size, a fifth held out for validation, mirrored features, the head fitted by a solver, the
  calibration and the report), whole;
* **floor** (``--floor-size``, 2,000 by default): one process that reads the folder's images
  with PIL and runs the same backbone's ``predict`` over them and their mirrors: the least the
  features can cost per image.

For each: wall seconds, seconds per image, peak resident memory (the process's own high-water
mark, from ``wait4``), bytes it wrote (``/proc/PID/io``, polled every 0.2 s, so the last 0.2 s
may be missing) and what it left on disk. The features' own time comes from the line tlkit
prints ("computed the features of ... in Xs"). "Copies" counts files the data check wrote
under ``data_cache/converted/``: a JPEG TensorFlow decodes itself should never be copied.

    python benchmarks/folder_size.py [--sizes 2000,20000] [--floor-size 2000]
        [--workdir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

NAME = "folder_size"
QUICK = {"sizes": "100,200", "floor_size": 100}
SIDE = 128


def write_folder(root: Path, n: int) -> tuple[Path, float]:
    """The folder of ``n`` JPEGs (``n / 10`` per class), written once; its size in MB."""
    import numpy as np
    from defaults_suite import FMNIST_NAMES, _fashion_mnist
    from PIL import Image

    folder = root / f"fmnist-{n}"
    if not (folder / ".complete").exists():
        (x, y), _ = _fashion_mnist()
        rng = np.random.default_rng(0)
        for c in range(10):
            out = folder / FMNIST_NAMES[c]
            out.mkdir(parents=True, exist_ok=True)
            for k, i in enumerate(np.flatnonzero(y == c)[: n // 10]):
                image = Image.fromarray(x[i]).resize((SIDE, SIDE), Image.BICUBIC)
                if k % 2:  # colour: the grey image tinted
                    tint = rng.uniform(0.4, 1.0, 3)
                    rgb = np.asarray(image, np.float32)[..., None] * tint
                    image = Image.fromarray(rgb.round().astype(np.uint8), "RGB")
                image.save(out / f"{i:05d}.jpg", quality=90)
        (folder / ".complete").write_text("ok")
    size = sum(p.stat().st_size for p in folder.rglob("*.jpg")) / 2**20
    return folder, size


def measure(command: list[str], log: Path) -> dict:
    """Run ``command``: wall seconds, peak RSS (MB), bytes written (MB) and its output lines
    with the second each arrived."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    written = [0]

    def poll():
        while proc.returncode is None:
            try:
                text = Path(f"/proc/{proc.pid}/io").read_text()
                value = int(re.search(r"write_bytes: (\d+)", text).group(1))
                written[0] = max(written[0], value)
            except (OSError, AttributeError):
                return
            time.sleep(0.2)

    threading.Thread(target=poll, daemon=True).start()
    lines = [(time.perf_counter() - start, line.rstrip()) for line in proc.stdout]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    with open(log, "a") as fh:
        fh.write(f"\n===== {' '.join(command)}\n" + "\n".join(t for _, t in lines) + "\n")
    if proc.returncode:
        raise SystemExit(f"{' '.join(command[:4])}... exited {proc.returncode}: see {log}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024,
            "written_mb": written[0] / 2**20, "lines": lines}


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def copies(folder: Path) -> int:
    converted = folder / "data_cache" / "converted"
    return sum(1 for p in converted.rglob("*") if p.is_file()) if converted.exists() else 0


# --------------------------------------------------------------------------- children


def child_scan(data: str, run_dir: str) -> None:
    from tlkit.data import load_data
    from tlkit.data.doctor import check_data

    started = time.perf_counter()
    bundle = load_data(data)
    loaded = time.perf_counter()
    report = check_data(bundle, run_dir=run_dir, progress=False)
    done = time.perf_counter()
    counted = sum(len(s) for s in (bundle.train, bundle.val, bundle.test))
    print(json.dumps({"list_s": loaded - started, "check_s": done - loaded, "images": counted,
                      "skipped": len(getattr(report, "skipped", []) or [])}), flush=True)


def child_floor(data: str) -> None:
    import numpy as np
    from PIL import Image

    from tlkit.models import build_model

    paths = sorted(Path(data).glob("*/*.jpg"))
    started = time.perf_counter()
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    read = time.perf_counter()
    base = build_model("efficientnet_lite0", include_top=False, weights="imagenet",
                       pooling="avg", input_shape=(SIDE, SIDE, 3))
    built = time.perf_counter()
    for view in (images, images[:, :, ::-1]):
        base.predict(view.astype(np.float32), batch_size=64, verbose=0)
    done = time.perf_counter()
    print(json.dumps({"read_s": read - started, "build_s": built - read,
                      "forward_s": done - built, "images": len(paths)}), flush=True)


# --------------------------------------------------------------------------- parent


def features_line(lines) -> tuple[float, int]:
    """Seconds and feature rows of tlkit's "computed the features of ..." line."""
    for _, text in lines:
        if text.startswith("feature cache: computed"):
            counts = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) (?:train|val)", text)]
            seconds = float(re.search(r"once in ([\d.]+)s", text).group(1))
            return seconds, sum(counts)
    raise SystemExit("tlkit printed no 'feature cache: computed' line: not the fast path?")


def head_seconds(lines) -> float | None:
    """Seconds of tlkit's "head fitted on ...; Xs" line (the solver and its cross-validation)."""
    for _, text in lines:
        if text.startswith("head fitted on"):
            found = re.search(r"; ([\d.]+)s$", text)
            return float(found.group(1)) if found else None
    return None


def one_size(n: int, workdir: Path, floor_size: int) -> tuple[list, dict]:
    folder, folder_mb = write_folder(workdir / "data", n)
    log = workdir / "runs.log"
    scan_dir = workdir / f"scan-{n}"
    shutil.rmtree(scan_dir, ignore_errors=True)
    scan = measure([sys.executable, __file__, "--child", "scan", str(folder), str(scan_dir)], log)
    scanned = json.loads(scan["lines"][-1][1])
    run_dir = workdir / f"run-{n}"
    command = ["tlkit", "finetune", "--backbone", "efficientnet_lite0", "--freeze", "all",
               "--image-size", str(SIDE), "--data", str(folder), "--output", str(run_dir),
               "--overwrite", "--seed", "0"]
    frozen = measure(command, log)
    feat_s, rows = features_line(frozen["lines"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = {"images": n, "folder_mb": folder_mb,
           "scan_s": scan["seconds"], "check_s": scanned["list_s"] + scanned["check_s"],
           "scan_ms_per_image": 1000 * (scanned["list_s"] + scanned["check_s"]) / n,
           "scan_rss_mb": scan["peak_rss_mb"], "scan_written_mb": scan["written_mb"],
           "copies": copies(scan_dir) + copies(run_dir),
           "frozen_s": frozen["seconds"], "features_s": feat_s, "feature_rows": rows,
           "head_s": head_seconds(frozen["lines"]),
           "features_ms_per_image": 1000 * feat_s / rows,
           "frozen_ms_per_image": 1000 * frozen["seconds"] / n,
           "frozen_rss_mb": frozen["peak_rss_mb"], "frozen_written_mb": frozen["written_mb"],
           "run_dir_mb": disk_mb(run_dir),
           "feature_cache_mb": disk_mb(run_dir / "feature_cache"),
           "val_top1": metrics["val"]["top1"]}
    if n == floor_size:
        floor = measure([sys.executable, __file__, "--child", "floor", str(folder)], log)
        got = json.loads(floor["lines"][-1][1])
        row |= {"floor_forward_ms_per_image": 1000 * got["forward_s"] / (2 * n),
                "floor_read_ms_per_image": 1000 * got["read_s"] / n,
                "floor_rss_mb": floor["peak_rss_mb"]}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
          flush=True)
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--floor-size", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tlkit-folder-size"))
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = [one_size(int(n), args.workdir, args.floor_size) for n in args.sizes.split(",")]
    table = {
        "title": f"Fashion-MNIST as {SIDE} px JPEGs (half grey, half colour): the data check and "
                 "`tlkit finetune --backbone efficientnet_lite0 --freeze all` per folder size",
        "columns": ["images", "folder MB", "scan s", "scan ms/image", "scan peak RSS MB",
                    "copies", "frozen run s", "features s", "features ms/row", "head fit s",
                    "frozen ms/image (whole run)", "frozen peak RSS MB", "frozen wrote MB",
                    "run dir MB", "val top-1"],
        "rows": [[r["images"], r["folder_mb"], r["check_s"], r["scan_ms_per_image"],
                  r["scan_rss_mb"], r["copies"], r["frozen_s"], r["features_s"],
                  r["features_ms_per_image"], r["head_s"], r["frozen_ms_per_image"], r["frozen_rss_mb"],
                  r["frozen_written_mb"], r["run_dir_mb"], r["val_top1"]] for r in rows],
    }  # fmt: skip
    ratios, notes = [], []
    small, large = rows[0], rows[-1]
    for key, what in (("scan_ms_per_image", "scan"), ("features_ms_per_image", "features")):
        ratio = large[key] / small[key]
        ratios.append({"name": f"{what} time per image, {large['images']:,} / "
                               f"{small['images']:,} images", "value": ratio})
        notes.append(f"Goal {what} time per image flat within 20 % from {small['images']:,} to "
                     f"{large['images']:,}: {'met' if abs(ratio - 1) <= 0.2 else 'not met'} "
                     f"({small[key]:.2f} -> {large[key]:.2f} ms, {ratio:.2f}x).")
    peak = max(large["scan_rss_mb"], large["frozen_rss_mb"])
    notes.append(f"Goal peak memory under 4 GB at {large['images']:,} images: "
                 f"{'met' if peak < 4096 else 'not met'} ({peak:,.0f} MB at most).")
    notes.append(f"Per-image copies written by the data check: {sum(r['copies'] for r in rows)} "
                 "(goal: none for JPEGs TensorFlow decodes itself).")
    floor = [r for r in rows if "floor_forward_ms_per_image" in r]
    for r in floor:
        ratios.append({"name": f"features per row / floor's forward pass per image, "
                               f"{r['images']:,} images",
                       "value": r["features_ms_per_image"] / r["floor_forward_ms_per_image"]})
        notes.append(f"Floor at {r['images']:,} images: PIL read {r['floor_read_ms_per_image']:.2f} "
                     f"ms/image, forward pass {r['floor_forward_ms_per_image']:.2f} ms per image "
                     f"or mirror, peak RSS {r['floor_rss_mb']:,.0f} MB (all images in memory).")
    doc = run.finish([table], ratios, notes)
    return doc


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        if sys.argv[2] == "scan":
            child_scan(sys.argv[3], sys.argv[4])
        else:
            child_floor(sys.argv[3])
    else:
        main()
