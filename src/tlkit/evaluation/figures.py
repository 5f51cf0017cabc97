"""A run's figures: the training curves and the confusion matrix, as PNG files (written
atomically) or bytes for a page."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.io import atomic_path


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
