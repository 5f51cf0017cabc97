"""Calibrated confidence: temperature scaling (Guo et al. 2017), expected calibration error and
the reliability diagram.

After training, :func:`calibrate_run` fits one temperature ``T`` on the validation split
(softmax(logits / T), minimising the negative log-likelihood; argmax, so accuracy, unchanged),
and puts it in ``model.keras`` as Keras' own pieces (the final softmax moved after a
``Rescaling(1/T)`` named ``calibration``: one softmax of the tempered logits), so ``tlkit predict``, every export and
a plain ``keras.models.load_model`` all give the calibrated probabilities. ``calibration.json``
records ``T`` and the ECE and NLL before and after (on val, and on test when there is one);
``reliability.png`` draws both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tlkit.io import atomic_path, atomic_write_json
from tlkit.models.heads import CALIBRATION_LAYERS, single_input
from tlkit.rundir import RunDir

CALIBRATION_FILE = RunDir.CALIBRATION
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


#: Bounds of a fitted temperature. Outside them a fit says more about the few images it saw
#: than about the model (a validation split classified perfectly drives the NLL's minimum to
#: T -> 0, every probability to 1.000).
T_MIN, T_MAX = 0.25, 8.0
#: Fewer validation images than this and no temperature is fitted (T = 1): five folds of
#: fewer than four images cannot say whether one helps (benchmarks/calibration_policy.py).
MIN_IMAGES = 20
FOLDS = 5


def fit_temperature(probs: np.ndarray, labels: np.ndarray, *, bounds=(T_MIN, T_MAX)) -> float:
    """The ``T`` within ``bounds`` that minimises the NLL of ``rescale(probs, T)`` on these
    images (in-sample; :func:`choose_temperature` decides whether to keep it)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0
    result = minimize_scalar(lambda log_t: nll(rescale(probs, float(np.exp(log_t))), labels),
                             bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                             options={"xatol": 1e-4})
    t = float(np.exp(result.x))
    return t if nll(rescale(probs, t), labels) <= nll(probs, labels) else 1.0


def _mean_confidence(probs: np.ndarray, temperature: float) -> float:
    return float(rescale(probs, temperature).max(axis=1).mean())


