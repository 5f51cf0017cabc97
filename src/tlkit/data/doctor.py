"""The data doctor: open every image once before training, so bad data never kills a run.

Unreadable files are removed from their split and listed with the reason; images that
TensorFlow's decoder would misread (EXIF-rotated, with transparent pixels, CMYK without Adobe's
marker, BMP, GIF, WebP, TIFF; :func:`tlkit.data.images.conversion_reason`) are replaced by RGB PNG
copies, while grey, palette and 16-bit JPEG/PNG files, which it widens to RGB itself, are read
as they are; byte-identical images shared by train and val/test, near-duplicate images (a
perceptual hash of the pixels already decoded; :mod:`tlkit.data.mistakes`), small classes and
the class imbalance go into the report. Nothing is removed for being a near copy: it is listed.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tlkit.data.bundle import DataBundle, DataReport, Split
from tlkit.data.images import BadImageError, conversion_reason, read_image, to_rgb
from tlkit.data.mistakes import MAX_HASHED_IMAGES, find_near_duplicates, perceptual_hash
from tlkit.errors import UserError
from tlkit.io import atomic_path, atomic_write_json

CONVERTED_DIR = Path("data_cache") / "converted"
_CACHE_FILE = Path("data_cache") / "doctor.json"
#: Bumped when what counts as needing conversion changes, so older verdicts are not reused.
_CACHE_VERSION = 3  # 3: a perceptual hash per image


def check_data(
    bundle: DataBundle,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    min_images_per_class: int = 5,
    workers: int | None = None,
    strict: bool = False,
) -> DataReport:
    """Check every image of ``bundle`` and fix what can be fixed, in place.

    Skipped files leave their split; files TensorFlow cannot read as they are are swapped for
    PNG copies in ``run_dir/data_cache/converted/``. Without ``run_dir`` the copies go to a
    ``tlkit-converted-*`` folder in the system's temporary directory, made only when a file
    needs one and removed when the process exits (normally, on an error or on Ctrl-C). With a
    ``run_dir``, results are remembered in ``data_cache/doctor.json`` by path, size and
    modification time, so a resumed run does not read unchanged files again.

    Args:
        bundle: What :func:`tlkit.data.load_data` returned; its splits are updated.
        run_dir: The run's folder, or ``None``.
        progress: Show a progress bar on stderr (only when stderr is a terminal).
        min_images_per_class: Classes with fewer training images are reported.
        workers: Threads reading images; default from the CPU count.

    Returns:
        ``bundle.report``, updated.

    Raises:
        UserError: A class has no training image left after skipping bad files.
    """
    report = bundle.report
    report.skipped, report.converted, report.duplicates, report.small_classes = [], [], [], []
    report.near_duplicates = {}
    converter = _Converter(Path(run_dir) / CONVERTED_DIR if run_dir else None)
    cache = _DoctorCache(Path(run_dir) / _CACHE_FILE if run_dir else None)
    unique = sorted({p for s in bundle.splits().values() if s.paths for p in s.paths})
    results = _inspect_all(unique, converter, cache, progress, workers)
    cache.save()
    digests: dict[str, list[dict]] = {}
    hashed: list[tuple[dict, str | None]] = []
    in_memory = sum(len(s) for s in bundle.splits().values() if s.in_memory)
    for name, split in bundle.splits().items():
        setattr(bundle, name, _apply(name, split, bundle, results, digests, report,
                                     hashed if in_memory <= MAX_HASHED_IMAGES else None))
    report.duplicates = _cross_split_duplicates(digests)
    if hashed:
        report.near_duplicates = find_near_duplicates([i for i, _ in hashed],
                                                      [h for _, h in hashed])
    elif in_memory > MAX_HASHED_IMAGES:
        report.near_duplicates = {"summary": {"note": f"not checked: {in_memory} in-memory "
                                              f"images (more than {MAX_HASHED_IMAGES})"},
                                  "groups": []}
    bundle.refresh_counts()
    _check_classes(bundle, min_images_per_class, strict)
    if strict:
        _refuse_findings(bundle)
    report.checked = True
    return report


def _inspect_all(paths, converter, cache, progress, workers) -> dict[str, dict]:
    from tqdm import tqdm

    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    bar = tqdm(
        total=len(paths),
        desc="checking images",
        unit="img",
        file=sys.stderr,
        disable=not (progress and sys.stderr.isatty()) or not paths,
    )
    results = {}

    def inspect(path: str) -> tuple[str, dict]:
        result = cache.get(path)
        if result is None:
            result = _inspect(path, converter)
            cache.put(path, result)
        return path, result

    with bar, ThreadPoolExecutor(max_workers=workers) as pool:
        for path, result in pool.map(inspect, paths):
            results[path] = result
            bar.update(1)
    return results


def _inspect(path: str, converter: _Converter) -> dict:
    """``{status: ok|convert|skip, reason, sha1, phash, to}`` for one file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return {"status": "skip", "reason": "file not found"}
    except OSError as exc:
        return {"status": "skip", "reason": f"cannot open file ({exc.strerror or exc})"}
    sha1 = hashlib.sha1(data).hexdigest()
    try:
        image = read_image(path, data)
        reason = conversion_reason(image, data)
        if reason is None:
            return {"status": "ok", "sha1": sha1, "phash": _phash(image)}
        rgb = to_rgb(image)
        return {"status": "convert", "reason": reason, "sha1": sha1, "phash": _phash(rgb),
                "to": converter.write(path, sha1, rgb)}  # fmt: skip
    except BadImageError as exc:
        return {"status": "skip", "reason": exc.reason, "sha1": sha1}
    except Exception as exc:  # a conversion PIL cannot do is a bad file, not a crash
        return {"status": "skip", "reason": f"cannot convert ({exc})", "sha1": sha1}


