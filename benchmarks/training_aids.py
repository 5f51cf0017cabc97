"""What the training aids users of fastai and timm reach for do on tlkit's small-data cases.

On the same draws as the small-data suite (``benchmarks/defaults_suite.py``: Google's ImageNet
EfficientNet-Lite0 at 128 px, N training images per class, a fifth held out for validation,
scored on test images no run saw), with the whole network fine-tuned (``--freeze none``, the
policy where a learning rate, a weight average and augmentation all act: at 20 images per
class tlkit's defaults fit a frozen backbone's head with a solver, where none of them does):

* **learning rate**: a small sweep of ``--lr`` (each a real ``tlkit finetune``) on seeds below
  ``--sweep-seeds``; and, on the same seeds, ``--lr suggested``: the run first does the range test
  (``tlkit lr-find``'s) and trains at its suggestion. The question: does the suggestion land
  within a factor of three of the sweep's best rate?
* **weight averaging**: ``--set train.ema.enabled=true`` against the same run without;
* **augmentation policies**: ``--set augment.preset=randaugment`` and ``trivialaugment``
  against the regime's ``light`` (mirror + random crop) and ``none``.

Every arm is the real command in its own process. Results go to
``benchmarks/results/training_aids.json`` after every cell (an interrupted run continues where
it stopped); ``--render`` prints the tables from it.

    python benchmarks/training_aids.py [--tasks fashion-mnist digits] [--n 20] [--seeds 5]
        [--sweep-seeds 3] [--sweep 1e-4 3e-4 1e-3 3e-3] [--workdir DIR] [--render]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from defaults_suite import Backbone, _call, draw  # noqa: E402
from harness import RESULTS, machine_info, write_json  # noqa: E402

RESULT = RESULTS / "training_aids.json"
BASE = "none (lr 0.001)"  # the regime's rate: the sweep's 1e-3 arm is every comparison's base
ARMS = {
    "lr suggested": ["--lr", "suggested"],
    "ema": ["--set", "train.ema.enabled=true"],
    "randaugment": ["--set", "augment.preset=randaugment"],
    "trivialaugment": ["--set", "augment.preset=trivialaugment"],
    "no augmentation": ["--set", "augment.preset=none"],
}


def lr_arm(lr: float) -> str:
    return f"none (lr {lr:g})"


def run_arm(arm: str, flags: list[str], folder: Path, seed: int, size: int, workdir: Path) -> dict:
    backbone = Backbone("lite0", size, workdir)
    out = workdir / "runs" / f"{folder.name}-{arm.replace(' ', '_').replace('(', '').replace(')', '')}"
    command = ["tlkit", "finetune", "--data", str(folder), *backbone.flags(), *backbone.fixed(),
               "--freeze", "none", "--seed", str(seed), "--output", str(out), "--overwrite",
               *flags]
    seconds = _call(command, workdir / "runs.log")
    metrics = json.loads((out / "metrics.json").read_text())
    cell = {"test_top1": metrics["test"]["top1"], "val_top1": metrics["val"]["top1"],
            "seconds": seconds, "epochs": metrics.get("epochs")}
    if metrics.get("lr_find"):
        cell["lr"] = metrics["lr_find"]["lr"]
        cell["suggestions"] = metrics["lr_find"].get("suggestions")
    return cell


def load(path: Path = RESULT) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"cells": {}}


def study(args) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    doc = load(args.results)
    doc["settings"] = {k: v for k, v in vars(args).items()
                       if k not in ("render", "allow_dirty", "results")}
    doc["machine"] = machine_info()
    doc["command"] = "python benchmarks/training_aids.py " + " ".join(sys.argv[1:])
    for seed in range(args.seeds):
        for task in args.tasks:
            folder, _, test, _ = draw("lite0", task, args.n, seed, workdir)
            arms = {lr_arm(lr): ["--lr", f"{lr:g}"] for lr in args.sweep
                    if seed < args.sweep_seeds or math.isclose(lr, 1e-3)}
            arms |= {a: f for a, f in ARMS.items() if a in args.arms
                     and (a != "lr suggested" or seed < args.sweep_seeds)}
            for arm, flags in arms.items():
                key = f"{task}/{args.n}/{seed}/{arm}"
                if key in doc["cells"]:
                    continue
                cell = run_arm(arm, flags, folder, seed, args.image_size, workdir)
                cell["commit"] = (doc["machine"].get("git") or {}).get("commit")
                doc["cells"][key] = cell
                extra = f"  lr {cell['lr']:.2g}" if "lr" in cell else ""
                print(f"{key:<45} test {cell['test_top1']:.4f} {cell['seconds']:5.0f}s{extra}",
                      flush=True)
                write_json(doc, args.results)
    doc["tables"], doc["notes"] = tables(doc)
    write_json(doc, args.results)
    render(doc)


def _cells(doc):
    out: dict = {}
    for key, cell in doc["cells"].items():
        task, n, seed, arm = key.split("/", 3)
        out.setdefault(f"{task} {n}/class", {}).setdefault(arm, {})[int(seed)] = cell
    return out


def _mean_sd(values):
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def tables(doc: dict) -> tuple[list[dict], list[str]]:
    cases = _cells(doc)
    rows, paired_rows, lr_rows, notes = [], [], [], []
    for case, arms in cases.items():
        for arm, by_seed in sorted(arms.items()):
            accs = [c["test_top1"] for c in by_seed.values()]
            mean, sd = _mean_sd(accs)
            rows.append([case, arm, len(accs), round(mean, 4), round(sd, 4),
                         round(statistics.mean(c["seconds"] for c in by_seed.values()))])
        base = arms.get(BASE, {})
        for arm in ("ema", "randaugment", "trivialaugment", "no augmentation", "lr suggested"):
            if arm not in arms:
                continue
            seeds = sorted(set(base) & set(arms[arm]))
            diffs = [arms[arm][s]["test_top1"] - base[s]["test_top1"] for s in seeds]
            mean, sd = _mean_sd(diffs)
            if mean is None:
                continue
            se = sd / math.sqrt(len(diffs)) if len(diffs) > 1 else None
            paired_rows.append([case, f"{arm} - {BASE}", len(diffs), round(100 * mean, 2),
                                round(100 * se, 2) if se is not None else None,
                                sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)])
        sweep = {float(a.split("lr ")[1].rstrip(")")): v for a, v in arms.items()
                 if a.startswith("none (lr ")}
        sweep_seeds = sorted(set.intersection(*(set(v) for v in sweep.values()))) if sweep else []
        found = arms.get("lr suggested", {})
        if sweep_seeds and found:
            means = {lr: statistics.mean(sweep[lr][s]["test_top1"] for s in sweep_seeds)
                     for lr in sweep}
            best = max(means, key=means.get)
            suggested = [found[s]["lr"] for s in sorted(found) if "lr" in found[s]]
            median = statistics.median(suggested)
            ratio = max(median / best, best / median)
            lr_rows.append([case, len(sweep_seeds), f"{best:g}", round(means[best], 4),
                            ", ".join(f"{v:.2g}" for v in suggested), f"{median:.2g}",
                            round(ratio, 2), "yes" if ratio <= 3 else "no"])
    out = [
        {"title": "Test top-1 by arm (EfficientNet-Lite0, ImageNet weights, --freeze none)",
         "columns": ["case", "arm", "seeds", "test top-1", "sd", "seconds"], "rows": rows},
        {"title": "Paired differences on the same draws (points of test top-1)",
         "columns": ["case", "difference", "seeds", "mean", "se", "better", "worse"],
         "rows": paired_rows},
        {"title": "The suggested learning rate against the sweep's best",
         "columns": ["case", "sweep seeds", "best rate (sweep)", "its test top-1",
                     "suggested, per seed", "median", "factor", "within 3x"],
         "rows": lr_rows},
    ]
    return out, notes


def render(doc: dict | None = None) -> None:
    from render import markdown_table

    doc = doc or load()
    for table in tables(doc)[0]:
        print(f"\n{table['title']}\n{markdown_table(table)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["fashion-mnist", "digits"])
    parser.add_argument("--n", type=int, default=20, help="training images per class")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sweep-seeds", type=int, default=3)
    parser.add_argument("--sweep", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3])
    parser.add_argument("--arms", nargs="+", default=[a for a in ARMS if a != "no augmentation"],
                        choices=list(ARMS))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workdir", default=str(Path.home() / ".cache" / "tlkit-training-aids"))
    parser.add_argument("--results", type=Path, default=RESULT, help="the results file")
    parser.add_argument("--render", action="store_true", help="only print the tables")
    harness.add_allow_dirty(parser)
    args = parser.parse_args(argv)
    if args.render:
        render(load(args.results))
    else:
        harness.refuse_dirty(Path(__file__).name, args.allow_dirty)
        study(args)


if __name__ == "__main__":
    main()
