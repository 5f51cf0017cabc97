"""A run's tables: the per-epoch history (``history.csv``), the confusion matrix and the
per-class scores (``per_class.csv``, with class names made safe for spreadsheets), written
atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.io import atomic_write_text


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


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


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
    """The per-class table as aligned text, for a terminal."""
    width = max([len("class")] + [len(str(r["class"])) for r in rows])
    lines = [f"{'class':<{width}}  precision  recall  f1      support"]
    for r in rows:
        lines.append(f"{r['class']:<{width}}  {r['precision']:<9.3f}  {r['recall']:<6.3f}  "
                     f"{r['f1']:<6.3f}  {r['support']}")
    return "\n".join(lines)
