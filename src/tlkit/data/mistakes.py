"""The data's own mistakes, found and reported (never acted on): near-duplicate images and
likely label errors.

**Near duplicates.** Every image the data doctor reads gets a 64-bit perceptual hash (pHash:
the signs of the lowest 8x8 DCT coefficients of the 32x32 grey image; Zauner 2010, via the
``imagehash`` package), computed from the pixels the doctor already decoded. Two images whose
hashes differ in at most :data:`NEAR_DUPLICATE_DISTANCE` bits are near copies; pairs are joined
into groups around a leader (no chains of look-alikes). A group is ``cross_split`` when it spans
splits (a training image with a validation or test image is a leak that inflates the scores),
``conflicting_labels`` when its images carry different classes, else ``within_split``. The threshold was chosen by measurement
(``benchmarks/data_mistakes.py``): re-encoded (JPEG 60-90) and resized (0.5-1.5x) copies stay
within 4 bits, distinct photos are 18 bits apart or more in 99.9 % of pairs, and slightly
cropped copies (2-8 %) spread from 0 to 24 bits, so only part of them are found.

**Label errors.** Confident learning (Northcutt et al., 2021, "Confident learning: estimating
uncertainty in dataset labels", JAIR) over out-of-fold predicted probabilities: each image is
predicted by a head that never saw it, and ``cleanlab.filter.find_label_issues`` ranks the
images whose given label the model doubts most (``self_confidence``: the probability of the
given label, lowest first).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from PIL import Image

#: Largest Hamming distance between two pHashes that still counts as a near copy (measured:
#: benchmarks/data_mistakes.py, docs/data.md).
NEAR_DUPLICATE_DISTANCE = 10
#: Re-encoded (JPEG 60-90) and resized (0.5-1.5x) copies stay within this many bits (measured).
COPY_DISTANCE = 4
#: Share of all pairs between COPY_DISTANCE and NEAR_DUPLICATE_DISTANCE above which a folder's
#: images are look-alikes to the hash (photos: 6e-5; 8x8 digits upscaled: 2e-3).
LOOKALIKE_RATE = 1e-3
#: Above this many images the pairwise comparison is skipped (a note says so).
MAX_HASHED_IMAGES = 20_000
#: Items kept in ``data_report.json`` per list (the summary counts them all).
MAX_ITEMS = 500
HASH_METHOD = "pHash (64-bit DCT perceptual hash, imagehash), Hamming distance"
LABEL_METHOD = ("confident learning (cleanlab.filter.find_label_issues, ranked by "
                "self_confidence) on out-of-fold probabilities of a cross-validated logistic "
                "regression on the backbone's pooled features")


def perceptual_hash(image: Image.Image | np.ndarray) -> str:
    """The 64-bit pHash of an image (a PIL image or a uint8 array) as 16 hex digits."""
    import imagehash  # imports SciPy and PyWavelets: only when images are hashed

    if isinstance(image, np.ndarray):
        array = np.asarray(image)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        image = Image.fromarray(array.astype(np.uint8))
    return str(imagehash.phash(image))


def hamming_pairs(hashes: list[str], max_distance: int = NEAR_DUPLICATE_DISTANCE,
                  block: int = 2048) -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` for every pair ``i < j`` whose hashes differ in at most
    ``max_distance`` bits. Row blocks keep memory at ``block x N`` bytes."""
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    out = []
    for start in range(0, len(values), block):
        rows = values[start:start + block]
        dist = _popcount(rows[:, None] ^ values[None, :])
        i, j = np.nonzero(dist <= max_distance)
        i = i + start
        keep = j > i
        out += [(int(a), int(b), int(dist[a - start, b]))
                for a, b in zip(i[keep], j[keep], strict=True)]
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # NumPy 2
        return np.bitwise_count(x)
    bits = np.unpackbits(np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, 8), axis=-1)
    return bits.sum(axis=-1, dtype=np.uint8)