def _sharpening_cap(probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """``temperature`` raised (towards 1) until the mean confidence is at most the rule of
    succession's accuracy ``(correct + 1) / (n + 2)``: 20 of 20 right is evidence of about
    95 %, not of 100 %. Only a sharpening ``T < 1`` is capped."""
    if temperature >= 1.0:
        return temperature
    ceiling = (float((probs.argmax(axis=1) == labels).sum()) + 1) / (len(labels) + 2)
    if _mean_confidence(probs, temperature) <= ceiling:
        return temperature
    if _mean_confidence(probs, 1.0) >= ceiling:
        return 1.0
    lo, hi = np.log(temperature), 0.0  # confidence falls as T rises: bisect on log T
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _mean_confidence(probs, float(np.exp(mid))) > ceiling else (lo, mid)
    return float(np.exp(hi))


def choose_temperature(probs: np.ndarray, labels: np.ndarray, *, folds: int = FOLDS,
                       seed: int = 0, margin: float = 1.0) -> dict[str, Any]:
    """Whether these images support a temperature, and which, measured out of sample.

    The temperature is fitted ``folds`` times on the other folds and applied to the held-out
    one; the out-of-fold probabilities give the NLL and ECE a user can expect. ``T`` (fitted
    on all the images, bounded to [:data:`T_MIN`, :data:`T_MAX`], a sharpening capped by
    :func:`_sharpening_cap`) is kept only when the out-of-fold NLL is lower than without it by
    more than one standard error and the out-of-fold ECE is not higher; else ``T = 1``. Below
    :data:`MIN_IMAGES` nothing is fitted.

    Returns ``temperature``, ``kept``, ``reason`` (one sentence), ``images``, ``folds`` and,
    when fitted, ``out_of_sample``: the NLL and ECE before and after, the NLL gain's standard
    error and the ECE's bootstrap standard error (how far the figures can be trusted).
    """
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    choice: dict[str, Any] = {"temperature": 1.0, "kept": False, "images": int(n),
                              "folds": 0, "bounds": [T_MIN, T_MAX], "min_images": MIN_IMAGES}
    if n < MIN_IMAGES:
        choice["reason"] = (f"not fitted: {n} validation images are too few (at least "
                            f"{MIN_IMAGES}); the probabilities are the model's own")
        return choice
    order = np.random.default_rng(seed).permutation(n)
    out_of_fold = np.empty_like(probs)
    for k in range(folds):
        held = order[k::folds]
        rest = np.setdiff1d(order, held)
        t = _sharpening_cap(probs[rest], labels[rest], fit_temperature(probs[rest], labels[rest]))
        out_of_fold[held] = rescale(probs[held], t)
    rows = np.arange(n)
    gain = (np.log(np.clip(out_of_fold[rows, labels], EPS, 1.0))
            - np.log(np.clip(probs[rows, labels], EPS, 1.0)))  # per image, > 0 is better
    gain_se = float(gain.std(ddof=1) / np.sqrt(n))
    oos = {"nll_before": nll(probs, labels), "nll_after": nll(out_of_fold, labels),
           "nll_gain": float(gain.mean()), "nll_gain_se": gain_se,
           "ece_before": expected_calibration_error(probs, labels),
           "ece_after": expected_calibration_error(out_of_fold, labels),
           "ece_se": _bootstrap_ece_se(probs, labels, seed)}
    choice |= {"folds": folds, "out_of_sample": oos}
    fitted = fit_temperature(probs, labels)
    t_all = _sharpening_cap(probs, labels, fitted)
    choice["candidate"] = t_all  # what the images' own fit gives, kept or not
    if t_all == 1.0:
        capped = (f" once its sharpening to T = {fitted:.2f} is capped (the mean confidence is "
                  "already at what these images show the accuracy to be)" if fitted < 1 else "")
        choice["reason"] = f"not needed: T = 1 fits these images best{capped}"
    elif gain.mean() <= margin * gain_se:
        choice["reason"] = (f"not kept: T = {t_all:.2f} took the out-of-fold NLL from "
                            f"{oos['nll_before']:.4f} to {oos['nll_after']:.4f}, a gain of "
                            f"{gain.mean():+.4f} within one standard error ({gain_se:.4f})")
    elif oos["ece_after"] > oos["ece_before"]:
        choice["reason"] = (f"not kept: T = {t_all:.2f} raised the out-of-fold ECE "
                            f"({100 * oos['ece_before']:.1f}% -> {100 * oos['ece_after']:.1f}%)")
    else:
        choice |= {"temperature": t_all, "kept": True,
                   "reason": (f"kept: out of fold, NLL {oos['nll_before']:.3f} -> "
                              f"{oos['nll_after']:.3f} (gain {gain.mean():.3f} ± {gain_se:.3f}), "
                              f"ECE {100 * oos['ece_before']:.1f}% -> "
                              f"{100 * oos['ece_after']:.1f}%")}
    return choice


def _bootstrap_ece_se(probs: np.ndarray, labels: np.ndarray, seed: int, draws: int = 200) -> float:
    """The standard error of the ECE of these images (bootstrap): how much of an ECE is noise."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    values = [expected_calibration_error(probs[i], labels[i])
              for i in (rng.integers(0, n, n) for _ in range(draws))]
    return float(np.std(values, ddof=1))


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


def _logits(model):
    """The tensor before ``model``'s final softmax, as a new output of the same graph, or None.

    A final ``Dense``/``Conv`` with a softmax activation is rebuilt without it (a new layer of
    the same name, class and weights), a final ``Softmax``/``Activation("softmax")`` layer is
    dropped; anything else has no logits to reach.
    """
    import keras

    out = model.outputs[0]
    last = out._keras_history.operation
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and activation is keras.activations.softmax):
        return last.input
    if activation is not keras.activations.softmax or not hasattr(last, "get_config"):
        return None
    config = last.get_config() | {"activation": "linear"}
    linear = last.__class__.from_config(config)
    logits = linear(last.input)
    linear.set_weights(last.get_weights())
    return logits


def with_temperature(model, temperature: float):
    """``model`` with its logits divided by ``T`` before one softmax (Keras' own layers; no new
    weights): ``predictions`` loses its softmax, then ``Rescaling(1/T)`` named ``calibration``
    and a ``Softmax`` named ``calibrated``. One softmax, not softmax, log and softmax again: in
    an int8 export the first softmax's output and its log would be quantised (two ops fewer;
    the largest int8 probability difference of a ResNet-18 fell from 0.68 to 0.53 with it).
    A model whose output is not a softmax gets ``log`` of its probabilities tempered instead."""
    import keras

    z = _logits(model)
    if z is None:
        z = keras.ops.log(keras.ops.clip(model.outputs[0], EPS, 1.0))
    z = keras.layers.Rescaling(1.0 / temperature, name=LAYER, dtype="float32")(z)
    out = keras.layers.Softmax(name=OUTPUT, dtype="float32")(z)
    return keras.Model(single_input(model), out, name=model.name)


def is_calibrated(model) -> bool:
    return any(layer.name == LAYER for layer in model.layers)


def calibrate_run(run_dir: Path, scored: dict[str, tuple[np.ndarray, np.ndarray]], model,
                  log=print) -> tuple[dict[str, Any] | None, Any]:
    """Decide ``T`` on ``scored["val"]`` (probabilities, labels) by :func:`choose_temperature`,
    put it in ``model`` (``T = 1`` when not kept, so every run's file ends the same way) and save
    that as ``run_dir/model.keras`` (atomically), with ``calibration.json`` and
    ``reliability.png``. Returns the record and the calibrated model as saved (so the caller
    need not load it again), or ``(None, None)`` without a validation split."""
    if "val" not in scored or not len(scored["val"][1]):
        return None, None
    choice = choose_temperature(*scored["val"])
    return save_calibration(run_dir, choice, scored, model, "val", log=log)


def save_calibration(run_dir: Path, choice: dict[str, Any],
                     scored: dict[str, tuple[np.ndarray, np.ndarray]], model, fitted_on: str,
                     *, extra: dict[str, Any] | None = None, shown: str = "val",
                     log=print) -> tuple[dict[str, Any], Any]:
    """Write ``choice`` (from :func:`choose_temperature`) as the run's calibration: the record
    (the decision, and before/after on each scored split; ``test`` is the out-of-sample check
    when there is one), ``reliability.png`` of split ``shown``, and ``model.keras`` with ``T``."""
    temperature = choice["temperature"]
    record: dict[str, Any] = {"temperature": temperature, "fitted_on": fitted_on,
                              "decision": choice, **(extra or {})}
    candidate = choice.get("candidate", temperature)
    for name, (p, y) in scored.items():
        record[name] = summary(p, y, temperature)
        if candidate != temperature:  # what the temperature not kept would have done here
            tried = rescale(p, candidate)
            record[name] |= {"ece_candidate": expected_calibration_error(tried, y),
                             "nll_candidate": nll(tried, y)}
    # model.keras last: until it holds T, a rerun of the run calibrates again
    atomic_write_json(Path(run_dir) / CALIBRATION_FILE, record)
    plot_reliability(Path(run_dir) / RunDir.RELIABILITY, record[shown], temperature)
    calibrated = with_temperature(model, temperature)
    with atomic_path(Path(run_dir) / RunDir.MODEL) as tmp:
        calibrated.save(tmp)
    log(describe(record))
    return record, calibrated


def describe(record: dict[str, Any]) -> str:
    """One line: the decision, the out-of-sample figures and what they rest on."""
    choice = record.get("decision") or {}
    t = record["temperature"]
    head = (f"calibration: temperature {t:.3f} {choice.get('reason', '')}".rstrip()
            if choice.get("kept") else f"calibration: {choice.get('reason', 'T = 1')}")
    parts = [head]
    oos = choice.get("out_of_sample")
    if oos:
        where = "validation" if record["fitted_on"] == "val" else "labelled (out-of-fold)"
        parts.append(f"{choice['folds']}-fold over {choice['images']} {where} images, whose "
                     f"ECE is known to ± {100 * oos['ece_se']:.1f} points")
    if "test" in record and "candidate" in choice:
        test = record["test"]
        ece_t = test.get("ece_candidate", test["ece_after"])
        parts.append(f"test ({test['count']} images, never seen): ECE "
                     f"{100 * test['ece_before']:.2f}% without T, {100 * ece_t:.2f}% with "
                     f"T = {choice['candidate']:.2f}")
    return "; ".join(parts)


def calibration_table(record: dict[str, Any]) -> tuple[list[str], tuple[list[str], list[list]] | None]:
    """What the report says of ``record`` (``calibration.json``): sentences, and a table (head,
    rows) of the ECE and NLL without and with the temperature tried, in sample, out of fold and
    on test (None for a run from before the decision was recorded)."""
    choice = record.get("decision")
    fitted = record.get("all" if record.get("fitted_on") == "out_of_fold" else "val", {})
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    if not choice:
        return [f"Temperature {record['temperature']:.3f} fitted on {fitted.get('count')} "
                f"images: ECE {pct(fitted.get('ece_before'))} -> {pct(fitted.get('ece_after'))} "
                "on those same images."], None
    where = ("validation images" if record.get("fitted_on") == "val"
             else "labelled images' out-of-fold predictions (the head never saw the image it "
                  "predicted)")
    verdict = (f"Temperature {record['temperature']:.3f} is part of model.keras and every export"
               if choice.get("kept")
               else "No temperature: model.keras gives the model's own probabilities")
    sentences = [f"{verdict}. Decided on {choice['images']} {where}: {choice['reason']}."]
    t = choice.get("candidate", record["temperature"])

    def row(label, count, v, after_ece="ece_candidate", after_nll="nll_candidate"):
        return [label, count, pct(v["ece_before"]), pct(v.get(after_ece, v.get("ece_after"))),
                f"{v['nll_before']:.4f}", f"{v.get(after_nll, v.get('nll_after')):.4f}"]

    rows = [row("fitted on (in sample)", fitted.get("count"), fitted)]
    oos = choice.get("out_of_sample")
    if oos:
        rows.append(row(f"{choice['folds']}-fold, out of fold (T fitted per fold)",
                        choice["images"], oos, "ece_after", "nll_after"))
        sentences.append(f"An ECE from {choice['images']} images is known to about "
                         f"± {100 * oos['ece_se']:.1f} points (bootstrap standard error); the "
                         "in-sample row flatters the temperature, the others do not.")
    if record.get("test"):
        rows.append(row("test (never seen)", record["test"]["count"], record["test"]))
    head = ["measured on", "images", "ECE without T", f"ECE with T = {t:.2f}", "NLL without T",
            f"NLL with T = {t:.2f}"]
    return sentences, (head, rows)
