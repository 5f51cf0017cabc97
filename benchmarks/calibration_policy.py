"""When to keep a temperature: tlkit's rule (:func:`tlkit.evaluation.calibration.choose_temperature`:
cross-validated on the validation images, bounded, kept only when it lowers the out-of-fold NLL
by more than a standard error without raising the out-of-fold ECE, nothing below 20 images)
against the plain fit (the NLL's minimum on the validation images, kept whenever it lowers
their NLL), scored by the ECE of held-out test images.

Two parts:

* ``simulation``: models whose miscalibration is known. Logits ``z`` (10 classes, the true class
  +3 over N(0, 1) noise), labels drawn from ``softmax(z)``, the model reporting
  ``softmax(z / T_true)``: ``T_true = 1`` is a calibrated model, 2 and 4 over-confident ones, 0.6
  an under-confident one. For each validation size, ``--seeds`` draws of the validation images
  and 2,000 test images; the mean change of the test ECE (points) and the share of draws where
  a rule made it worse by more than 0.2 points. Seconds.
* ``runs``: real runs, ``tlkit finetune`` of ResNet-18 from scratch (3 epochs, 32 px) on
  Fashion-MNIST (Debian's dataset-fashion-mnist; ``builtin:fashion_mnist``) with 20, 100 and
  1,000 validation images, scored on the official 10,000 test images: what each run decided and
  the test ECE without and with the temperature its images fitted. About 10 minutes a seed on 2
  cores.

    python benchmarks/calibration_policy.py                    # both parts
    python benchmarks/calibration_policy.py --part simulation --seeds 200
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import harness
import numpy as np

NAME = "calibration_policy"
QUICK = {"seeds": 4, "sizes": "20,100", "part": "simulation"}
RUNS = {20: (12, 0.17), 100: (50, 0.2), 1000: (500, 0.2)}  # val images: (per class, val_split)


def draw(n: int, t_true: float, rng, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    z = rng.normal(0, 1, (n, classes))
    z[np.arange(n), rng.integers(0, classes, n)] += 3.0
    truth = np.exp(z - z.max(1, keepdims=True))
    truth /= truth.sum(1, keepdims=True)
    labels = (truth.cumsum(1) > rng.random((n, 1))).argmax(1)
    shown = np.exp((z - z.max(1, keepdims=True)) / t_true)
    return shown / shown.sum(1, keepdims=True), labels


def simulation(seeds: int, sizes: list[int]) -> dict:
    from tlkit.evaluation.calibration import (
        choose_temperature,
        expected_calibration_error,
        fit_temperature,
        nll,
        rescale,
    )

    def plain(p, y):  # the rule before: NLL's minimum in [0.05, 20], kept if it lowers val NLL
        t = fit_temperature(p, y, bounds=(0.05, 20.0))
        return t if nll(rescale(p, t), y) <= nll(p, y) else 1.0

    rows = []
    for t_true in (1.0, 2.0, 4.0, 0.6):
        for n in sizes:
            change = {"plain": [], "tlkit": []}
            base = []
            for seed in range(seeds):
                rng = np.random.default_rng(1000 * seed + n)
                val, test = draw(n, t_true, rng), draw(2000, t_true, rng)
                before = expected_calibration_error(*test)
                base.append(before)
                for rule, t in (("plain", plain(*val)),
                                ("tlkit", choose_temperature(*val)["temperature"])):
                    change[rule].append(expected_calibration_error(rescale(test[0], t), test[1])
                                        - before)
            row = [t_true, n, round(100 * float(np.mean(base)), 2)]
            for rule in ("plain", "tlkit"):
                values = np.array(change[rule])
                row += [round(100 * float(values.mean()), 2),
                        round(100 * float((values > 0.002).mean()), 1)]
            rows.append(row)
            print(row, flush=True)
    return {"title": f"Simulated models, {seeds} draws per cell: test ECE change (points) and "
                     "draws made worse by > 0.2 points (%)",
            "columns": ["T_true", "val images", "test ECE before %", "plain fit: change",
                        "plain fit: worse %", "tlkit: change", "tlkit: worse %"],
            "rows": rows}


def real_runs(seeds: int, sizes: list[int], workdir: Path) -> dict:
    rows = []
    for n in sizes:
        per_class, val_split = RUNS[n]
        for seed in range(seeds):
            out = workdir / f"val{n}-seed{seed}"
            command = [sys.executable, "-m", "tlkit.cli.main", "finetune", "--backbone",
                       "resnet18", "--weights", "none", "--data", "builtin:fashion_mnist",
                       "--image-size", "32", "--epochs", "3", "--seed", str(seed),
                       "--set", f"data.max_per_class={per_class}",
                       "--set", f"data.val_split={val_split}", "--set", "data.test_split=0.1",
                       "--output", str(out)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr[-2000:], flush=True)
                continue
            record = json.loads((out / "calibration.json").read_text())
            choice, test = record["decision"], record["test"]
            tried = test.get("ece_candidate", test["ece_after"])
            rows.append([n, seed, test["count"], round(choice.get("candidate", 1.0), 3),
                         "kept" if choice["kept"] else "not kept",
                         round(100 * test["ece_before"], 2), round(100 * tried, 2),
                         round(100 * test["ece_after"], 2)])
            print(rows[-1], flush=True)
    return {"title": "Real runs (ResNet-18 from scratch, 3 epochs, Fashion-MNIST 32 px): test ECE "
                     "(%) without the temperature, with the one its validation images fitted, "
                     "and as saved",
            "columns": ["val images", "seed", "test images", "T fitted", "decision",
                        "test ECE without T", "with T fitted", "as saved"],
            "rows": rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["simulation", "runs", "both"], default="both")
    parser.add_argument("--seeds", type=int, default=100, help="Draws per simulated cell.")
    parser.add_argument("--run-seeds", type=int, default=3, help="Seeds per real run size.")
    parser.add_argument("--sizes", default="10,20,50,100,300,1000",
                        help="Validation sizes simulated.")
    parser.add_argument("--run-sizes", default="20,100,1000", help="Validation sizes run.")
    parser.add_argument("--workdir", type=Path, help="Where the real runs go (default: a temp dir).")
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    tables = []
    if args.part in ("simulation", "both"):
        tables.append(simulation(args.seeds, [int(s) for s in args.sizes.split(",")]))
    if args.part in ("runs", "both"):
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tlkit-calibration-"))
        tables.append(real_runs(args.run_seeds, [int(s) for s in args.run_sizes.split(",")],
                                workdir))
    return run.finish(tables, notes=[
        "tlkit's rule: 5-fold cross-validation on the validation images, T in [0.25, 8], a "
        "sharpening capped at the rule of succession's accuracy, kept only when the out-of-fold "
        "NLL falls by more than one standard error and the out-of-fold ECE does not rise; no "
        "fit below 20 images.",
        "Plain fit: T in [0.05, 20] minimising the validation NLL, kept whenever it lowers it "
        "(tlkit before issue 26)."])


if __name__ == "__main__":
    main()