def _groups(n: int, pairs: list[tuple[int, int, int]], max_distance: int) -> list[list[int]]:
    """Groups with a bounded spread: pairs are taken closest first, and an image joins a group
    only when it is a near copy of the group's first image (its leader). Plain single linkage
    would chain look-alikes into one group of hundreds (measured on scikit-learn's digits)."""
    close = {(a, b): d for a, b, d in pairs}
    group_of: dict[int, int] = {}
    groups: list[list[int]] = []
    for a, b, _ in sorted(pairs, key=lambda p: (p[2], p[0], p[1])):
        ga, gb = group_of.get(a), group_of.get(b)
        if ga is None and gb is None:
            group_of[a] = group_of[b] = len(groups)
            groups.append([a, b])
            continue
        if ga is not None and gb is not None:
            continue
        g, new = (ga, b) if ga is not None else (gb, a)
        leader = groups[g][0]
        if close.get((min(leader, new), max(leader, new)), max_distance + 1) <= max_distance:
            group_of[new] = g
            groups[g].append(new)
    return [sorted(g) for g in groups]


def group_kinds(items: list[dict[str, Any]]) -> list[str]:
    """What a group of near copies means: ``conflicting_labels``, ``cross_split``,
    ``within_split`` (the first two can both hold; ``within_split`` only alone)."""
    splits = {i["split"] for i in items}
    kinds = []
    if len({i.get("label") for i in items}) > 1:
        kinds.append("conflicting_labels")
    if len(splits) > 1:  # train with val/test: a leak; val with test: counted twice
        kinds.append("cross_split")
    return kinds or ["within_split"]