def _phash(image) -> str | None:
    """The image's pHash, from the pixels already decoded (the widening to RGB the pipeline
    does, when the mode needs it); None when it cannot be taken (never a reason to skip)."""
    try:
        if not isinstance(image, np.ndarray) and image.mode not in ("RGB", "L"):
            image = to_rgb(image)
        return perceptual_hash(image)
    except Exception:  # noqa: BLE001 - a hash it cannot take leaves the image out of the check
        return None


def _apply(name, split: Split, bundle, results, digests, report, hashed=None) -> Split:
    keep = []
    for i, (origin, label) in enumerate(zip(split.origins, split.labels, strict=True)):
        item = {"path": origin, "split": name, "label": bundle.class_names[int(label)]}
        if split.in_memory:
            image = split.images[i]
            sha1 = hashlib.sha1(str(image.shape).encode() + image.tobytes()).hexdigest()
            if hashed is not None:
                hashed.append((item, _phash(image)))
        else:
            result = results[split.paths[i]]
            if result["status"] == "skip":
                report.skipped.append({**item, "reason": result["reason"]})
                continue
            if result["status"] == "convert":
                report.converted.append({"path": origin, "to": result["to"], "reason": result["reason"]})  # fmt: skip
            sha1 = result["sha1"]
            if hashed is not None:
                hashed.append((item, result.get("phash")))
        digests.setdefault(sha1, []).append(item)
        keep.append(i)
    if split.in_memory:
        return split
    kept = split.subset(keep)
    kept.paths = [results[p].get("to") or p for p in kept.paths]
    return kept


def _cross_split_duplicates(digests: dict[str, list[dict]]) -> list[dict]:
    """Byte-identical images in train and in val/test (a leak), or under several classes (a
    label that contradicts itself)."""
    groups = []
    for sha1, items in sorted(digests.items()):
        splits = {i["split"] for i in items}
        kinds = []
        if "train" in splits and splits & {"val", "test"}:
            kinds.append("train and val/test")
        if len({i.get("label") for i in items}) > 1:
            kinds.append("several classes")
        if kinds:
            groups.append({"sha1": sha1, "kind": " and ".join(kinds), "items": items})
    return groups


