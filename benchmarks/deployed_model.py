"""The deployed model: a fine-tuned EfficientNet-Lite0 in every export format, each in its own
runtime: batch-1 latency, size on disk and test top-1.

One run on one machine, as a user does it:

1. ``tlkit finetune --data DIR --image-size 224`` (the defaults: Google's ImageNet Lite0, the
   regime recipe) on Fashion-MNIST's ten classes (Debian's ``dataset-fashion-mnist``),
   ``--per-class`` training images per class under ``DIR/train/`` and ``--test-per-class``
   official test images per class under ``DIR/test/``;
2. ``tlkit export RUN --format saved_model,tflite,tflite_fp16,tflite_int8,onnx`` with its
   parity gate on every test image (``--max-images``): each artifact's top-1 and agreement with
   the Keras model come from ``export_report.json``;
3. latency: each format (and ``model.keras``) in a fresh process of its own, through
   ``tlkit.runtime.load_runner`` (LiteRT with one thread per core, ONNX Runtime's CPU provider,
   the SavedModel's serving function; Keras: ``model(x, training=False)``), one image at a time
   on the run's own evaluation view of test images: 10 warm-up calls, then ``--calls`` timed
   calls; the formats take turns for ``--rounds`` rounds and the table gives the median of
   every timed call and the spread of the rounds' medians.

    python benchmarks/deployed_model.py [--per-class 50] [--test-per-class 100]
        [--size 224] [--calls 200] [--rounds 3] [--workdir DIR] [--quick]
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

NAME = "deployed_model"
QUICK = {"per_class": 5, "test_per_class": 5, "size": 96, "calls": 20, "rounds": 1}
FORMATS = ("saved_model", "tflite", "tflite_fp16", "tflite_int8", "onnx")


def write_folder(workdir: Path, per_class: int, test_per_class: int) -> Path:
    import numpy as np
    from defaults_suite import FMNIST_NAMES, _fashion_mnist
    from PIL import Image

    folder = workdir / f"fmnist-{per_class}-{test_per_class}"
    if (folder / ".complete").exists():
        return folder
    pools = _fashion_mnist()
    for split, (x, y), n, seed in (("train", pools[0], per_class, 0),
                                   ("test", pools[1], test_per_class, 12345)):  # fmt: skip
        rng = np.random.default_rng(seed)
        for c in range(10):
            out = folder / split / FMNIST_NAMES[c]
            out.mkdir(parents=True, exist_ok=True)
            for i in rng.choice(np.flatnonzero(y == c), n, replace=False):
                Image.fromarray(x[i]).save(out / f"{i:05d}.png")
    (folder / ".complete").write_text("ok")
    return folder


def tlkit(args: list[str], log: Path, ok: Path | None = None) -> float:
    """Run ``tlkit ARGS``; a non-zero exit stops the benchmark unless ``ok`` exists (``tlkit
    export`` exits 1 when an artifact fails its gate: its report says which, and that is a
    result)."""
    started = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"\n===== tlkit {' '.join(args)}\n")
        fh.flush()
        code = subprocess.run(["tlkit", *args], stdout=fh, stderr=subprocess.STDOUT,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).returncode
    if code and not (ok and ok.exists()):
        raise SystemExit(f"tlkit {' '.join(args[:2])}... exited {code}: see {log}")
    return time.perf_counter() - started


def test_inputs(run_dir: Path, out: Path, count: int = 32) -> Path:
    """The run's evaluation view of its first test images (what every format is given)."""
    import numpy as np

    from tlkit.data.pipeline import iterate_images
    from tlkit.evaluation.loading import load_trained
    from tlkit.recipes.rundata import run_data

    loaded = load_trained(run_dir)
    _, bundle = run_data(run_dir)
    batch = next(iter(iterate_images(bundle.test, loaded.image_size, count, loaded.contract)))
    np.save(out, np.asarray(batch[0], np.float32))
    return out


