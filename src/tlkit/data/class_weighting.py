"""Per-class loss weights for imbalanced data.

They reach the loss as per-example *sample weights* (the third element of each batch that
:func:`tlkit.data.make_dataset` yields), not through ``model.fit(class_weight=...)``: Keras'
``class_weight`` argument only works for some dataset element structures and label shapes
(not one-hot or mixed labels) and not under every distribution strategy, while sample weights
work everywhere, and after mixup the weight follows the mixed label.
"""

from __future__ import annotations

from typing import Literal

from tlkit.data.bundle import DataBundle
from tlkit.errors import UserError


def class_weights(
    bundle: DataBundle,
    mode: Literal["auto", "balanced", "none"] = "auto",
    threshold: float = 1.5,
) -> dict[int, float] | None:
    """Class index to loss weight, from the training split's class counts.

    ``balanced`` gives class c the weight ``n / (k * count_c)`` (scikit-learn's "balanced"),
    so every class contributes equally to the loss on average; ``auto`` does that only when
    the largest/smallest class ratio exceeds ``threshold``; ``none`` returns ``None``. The
    decision is recorded in ``bundle.report``.

    Args:
        bundle: The data, after :func:`tlkit.data.check_data` if it ran.
        mode: ``auto``, ``balanced`` or ``none``.
        threshold: Imbalance ratio above which ``auto`` balances.

    Returns:
        ``{class index: weight}``, or ``None`` for unweighted training.
    """
    if mode not in ("auto", "balanced", "none"):
        raise UserError(f"data.class_weights must be auto, balanced or none, not {mode!r}")
    counts = bundle.train.counts(bundle.num_classes)
    report = bundle.report
    report.class_weight_mode = mode
    report.class_weights = None
    present = counts[counts > 0]
    ratio = float(present.max() / present.min()) if len(present) else 1.0
    if mode == "none" or (mode == "auto" and ratio <= threshold):
        return None
    n, k = int(counts.sum()), bundle.num_classes
    weights = {c: (n / (k * int(counts[c])) if counts[c] else 0.0) for c in range(k)}
    report.class_weights = {bundle.class_names[c]: round(w, 6) for c, w in weights.items()}
    return weights
