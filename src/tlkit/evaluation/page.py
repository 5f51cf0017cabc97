"""``report.html``: one self-contained page per run (images embedded, no network, opens from the
file system).

Sections, results first: summary, training (freeze decision, the freeze search, the training
curves with stages and the saved epoch marked, or what was fitted when there were no epochs),
confusion matrix, per-class precision/recall/F1, calibration (reliability diagram), the most
confused pairs, the validation images with the highest loss, Grad-CAM maps over a sample of
errors and of correct predictions, the evaluation and export tables when the run has them; then
the data (counts per class and split, imbalance), the data issues (skipped, converted and
duplicate files, dropped classes: counted by reason, each list folded away), the data's own
mistakes (near-duplicate groups and likely label errors, with thumbnails, reported only:
:mod:`tlkit.evaluation.mistakes_page`) and the resolved recipe. Every label, file and class
name is HTML-escaped (class names come from folder names). The page reads on a phone: only a
wide table scrolls, inside its own box.
"""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.data.pipeline import iterate_images
from tlkit.evaluation.calibration import calibration_table
from tlkit.evaluation.embed import e, png_uri
from tlkit.evaluation.figures import curves_png, has_curves
from tlkit.evaluation.gradcam import grad_cam, overlay
from tlkit.evaluation.loading import load_trained, trained_in_memory
from tlkit.evaluation.mistakes_page import mistake_sections
from tlkit.evaluation.tables import confusion_matrix
from tlkit.io import atomic_write_text
from tlkit.rundir import RunDir

