"""Augmentation throughput, like for like: tlkit vs albumentations vs Keras layers.

One run, one machine, the same images, the same ops with the same parameters in each tool.
The chain: mirror (p 0.5), random crop 256 -> 224, RGB shift (each channel +-20), on uint8
256x256 images in memory, delivered as batches of --batch-size:

* tlkit's Augmenter as the data pipeline calls it (``Augmenter.apply`` in tf.data: crop, mirror
  and the colour offsets per image), uint8 and float32 out;
* albumentations ``Compose([HorizontalFlip, RandomCrop, RGBShift])`` per image in a Python loop,
  stacked into batches (what a DataLoader's collate does), uint8 and float32 out; and the same
  in one process per core (``multiprocessing``, batches made and dropped in the workers: an
  upper bound for albumentations on all cores, since nothing is sent back);
* Keras layers: ``RandomFlip``, ``RandomCrop`` and per-channel offsets (Keras has no RGB-shift
  layer) on batches in tf.data, float32.

Then PCA colour, separately: tlkit's dataset PCA colour (one offset per image from statistics
computed once, as AlexNet) and albumentations' ``FancyPCA`` (a PCA of every image) are
different algorithms; each is timed added to the chain above, and no ratio is taken.

Then end to end, from JPEG files (256 per size, 320x320, 500x375 and 1024x768 by default):
decoding alone, decode + resize to 224 (a pipeline without augmentation), and tlkit's training
pipeline (``make_dataset`` with the chain, uncached: it decodes only the crop window) with
uint8 and float32 batches.

Images per second use all cores (tf.data's parallel calls, the process pool); CPU ms per image
are the process CPU time over all threads (children's for the pool). Results go to
benchmarks/results/augment_throughput.json (``--json PATH``, ``--no-save``); ``--quick`` is a
smoke test (16 images, one 320x320 size).

    python benchmarks/augment_throughput.py [--n-images 256] [--batch-size 64] [--seconds 6]
        [--rounds 3] [--jpeg-sizes 320x320,500x375,1024x768] [--skip-jpeg] [--quick]
        [--json PATH] [--no-save]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # harness, however this is run

import harness  # noqa: E402
import numpy as np  # noqa: E402

NAME = "augment_throughput"
QUICK = {"n_images": 16, "batch_size": 8, "seconds": 0.6, "rounds": 1, "jpeg_sizes": "320x320"}
SHIFT = 20  # RGB shift, each channel +-SHIFT
TLKIT_U8, TLKIT_F32 = "tlkit Augmenter, uint8 out", "tlkit Augmenter, float32 out"
ALBU_U8, ALBU_F32 = "albumentations, 1 process, uint8 out", "albumentations, 1 process, float32 out"
ALBU_ALL = "albumentations, 1 process per core, uint8 out"
KERAS = "keras layers (tf.data, batched), float32 out"
PCA_TLKIT = "tlkit chain + dataset PCA colour (sigma 0.1), uint8 out"
PCA_ALBU = "albumentations chain + FancyPCA (alpha 0.1), 1 process, uint8 out"
# albumentations' CPU ms per image over tlkit's: above 1, tlkit uses less CPU per image
CPU_RATIO = "CPU ms per image, albumentations / tlkit (above 1: tlkit uses less), {}"
CHAIN_ROWS = (TLKIT_U8, TLKIT_F32, ALBU_U8, ALBU_F32, ALBU_ALL, KERAS)
PCA_ROWS = (PCA_TLKIT, PCA_ALBU)


def make_images(n: int, side: int = 256, seed: int = 0) -> np.ndarray:
    """Smooth colourful images (like photos, JPEG-friendly), uint8 ``(n, side, side, 3)``."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 8, 8, 3)).astype(np.float32)
    smooth = tf.image.resize(coarse, [side, side], method="bicubic").numpy()
    noise = rng.normal(0, 8, smooth.shape)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def _images_only(ds):
    return (x[0] if isinstance(x, tuple) else x for x in ds)


def chain_augmenter(pca=None, **kwargs):
    """tlkit's chain: mirror, crop 256 -> 224, RGB shift +-20 (and PCA colour when ``pca``)."""
    from tlkit.augment import augment_preset, build_augmenter

    config = augment_preset(
        "paper_alexnet",
        colour_shift={"enabled": True, "max_offset": SHIFT},
        pca_colour={"enabled": pca is not None, "sigma": 0.1},
    )
    return build_augmenter(config, image_size=224, pca=pca, **kwargs)