def child_latency(path: str, inputs: str, calls: int) -> None:
    """Batch-1 milliseconds of one artifact in its runtime: 10 warm-up calls, then ``calls``."""
    import numpy as np

    x = np.load(inputs)
    if path.endswith(".keras"):
        import keras

        import tlkit  # noqa: F401 - tlkit's layers, for the backbones that have their own

        model = keras.models.load_model(path)

        def run(batch):
            return np.asarray(model(batch, training=False))
    else:
        from tlkit.runtime import load_runner

        run = load_runner(path, trust=True)  # written by tlkit export a moment ago
    for i in range(10):
        run(x[i % len(x)][None])
    times = []
    for i in range(calls):
        start = time.perf_counter()
        run(x[i % len(x)][None])
        times.append(1000 * (time.perf_counter() - start))
    print(json.dumps(times), flush=True)


def latencies(artifacts: dict[str, Path], inputs: Path, calls: int, rounds: int) -> dict:
    """Every artifact's timed calls over the rounds, the formats taking turns."""
    out = {name: [] for name in artifacts}
    for _ in range(rounds):
        for name, path in artifacts.items():
            done = subprocess.run([sys.executable, __file__, "--child", str(path), str(inputs),
                                   str(calls)], capture_output=True, text=True, check=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            out[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tlkit-deployed-model"))
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    log, run_dir = args.workdir / "runs.log", args.workdir / f"run-{args.size}"
    folder = write_folder(args.workdir, args.per_class, args.test_per_class)
    train_s = tlkit(["finetune", "--data", str(folder), "--image-size", str(args.size),
                     "--seed", "0", "--output", str(run_dir), "--overwrite"], log)
    report_path = run_dir / "export" / "export_report.json"
    report_path.unlink(missing_ok=True)
    export_s = tlkit(["export", str(run_dir), "--format", ",".join(FORMATS), "--max-images",
                      str(10 * args.test_per_class)], log, ok=report_path)
    report = json.loads(report_path.read_text())
    checks = {c["format"]: c for c in report["checks"]}
    artifacts = {"keras": run_dir / "model.keras"} | {f: Path(checks[f]["path"]) for f in FORMATS}
    inputs = test_inputs(run_dir, args.workdir / "inputs.npy")
    timed = latencies(artifacts, inputs, args.calls, args.rounds)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    keras_top1 = metrics["test"]["top1"]
    median = {n: statistics.median(t for r in rounds for t in r) for n, rounds in timed.items()}
    rows = []
    for name, path in artifacts.items():
        check = checks.get(name, {})
        per_round = [statistics.median(r) for r in timed[name]]
        size = check.get("size_mb") or path.stat().st_size / 2**20
        rows.append([name, size, median[name], min(per_round), max(per_round),
                     median["tflite"] / median[name],
                     check.get("top1", keras_top1), check.get("agreement"),
                     None if not check else ("pass" if check.get("passed") else "FAIL")])
    title = (f"EfficientNet-Lite0 fine-tuned on Fashion-MNIST (10 classes, {args.per_class} "
             f"images per class, {args.size} px): batch-1 latency in each runtime ({args.rounds} "
             f"rounds x {args.calls} calls), size, and top-1 on the {report['images']} "
             f"{report['held_out']} images")
    columns = ["format", "MB", "median ms", "rounds' medians: min", "max", "speed vs TFLite float",
               "top-1", "agrees with Keras", "gate"]
    int8 = median["tflite"] / median["tflite_int8"]
    gate = checks["tflite_int8"]
    notes = [
        f"Goal int8 at least 2x faster than float TFLite within the gate's accuracy: "
        f"{'met' if int8 >= 2 and gate['passed'] else 'not met'} ({int8:.2f}x; int8 top-1 "
        f"{gate['top1']:.4f} against Keras {gate['keras_top1']:.4f}; the gate, top-1 at most "
        f"{100 * (gate['gate'].get('max_accuracy_drop') or 0):.1f} points below Keras: "
        f"{'pass' if gate['passed'] else 'FAIL'}).",
        f"Fine-tune {train_s:.0f} s (test top-1 {keras_top1:.4f} on {metrics.get('test_images')} "
        f"images), export with every gate {export_s:.0f} s.",
    ]
    ratios = [{"name": f"{n} / TFLite float, batch-1 latency", "value": median[n] / median["tflite"]}
              for n in artifacts if n != "tflite"]
    return run.finish([{"title": title, "columns": columns, "rows": rows}], ratios, notes)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child_latency(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