REPORT_FILE = RunDir.REPORT
GALLERY = 12
CAM_SAMPLES = 6
MAX_IMAGES = 2000

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em;overflow-wrap:break-word}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4;white-space:nowrap}.wide{overflow-x:auto;max-width:100%}
table.summary td{overflow-wrap:anywhere}table.summary th{font-weight:600}
details{margin:.4em 0 1em}summary{cursor:pointer}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.tile{width:150px;font-size:.8em;text-align:center}
.tile img{width:150px;height:150px;image-rendering:pixelated;border:1px solid #ccc}
.group{border:1px solid #ddd;border-radius:4px;padding:.4em;margin:.5em 0}
.group .tile{width:120px}.group .tile img,.issues .tile img{width:112px;height:112px;
object-fit:contain;image-rendering:auto;background:#fafafa}.issues .tile{width:120px}
.bad{color:#b00}.good{color:#070}.muted{color:#777}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
img.plot{max-width:100%}
@media (max-width:600px){body{margin:1em auto;padding:0 .6em}td,th{padding:.2em .35em}}
"""


def _file_img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f'<p class="muted">({e(path.name)} not written)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="plot" alt="{e(alt)}" src="data:image/png;base64,{data}">'


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else e(value)


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    """A table with a header row, in a box that scrolls sideways when it is wider than the
    page (a phone), so the page itself never does. Empty cells read ``-``."""
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{_cell(v)}</td>'
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<div class="wide"><table><tr>{th}</tr>{body}</table></div>'


def _row_table(rows: list[tuple[str, Any]]) -> str:
    """A two-column table of ``(label, value)`` rows, labels as row headers (no header row)."""
    body = "".join(f'<tr><th scope="row">{e(k)}</th><td>{_cell(v)}</td></tr>' for k, v in rows)
    return f'<div class="wide"><table class="summary">{body}</table></div>'


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
    tiles = "".join(f'<div class="tile"><img alt="{e(c[0])}" src="{png_uri(img)}"><br>{c[1]}</div>'
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


def _summary(metrics: dict, loaded, names: list[str]) -> list[tuple[str, Any]]:
    """The summary table's rows; a row the run has no value for is left out."""
    val, test = metrics.get("val") or {}, metrics.get("test") or {}
    history = metrics.get("history") or []
    if history and not has_curves(history) and not any(r.get("steps", 1) for r in history):
        training = "head fitted in one solve on the frozen backbone's cached features (no epochs)"
    elif metrics.get("epochs") is not None:
        n = metrics["epochs"]
        training = (f"{n} epoch{'' if n == 1 else 's'}, model.keras from epoch "
                    f"{metrics.get('best_epoch')}")
    else:
        training = None
    if metrics.get("resumed"):
        training = f"{training or 'trained'}; resumed from a checkpoint"
    rows: list[tuple[str, Any]] = [
        ("backbone", metrics.get("backbone")), ("weights", metrics.get("weights")),
        ("image size", metrics.get("image_size", loaded.image_size)), ("classes", len(names)),
        ("training", training),
    ]
    for split, scores in (("val", val), ("test", test)):
        if scores.get("top1") is None:
            continue
        label, value = f"{split} top-1", _pct(scores["top1"])
        if scores.get("top5") is not None:
            label, value = f"{split} top-1 / top-5", f"{value} / {_pct(scores['top5'])}"
        rows.append((label, f"{value} on {scores['count']} images" if scores.get("count")
                     else value))
    cv = metrics.get("cross_validation")
    if cv and cv.get("accuracy") is not None:
        rows.append(("cross-validated top-1", f"{_pct(cv['accuracy'])} ± "
                     f"{_pct(cv.get('accuracy_se'))} ({cv.get('folds')}-fold, "
                     f"{cv.get('images')} labelled images)"))
    described = loaded.contract.describe()
    rows.append(("preprocessing", described.removeprefix("preprocessing:").strip()))
    rows.append(("seconds", metrics.get("seconds")))
    return [(k, v) for k, v in rows if v is not None]


def _freeze_search(search: dict | None) -> list[str]:
    """The freeze search: the grid's table, or what the evidence compared and why it chose."""
    if not search:
        return []
    if search.get("candidates"):
        rows = [[c.get("policy"), c.get("trainable_params"), _pct(c.get("accuracy")),
                 None if c.get("loss") is None else f"{c['loss']:.4f}", c.get("epochs"),
                 f"{c.get('seconds', 0):.1f}", c.get("note")]
                for c in search["candidates"]]
        head = ["policy", "trainable params", "held-out accuracy", "held-out loss", "epochs",
                "seconds", "note"]
        if not any(r[-1] for r in rows):
            head, rows = head[:-1], [r[:-1] for r in rows]
        return [f"<p>Freeze search on {e(search.get('holdout_images'))} held-out images "
                f"chose <b>{e(search.get('chosen'))}</b> (the rule's choice: "
                f"{e(search.get('prior'))}).</p>", _table(head, rows, {1, 4, 5})]
    if search.get("method") == "evidence":
        tuned = search.get("candidate") if search.get("prior") == "all" else search.get("prior")
        rows = [["all (frozen backbone, head cross-fitted)", search.get("frozen_accuracy"),
                 search.get("frozen_loss")],
                [f"{tuned} (fine-tuned {search.get('tuned_epochs')} epochs)",
                 search.get("tuned_accuracy"), search.get("tuned_loss")]]
        rows = [[policy, _pct(acc), None if loss is None else f"{loss:.4f}"]
                for policy, acc, loss in rows]
        return [f"<p>Freeze search on {e(search.get('images'))} validation images (the rule "
                f"says {e(search.get('prior'))}) chose <b>{e(search.get('chosen'))}</b>: "
                f"{e(search.get('reason'))}.</p>",
                _table(["policy", "val accuracy", "val log loss"], rows, {1, 2})]
    return []


def _calibration(record: dict) -> list[str]:
    """The temperature decision and its ECE and NLL: in sample, out of fold, and on test."""
    sentences, table = calibration_table(record)
    parts = [f"<p>{e(sentences[0])}</p>"]
    if table:
        parts.append(_table(*table, {1, 2, 3, 4, 5}))
    parts += [f"<p>{e(text)}</p>" for text in sentences[1:]]
    return parts


def _training(metrics: dict, run_dir: Path) -> list[str]:
    """The curves, or, for a run without epochs to draw, one sentence on what was fitted."""
    history = metrics.get("history")
    if history is None:  # a run from before metrics.json kept its history
        return [_file_img(run_dir / RunDir.CURVES, "training curves")]
    if has_curves(history):
        data = base64.b64encode(curves_png(history, best_epoch=metrics.get("best_epoch")))
        return ['<img class="plot" alt="training curves: loss and accuracy per epoch" '
                f'src="data:image/png;base64,{data.decode("ascii")}">']
    cv = metrics.get("cross_validation")
    if history and not any(r.get("steps", 1) for r in history):
        text = ("No training curves: the backbone was frozen and the head fitted in one solve "
                "on its cached features, with no epochs")
        if cv and cv.get("accuracy") is not None:
            text += (f". {cv.get('folds')}-fold cross-validation over all {cv.get('images')} "
                     f"labelled images: accuracy {_pct(cv['accuracy'])} ± "
                     f"{_pct(cv.get('accuracy_se'))}, log loss {cv.get('log_loss', 0):.4f}")
        return [f"<p>{e(text)}.</p>"]
    if history:
        last = history[-1]
        said = ", ".join(f"{k.replace('val_', 'validation ')} {last[k]:.4f}"
                         for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                         if isinstance(last.get(k), int | float))
        return [f"<p>No training curves: one epoch only ({e(said)}).</p>"]
    return ["<p>No training curves: the run trained no epochs.</p>"]


def _short_path(path: Any, root: str | None) -> str:
    """``path`` relative to the data folder when it lies inside it."""
    text = str(path)
    if root and text.startswith(root.rstrip("/") + "/"):
        return text[len(root.rstrip("/")) + 1:]
    return text


#: data_report.json lists: (key, what one item is, the key holding its reason, columns).
DATA_ISSUES = (
    ("skipped", "unreadable files skipped", "reason", ("path", "split", "reason")),
    ("converted", "files converted to RGB PNG before decoding", "reason", ("path", "reason")),
    ("duplicates", "groups of identical images", "kind", ("kind", "files")),
    ("dropped_classes", "classes dropped", "reason", ("class", "reason")),
    ("small_classes", "classes below the minimum image count", None, ("class", "train", "minimum")),
    ("ignored", "files ignored", "reason", ("path", "reason")),
    ("unlisted", "folders that could not be listed", "reason", ("path", "reason")),
)


def _data_issues(data: dict) -> list[str]:
    """Each kind of issue as one line (count and reasons), its items folded in a <details>."""
    root = data.get("source")
    out = []
    for key, what, reason_key, columns in DATA_ISSUES:
        items = data.get(key) or []
        if not items:
            continue
        line = f"{len(items)} {what}"
        if reason_key:
            reasons = Counter(str(item.get(reason_key, "?")) for item in items)
            line += ": " + ", ".join(f"{r} ({n})" for r, n in reasons.most_common())
        rows = []
        for item in items[:200]:
            row = dict(item)
            if "path" in row:
                row["path"] = _short_path(row["path"], root)
            if key == "duplicates":
                row["files"] = "; ".join(f"{_short_path(i.get('path'), root)} ({i.get('split')}, "
                                         f"{i.get('label')})" for i in item.get("items", []))
            rows.append([row.get(c) for c in columns])
        more = " (the first 200; all in data_report.json)" if len(items) > 200 else ""
        out.append(f"<p>{e(line)}.</p><details><summary>list of {len(items)}{e(more)}"
                   f"</summary>{_table(list(columns), rows)}</details>")
    warnings = data.get("warnings") or []
    if warnings:
        out.append("<ul>" + "".join(f"<li>{e(w)}</li>" for w in warnings) + "</ul>")
    if any(data.get(key) for key, *_ in DATA_ISSUES) and root:
        out.insert(0, f"<p class=muted>Paths are relative to {e(root)}.</p>")
    return out


def write_report(run_dir: str | Path, *, bundle, log=print, model=None, predictions=None) -> Path:
    """Write ``run_dir/report.html`` (see the module doc). ``bundle`` is the run's data
    (:func:`tlkit.recipes.rundata.run_data` rebuilds it for a finished run). ``model``: the
    Keras model ``model.keras`` holds, when the caller has it in memory (else it is loaded);
    ``predictions``: ``{split: probabilities}`` of that model on a split, in split order,
    when the caller has them (else the report runs the model on the images it shows)."""
    run = RunDir(run_dir)
    run_dir = run.path
    metrics = run.metrics()
    loaded = load_trained(run_dir) if model is None else trained_in_memory(model, run.model)
    names = loaded.class_names
    parts = [f"<h1>{e(run_dir.name)}</h1>", "<h2>Summary</h2>",
             _row_table(_summary(metrics, loaded, names))]
    parts.append("<h2>Training</h2>")
    decisions = metrics.get("freeze") or []
    if decisions:
        parts.append("<ul>" + "".join(f"<li>{e(m)}</li>" for m in decisions) + "</ul>")
    parts += _freeze_search(metrics.get("freeze_search"))
    parts += _training(metrics, run_dir)
    parts += ["<h2>Confusion matrix (val)</h2>",
              _file_img(run / RunDir.CONFUSION, "confusion matrix")]
    per_class = metrics.get("val_per_class") or []
    if per_class:
        keys = [k for k in ("class", "precision", "recall", "f1", "support") if k in per_class[0]]
        rows = [[(f"{r[k]:.3f}" if isinstance(r[k], float) else r[k]) for k in keys]
                for r in per_class]
        parts += ["<h2>Per class (val)</h2>", _table(keys, rows, set(range(1, len(keys))))]
    calibration = run.read_json(RunDir.CALIBRATION)
    if calibration:
        parts.append("<h2>Calibration</h2>")
        parts += _calibration(calibration)
        parts.append(_file_img(run / RunDir.RELIABILITY, "reliability diagram"))
    held = "val" if len(bundle.val) else ("test" if len(bundle.test) else None)
    if held:
        known = (predictions or {}).get(held)
        stored = run.predictions(held)  # out of fold, kept by the run
        if known is None and stored.is_file():
            known = np.load(stored)
        parts += _sections_images(
            loaded.model, held, getattr(bundle, held), loaded, names, known=known
        )
    for path in sorted(run_dir.glob(f"*/{RunDir.EVALUATION}")):
        doc = run.read_json(f"{path.parent.name}/{RunDir.EVALUATION}") or {}
        rows = [[m["model"], m["method"], ",".join(map(str, m["scales"])), m["views"],
                 _pct(m["top1"]), _pct(m["top5"]), f"{m['ms_per_image']:.1f}"]
                for m in doc.get("methods", [])]
        if rows:
            parts.append(f"<h2>Evaluation: {e(path.parent.name)}</h2>")
            parts.append(_table(["model", "method", "test scales", "views", "top-1", "top-5",
                                 "ms/img"], rows, {3, 6}))
    export = run.read_json(f"{RunDir.EXPORT}/{RunDir.EXPORT_REPORT}")
    if export:
        rows = [[c["format"], c["runtime"], _pct(c["agreement"]), _pct(c["top1"]),
                 c["max_abs_diff"], c["size_mb"], "pass" if c["passed"] else "FAIL"]
                for c in export.get("checks", [])]
        parts += ["<h2>Exports</h2>", _table(["format", "runtime", "agreement", "top-1",
                                              "max |dp|", "MB", "gate"], rows)]
    data = run.read_json(RunDir.DATA_REPORT) or {}
    parts.append("<h2>Data</h2>")
    counts = data.get("counts") or {}
    if counts:
        splits = [s for s in counts if any(counts[s].values())]
        rows = [[c, *[counts[s].get(c, 0) for s in splits]] for c in names]
        parts.append(_table(["class", *splits], rows, set(range(1, len(splits) + 1))))
    if data.get("imbalance_ratio"):
        parts.append(f"<p>Imbalance (largest / smallest training class): "
                     f"{e(round(data['imbalance_ratio'], 2))}</p>")
    issues = _data_issues(data)
    if issues:
        parts += ["<h2>Data issues</h2>", *issues]
    parts += mistake_sections(data, bundle)
    parts += ["<h2>Resolved recipe</h2>", f"<pre>{e(run.recipe_text())}</pre>"]
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(run_dir.name)}: tlkit report</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    path = run_dir / REPORT_FILE
    atomic_write_text(path, page)
    log(f"report: {path}")
    return path