def _refuse_findings(bundle: DataBundle) -> None:
    """``data.strict``: anything the doctor had to skip, convert, drop or flag is an error."""
    r = bundle.report
    found = [(len(r.skipped), "unreadable files skipped"), (len(r.converted), "files converted"),
             (len(r.dropped_classes), "classes dropped"),
             (len(r.duplicates), "duplicate images across splits or classes"),
             (len(r.unlisted), "folders that could not be read")]
    found = [f"{n} {what}" for n, what in found if n]
    if found:
        first = (r.skipped or r.converted or r.unlisted or [{}])[0].get("path", "")
        raise UserError(f"data {bundle.source}: data.strict is on and the check found "
                        f"{', '.join(found)}" + (f" (first: {first})" if first else "")
                        + "; fix the data or set data.strict: false to have them reported")


def _check_classes(bundle: DataBundle, minimum: int, strict: bool = False) -> None:
    report = bundle.report
    train = report.counts["train"]
    empty = [c for c, n in train.items() if n == 0]
    if empty and not strict and len(train) - len(empty) >= 2:
        bundle.drop_classes(empty, "no readable training images (every file was skipped)")
        train = report.counts["train"]
        empty = []
    if empty:
        raise UserError(
            f"data {bundle.source}: after skipping {len(report.skipped)} unreadable files, "
            f"{len(empty)} classes have no training images: {', '.join(map(repr, empty[:10]))}. "
            f"First skipped: {', '.join(s['path'] + ' (' + s['reason'] + ')' for s in report.skipped[:3])}"
        )
    report.small_classes = [
        {"class": c, "train": n, "minimum": minimum} for c, n in train.items() if n < minimum
    ]


class _Converter:
    """Writes RGB PNG copies, into a temporary folder made on first use when none is given."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._lock = threading.Lock()

    def write(self, path: str, sha1: str, image) -> str:
        with self._lock:
            if self.folder is None:
                self.folder = _temporary_folder()
            self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{Path(path).stem[:60]}-{sha1[:12]}.png"
        if not target.exists():
            with atomic_path(target) as tmp:
                image.save(tmp, format="PNG")
        return str(target)


def _temporary_folder() -> Path:
    """A fresh ``tlkit-converted-*`` folder that this process removes when it exits.

    The bundle's paths point into it for as long as the process lives (datasets read them
    lazily), so it is tied to the process, not to the converter: ``atexit`` runs on a normal
    exit, ``sys.exit`` and an uncaught exception, KeyboardInterrupt included.
    """
    folder = Path(tempfile.mkdtemp(prefix="tlkit-converted-"))
    atexit.register(_remove_folder, folder, os.getpid())
    return folder


def _remove_folder(folder: Path, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked child, which shares the parent's handlers
        shutil.rmtree(folder, ignore_errors=True)


class _DoctorCache:
    """Earlier results by path, valid while the file's size and mtime are unchanged."""

    def __init__(self, file: Path | None):
        self.file = file
        self._lock = threading.Lock()
        self.entries: dict[str, dict] = {}
        if file is not None and file.exists():
            try:
                saved = json.loads(file.read_text())
            except (OSError, ValueError):
                saved = {}
            if isinstance(saved, dict) and saved.get("version") == _CACHE_VERSION:
                self.entries = saved.get("entries", {})

    def get(self, path: str) -> dict | None:
        entry = self.entries.get(path)
        if entry is None or entry.get("stamp") != _stamp(path):
            return None
        if entry["result"].get("to") and not os.path.exists(entry["result"]["to"]):
            return None
        return entry["result"]

    def put(self, path: str, result: dict) -> None:
        stamp = _stamp(path)
        if self.file is not None and stamp is not None:
            with self._lock:
                self.entries[path] = {"stamp": stamp, "result": result}

    def save(self) -> None:
        if self.file is not None and self.entries:
            atomic_write_json(self.file, {"version": _CACHE_VERSION, "entries": self.entries})


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]
