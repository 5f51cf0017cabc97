"""Transfer study: does tlkit's default turn a small folder into a good classifier?

On Fashion-MNIST (Debian's ``dataset-fashion-mnist`` package, read with tlkit's ``idx:``
source), in one run on one machine:

1. **Pretrain** a ResNet-18 at 32x32 from scratch on classes 0-4 (``tlkit pretrain``'s recipe,
   ``--pretrain-per-class`` images per class, a fifth of them for validation).
2. **Transfer** it to classes 5-9 with 10, 20, 100 and 1,000 labelled images per class (a fifth
   held out for validation, as a user's folder would be split), several seeds (each seed is a
   different draw of the images and a different initialisation), by each method:

   * ``scratch``: no pretrained weights (``--weights none``; tlkit then trains everything);
   * ``all``, ``partial (conv3)``, ``none``: fixed freeze policies (``--freeze all``,
     ``--freeze conv3``, ``--freeze none``) as tlkit runs them: the new head fitted on the
     frozen features first (the linear probe), then the policy's layers train;
   * ``none, no probe``: ``--freeze none`` with ``freeze.linear_probe: false``: fine-tuning
     from a random head, as tlkit did before;
   * ``auto``: nothing but ``--weights PRETRAINED_RUN``: the freeze search, the probe, the rest;
   * ``guide phase 1`` / ``guide phase 2``: the Keras transfer-learning guide
     (https://keras.io/guides/transfer_learning/) on the same network, weights and images: a
     frozen base called with ``training=False``, ``GlobalAveragePooling -> Dropout(0.2) ->
     Dense``, RandomFlip + RandomRotation(0.1), Adam at 1e-3 for ``--guide-epochs`` epochs;
     then the whole base unfrozen (BatchNorm still in inference mode) at 1e-5 for
     ``--guide-finetune-epochs`` more.

   Every tlkit method is a real ``tlkit.finetune`` run on the regime recipe a bare command
   picks for that many images (``tlkit.recipes.regime_for``), changed only as listed.
3. **Score** every model on all 5,000 official test images of classes 5-9.

Results go to benchmarks/results/transfer_study.json, written after every cell, so an
interrupted study continues where it stopped; ``--render`` writes docs/transfer-study.md and
docs/transfer-study.png from it.

    python benchmarks/transfer_study.py [--sizes 10 20 100 1000] [--seeds 3]
        [--large-seeds 1] [--large-epochs 6] [--pretrain-per-class 600] [--workdir DIR]
        [--quick] [--render]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import RESULTS, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULT = RESULTS / "transfer_study.json"
DOC, PLOT = ROOT / "docs" / "transfer-study.md", ROOT / "docs" / "transfer-study.png"
SOURCE_CLASSES, TARGET_CLASSES = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
FIXED = ("all", "partial (conv3)", "none")
TLKIT_METHODS = ("scratch", *FIXED, "none, no probe", "auto")
GUIDE = ("guide phase 1", "guide phase 2")
METHODS = (*TLKIT_METHODS, *GUIDE)


def fashion_mnist_dir() -> str:
    for folder in (os.environ.get("TLKIT_FASHION_MNIST_DIR"), "/usr/share/datasets/fashion-mnist"):
        if folder and Path(folder, "train-images-idx3-ubyte.gz").exists():
            return folder
    try:
        listing = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True,
                                 text=True, check=True).stdout.split()
        return str(Path([p for p in listing if p.endswith("train-images-idx3-ubyte.gz")][0]).parent)
    except (OSError, subprocess.CalledProcessError, IndexError):
        sys.exit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist "
                 "(or set TLKIT_FASHION_MNIST_DIR to a folder with its four .gz files)")


def data_section(folder: str, classes, per_class: int) -> dict:
    return {"source": f"idx:{folder}", "classes": [str(c) for c in classes],
            "max_per_class": per_class, "val_split": 0.2, "test_split": 0.1}


def run_recipe(data: dict, name: str, workdir: Path, log_path: Path):
    """A real tlkit.finetune run of ``data`` (a recipe mapping); returns its metrics."""
    from tlkit.finetune import finetune
    from tlkit.recipes import validate_recipe

    recipe = validate_recipe({**data, "name": name, "output": {"dir": str(workdir / name)}})
    with open(log_path, "a") as log:
        log.write(f"\n===== {name}\n")
        result = finetune(recipe, overwrite=True, progress=False,
                          log=lambda m: (log.write(m + "\n"), log.flush()))
    return result.metrics


def method_recipe(method: str, base: dict, pretrained: str) -> dict:
    from tlkit.recipes import deep_merge

    weights = {"source": "none" if method == "scratch" else pretrained}
    freeze = {
        "scratch": {"policy": "auto"},
        "all": {"policy": "all"},
        "partial (conv3)": {"policy": "conv3"},
        "none": {"policy": "none"},
        "none, no probe": {"policy": "none", "linear_probe": False},
        "auto": {},
    }[method]
    return deep_merge(base, {"weights": weights, "freeze": freeze})


def guide_run(pretrained: str, data: dict, seed: int, epochs: int, ft_epochs: int, lr: float):
    """The Keras guide's two phases on tlkit's ResNet-18 with the pretrained weights."""
    import keras
    import numpy as np

    from tlkit.data import prepare_data
    from tlkit.data.config import DataConfig
    from tlkit.data.pipeline import iterate_images
    from tlkit.models.heads import HeadConfig, build_transfer_model, feature_extractor
    from tlkit.models.registry import get_model_info
    from tlkit.weights import load_backbone_weights

    keras.utils.set_random_seed(seed)
    bundle = prepare_data(DataConfig(**data), seed=seed, progress=False)

    def arrays(split):
        xs, ys = zip(*iterate_images(split, 32, 256), strict=True)
        return np.concatenate(xs), keras.utils.to_categorical(np.concatenate(ys), 5)

    (xt, yt), (xv, yv), (xs, ys) = arrays(bundle.train), arrays(bundle.val), arrays(bundle.test)
    info = get_model_info("resnet18")
    full = build_transfer_model(info, 5, image_size=32, head=HeadConfig(type="avg"))
    load_backbone_weights(full, pretrained, official=None, model_id="resnet18",
                          include_top=False, head_layers={"head_dropout", "predictions"})
    base = feature_extractor(full)  # image -> preprocessing -> ResNet-18 -> pooled
    base.trainable = False
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.RandomRotation(0.1)(x)
    x = base(x, training=False)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))
    out, started = {}, time.perf_counter()
    model.compile(keras.optimizers.Adam(lr), "categorical_crossentropy", metrics=["accuracy"])
    model.fit(xt, yt, validation_data=(xv, yv), epochs=epochs, batch_size=32, verbose=0)
    out["guide phase 1"] = (model.evaluate(xs, ys, verbose=0, batch_size=256)[1],
                            time.perf_counter() - started)
    base.trainable = True
    model.compile(keras.optimizers.Adam(1e-5), "categorical_crossentropy", metrics=["accuracy"])
    model.fit(xt, yt, validation_data=(xv, yv), epochs=ft_epochs, batch_size=32, verbose=0)
    out["guide phase 2"] = (model.evaluate(xs, ys, verbose=0, batch_size=256)[1],
                            time.perf_counter() - started)
    return out


def load_results() -> dict:
    return json.loads(RESULT.read_text()) if RESULT.exists() else {}


def save_results(doc: dict) -> None:
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULT.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(RESULT)


def study(args) -> None:
    from tlkit.recipes import read_recipe_source, regime_for

    folder = fashion_mnist_dir()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "runs.log"
    doc = load_results()
    hidden = ("render", "workdir", "allow_dirty")  # not settings: a run with them continues
    settings = {k: v for k, v in vars(args).items() if k not in hidden}
    if doc.get("settings") != settings:
        doc = {"settings": settings, "cells": {}}
    elif doc.get("kept_from_first_pass"):
        print(f"note: {doc['kept_from_first_pass']}", flush=True)
    doc["machine"] = machine_info()
    doc["command"] = "python benchmarks/transfer_study.py " + " ".join(sys.argv[1:])
    common = {"model": {"backbone": "resnet18", "image_size": 32}}

    pretrained = workdir / "pretrain"
    if "pretrain" not in doc:
        base = read_recipe_source("pretrain")
        base.update(common, data=data_section(folder, SOURCE_CLASSES, args.pretrain_per_class))
        base["train"] = {**base.get("train", {}), "epochs": args.pretrain_epochs}
        started = time.perf_counter()
        m = run_recipe(base, "pretrain", workdir, log_path)
        doc["pretrain"] = {"val_top1": m["val"]["top1"], "train_images": m["train_images"],
                           "epochs": m["epochs"], "seconds": time.perf_counter() - started}
        save_results(doc)
    print(f"pretrained: {doc['pretrain']}", flush=True)

    for n in args.sizes:
        seeds = args.seeds if n < 1000 else args.large_seeds
        train_per_class = n - max(1, round(0.2 * n))
        regime = regime_for(train_per_class)
        for seed in range(seeds):
            base = read_recipe_source(regime)
            base.update(common, seed=seed, data=data_section(folder, TARGET_CLASSES, n))
            if n >= 1000:
                base["train"] = {**base.get("train", {}), "epochs": args.large_epochs}
            epochs = base["train"]["epochs"]
            for method in METHODS:
                key = f"{n}/{seed}/{method}"
                if key in doc["cells"]:
                    continue
                if method in GUIDE:
                    g_epochs = (args.guide_epochs, args.guide_finetune_epochs)
                    if n >= 1000:
                        g_epochs = (max(1, epochs * 2 // 3), max(1, epochs // 3))
                    results = guide_run(str(pretrained / "model.keras"), base["data"], seed, *g_epochs, 1e-3)
                    for name, (acc, seconds) in results.items():
                        doc["cells"][f"{n}/{seed}/{name}"] = {
                            "test_top1": acc, "seconds": seconds, "epochs": list(g_epochs)}
                else:
                    recipe = method_recipe(method, base, str(pretrained))
                    name = f"t{n}-s{seed}-{method.replace(' ', '').replace(',', '-').replace('(', '').replace(')', '')}"
                    started = time.perf_counter()
                    m = run_recipe(recipe, name, workdir, log_path)
                    search = m.get("freeze_search") or {}
                    doc["cells"][key] = {
                        "test_top1": m["test"]["top1"], "val_top1": m["val"]["top1"],
                        "seconds": time.perf_counter() - started, "regime": regime,
                        "epochs": m["epochs"], "chosen": search.get("chosen"),
                        "search_seconds": search.get("seconds"), "stages": m.get("stages"),
                    }
                save_results(doc)
                cell = doc["cells"][key]
                print(f"{key:<28} test {cell['test_top1']:.4f}  {cell['seconds']:6.0f}s"
                      f"{'  chose ' + cell['chosen'] if cell.get('chosen') else ''}", flush=True)
    render(doc)


def summarise(doc: dict) -> dict:
    """``{size: {method: (mean, min, max, seeds, mean seconds)}}``."""
    out: dict[int, dict] = {}
    for key, cell in doc["cells"].items():
        n, _, method = key.split("/", 2)
        out.setdefault(int(n), {}).setdefault(method, []).append(cell)
    table = {}
    for n, methods in sorted(out.items()):
        table[n] = {}
        for method, cells in methods.items():
            accs = [c["test_top1"] for c in cells]
            table[n][method] = (statistics.mean(accs), min(accs), max(accs), len(accs),
                                statistics.mean(c["seconds"] for c in cells))
    return table


def render(doc: dict | None = None) -> None:
    """docs/transfer-study.md and its plot from the results file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from render import machine_line

    doc = doc or load_results()
    table = summarise(doc)
    sizes = sorted(table)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
        points = [(n, table[n][method][0]) for n in sizes if method in table[n]]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=method,
                    linewidth=2.5 if method == "auto" else 1.2)
    ax.set_xscale("log")
    ax.set_xlabel("labelled images per class (a fifth held out for validation)")
    ax.set_ylabel("top-1 on the 5,000 test images")
    ax.set_title("ResNet-18 32x32, Fashion-MNIST classes 0-4 -> 5-9")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)

    header = "| method | " + " | ".join(f"{n} / class" for n in sizes) + " |"
    lines = [header, "|---|" + "---|" * len(sizes)]
    for method in METHODS:
        cells = []
        for n in sizes:
            if method not in table[n]:
                cells.append("-")
                continue
            mean, lo, hi, k, _ = table[n][method]
            spread = f" ({lo:.3f}-{hi:.3f})" if k > 1 else ""
            cells.append(f"{mean:.3f}{spread}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    times = ["| method | " + " | ".join(f"{n} / class" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for method in METHODS:
        row = [f"{table[n][method][4]:.0f} s" if method in table[n] else "-" for n in sizes]
        times.append(f"| {method} | " + " | ".join(row) + " |")
    checks = []
    for n in sizes:
        t = table[n]
        if "auto" not in t:
            continue
        auto = t["auto"][0]
        best_fixed = max((t[m][0], m) for m in FIXED if m in t)
        guide = max((t[m][0], m) for m in GUIDE if m in t) if any(m in t for m in GUIDE) else None
        line = (f"- {n} per class: auto {auto:.3f}; best fixed policy {best_fixed[1]} "
                f"{best_fixed[0]:.3f} ({100 * (auto - best_fixed[0]):+.1f} pts); scratch "
                f"{t['scratch'][0]:.3f} ({100 * (auto - t['scratch'][0]):+.1f} pts)")
        if guide:
            line += f"; guide's better phase ({guide[1]}) {guide[0]:.3f} ({100 * (auto - guide[0]):+.1f} pts)"
        chosen = [c.get("chosen") for k, c in doc["cells"].items()
                  if k.startswith(f"{n}/") and k.endswith("/auto")]
        line += f"; the search chose {', '.join(str(c) for c in chosen)}"
        checks.append(line)
    s = doc["settings"]
    pre = doc.get("pretrain", {})
    seeds = f"{s['seeds']} seeds (1,000 per class: {s['large_seeds']}, {s['large_epochs']} epochs)"
    text = f"""# Transfer studies: ImageNet EfficientNet-Lite0 on small folders; a ResNet-18 on Fashion-MNIST

## The proxy study: Fashion-MNIST, ResNet-18 at 32x32

Generated by `{doc.get('command', 'python benchmarks/transfer_study.py')}` (then
`python benchmarks/transfer_study.py --render`); measured {doc['machine'].get('date', '?')[:16]
.replace('T', ' ')} UTC on a {machine_line(doc['machine'])}.

A ResNet-18 is pretrained from scratch on Fashion-MNIST classes 0-4 (T-shirt, trouser,
pullover, dress, coat; {pre.get('train_images', '?')} training images, {pre.get('epochs', '?')}
epochs, val top-1 {pre.get('val_top1', 0):.3f}, {pre.get('seconds', 0) / 60:.0f} min), then
transferred to classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) with N labelled images per
class, of which a fifth is the run's validation split. Every number is top-1 on all 5,000
official test images of classes 5-9, the mean over {seeds} with the range in brackets; each
seed draws other images and another initialisation. The methods and how each is run are in
the docstring of `benchmarks/transfer_study.py`; every tlkit method is a real
`tlkit.finetune` run on the regime recipe a bare command would pick for that data size.

![accuracy against images per class](transfer-study.png)

{chr(10).join(lines)}

{doc.get('kept_from_first_pass', '')}

What the issue asked `auto` to show, as measured:

{chr(10).join(checks)}

Wall time per run (training, the freeze search for `auto`, the reports and scoring the 5,000
test images; a shared 2-core machine, so compare within a column):

{chr(10).join(times)}
"""
    if DOC.exists():  # the Lite0 section belongs to benchmarks/defaults_suite.py: keep it
        previous = DOC.read_text()
        begin, end = "<!-- imagenet-study:begin -->", "<!-- imagenet-study:end -->"
        if begin in previous and end in previous:
            block = previous[previous.index(begin): previous.index(end) + len(end)]
            title, _, rest = text.partition("\n")
            text = f"{title}\n\n{block}\n{rest}"
    DOC.write_text(text)
    # The shared benchmarks page (scripts/make_benchmarks_doc.py) reads these two keys.
    doc["benchmark"] = "transfer_study"
    doc["tables"] = [
        {"title": "Top-1 on the 5,000 test images (mean over seeds)",
         "columns": ["method", *(f"{n} / class" for n in sizes)],
         "rows": [[m, *(round(table[n][m][0], 4) if m in table[n] else None for n in sizes)]
                  for m in METHODS]},
        {"title": "Seconds per run (mean)",
         "columns": ["method", *(f"{n} / class" for n in sizes)],
         "rows": [[m, *(round(table[n][m][4]) if m in table[n] else None for n in sizes)]
                  for m in METHODS]},
    ]
    doc["notes"] = [line[2:] for line in checks]
    save_results(doc)
    print(f"wrote {DOC} and {PLOT}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 100, 1000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--large-seeds", type=int, default=1)
    parser.add_argument("--large-epochs", type=int, default=6)
    parser.add_argument("--pretrain-per-class", type=int, default=600)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--guide-epochs", type=int, default=20)
    parser.add_argument("--guide-finetune-epochs", type=int, default=10)
    parser.add_argument("--workdir", default=str(Path.home() / ".cache" / "tlkit-transfer-study"))
    parser.add_argument("--render", action="store_true", help="only write the docs page")
    harness.add_allow_dirty(parser)
    args = parser.parse_args(argv)
    if args.render:
        render()
    else:
        harness.refuse_dirty(Path(__file__).name, args.allow_dirty)  # before any cell runs
        study(args)


if __name__ == "__main__":
    main()
