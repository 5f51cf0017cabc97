"""``tlkit export``'s work: convert, run each artifact in its own runtime, gate, report
(see :mod:`tlkit.export`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlkit import runtime
from tlkit.data.pipeline import iterate_images
from tlkit.errors import UserError
from tlkit.evaluation.loading import load_trained
from tlkit.export.convert import ExportError, size_bytes
from tlkit.export.formats import FORMATS, GATES, Format, Sources
from tlkit.io import atomic_write_json
from tlkit.recipes.rundata import run_data
from tlkit.rundir import RunDir
from tlkit.runtime import UntrustedArtifact, check_artifact, latency_ms, run_all

REPORT_FILE = RunDir.EXPORT_REPORT


@dataclass
class ArtifactCheck:
    """One artifact's parity with the Keras model."""

    format: str
    path: str
    runtime: str
    images: int
    agreement: float | None
    top1: float | None
    keras_top1: float | None
    max_abs_diff: float | None
    size_mb: float | None
    latency_ms: float | None
    keras_latency_ms: float
    gate: dict[str, Any]
    passed: bool
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Why ``tlkit predict`` will refuse this artifact without ``--trust`` (ops outside
    #: :data:`tlkit.runtime.PURE_OPS`), or None.
    needs_trust: str | None = None

    @classmethod
    def not_made(cls, fmt: str, reason: str, keras_ms: float) -> ArtifactCheck:
        """A format whose converter or runtime failed: nothing to compare."""
        return cls(fmt, "", "", 0, None, None, None, None, None, None, keras_ms,
                   GATES[FORMATS[fmt].gate], False, [reason])

    def row(self) -> list[str]:
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
        num = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        return [self.format, pct(self.agreement), pct(self.top1), pct(self.keras_top1),
                num(self.max_abs_diff, ".1e"), num(self.size_mb, ".1f"),
                num(self.latency_ms, ".2f"), "pass" if self.passed else "FAIL"]


@dataclass
class ExportReport:
    """What ``tlkit export`` did: every artifact's check, where they are, and on what."""

    run_dir: str
    folder: str
    held_out: str
    images: int
    checks: list[ArtifactCheck] = field(default_factory=list)
    allow_drift: bool = False
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data

    def table(self) -> str:
        head = ["format", "agree %", "top-1 %", "keras %", "max |dp|", "MB", "ms/img", "gate"]
        rows = [head, *(c.row() for c in self.checks)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        keras_ms = self.checks[0].keras_latency_ms if self.checks else float("nan")
        lines.append(f"({self.images} {self.held_out} images; Keras model {keras_ms:.2f} ms/img "
                     "at batch 1; agree: same top-1 class as the Keras model; top-1: accuracy "
                     "on the labels)")
        for c in self.checks:
            for failure in c.failures:
                lines.append(f"{c.format}: {failure}")
        return "\n".join(lines)


def export_run(
    run_dir: str | os.PathLike,
    formats: list[str],
    *,
    out: str | os.PathLike | None = None,
    allow_drift: bool = False,
    max_images: int = 500,
    calibration_images: int = 200,
    log: Callable[[str], None] = print,
) -> ExportReport:
    """Export a finished run's model to ``formats`` and check each one (see the module doc).

    Args:
        run_dir: A run directory (``model.keras``, ``labels.json``, ``recipe.yaml``).
        formats: Keys of :data:`FORMATS`.
        out: Folder for the artifacts (default ``RUN/export``).
        allow_drift: Keep a failed artifact under its normal name and exit 0.
        max_images: Held-out images the gate runs on (an even share of every class when the split has more).
        calibration_images: Class-balanced training images for int8 calibration.
        log: Where progress goes.

    A format whose converter or runtime fails is reported as failed (with the converter's
    reason) and the other formats are still made and checked.

    Raises:
        UserError: not a run directory, an unknown format, no images to check on.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserError(f"unknown export format {', '.join(unknown) or '(none)'}; "
                        f"choose from {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    if not (run_dir.is_dir() and RunDir(run_dir).has_model()):
        raise UserError(f"{run_dir} is not a finished run directory (no {RunDir.MODEL}); "
                        "export takes the folder a finetune wrote")

    loaded = load_trained(run_dir)
    model, contract = loaded.model, loaded.contract
    held_name, held, train, num_classes = _held_out(run_dir, loaded)
    if len(held) > max_images:  # an even share of every class, not the first classes in order
        held = held.subset(_balanced(held.labels, num_classes, max_images))
    images, labels = _arrays(held, loaded.image_size, contract, max_images)
    folder = Path(out) if out else RunDir(run_dir).export
    folder.mkdir(parents=True, exist_ok=True)
    for name in (RunDir.LABELS,):
        shutil.copyfile(run_dir / name, folder / name)
    contract.save(folder)
    log(f"export: {len(images)} {held_name} images for the parity gate; artifacts in {folder}")

    reference = run_all(lambda b: np.asarray(model(b, training=False)), images)
    keras_ms = latency_ms(lambda b: np.asarray(model(b, training=False)), images)
    keras_top1 = _top1(reference, labels)
    report = ExportReport(str(run_dir), str(folder), held_name, len(images),
                          allow_drift=allow_drift, machine=_machine())
    scratch = Path(tempfile.mkdtemp(prefix="tlkit-export-"))
    try:
        inputs = scratch / "inputs.npy"
        np.save(inputs, images)
        sources = Sources(model, scratch, lambda: _calibration(
            train, loaded.image_size, contract, num_classes, calibration_images))
        for fmt in formats:
            started = time.perf_counter()
            spec = FORMATS[fmt]
            target = folder / spec.file
            _clear_failed(target)
            try:
                spec.write(sources, target)
                probs, ms = run_in_fresh_process(target, inputs, scratch)
                check = _check(spec, target, probs, reference, labels, keras_top1, ms, keras_ms)
            except ExportError as exc:
                report.checks.append(ArtifactCheck.not_made(fmt, str(exc), keras_ms))
                log(f"export: {fmt} FAILED: {exc}")
                continue
            check.seconds = round(time.perf_counter() - started, 1)
            try:
                check_artifact(str(target))
            except UntrustedArtifact as exc:
                check.needs_trust = str(exc)
                log(f"export: {fmt}: tlkit predict will need --trust for it: {exc}")
            if not check.passed and not allow_drift:
                marked = _mark_failed(target)
                check.path = str(marked)
            report.checks.append(check)
            log(f"export: {fmt} -> {check.path} ({'passed' if check.passed else 'FAILED'} the "
                f"parity gate, {check.seconds:.0f}s)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    atomic_write_json(folder / REPORT_FILE, report.to_dict())
    return report


def _held_out(run_dir: Path, loaded):
    """The run's held-out split and its training split, rebuilt from its resolved recipe
    exactly as the run split them: test when the run has one (nothing in the run looked at
    it; val chose the epoch and the temperature, and a head cross-fitted on every labelled
    image trained on val), else val."""

    recipe, bundle = run_data(run_dir)
    if bundle.class_names != loaded.class_names:
        raise UserError(f"{recipe.data.source} no longer has the classes {run_dir} was trained "
                        "on; the parity gate needs the run's own data")
    for name in ("test", "val"):
        split = getattr(bundle, name)
        if len(split):
            return name, split, bundle.train, bundle.num_classes
    raise UserError(f"{run_dir} has no validation or test images to check an export on")


def _arrays(split, image_size: int, contract, limit: int):

    xs, ys, count = [], [], 0
    for images, labels in iterate_images(split, image_size, 64, contract):
        xs.append(images)
        ys.append(labels)
        count += len(images)
        if count >= limit:
            break
    return np.concatenate(xs)[:limit].astype(np.float32), np.concatenate(ys)[:limit]


def _balanced(labels, num_classes: int, limit: int) -> np.ndarray:
    """At most ``limit`` indices, the same number from every class (a seeded choice), in
    split order; a class with fewer gives all it has and the rest go to the others."""
    rng = np.random.default_rng(0)
    by_class = [rng.permutation(np.flatnonzero(labels == c)).tolist() for c in range(num_classes)]
    picked: list[int] = []
    while len(picked) < limit and any(by_class):
        for members in by_class:
            if members and len(picked) < limit:
                picked.append(members.pop())
    return np.array(sorted(picked))


def _calibration(train, image_size: int, contract, num_classes: int, limit: int):
    """A class-balanced sample of the training split (the evaluation view, no augmentation)
    as batches of 1, for the int8 converter's representative dataset."""
    picked = _balanced(train.labels, num_classes, limit)
    images, _ = _arrays(train.subset(picked), image_size, contract, len(picked))
    return lambda: (images[i : i + 1] for i in range(len(images)))


def run_in_fresh_process(artifact: Path, inputs: Path, scratch: Path):
    """Run ``runtime.py`` on the artifact in a new Python process (nothing of tlkit imported)."""
    output = scratch / f"{artifact.name}.npz"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run(
            [sys.executable, runtime.__file__, str(artifact), str(inputs), str(output)],
            capture_output=True, text=True, env=env, timeout=1800, check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExportError(f"{artifact} did not finish in its runtime within 30 minutes") from None
    if done.returncode != 0:
        tail = "\n  ".join(done.stderr.strip().splitlines()[-4:])
        raise ExportError(f"{artifact} failed in its runtime (exit {done.returncode}):\n  {tail}")
    with np.load(output) as result:
        return result["probabilities"], float(result["latency_ms"])


def _top1(probs, labels) -> float | None:
    if not len(labels):
        return None
    return float((probs.argmax(axis=1) == labels).mean())


def _check(spec: Format, path: Path, probs, reference, labels, keras_top1, ms, keras_ms):

    if probs.shape != reference.shape:
        raise ExportError(f"{path} gives outputs of shape {probs.shape}, the Keras model "
                          f"{reference.shape}")
    agreement = float((probs.argmax(axis=1) == reference.argmax(axis=1)).mean())
    diff = float(np.abs(probs - reference).max()) if probs.size else 0.0
    top1 = _top1(probs, labels)
    gate = GATES[spec.gate]
    failures = []
    if gate["min_agreement"] is not None and agreement < gate["min_agreement"]:
        failures.append(f"top-1 agreement {100 * agreement:.2f}% is below "
                        f"{100 * gate['min_agreement']:.1f}%")
    if gate["max_abs_diff"] is not None and diff > gate["max_abs_diff"]:
        failures.append(f"probabilities differ by up to {diff:.2e}, more than "
                        f"{gate['max_abs_diff']:.0e}")
    drop = gate["max_accuracy_drop"]
    if drop is not None and len(probs):
        drop = max(drop, 1 / len(probs))  # the gate cannot resolve less than one image
    if drop is not None and top1 is not None and keras_top1 - top1 > drop + 1e-9:
        failures.append(f"top-1 accuracy {100 * top1:.2f}% is {100 * (keras_top1 - top1):.2f} "
                        f"points below the Keras model's {100 * keras_top1:.2f}% (at most "
                        f"{100 * drop:.2g} allowed: 1 point, or one image of {len(probs)})")
    return ArtifactCheck(
        format=spec.name, path=str(path), runtime=spec.runtime,
        images=len(probs), agreement=agreement, top1=top1, keras_top1=keras_top1,
        max_abs_diff=diff, size_mb=round(size_bytes(path) / 2**20, 3), latency_ms=ms,
        keras_latency_ms=keras_ms, gate=gate, passed=not failures, failures=failures,
    )


def _marked_name(target: Path) -> Path:
    if target.suffix:
        return target.with_name(f"{target.stem}.FAILED-PARITY{target.suffix}")
    return target.with_name(f"{target.name}.FAILED-PARITY")


def _mark_failed(target: Path) -> Path:
    """Keep a failed artifact under a name no one deploys by accident."""
    marked = _marked_name(target)
    _clear(marked)
    os.replace(target, marked)
    return marked


def _clear_failed(target: Path) -> None:
    _clear(_marked_name(target))


def _clear(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _machine() -> dict[str, Any]:
    import platform

    versions = {}
    for module in ("tensorflow", "keras", "onnxruntime", "tf2onnx", "ai_edge_litert"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - absent or without a version
            versions[module] = None
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), **versions}


def read_report(folder: str | os.PathLike) -> dict[str, Any]:
    """An export folder's ``export_report.json``."""
    return json.loads((Path(folder) / REPORT_FILE).read_text())
