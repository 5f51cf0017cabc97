"""``report.html``: one self-contained page per run (images embedded, no network, opens from the
file system).

Sections: summary, data (counts, skipped and converted files, imbalance), freeze decision and
search table, training curves (stages and the saved epoch marked), confusion matrix and the most
confused pairs, per-class precision/recall/F1, calibration (reliability diagram), the validation
images with the highest loss, Grad-CAM maps over a sample of errors and of correct predictions,
the evaluation and export tables when the run has them, and the resolved recipe. Every label,
file and class name is HTML-escaped (class names come from folder names).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.data.pipeline import iterate_images
from tlkit.evaluate import load_trained, trained_in_memory
from tlkit.evaluation.gradcam import grad_cam, overlay
from tlkit.io import atomic_write_text
from tlkit.reports import confusion_matrix

REPORT_FILE = "report.html"
GALLERY = 12
CAM_SAMPLES = 6
MAX_IMAGES = 2000

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}th{background:#f4f4f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.tile{width:150px;font-size:.8em;text-align:center}
.tile img{width:150px;height:150px;image-rendering:pixelated;border:1px solid #ccc}
.bad{color:#b00}.good{color:#070}.muted{color:#777}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
img.plot{max-width:100%}
"""


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _file_img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f'<p class="muted">({e(path.name)} not written)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{e(alt)}" src="data:image/png;base64,{data}">'


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{e(v)}</td>'
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def confused_pairs(matrix: np.ndarray, class_names: list[str], top: int = 8) -> list[list]:
    """``[true, predicted, count, share of the true class]`` of the largest off-diagonal cells."""
    pairs = []
    totals = matrix.sum(axis=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if i != j and matrix[i, j]:
                pairs.append([class_names[i], class_names[j], int(matrix[i, j]),
                              _pct(matrix[i, j] / max(1, totals[i]))])
    return sorted(pairs, key=lambda p: -p[2])[:top]


def _tiles(images, captions) -> str:
    tiles = "".join(f'<div class="tile"><img alt="{e(c[0])}" src="{_png(img)}"><br>{c[1]}</div>'
                    for img, c in zip(images, captions, strict=True))
    return f'<div class="grid">{tiles}</div>'


def _predictions(model, split, size, contract, limit=MAX_IMAGES, known=None):
    """The first ``limit`` images of ``split``, labels and probabilities (``known``, the
    model's probabilities on the split in its order when the caller has them, else computed)."""
    xs, ys = [], []
    for images, labels in iterate_images(split, size, 64, contract):
        xs.append(images.astype(np.uint8))
        ys.append(labels)
        if sum(len(x) for x in xs) >= limit:
            break
    if not xs:
        return None
    x, y = np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]
    if known is not None and len(known) >= len(x):
        return x, y, np.asarray(known)[: len(x)]
    probs = np.concatenate([np.asarray(model(x[i : i + 64].astype(np.float32), training=False))
                            for i in range(0, len(x), 64)])
    return x, y, probs


def _sections_images(model, split_name, split, loaded, names, known=None) -> list[str]:
    """Confused pairs, highest-loss gallery and Grad-CAM on one split."""
    got = _predictions(model, split, loaded.image_size, loaded.contract, known=known)
    if got is None:
        return []
    x, y, probs = got
    predicted = probs.argmax(1)
    out = []
    matrix = confusion_matrix(y, predicted, len(names))
    pairs = confused_pairs(matrix, names)
    out.append(f"<h2>Most confused pairs ({e(split_name)})</h2>")
    out.append(_table(["true class", "predicted as", "images", "of the true class"], pairs, {2})
               if pairs else "<p>No confusions.</p>")
    loss = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))
    worst = np.argsort(-loss)[:GALLERY]
    captions = [(f"{names[y[i]]} as {names[predicted[i]]}",
                 f'true <b>{e(names[y[i]])}</b><br>predicted <span class="'
                 f'{"good" if predicted[i] == y[i] else "bad"}">{e(names[predicted[i]])}</span> '
                 f"{probs[i, predicted[i]]:.2f}<br>p(true) {probs[i, y[i]]:.3f}") for i in worst]
    out.append(f"<h2>Highest-loss {e(split_name)} images</h2>")
    out.append(_tiles(x[worst], captions))
    errors = np.flatnonzero(predicted != y)
    right = np.flatnonzero(predicted == y)
    right = right[np.argsort(-probs[right, predicted[right]])]
    sample = np.concatenate([errors[:CAM_SAMPLES], right[:CAM_SAMPLES]]).astype(int)
    if len(sample) and hasattr(model, "layers"):
        try:
            cams = grad_cam(model, x[sample].astype(np.float32))
        except ValueError as exc:
            out.append(f"<h2>Grad-CAM</h2><p class=muted>{e(exc)}</p>")
            return out
        caps = [(f"Grad-CAM {names[predicted[i]]}",
                 f'{"error" if predicted[i] != y[i] else "correct"}: '
                 f"{e(names[y[i]])} &rarr; {e(names[predicted[i]])}") for i in sample]
        out.append("<h2>Grad-CAM: where the evidence for the predicted class lies</h2>")
        out.append(f"<p class=muted>Up to {CAM_SAMPLES} errors, then the {CAM_SAMPLES} most "
                   "confident correct predictions.</p>")
        out.append(_tiles([overlay(x[i], c) for i, c in zip(sample, cams, strict=True)], caps))
    return out


