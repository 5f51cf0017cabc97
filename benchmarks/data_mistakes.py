"""The data's own mistakes: planted near-copies and flipped labels, found or not, over seeds.

**Near-duplicates.** Real photos: the 20 ImageNet validation photos that ship with ``foolbox``
and 19 of scikit-image's sample images, each whole and as its four quadrants (195 distinct
images), written as JPEG (quality 95) into a folder ``{train,val,test}/class_k/``, each image in
a random split (60/20/20) and one of 5 random classes. Then ``--copies`` planted copies per
seed, each of one image, made one of three ways (a third each): **re-encoded** (JPEG quality
60-90), **resized** (0.5-1.5x, bicubic, PNG) or **cropped** (2-8 % off each axis, at a random
offset, PNG); and placed one of three ways (a third each): in another split
(``cross_split``), in the same split and class (``within_split``) or in the same split under
another class (``conflicting_labels``). The data check (``load_data`` + ``check_data``, what
every run starts with) reports the groups; it is timed. A planted copy is found when it shares
a group with its original (or another copy of it); a reported pair is right when both files come
from the same photo. Pairs between two of the 195 photos (no copy planted) count as false:
some may be genuine look-alikes (a quadrant of sky and another of sky), so the notes look at them.

The Hamming threshold is chosen on the first ``--calibration-seeds`` seeds (the largest
distance whose pair precision stays at or above ``--min-precision``, from every pair's
distance) and scored on the other seeds; the shipped default (``NEAR_DUPLICATE_DISTANCE``) is
scored on all seeds from the data check's own report.

**Flipped labels.** scikit-learn's 1,797 handwritten digits (real scans, 8x8) upscaled to 64 px
PNGs in class folders, ``--flip`` of them (5 %) moved to a random other class folder per seed.
``tlkit finetune --backbone efficientnet_lite0 --freeze all --image-size 64 --set
augment.preset=none`` (Google's ImageNet weights, the cached-feature route, the head cross-fitted
on every labelled image) and its ``data_report.json`` ``label_issues``: recall and precision of
the flagged images against the flipped ones, precision of the top ``--flip`` ranked, and the
label check's own seconds. Digits has a few genuinely ambiguous scans: an unplanted flag may be
a real error.

    python benchmarks/data_mistakes.py [--seeds 7] [--calibration-seeds 2] [--copies 30]
        [--flip 90] [--label-seeds 5] [--workdir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

NAME = "data_mistakes"
QUICK = {"seeds": 3, "calibration_seeds": 1, "copies": 12, "flip": 20, "label_seeds": 1,
         "label_images": 400}
SKIMAGE = ("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field",
           "immunohistochemistry", "retina", "colorwheel", "moon", "clock", "coins", "grass",
           "gravel", "brick", "cell", "page", "text", "horse")
TRANSFORMS = ("re-encoded", "resized", "cropped")
PLACEMENTS = ("cross_split", "within_split", "conflicting_labels")
CLASSES = 5


def real_photos():
    """The 195 distinct real images: 39 photos, each whole and as its four quadrants."""
    import foolbox
    import numpy as np
    import skimage.data
    from PIL import Image

    folder = os.path.join(os.path.dirname(foolbox.__file__), "data")
    photos = [Image.open(p).convert("RGB") for p in sorted(glob.glob(f"{folder}/*.jpg"))]
    for name in SKIMAGE:
        a = getattr(skimage.data, name)()
        a = a.astype(np.uint8) * (255 if a.dtype == bool else 1)
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        photos.append(Image.fromarray(a.astype(np.uint8)))
    out = []
    for p in photos:
        w, h = p.size
        out.append(p)
        out += [p.crop((x, y, x + w // 2, y + h // 2))
                for x, y in ((0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2))]
    return out


def transformed(image, how: str, rng):
    """``(image, format, quality)`` of a planted copy."""
    from PIL import Image

    if how == "re-encoded":
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(60, 91)))
        return Image.open(buffer).convert("RGB"), "jpg"
    if how == "resized":
        s = rng.uniform(0.5, 1.5)
        return image.resize((max(16, round(image.width * s)), max(16, round(image.height * s))),
                            Image.BICUBIC), "png"
    w, h = image.size
    fx, fy = rng.uniform(0.02, 0.08, 2)
    left, top = int(rng.uniform(0, fx) * w), int(rng.uniform(0, fy) * h)
    return image.crop((left, top, left + w - int(fx * w), top + h - int(fy * h))), "png"


def plant_folder(root: Path, photos, copies: int, seed: int) -> dict[str, dict]:
    """Write the photos and ``copies`` planted copies; ``{path: {base, transform, placement}}``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shutil.rmtree(root, ignore_errors=True)
    splits = rng.choice(["train", "val", "test"], len(photos), p=[0.6, 0.2, 0.2])
    classes = rng.integers(0, CLASSES, len(photos))
    truth = {}
    for s in ("train", "val", "test"):
        for c in range(CLASSES):
            (root / s / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(photos):
        path = root / splits[i] / f"class_{classes[i]}" / f"photo{i:03d}.jpg"
        image.save(path, quality=95)
        truth[str(path)] = {"base": i, "transform": None, "placement": None}
    for k in range(copies):
        i = int(rng.integers(len(photos)))
        how, where = TRANSFORMS[k % 3], PLACEMENTS[(k // 3) % 3]
        split, cls = str(splits[i]), int(classes[i])
        if where == "cross_split":
            split = "train" if split != "train" else str(rng.choice(["val", "test"]))
        elif where == "conflicting_labels":
            cls = int((cls + rng.integers(1, CLASSES)) % CLASSES)
        image, fmt = transformed(photos[i], how, rng)
        path = root / split / f"class_{cls}" / f"copy{k:03d}_of_{i:03d}.{fmt}"
        image.save(path, **({"quality": 95} if fmt == "jpg" else {}))
        truth[str(path)] = {"base": i, "transform": how, "placement": where}
    return truth


def check_folder(root: Path) -> tuple[dict, float]:
    """The data check's near-duplicate report and its seconds (load + check, in process)."""
    from tlkit.data import check_data, load_data
    from tlkit.data.config import DataConfig

    started = time.perf_counter()
    bundle = load_data(DataConfig(source=str(root)), seed=0)
    check_data(bundle, None, progress=False)
    return bundle.report.near_duplicates, time.perf_counter() - started


def score_groups(groups: list[dict], truth: dict[str, dict]) -> dict:
    """Recall per transform and placement, pair precision, unplanted pairs."""
    group_of = {item["path"]: g for g, group in enumerate(groups) for item in group["items"]}
    found: dict[str, list[int]] = {k: [] for k in (*TRANSFORMS, *PLACEMENTS, "all")}
    for path, t in truth.items():
        if t["transform"] is None:
            continue
        g = group_of.get(path)
        hit = g is not None and len([p for p in group_of if group_of[p] == g
                                     and truth[p]["base"] == t["base"]]) > 1
        if hit and t["placement"] not in groups[g]["kinds"]:
            hit = False  # found, but not reported as what it is
        for key in (t["transform"], t["placement"], "all"):
            found[key].append(int(hit))
    pairs = right = 0
    unplanted = []
    for group in groups:
        for a, b, d in group["pairs"]:
            pa, pb = group["items"][a]["path"], group["items"][b]["path"]
            pairs += 1
            same = truth[pa]["base"] == truth[pb]["base"]
            right += same
            if not same:
                unplanted.append((*sorted((Path(pa).name, Path(pb).name)), d))
    out = {f"recall_{k}": (sum(v) / len(v) if v else None) for k, v in found.items()}
    out.update(pairs=pairs, precision=right / pairs if pairs else 1.0, unplanted=unplanted)
    return out


def all_distances(root: Path, truth: dict[str, dict]) -> list[tuple[int, bool, bool]]:
    """``(distance, same photo, involves a planted copy)`` of every pair within 32 bits."""
    from PIL import Image

    from tlkit.data.mistakes import hamming_pairs, perceptual_hash

    paths = sorted(truth)
    hashes = [perceptual_hash(Image.open(p).convert("RGB")) for p in paths]
    return [(d, truth[paths[a]]["base"] == truth[paths[b]]["base"],
             truth[paths[a]]["transform"] is not None or truth[paths[b]]["transform"] is not None)
            for a, b, d in hamming_pairs(hashes, 32)]


def choose_threshold(distances: list[list[tuple[int, bool, bool]]], images: list[int],
                     min_precision: float) -> tuple[int, list[list]]:
    """The largest distance whose pooled pair precision is at least ``min_precision``; the
    sweep's rows ``[distance, pair precision, pair recall, false pairs per 100k distinct
    pairs]`` (the last does not depend on how many copies were planted)."""
    rows, best = [], 0
    total_true = sum(1 for seed in distances for p in seed if p[1]) or 1
    distinct = sum(n * (n - 1) // 2 for n in images) - total_true
    for t in range(0, 25):
        pairs = [p for seed in distances for p in seed if p[0] <= t]
        true = sum(1 for p in pairs if p[1])
        precision = true / len(pairs) if pairs else 1.0
        rows.append([t, round(precision, 4), round(true / total_true, 4),
                     round(1e5 * (len(pairs) - true) / distinct, 2)])
        if precision >= min_precision:
            best = t
    return best, rows


def mean_sd(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def near_duplicate_tables(args) -> tuple[list[dict], list[str], dict]:
    from PIL import Image

    from tlkit.data.mistakes import NEAR_DUPLICATE_DISTANCE, find_near_duplicates, perceptual_hash

    photos = real_photos()
    per_seed, distances, seconds = [], [], []
    for seed in range(args.seeds):
        root = args.workdir / f"photos-{seed}"
        truth = plant_folder(root, photos, args.copies, seed)
        report, took = check_folder(root)
        seconds.append(took)
        per_seed.append(score_groups(report["groups"], truth))
        distances.append((all_distances(root, truth), truth, root))
        print(f"# seed {seed}: {len(truth)} images, {took:.2f}s, "
              f"recall {per_seed[-1]['recall_all']:.3f}, precision "
              f"{per_seed[-1]['precision']:.3f}", flush=True)
    calibration = distances[: args.calibration_seeds]
    chosen, sweep = choose_threshold([d for d, _, _ in calibration],
                                     [len(t) for _, t, _ in calibration], args.min_precision)
    held = range(args.calibration_seeds, args.seeds)
    at_chosen = []
    for seed in held:  # the chosen threshold over every image's hash
        _, truth, _ = distances[seed]
        paths = sorted(truth)
        rows = [{"path": p, "split": Path(p).parts[-3], "label": Path(p).parts[-2]}
                for p in paths]
        found = find_near_duplicates(rows, [perceptual_hash(Image.open(p).convert("RGB"))
                                            for p in paths], chosen)
        at_chosen.append(score_groups(found["groups"], truth))
    columns = ["threshold (bits)", "seeds", "re-encoded recall", "resized recall",
               "cropped recall", "cross_split recall", "within_split recall",
               "conflicting_labels recall", "all planted recall", "pair precision",
               "unplanted pairs per seed"]

    def row(label, scores, seeds):
        return [label, seeds, *[mean_sd([s[f"recall_{k}"] for s in scores])
                                for k in (*TRANSFORMS, *PLACEMENTS, "all")],
                mean_sd([s["precision"] for s in scores]),
                mean_sd([len(s["unplanted"]) for s in scores])]

    rows = [row(f"{NEAR_DUPLICATE_DISTANCE} (shipped default)", per_seed,
                f"all {args.seeds}")]
    if at_chosen:
        rows.append(row(f"{chosen} (chosen on seeds 0-{args.calibration_seeds - 1})",
                        at_chosen, f"{args.calibration_seeds}-{args.seeds - 1} (held out)"))
    images = len(photos) + args.copies
    tables = [
        {"title": f"Near-duplicates: {len(photos)} real photos + {args.copies} planted copies a "
                  "seed (mean ± s.d. over seeds)", "columns": columns, "rows": rows},
        {"title": f"Hamming threshold sweep on the calibration seeds (0-{args.calibration_seeds - 1}): "
                  "pair precision and recall over every pair", "columns":
                  ["max distance (bits)", "pair precision", "pair recall",
                   "false pairs per 100k distinct pairs"], "rows": sweep},
        {"title": "Time of the data check (load_data + check_data: decode, SHA-1, pHash, "
                  "pairwise Hamming)", "columns": ["images", "seconds", "ms per image"],
         "rows": [[images, mean_sd(seconds), round(1000 * statistics.mean(seconds) / images, 2)]]},
    ]
    unplanted = sorted({u for s in per_seed for u in s["unplanted"]})
    notes = [f"Threshold chosen on the calibration seeds: {chosen} bits (the largest with pair "
             f"precision >= {args.min_precision}); shipped default "
             f"{NEAR_DUPLICATE_DISTANCE} bits."]
    if unplanted:
        notes.append("Unplanted pairs flagged at the shipped threshold (file, file, bits): "
                     + "; ".join(f"{a} ~ {b} ({d})" for a, b, d in unplanted[:10]))
    return tables, notes, {"chosen": chosen}


def write_digits(root: Path, flip: int, seed: int, limit: int) -> set[str]:
    """Digits as 64 px PNGs in class folders, ``flip`` moved to another class; their names."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.images[:limit], digits.target[:limit]
    rng = np.random.default_rng(seed)
    flipped = set(rng.choice(len(y), flip, replace=False).tolist())
    shutil.rmtree(root, ignore_errors=True)
    names = set()
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        given = int((label + rng.integers(1, 10)) % 10) if i in flipped else int(label)
        folder = root / f"digit_{given}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels).resize((64, 64), Image.BICUBIC).convert("RGB").save(
            folder / f"{i:04d}.png")
        if i in flipped:
            names.add(f"{i:04d}.png")
    return names


def label_tables(args) -> tuple[list[dict], list[str]]:
    scores, unplanted_examples = [], []
    for seed in range(args.label_seeds):
        data = args.workdir / f"digits-{seed}"
        flipped = write_digits(data, args.flip, 100 + seed, args.label_images)
        run_dir = args.workdir / f"digits-run-{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)
        command = [sys.executable, "-m", "tlkit.cli.main", "finetune", "--backbone",
                   "efficientnet_lite0", "--freeze", "all", "--image-size", "64", "--data",
                   str(data), "--output", str(run_dir), "--set", "augment.preset=none",
                   "--set", "train.verbose=0", "--seed", str(seed)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "TLKIT_OFFLINE": "1"})
        if done.returncode:
            raise SystemExit(f"finetune exited {done.returncode}:\n{done.stderr[-3000:]}")
        seconds = time.perf_counter() - started
        whole = json.loads((run_dir / "data_report.json").read_text())
        report, near = whole["label_issues"], whole["near_duplicates"]["summary"]
        items = report["items"]
        flagged = {Path(i["path"]).name for i in items}
        top = {Path(i["path"]).name for i in items[: args.flip]}
        hits = len(flagged & flipped)
        line = re.search(r"label check: .*", done.stderr + done.stdout)
        scores.append({"recall": hits / len(flipped), "precision": hits / max(1, len(flagged)),
                       "precision_at_m": len(top & flipped) / args.flip,
                       "flagged": len(flagged), "run_s": seconds,
                       "line": line.group(0) if line else "", "near": near})
        unplanted_examples += [f"{Path(i['path']).parent.name}/{Path(i['path']).name} "
                               f"(looks like {i['suggested']}, p {i['p_given']:.3f})"
                               for i in items[:40] if Path(i["path"]).name not in flipped][:3]
        print(f"# labels seed {seed}: flagged {len(flagged)}, recall {scores[-1]['recall']:.3f}, "
              f"precision {scores[-1]['precision']:.3f}, {seconds:.0f}s", flush=True)
    table = {"title": f"Flipped labels: scikit-learn digits ({args.label_images} images, "
                      f"{args.flip} flipped a seed), efficientnet_lite0 frozen, 64 px "
                      "(mean ± s.d. over seeds)",
             "columns": ["seeds", "flagged", "recall of flipped", "precision of flagged",
                         f"precision of the top {args.flip}", "whole run s"],
             "rows": [[args.label_seeds, mean_sd([s["flagged"] for s in scores]),
                       mean_sd([s["recall"] for s in scores]),
                       mean_sd([s["precision"] for s in scores]),
                       mean_sd([s["precision_at_m"] for s in scores]),
                       mean_sd([s["run_s"] for s in scores])]]}
    near = scores[0]["near"]
    notes = [f"The run's log line (seed 0): {scores[0]['line']}",
             f"Near-duplicates on the digits folder (no copies planted; seed 0): "
             f"{near.get('groups')} groups, {near.get('pairs')} pairs within "
             f"{near.get('max_distance')} bits, {near.get('pairs_within_copy_distance')} within "
             f"{near.get('copy_distance')}; note: {near.get('note', 'none')}"]
    if unplanted_examples:
        notes.append("Flags that were not planted (first seeds; digits has ambiguous scans): "
                      + "; ".join(unplanted_examples[:6]))
    return [table], notes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=7)
    parser.add_argument("--calibration-seeds", type=int, default=2)
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--min-precision", type=float, default=0.95)
    parser.add_argument("--flip", type=int, default=90)
    parser.add_argument("--label-seeds", type=int, default=5)
    parser.add_argument("--label-images", type=int, default=1797)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tlkit-data-mistakes"))
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    tables, notes, _ = near_duplicate_tables(args)
    label_t, label_notes = label_tables(args)
    return run.finish(tables + label_t, notes=notes + label_notes)


if __name__ == "__main__":
    main()
