"""Calibrated confidence: temperature scaling (Guo et al. 2017), expected calibration error and
the reliability diagram.

After training, :func:`calibrate_run` fits one temperature ``T`` on the validation split
(softmax(logits / T), minimising the negative log-likelihood; argmax, so accuracy, unchanged),
and appends it to ``model.keras`` as Keras' own pieces (``ops.log`` of the probabilities, a
``Rescaling(1/T)`` named ``calibration``, a ``Softmax``), so ``tlkit predict``, every export and
a plain ``keras.models.load_model`` all give the calibrated probabilities. ``calibration.json``
records ``T`` and the ECE and NLL before and after (on val, and on test when there is one);
``reliability.png`` draws both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tlkit.io import atomic_path, atomic_write_json
from tlkit.models.heads import CALIBRATION_LAYERS

CALIBRATION_FILE = "calibration.json"
LAYER, OUTPUT = CALIBRATION_LAYERS
EPS = 1e-12


def rescale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / T)`` (the same as ``softmax(logits / T)``)."""
    z = np.log(np.clip(probs, EPS, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0))))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between accuracy and confidence over ``bins`` equal-width
    confidence bins (Naeini et al. 2015; Guo et al. 2017, eq. 3)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in [0.05, 20] that minimises the NLL of ``rescale(probs, T)``."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0
    result = minimize_scalar(lambda log_t: nll(rescale(probs, float(np.exp(log_t))), labels),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                             options={"xatol": 1e-4})
    t = float(np.exp(result.x))
    return t if nll(rescale(probs, t), labels) <= nll(probs, labels) else 1.0


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict[str, Any]]:
    """Per confidence bin: its range, count, mean confidence and accuracy."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = which == b
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]),
                     "count": int(members.sum()),
                     "confidence": float(confidence[members].mean()) if members.any() else None,
                     "accuracy": float(correct[members].mean()) if members.any() else None})
    return rows


def summary(probs: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    after = rescale(probs, temperature)
    return {
        "count": int(len(labels)),
        "ece_before": expected_calibration_error(probs, labels),
        "ece_after": expected_calibration_error(after, labels),
        "nll_before": nll(probs, labels), "nll_after": nll(after, labels),
        "reliability_before": reliability(probs, labels),
        "reliability_after": reliability(after, labels),
    }


def plot_reliability(path: Path, stats: dict[str, Any], temperature: float) -> None:
    """Accuracy against confidence per bin, before and after scaling, with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, key, title in ((axes[0], "before", "before"), (axes[1], "after", f"T = {temperature:.2f}")):
        rows = [r for r in stats[f"reliability_{key}"] if r["count"]]
        centres = [(r["low"] + r["high"]) / 2 for r in rows]
        width = rows[0]["high"] - rows[0]["low"] if rows else 0.1
        ax.bar(centres, [r["accuracy"] for r in rows], width=width * 0.9, color="#4C72B0",
               label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.set_title(f"{title}: ECE {100 * stats[f'ece_{key}']:.2f}%")
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def with_temperature(model, temperature: float):
    """``model`` followed by the temperature (Keras' own layers and ops; no weights)."""
    import keras

    probs = model.outputs[0]
    z = keras.ops.log(keras.ops.clip(probs, EPS, 1.0))
    z = keras.layers.Rescaling(1.0 / temperature, name=LAYER, dtype="float32")(z)
    out = keras.layers.Softmax(name=OUTPUT, dtype="float32")(z)
    return keras.Model(model.inputs, out, name=model.name)


def is_calibrated(model) -> bool:
    return any(layer.name == LAYER for layer in model.layers)


def calibrate_run(run_dir: Path, scored: dict[str, tuple[np.ndarray, np.ndarray]], model,
                  log=print) -> tuple[dict[str, Any] | None, Any]:
    """Fit ``T`` on ``scored["val"]`` (probabilities, labels), append it to ``model`` and save
    that as ``run_dir/model.keras`` (atomically), with ``calibration.json`` and
    ``reliability.png``. Returns the record and the calibrated model as saved (so the caller
    need not load it again), or ``(None, None)`` without a validation split."""
    if "val" not in scored or not len(scored["val"][1]):
        return None, None
    probs, labels = scored["val"]
    temperature = fit_temperature(probs, labels)
    record: dict[str, Any] = {"temperature": temperature, "fitted_on": "val"}
    for name, (p, y) in scored.items():
        record[name] = summary(p, y, temperature)
    # model.keras last: until it holds T, a rerun of the run calibrates again
    atomic_write_json(Path(run_dir) / CALIBRATION_FILE, record)
    plot_reliability(Path(run_dir) / "reliability.png", record["val"], temperature)
    calibrated = with_temperature(model, temperature)
    with atomic_path(Path(run_dir) / "model.keras") as tmp:
        calibrated.save(tmp)
    val = record["val"]
    log(f"calibration: temperature {temperature:.3f} fitted on {val['count']} val images; "
        f"ECE {100 * val['ece_before']:.2f}% -> {100 * val['ece_after']:.2f}%, "
        f"NLL {val['nll_before']:.4f} -> {val['nll_after']:.4f}; in model.keras and every export")
    return record, calibrated