def write_report(run_dir: str | Path, *, bundle, log=print, model=None, predictions=None) -> Path:
    """Write ``run_dir/report.html`` (see the module doc). ``bundle`` is the run's data
    (:func:`tlkit.recipes.rundata.run_data` rebuilds it for a finished run). ``model``: the
    Keras model ``model.keras`` holds, when the caller has it in memory (else it is loaded);
    ``predictions``: ``{split: probabilities}`` of that model on a split, in split order,
    when the caller has them (else the report runs the model on the images it shows)."""
    run_dir = Path(run_dir)
    metrics = _read_json(run_dir / "metrics.json") or {}
    if model is None:
        loaded = load_trained(run_dir)
    else:
        loaded = trained_in_memory(model, run_dir / "model.keras")
    names = loaded.class_names
    parts = [f"<h1>{e(run_dir.name)}</h1>"]
    val, test = metrics.get("val") or {}, metrics.get("test") or {}
    summary = [
        ["backbone", metrics.get("backbone", "?")], ["weights", metrics.get("weights", "?")],
        ["image size", metrics.get("image_size", loaded.image_size)],
        ["classes", len(names)], ["epochs", metrics.get("epochs", "?")],
        ["saved epoch", metrics.get("best_epoch", "?")],
        ["val top-1 / top-5", f"{_pct(val.get('top1'))} / {_pct(val.get('top5'))}"],
        ["test top-1 / top-5", f"{_pct(test.get('top1'))} / {_pct(test.get('top5'))}"],
        ["preprocessing", loaded.contract.describe()],
        ["seconds", metrics.get("seconds", "?")],
    ]
    parts += ["<h2>Summary</h2>", _table(["", ""], summary)]
    data = _read_json(run_dir / "data_report.json") or {}
    parts.append("<h2>Data</h2>")
    counts = data.get("counts") or {}
    if counts:
        splits = list(counts)
        rows = [[c, *[counts[s].get(c, 0) for s in splits]] for c in names]
        parts.append(_table(["class", *splits], rows, set(range(1, len(splits) + 1))))
    if data.get("imbalance_ratio"):
        parts.append(f"<p>Imbalance (largest / smallest training class): "
                     f"{e(round(data['imbalance_ratio'], 2))}</p>")
    for key, title in (("skipped", "Skipped files"), ("converted", "Converted files"),
                       ("duplicates", "Duplicates")):
        items = data.get(key) or []
        if items:
            fields = sorted({k for item in items for k in item})
            parts.append(f"<h3>{e(title)} ({len(items)})</h3>")
            parts.append(_table(fields, [[item.get(f, "") for f in fields] for item in items[:200]]))
    parts.append("<h2>Freeze decision</h2>")
    parts.append("<ul>" + "".join(f"<li>{e(m)}</li>" for m in metrics.get("freeze") or []) + "</ul>")
    search = metrics.get("freeze_search")
    if search and search.get("candidates"):
        rows = [[c.get("policy"), c.get("trainable_params"), _pct(c.get("accuracy")),
                 "-" if c.get("loss") is None else f"{c['loss']:.4f}", c.get("epochs"),
                 f"{c.get('seconds', 0):.1f}", c.get("note", "")]
                for c in search["candidates"]]
        parts.append(f"<p>Freeze search on {e(search.get('holdout_images'))} held-out images "
                     f"chose <b>{e(search.get('chosen'))}</b> (the rule's choice: "
                     f"{e(search.get('prior'))}).</p>")
        parts.append(_table(["policy", "trainable params", "held-out accuracy", "held-out loss",
                             "epochs", "seconds", "note"], rows, {1, 4, 5}))
    parts += ["<h2>Training curves</h2>", _file_img(run_dir / "curves.png", "training curves")]
    parts += ["<h2>Confusion matrix (val)</h2>",
              _file_img(run_dir / "confusion_matrix.png", "confusion matrix")]
    per_class = metrics.get("val_per_class") or []
    if per_class:
        keys = [k for k in ("class", "precision", "recall", "f1", "support") if k in per_class[0]]
        rows = [[(f"{r[k]:.3f}" if isinstance(r[k], float) else r[k]) for k in keys]
                for r in per_class]
        parts += ["<h2>Per class (val)</h2>", _table(keys, rows, set(range(1, len(keys))))]
    calibration = _read_json(run_dir / "calibration.json")
    if calibration:
        parts.append("<h2>Calibration</h2>")
        if calibration.get("fitted_on") == "out_of_fold":
            v, cv = calibration.get("all", {}), calibration.get("cross_validation", {})
            where = (f"the out-of-fold predictions of all {v.get('count')} labelled images "
                     f"({calibration.get('folds')}-fold cross-validation, where the head "
                     f"reached {_pct(cv.get('accuracy'))} ± {_pct(cv.get('accuracy_se'))}; "
                     "the validation figures above are out of fold too)")
        else:
            v, where = calibration.get("val", {}), f"{calibration.get('val', {}).get('count')} validation images"
        parts.append(f"<p>Temperature {calibration['temperature']:.3f} fitted on {where}: "
                     f"ECE {_pct(v.get('ece_before'))} "
                     f"&rarr; {_pct(v.get('ece_after'))}, NLL {v.get('nll_before', 0):.4f} "
                     f"&rarr; {v.get('nll_after', 0):.4f}. It is part of model.keras and of "
                     "every export.</p>")
        parts.append(_file_img(run_dir / "reliability.png", "reliability diagram"))
    held = "val" if len(bundle.val) else ("test" if len(bundle.test) else None)
    if held:
        known = (predictions or {}).get(held)
        stored = run_dir / f"predictions_{held}.npy"  # out of fold, kept by the run
        if known is None and stored.is_file():
            known = np.load(stored)
        parts += _sections_images(
            loaded.model, held, getattr(bundle, held), loaded, names, known=known
        )
    for path in sorted(run_dir.glob("*/evaluation.json")):
        doc = _read_json(path) or {}
        rows = [[m["model"], m["method"], ",".join(map(str, m["scales"])), m["views"],
                 _pct(m["top1"]), _pct(m["top5"]), f"{m['ms_per_image']:.1f}"]
                for m in doc.get("methods", [])]
        if rows:
            parts.append(f"<h2>Evaluation: {e(path.parent.name)}</h2>")
            parts.append(_table(["model", "method", "test scales", "views", "top-1", "top-5",
                                 "ms/img"], rows, {3, 6}))
    export = _read_json(run_dir / "export" / "export_report.json")
    if export:
        rows = [[c["format"], c["runtime"], _pct(c["agreement"]), _pct(c["top1"]),
                 c["max_abs_diff"], c["size_mb"], "pass" if c["passed"] else "FAIL"]
                for c in export.get("checks", [])]
        parts += ["<h2>Exports</h2>", _table(["format", "runtime", "agreement", "top-1",
                                              "max |dp|", "MB", "gate"], rows)]
    recipe_text = (run_dir / "recipe.yaml").read_text() if (run_dir / "recipe.yaml").exists() else ""
    parts += ["<h2>Resolved recipe</h2>", f"<pre>{e(recipe_text)}</pre>"]
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{e(run_dir.name)}: tlkit report</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    path = run_dir / REPORT_FILE
    atomic_write_text(path, page)
    log(f"report: {path}")
    return path
