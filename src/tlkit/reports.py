"""Run reports: history CSV, training curves, confusion matrix and per-class scores (atomic)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.io import atomic_path, atomic_write_text


def write_history_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """Per-epoch metrics as CSV, columns in first-seen order."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def has_curves(history: Sequence[dict[str, Any]]) -> bool:
    """Whether ``history`` makes a curve: two epochs or more of gradient steps. A head fitted in
    one solve on cached features (its single row has ``steps`` 0) or a single epoch has none."""
    trained = [row for row in history if row.get("steps", 1)]
    return len(trained) >= 2


def curves_figure(history: Sequence[dict[str, Any]], title: str = "",
                  best_epoch: int | None = None):
    """:func:`plot_curves`' matplotlib figure (the caller closes it)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    changes = [row for row, prev in zip(history[1:], history[:-1], strict=False)
               if row.get("stage") != prev.get("stage")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        series = {prefix: [row.get(prefix + metric) for row in history]
                  for prefix in ("", "val_")}
        drawn = [v for values in series.values() for v in values if v is not None]
        heading, limit = metric, None
        if metric == "loss" and len(drawn) > 3:
            typical = float(np.percentile(drawn, 75))
            top = max(drawn)
            if top > 3 * typical > 0:
                limit = 1.5 * typical
                ax.set_ylim(bottom=0, top=limit)
                heading = f"loss (\u25b2 off scale, up to {top:.3g})"
        for prefix, style in (("", "-"), ("val_", "--")):
            values = series[prefix]
            if not any(v is not None for v in values):
                continue
            label = "validation" if prefix else "training"
            (line,) = ax.plot(epochs, values, style, marker="o", markersize=3, label=label)
            if limit:
                over = [x for x, v in zip(epochs, values, strict=True)
                        if v is not None and v > limit]
                ax.plot(over, [limit] * len(over), "^", color=line.get_color(), markersize=7,
                        clip_on=False)
        for row in changes:  # above the axes, where no curve runs
            ax.axvline(row["epoch"] - 0.5, color="grey", linewidth=0.8, linestyle=":")
            ax.annotate(f"stage {row.get('stage')}", xy=(row["epoch"] - 0.5, 1.01),
                        xycoords=("data", "axes fraction"), ha="center", va="bottom",
                        fontsize=7, color="grey", annotation_clip=False)
        if best_epoch:
            ax.axvline(best_epoch, color="#C44E52", linewidth=1.0, alpha=0.6,
                       label=f"saved (epoch {best_epoch})")
        ax.set_title(heading, fontsize=10, pad=14 if changes else 6)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves_png(history: Sequence[dict[str, Any]], title: str = "",
               best_epoch: int | None = None) -> bytes:
    """:func:`plot_curves`' figure as PNG bytes (for a page that embeds it)."""
    fig = curves_figure(history, title, best_epoch)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    _pyplot().close(fig)
    return buffer.getvalue()


def plot_curves(path: Path, history: Sequence[dict[str, Any]], title: str = "",
                best_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch, training and validation: stage changes marked (dotted, the
    stage number above the axes), the epoch saved as ``model.keras`` marked (``best_epoch``),
    and a loss scale that one huge early value (a from-scratch first epoch) does not flatten:
    such values run off the top, marked by a triangle at the top edge, and the panel's title says how high
    they went (a title, not text inside the axes, so it never covers a curve)."""
    fig = curves_figure(history, title, best_epoch)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def plot_confusion_matrix(path: Path, matrix: np.ndarray, class_names: Sequence[str],
                          title: str = "") -> None:
    """Row-normalised confusion matrix with counts, as a PNG."""
    plt = _pyplot()
    n = len(class_names)
    size = min(14.0, 2.5 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90 if n > 8 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    colour = "white" if normalised[i, j] > 0.5 else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                            color=colour)
    ax.set_title(title or "confusion matrix (rows: true class)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def per_class_report(matrix: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix."""
    out = []
    for i, name in enumerate(class_names):
        tp = float(matrix[i, i])
        predicted = float(matrix[:, i].sum())
        support = float(matrix[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append({"class": name, "precision": round(precision, 4), "recall": round(recall, 4),
                    "f1": round(f1, 4), "support": int(support)})
    return out


#: What a spreadsheet reads as the start of a formula (CSV injection, OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` as a spreadsheet shows it, never as a formula: a leading ``'`` when it starts
    like one (a class folder named ``=HYPERLINK(...)``). Quoting of commas, quotes and line
    breaks is the csv module's."""
    return f"'{text}" if text.startswith(FORMULA_START) else text


def write_per_class_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """The per-class table, for people and spreadsheets: class names made formula-safe."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["class", "precision", "recall", "f1", "support"])
    writer.writeheader()
    writer.writerows({**row, "class": spreadsheet_safe(str(row["class"]))} for row in rows)
    atomic_write_text(path, buf.getvalue())


def format_per_class(rows: Sequence[dict[str, Any]]) -> str:
    width = max([len("class")] + [len(str(r["class"])) for r in rows])
    lines = [f"{'class':<{width}}  precision  recall  f1      support"]
    for r in rows:
        lines.append(f"{r['class']:<{width}}  {r['precision']:<9.3f}  {r['recall']:<6.3f}  "
                     f"{r['f1']:<6.3f}  {r['support']}")
    return "\n".join(lines)
