"""Which architecture exports to which format: every model in the zoo, converted by
``tlkit.export`` and run in each format's own runtime in a fresh process.

Each architecture is built as ``tlkit finetune`` builds it (preprocessing, backbone, a new
5-class head; random weights, seed 0) at its smallest input side of at least 32, then exported
to SavedModel, TFLite (float, float16, int8 calibrated on the same images) and ONNX, and the
artifact's probabilities on 16 random images are compared with the Keras model's. This is a
compatibility sweep, not a parity gate: random weights give near-uniform probabilities, so the
int8 agreement says little. ``tlkit export`` gates trained models on real held-out images.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import harness

NAME = "export_zoo"
QUICK = {"models": "lenet5,resnet18", "images": 4}


def sweep_one(model_id: str, formats: list[str], images: int, scratch: Path) -> list[dict]:
    import keras
    import numpy as np

    from tlkit.export import FORMATS, ExportError, convert
    from tlkit.export.run import run_in_fresh_process
    from tlkit.models import build_transfer_model, get_model_info

    keras.utils.set_random_seed(0)
    info = get_model_info(model_id)
    size = max(32, info.min_size)
    model = build_transfer_model(info, 5, image_size=size)
    x = np.random.default_rng(0).uniform(0, 255, (images, size, size, 3)).astype("float32")
    reference = np.asarray(model(x, training=False))
    inputs = scratch / "inputs.npy"
    np.save(inputs, x)
    saved = None
    rows = []
    for fmt in formats:
        name, kind = FORMATS[fmt]
        target = scratch / name
        started = time.perf_counter()
        row = {"model": model_id, "size": size, "format": fmt}
        try:
            if fmt == "onnx":
                convert.onnx(model, target)
            else:
                if saved is None:
                    saved = convert.saved_model(model, scratch / "saved_model")
                if fmt == "saved_model":
                    target = saved
                else:
                    quantize = {"float": "none", "fp16": "fp16", "int8": "int8"}[kind]
                    convert.tflite(saved, target, model, quantize=quantize,
                                   calibration=lambda: (x[i : i + 1] for i in range(len(x))))
            seconds = time.perf_counter() - started
            probs, _ = run_in_fresh_process(target, inputs, scratch)
            agree = float((probs.argmax(1) == reference.argmax(1)).mean())
            row |= {"status": "ok", "agreement": agree,
                    "max_abs_diff": float(np.abs(probs - reference).max()),
                    "size_mb": convert.size_bytes(target) / 2**20, "convert_s": seconds}
        except ExportError as exc:
            row |= {"status": " ".join(str(exc).split())}  # one line: it is a table cell
        print(f"{model_id:14s} {fmt:12s} {row['status'][:90]}", flush=True)
        rows.append(row)
    return rows


def tables(rows: list[dict], formats: list[str]) -> list[dict]:
    by_model: dict[str, dict] = {}
    for r in rows:
        by_model.setdefault(r["model"], {"size": r["size"]})[r["format"]] = r
    cells = []
    for model_id, found in by_model.items():
        line = [model_id, found["size"]]
        for fmt in formats:
            r = found.get(fmt)
            if r is None:
                line.append("-")
            elif r["status"] != "ok":
                line.append(f"fails: {r['status']}")
            else:
                line.append(f"ok, |dp| {r['max_abs_diff']:.0e}")
        cells.append(line)
    return [{
        "title": "Every architecture, every format (random weights; max |probability "
                 "difference| against Keras on random images, in the format's own runtime)",
        "columns": ["model", "input", *formats],
        "rows": cells,
    }]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help="Comma-separated ids (default: all).")
    parser.add_argument("--formats", default="saved_model,tflite,tflite_fp16,tflite_int8,onnx")
    parser.add_argument("--images", type=int, default=16)
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    from tlkit.models.registry import model_ids

    models = args.models.split(",") if args.models else model_ids()
    formats = args.formats.split(",")
    rows = []
    for model_id in models:
        scratch = Path(tempfile.mkdtemp(prefix="tlkit-zoo-"))
        try:
            rows += sweep_one(model_id, formats, args.images, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    failed = [r for r in rows if r["status"] != "ok"]
    notes = [f"{len(rows) - len(failed)} of {len(rows)} conversions ran in their runtime"]
    notes += [f"{r['model']} {r['format']}: {r['status']}" for r in failed]
    return run.finish(tables(rows, formats), (), notes)


if __name__ == "__main__":
    main()