def find_near_duplicates(items: list[dict[str, Any]], hashes: list[str | None],
                         max_distance: int = NEAR_DUPLICATE_DISTANCE) -> dict[str, Any]:
    """Group near-copies among ``items`` (``{path, split, label}`` each) by their hashes.

    Args:
        items: One per image.
        hashes: ``perceptual_hash`` of each (None: not hashed; left out).
        max_distance: Largest Hamming distance of a near copy.

    Returns:
        ``{summary, groups}``: ``summary`` counts groups and images by kind (and the images of
        val and test with a near copy in train), names the method and the threshold; each
        group is ``{kind, kinds, items: [{path, split, label}], pairs: [[a, b, distance]]}``
        with ``a``, ``b`` indices into its ``items``.
    """
    known = [k for k, h in enumerate(hashes) if h]
    summary: dict[str, Any] = {"method": HASH_METHOD, "max_distance": max_distance,
                               "images": len(known)}
    if len(known) > MAX_HASHED_IMAGES:
        summary["note"] = (f"not compared: {len(known)} images (more than {MAX_HASHED_IMAGES})")
        return {"summary": summary, "groups": []}
    pairs = hamming_pairs([hashes[k] for k in known], max_distance)
    groups = []
    for members in _groups(len(known), pairs, max_distance):
        where = {m: n for n, m in enumerate(members)}
        its = [dict(items[known[m]], hash=hashes[known[m]]) for m in members]
        kinds = group_kinds(its)
        own = [[where[a], where[b], d] for a, b, d in pairs if a in where and b in where]
        groups.append({"kind": kinds[0], "kinds": kinds, "items": its, "pairs": own})
    order = {"conflicting_labels": 0, "cross_split": 1, "within_split": 2}
    # the most telling first: kind, then the closest copies (look-alikes last), then the largest
    groups.sort(key=lambda g: (order[g["kind"]], min(p[2] for p in g["pairs"]),
                               -len(g["items"])))
    counts = Counter(k for g in groups for k in g["kinds"])
    leaked = Counter(i["split"] for g in groups
                     if any(m["split"] == "train" for m in g["items"])
                     for i in g["items"] if i["split"] != "train")
    close = sum(1 for p in pairs if p[2] <= COPY_DISTANCE)
    n = len(known)
    band = (len(pairs) - close) / max(1, n * (n - 1) // 2)
    if n >= 200 and band > LOOKALIKE_RATE:
        summary["note"] = (
            f"{100 * band:.2g}% of pairs are {COPY_DISTANCE + 1}-{max_distance} bits apart "
            "(about 0.006% among distinct photos): these images look alike to "
            "the hash (small or plain images), so most such pairs are look-alikes, not copies; "
            f"pairs within {COPY_DISTANCE} bits are copies (re-encoded or resized)")
    summary.update(groups=len(groups), pairs=len(pairs), copy_distance=COPY_DISTANCE,
                   pairs_within_copy_distance=close,
                   images_in_groups=sum(len(g["items"]) for g in groups),
                   by_kind={k: counts.get(k, 0) for k in order},
                   held_out_with_train_copy=dict(leaked))
    if len(groups) > MAX_ITEMS:
        summary["listed"] = f"the first {MAX_ITEMS} groups"
    return {"summary": summary, "groups": groups[:MAX_ITEMS]}


def near_duplicate_line(found: dict[str, Any] | None) -> str | None:
    """One line for the run's log, or None when nothing was found."""
    if not found or not found.get("groups"):
        return None
    s = found["summary"]
    parts = [f"{_count(n, 'image')} in {split} {'has' if n == 1 else 'have'} near-copies in "
             "train" for split, n in sorted(s.get("held_out_with_train_copy", {}).items())]
    by_kind = s.get("by_kind", {})
    if by_kind.get("conflicting_labels"):
        parts.append(f"{_count(by_kind['conflicting_labels'], 'group')} of near-copies with "
                     "different labels")
    if by_kind.get("within_split"):
        parts.append(f"{_count(by_kind['within_split'], 'group')} within one split")
    if s.get("note"):
        parts.append(f"{s['pairs_within_copy_distance']} pairs within {s['copy_distance']} bits; "
                     "many look-alikes (see the note)")
    return (f"near-duplicates (pHash within {s['max_distance']} bits): {'; '.join(parts)} "
            "(listed in data_report.json and report.html; nothing removed)")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def find_label_issues(labels: np.ndarray, probabilities: np.ndarray,
                      items: list[dict[str, Any]], class_names: list[str]) -> dict[str, Any]:
    """Likely label errors among ``items`` by confident learning on out-of-fold
    ``probabilities`` (``[N, classes]``; each row from a model that never saw that image).

    Returns:
        ``{summary, items}``, items ranked (most doubtful first): ``{path, split, label,
        suggested, p_given, p_suggested, rank}``.
    """
    from cleanlab.filter import find_label_issues as cleanlab_find  # pandas: only when used

    labels = np.asarray(labels, np.int64)
    probs = np.asarray(probabilities, np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    summary: dict[str, Any] = {"method": LABEL_METHOD, "images": int(len(labels))}
    present = np.bincount(labels, minlength=probs.shape[1])
    if len(labels) < 2 * probs.shape[1] or (present > 0).sum() < 2:
        summary.update(flagged=0, note="too few labelled images to check")
        return {"summary": summary, "items": []}
    # n_jobs=1: cleanlab's process pool would inherit the run's signal handlers, and one
    # process is fast enough for thousands of images
    ranked = cleanlab_find(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    out = []
    for rank, i in enumerate(ranked, start=1):
        suggested = int(probs[i].argmax())
        out.append({**items[i], "label": class_names[labels[i]],
                    "suggested": class_names[suggested], "p_given": float(f"{probs[i, labels[i]]:.3g}"),
                    "p_suggested": float(f"{probs[i, suggested]:.3g}"), "rank": rank})
    by_split = Counter(o["split"] for o in out)
    summary.update(flagged=len(out), by_split=dict(by_split), ranked_by="self_confidence")
    if len(out) > MAX_ITEMS:
        summary["listed"] = f"the first {MAX_ITEMS}"
    return {"summary": summary, "items": out[:MAX_ITEMS]}


def label_issue_line(found: dict[str, Any] | None) -> str | None:
    """One line for the run's log."""
    if not found:
        return None
    s = found["summary"]
    if not s.get("flagged"):
        return f"label check: no likely label errors among {s.get('images', 0)} images" + (
            f" ({s['note']})" if s.get("note") else "")
    first = found["items"][0]
    return (f"label check: {s['flagged']} of {s['images']} labelled images may be mislabelled "
            f"(most doubtful: {first['path']}, labelled {first['label']!r}, looks like "
            f"{first['suggested']!r}); listed in data_report.json and report.html, nothing "
            "relabelled")
