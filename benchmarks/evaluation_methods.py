"""The papers' evaluation methods on real runs: what 10 crops, dense, multi-scale and
multi-crop evaluation and an ensemble gain over a single centre crop.

Two ResNet-18 runs (32 px, random weights, seeds 1 and 2, the ``light`` preset: mirror and
random 32 crops of 37) are trained on Fashion-MNIST (Debian's ``dataset-fashion-mnist``, 500
training images per class), then every method is evaluated on the same class-balanced sample
of the official test split, for each run and for their ensemble. Runs already in ``--runs``
are reused.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import harness

NAME = "evaluation_methods"
QUICK = {"per_class": 30, "epochs": 1, "test_images": 50, "methods": "single,flip,10crop"}
FMNIST = "/usr/share/datasets/fashion-mnist"


def train(run: Path, seed: int, args) -> None:
    if (run / "metrics.json").exists():
        print(f"# reusing {run}", flush=True)
        return
    command = [sys.executable, "-m", "tlkit.cli.main", "finetune", "--backbone", "resnet18",
               "--image-size", "32", "--weights", "none", "--data", f"idx:{args.data}",
               "--set", f"data.max_per_class={args.per_class}", "--epochs", str(args.epochs),
               "--set", "augment.preset=light", "--set", f"seed={seed}",
               "--set", "train.verbose=0", "--output", str(run)]
    subprocess.run(command, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=FMNIST)
    parser.add_argument("--runs", default="/tmp/tlkit-eval-runs")
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--test-images", type=int, default=500)
    parser.add_argument("--methods", default="single,flip,10crop,dense,multiscale,multicrop")
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    from tlkit.evaluation import evaluate_runs

    runs = [Path(args.runs) / f"resnet18-seed{seed}" for seed in (1, 2)]
    for path, seed in zip(runs, (1, 2), strict=True):
        train(path, seed, args)
    test = f"idx:{args.data}/t10k-images-idx3-ubyte.gz,{args.data}/t10k-labels-idx1-ubyte.gz"
    results, _ = evaluate_runs(runs, test, args.methods.split(","), split="all",
                               max_images=args.test_images)
    single = {r.model: r.top1 for r in results if r.method == "single"}
    rows = [[r.model, r.method, ",".join(map(str, r.scales)), r.views, 100 * r.top1,
             100 * (r.top1 - single[r.model]), None if r.top5 is None else 100 * r.top5,
             r.ms_per_image] for r in results]
    table = {
        "title": f"Fashion-MNIST test ({results[0].count} images, class-balanced), ResNet-18 "
                 "32 px from scratch: each method against the single centre crop",
        "columns": ["model", "method", "test scales", "views", "top-1 %", "vs single (points)",
                    "top-5 %", "ms/img"],
        "rows": rows,
    }
    notes = [f"runs: {', '.join(str(p) for p in runs)}; {args.per_class} training images per "
             f"class, {args.epochs} epochs"]
    return run.finish([table], (), notes)


if __name__ == "__main__":
    main()