def tlkit_augmenter(images, batch_size, **kwargs):
    import tensorflow as tf

    aug = chain_augmenter(**kwargs)
    labels = np.zeros([len(images), 1], np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).repeat()
    return aug.apply(ds, batch_size, seed=0, resize=False).prefetch(tf.data.AUTOTUNE)


def albumentations_chain(fancy_pca: bool = False):
    import albumentations as A

    ops = [
        A.HorizontalFlip(p=0.5),
        A.RandomCrop(224, 224),
        A.RGBShift(r_shift_limit=SHIFT, g_shift_limit=SHIFT, b_shift_limit=SHIFT, p=1.0),
    ]
    return A.Compose(ops + ([A.FancyPCA(alpha=0.1, p=1.0)] if fancy_pca else []))


def albumentations_batches(images, batch_size, dtype="uint8", fancy_pca=False, seed=0):
    """The albumentations chain per image, stacked into batches (a DataLoader's collate)."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    compose = albumentations_chain(fancy_pca)
    i = 0
    while True:
        batch = []
        for _ in range(batch_size):
            batch.append(compose(image=images[i % len(images)])["image"])
            i += 1
        out = np.stack(batch)
        yield out if dtype == "uint8" else out.astype(np.float32)


def _albumentations_worker(images, batch_size, seconds, seed):
    """One process of the pool: (images, seconds, CPU seconds) drawn for ``seconds``."""
    batches = albumentations_batches(images, batch_size, seed=seed)
    for _ in range(2):
        next(batches)
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds or count == 0:
        count += len(next(batches))
    return count, time.perf_counter() - start, time.process_time() - cpu


class AlbumentationsPool:
    """albumentations on every core: one process per core, each making its own batches."""

    def __init__(self, images, batch_size, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self.images, self.batch_size = images, batch_size
        self.pool = multiprocessing.get_context("spawn").Pool(self.workers)

    def measure(self, seconds: float) -> tuple[float, float]:
        """Images per second (all workers together) and CPU ms per image."""
        jobs = [(self.images, self.batch_size, seconds, seed) for seed in range(self.workers)]
        results = self.pool.starmap(_albumentations_worker, jobs)
        images = sum(r[0] for r in results)
        return sum(r[0] / r[1] for r in results), sum(r[2] for r in results) * 1000 / images

    def close(self) -> None:
        self.pool.terminate()


def keras_layers(images, batch_size):
    """RandomFlip, RandomCrop and per-channel offsets +-20 (no RGB-shift layer), clipped."""
    import keras
    import tensorflow as tf

    flip = keras.layers.RandomFlip("horizontal", seed=1)
    crop = keras.layers.RandomCrop(224, 224, seed=2)

    def apply(x):
        x = crop(flip(tf.cast(x, tf.float32), training=True), training=True)
        offsets = tf.random.uniform([tf.shape(x)[0], 1, 1, 3], -SHIFT, SHIFT)
        return tf.clip_by_value(x + offsets, 0.0, 255.0)

    ds = tf.data.Dataset.from_tensor_slices(images).repeat().batch(batch_size)
    return ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def write_jpegs(images, folder: Path, width: int, height: int) -> list[str]:
    from PIL import Image

    paths = []
    for i, image in enumerate(images):
        photo = Image.fromarray(image).resize((width, height), Image.BILINEAR)
        path = folder / f"{width}x{height}-{i:05d}.jpg"
        photo.save(path, quality=90)
        paths.append(str(path))
    return paths


def decode_pipeline(paths, batch_size, *, resize: int | None, out_dtype="uint8"):
    """Decode (and resize to ``resize``) each JPEG, batch: the pipeline without augmentation."""
    import tensorflow as tf

    def decode(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        if resize is None:
            return image
        image = tf.image.resize(image, [resize, resize])
        if out_dtype == "uint8":
            image = tf.cast(tf.clip_by_value(image + 0.5, 0, 255), tf.uint8)
        return image

    ds = tf.data.Dataset.from_tensor_slices(paths).repeat()
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def tlkit_pipeline(paths, batch_size, out_dtype):
    """``tlkit.data.make_dataset`` as training runs it, uncached (the fused decode path)."""
    from tlkit.data import Split, make_dataset

    # the files eight times over: epochs of training length (a 256-image epoch would restart
    # the pipeline, its shuffle and its parallel calls every 4 batches)
    paths = list(paths) * 8
    split = Split(labels=np.zeros(len(paths), np.int64), paths=paths)
    ds = make_dataset(
        split,
        num_classes=2,
        image_size=224,
        batch_size=batch_size,
        training=True,
        seed=0,
        augmenter=chain_augmenter(output_dtype=out_dtype),
        cache="none",
        image_dtype=out_dtype,
    )
    return ds.repeat()


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        width, height = item.lower().split("x")
        sizes.append((int(width), int(height)))
    return sizes


def in_memory_sources(images, bs) -> dict:
    """Each way of running the chain (and the chain with PCA colour) on images in memory."""
    from tlkit.augment import compute_pca_stats

    stats = compute_pca_stats(images)
    return {
        TLKIT_U8: lambda: _images_only(tlkit_augmenter(images, bs, output_dtype="uint8")),
        TLKIT_F32: lambda: _images_only(tlkit_augmenter(images, bs)),
        ALBU_U8: lambda: albumentations_batches(images, bs),
        ALBU_F32: lambda: albumentations_batches(images, bs, dtype="float32"),
        ALBU_ALL: AlbumentationsPool(images, bs),
        KERAS: lambda: _images_only(keras_layers(images, bs)),
        PCA_TLKIT: lambda: _images_only(
            tlkit_augmenter(images, bs, pca=stats, output_dtype="uint8")
        ),
        PCA_ALBU: lambda: albumentations_batches(images, bs, fancy_pca=True),
    }


JPEG_ROWS = (
    "decode only",
    "decode + resize, uint8",
    "tlkit pipeline, uint8",
    "decode + resize, float32",
    "tlkit pipeline, float32",
)


def jpeg_sources(images, folder: Path, width: int, height: int, bs) -> dict:
    """JPEG files of one size to 224x224 batches, each way in ``JPEG_ROWS``."""
    paths = write_jpegs(images, folder, width, height)
    tag = f"{width}x{height}"
    pipelines = (
        # all files of one size: decoded images batch without a resize
        lambda: decode_pipeline(paths, bs, resize=None),
        lambda: decode_pipeline(paths, bs, resize=224),
        lambda: _images_only(tlkit_pipeline(paths, bs, "uint8")),
        lambda: decode_pipeline(paths, bs, resize=224, out_dtype="float32"),
        lambda: _images_only(tlkit_pipeline(paths, bs, "float32")),
    )
    return {f"{tag} {row}": make for row, make in zip(JPEG_ROWS, pipelines, strict=True)}


def measure(sources: dict, rounds: int, seconds: float) -> tuple[dict, dict]:
    """Images/s and CPU ms per image of every source, in interleaved rounds (lists per round).

    Each source is a function making a fresh iterator of batches, or an ``AlbumentationsPool``.
    """
    rates: dict[str, list[float]] = {name: [] for name in sources}
    cpu_ms: dict[str, list[float]] = {name: [] for name in sources}
    iterators = {}
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", flush=True)
        for name, source in sources.items():
            if isinstance(source, AlbumentationsPool):
                rate, cost = source.measure(seconds / rounds)
            else:  # one iterator per source, kept across rounds (tf.data warmed up once)
                batches = iterators.setdefault(name, iter(source()))
                rate, cost = harness.time_batches(batches, seconds / rounds)
            rates[name].append(rate)
            cpu_ms[name].append(cost)
    return rates, cpu_ms


def ratio(values: dict, a: str, b: str, name: str, invert: bool = False) -> dict:
    """``a`` / ``b`` (``b`` / ``a`` when ``invert``): the median of the per-round ratios, and
    their range."""
    per_round = np.array(values[a]) / np.array(values[b])
    per_round = 1 / per_round if invert else per_round
    return {"name": name, "value": float(np.median(per_round))} | {
        "rounds min": float(per_round.min()),
        "rounds max": float(per_round.max()),
    }


def ratios_of(rates: dict, cpu: dict, sizes) -> list[dict]:
    """tlkit against albumentations and Keras layers; end to end against decoding."""
    out = [
        ratio(cpu, TLKIT_U8, ALBU_U8, CPU_RATIO.format("uint8"), True),
        ratio(cpu, TLKIT_F32, ALBU_F32, CPU_RATIO.format("float32"), True),
        ratio(rates, TLKIT_U8, ALBU_ALL, "images/s, all cores: tlkit / albumentations, uint8"),
        ratio(rates, TLKIT_U8, ALBU_U8, "images/s: tlkit (all cores) / albumentations, 1 process"),
        ratio(rates, TLKIT_F32, KERAS, "images/s: tlkit / keras layers, float32"),
        ratio(rates, ALBU_ALL, ALBU_U8, "albumentations: 1 process per core / 1 process"),
    ]
    for width, height in sizes:
        tag = f"{width}x{height}"
        pairs = (
            ("tlkit pipeline, uint8", "decode + resize, uint8"),
            ("tlkit pipeline, float32", "decode + resize, float32"),
            ("tlkit pipeline, uint8", "decode only"),
        )
        for a, b in pairs:
            out.append(ratio(rates, f"{tag} {a}", f"{tag} {b}", f"{tag}: {a} / {b}"))
    return out


def tables_of(rates: dict, cpu: dict, sizes, args) -> list[dict]:
    """The chain (a row per way), PCA colour (a row per algorithm), end to end (per size)."""
    rounds = f"median of {args.rounds} round{'' if args.rounds == 1 else 's'}"
    tables = [
        {
            "title": f"Mirror + crop 256 -> 224 + RGB shift +-{SHIFT}, {args.n_images} uint8 "
            f"256x256 images in memory, batches of {args.batch_size}; {rounds}",
            "columns": ["same chain, each tool", "images/s", "CPU ms / image"],
            "rows": [[name, rates[name], cpu[name]] for name in CHAIN_ROWS],
        },
        {
            "title": "PCA colour added to the chain: two different algorithms (no ratio taken)",
            "columns": ["chain + PCA colour", "images/s", "CPU ms / image"],
            "rows": [[name, rates[name], cpu[name]] for name in PCA_ROWS],
        },
    ]
    if sizes:
        tags = [f"{w}x{h}" for w, h in sizes]
        columns = ["JPEG files -> 224x224 batches"]
        columns += [f"{tag} {unit}" for tag in tags for unit in ("img/s", "CPU ms")]
        rows = [
            [row, *(v for tag in tags for v in (rates[f"{tag} {row}"], cpu[f"{tag} {row}"]))]
            for row in JPEG_ROWS
        ]
        tables.append({"title": "End to end, the same chain", "columns": columns, "rows": rows})
    return tables


def goal_notes(ratios: list[dict], sizes) -> list[str]:
    """The goals (1.5x albumentations' CPU per image, 2x its images/s on all cores; end to end
    at least 0.85 of decode + resize at 500x375) as met or not."""
    value = {r["name"]: r["value"] for r in ratios}

    def verdict(x: float, goal: float) -> str:
        return f"{'met' if x >= goal else 'not met'} ({x:.3g}x, goal {goal:g}x)"

    notes = [
        "albumentations' CPU ms per image / tlkit's, uint8 out (goal: albumentations uses "
        "1.5x tlkit's CPU): " + verdict(value[CPU_RATIO.format("uint8")], 1.5),
        "Images per second on all cores against albumentations on all cores, uint8 out: "
        + verdict(value["images/s, all cores: tlkit / albumentations, uint8"], 2.0),
    ]
    for width, height in sizes:
        tag = f"{width}x{height}"
        goal = 0.85 if (width, height) == (500, 375) else None
        x = value[f"{tag}: tlkit pipeline, uint8 / decode + resize, uint8"]
        notes.append(
            f"End to end at {tag}, tlkit pipeline / decode + resize, uint8: "
            + (verdict(x, goal) if goal else f"{x:.3g}x (no goal at this size)")
        )
    return notes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0, help="Per row, over all rounds.")
    parser.add_argument(
        "--rounds", type=int, default=3, help="Interleaved rounds; the median is reported."
    )
    parser.add_argument("--skip-jpeg", action="store_true", help="Skip the end-to-end part.")
    parser.add_argument(
        "--jpeg-sizes", default="320x320,500x375,1024x768", help="WIDTHxHEIGHT,... of the JPEGs."
    )
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    images = make_images(args.n_images)
    sources = in_memory_sources(images, args.batch_size)
    sizes = [] if args.skip_jpeg else parse_sizes(args.jpeg_sizes)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for width, height in sizes:
                sources |= jpeg_sources(images, Path(tmp), width, height, args.batch_size)
            rates, cpu_ms = measure(sources, args.rounds, args.seconds)
    finally:
        sources[ALBU_ALL].close()
    cpu = {name: float(np.median(values)) for name, values in cpu_ms.items()}
    median = {name: float(np.median(values)) for name, values in rates.items()}
    ratios = ratios_of(rates, cpu_ms, sizes)
    tables = tables_of(median, cpu, sizes, args)
    return run.finish(tables, ratios, goal_notes(ratios, sizes))


if __name__ == "__main__":
    main()
