"""Augmentation throughput: tlkit's batched graph ops vs albumentations vs Keras layers.

One run, one machine, same images. The four-op chain of the issue (flip, crop 256 -> 224,
colour shift, PCA colour) on uint8 256x256 images:

* tlkit's Augmenter as the data pipeline calls it (uint8 in; per_image does crop, flip and the
  colour offsets in one cache-friendly pass, then batches of --batch-size), also with
  ``pixel_ops="per_batch"`` (flip and colour over the whole batch);
* tlkit's standalone batched op functions, all four on batches in tf.data;
* albumentations Compose(HorizontalFlip, RandomCrop, RGBShift, FancyPCA), per image in a loop;
* the same albumentations chain through tlkit's albumentations backend (tf.data, parallel);
* Keras preprocessing layers (RandomFlip, RandomCrop, RandomColorJitter) in tf.data on batches.

Then end to end, from JPEG files (256 of them per size, 320x320, 500x375 and 1024x768 by
default): decoding alone (decode and batch the full images), decode + resize to 224 (what a
pipeline without augmentation does), and tlkit's training pipeline (``make_dataset`` with the
four-op augmenter, uncached: it decodes only the crop window, at a DCT scale for large photos)
with uint8 and float32 batches; the same with ``device: model`` (the pipeline decodes, crops
and resizes; mirror, colour shift and PCA colour run in the model, on the accelerator when
there is one); and for comparison the augmenter on whole decoded images.

albumentations' FancyPCA computes a PCA of every image; tlkit's PCA colour adds one offset per
image from dataset statistics computed once: different algorithms, so the chains with
FancyPCA are not like-for-like. Results go to benchmarks/results/augment_throughput.json
(``--json PATH``, ``--no-save``); ``--quick`` is a smoke test (16 images, one 320x320 size).

    python benchmarks/augment_throughput.py [--n-images 256] [--batch-size 64] [--seconds 4]
        [--rounds 3] [--jpeg-sizes 320x320,500x375,1024x768] [--skip-jpeg] [--quick]
        [--json PATH] [--no-save]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # harness, however this is run

import harness  # noqa: E402
import numpy as np  # noqa: E402

NAME = "augment_throughput"
QUICK = {"n_images": 16, "batch_size": 8, "seconds": 0.6, "rounds": 1, "jpeg_sizes": "320x320"}
ALBU = "albumentations Compose, per image"
TLKIT_F32, TLKIT_U8 = "tlkit Augmenter, float32 out (default)", "tlkit Augmenter, uint8 out"


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


def pca_stats(images):
    """Dataset PCA colour statistics (eigenvalues and eigenvectors of the pixel covariance)."""
    from tlkit.augment import compute_pca_stats

    return compute_pca_stats(images)


def tlkit_batched(images, batch_size, stats):
    import tensorflow as tf

    from tlkit.augment import ops, pixels
    from tlkit.imageops import seed_stream

    def chain(x, seed):
        seeds = ops.split_seed(seed, 4)
        x = ops.flip_left_right(x, 0.5, seeds[0])
        x = ops.random_crop(x, 224, seeds[1])
        n = tf.shape(x)[0]
        offsets = pixels.rgb_offsets(n, 20.0, seeds[2]) + pixels.pca_offsets(
            n, stats.eigvals, stats.eigvecs, 0.1, seeds[3]
        )
        return pixels.clip_pixels(pixels.add_channel_offsets(x, offsets))

    ds = tf.data.Dataset.from_tensor_slices(images).repeat().batch(batch_size)
    ds = tf.data.Dataset.zip((ds, seed_stream(0)))
    return ds.map(chain, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def four_op_augmenter(stats, device: str = "pipeline", **kwargs):
    """flip, crop 256 -> 224, colour shift (+-20), PCA colour (sigma 0.1).

    ``device="model"``: the pipeline part only (the crop); mirror and colour run in the model.
    """
    from tlkit.augment import augment_preset, build_augmenter

    config = augment_preset(
        "paper_alexnet", colour_shift={"enabled": True, "max_offset": 20}, device=device
    )
    return build_augmenter(config, image_size=224, pca=stats, **kwargs)


def tlkit_augmenter(images, batch_size, stats, **kwargs):
    import tensorflow as tf

    aug = four_op_augmenter(stats, **kwargs)
    labels = np.zeros([len(images), 1], np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).repeat()
    return aug.apply(ds, batch_size, seed=0, resize=False).prefetch(tf.data.AUTOTUNE)


def albumentations_chain():
    import albumentations as A

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.RandomCrop(224, 224),
            A.RGBShift(r_shift_limit=20, g_shift_limit=20, b_shift_limit=20, p=1.0),
            A.FancyPCA(alpha=0.1, p=1.0),
        ]
    )


def albumentations_loop(images):
    compose = albumentations_chain()
    i = 0
    while True:
        yield compose(image=images[i % len(images)])["image"]
        i += 1


def albumentations_in_tf_data(images, batch_size):
    import tensorflow as tf

    from tlkit.augment.albumentations_backend import AlbumentationsRunner
    from tlkit.imageops import seed_stream

    runner = AlbumentationsRunner(
        [
            {"name": "HorizontalFlip", "params": {"p": 0.5}},
            {"name": "RandomCrop", "params": {"height": 224, "width": 224}},
            {"name": "RGBShift", "params": {"p": 1.0}},
            {"name": "FancyPCA", "params": {"alpha": 0.1, "p": 1.0}},
        ],
        224,
    )
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(images).repeat(), seed_stream(0)))
    ds = ds.map(runner.tf_apply, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def keras_layers(images, batch_size):
    import keras
    import tensorflow as tf

    layers = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=1),
            keras.layers.RandomCrop(224, 224, seed=2),
            keras.layers.RandomColorJitter(
                value_range=(0, 255),
                brightness_factor=0.2,
                contrast_factor=0.2,
                saturation_factor=0.2,
                seed=3,
            ),
        ]
    )

    def apply(x):
        return layers(tf.cast(x, tf.float32), training=True)

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


def whole_decode_augment(paths, batch_size, augmenter):
    """Decode whole images, then the augmenter's ``per_image`` (crop window and resize fused)."""
    import tensorflow as tf

    def decode(path):
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3)

    ds = tf.data.Dataset.from_tensor_slices(paths).repeat()
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    labels = tf.data.Dataset.from_tensors(tf.zeros([1])).repeat()
    return augmenter.apply(
        tf.data.Dataset.zip((ds, labels)), batch_size, seed=0, resize=False
    ).prefetch(tf.data.AUTOTUNE)


def tlkit_pipeline(paths, batch_size, stats, out_dtype, device="pipeline"):
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
        augmenter=four_op_augmenter(stats, device=device, output_dtype=out_dtype),
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


def in_memory_sources(images, bs, stats) -> dict:
    """The four-op chain on uint8 images in memory, each way (None: albumentations' loop)."""
    return {
        TLKIT_F32: tlkit_augmenter(images, bs, stats),
        TLKIT_U8: tlkit_augmenter(images, bs, stats, output_dtype="uint8"),
        "tlkit Augmenter, pixel_ops=per_batch": tlkit_augmenter(
            images, bs, stats, pixel_ops="per_batch"
        ),
        "tlkit standalone batched ops (tf.data)": tlkit_batched(images, bs, stats),
        ALBU: None,
        "albumentations via tlkit backend (tf.data)": albumentations_in_tf_data(images, bs),
        "keras layers (tf.data, batched)": keras_layers(images, bs),
    }


JPEG_ROWS = (
    "decode only",
    "decode + resize, uint8",
    "tlkit pipeline, uint8",
    "decode + resize, float32",
    "tlkit pipeline, float32",
    "tlkit pipeline, uint8, device: model",
    "whole decode + augment, uint8",
)


def jpeg_sources(images, folder: Path, width: int, height: int, bs, stats) -> dict:
    """JPEG files of one size to 224x224 batches, each way in ``JPEG_ROWS``."""
    paths = write_jpegs(images, folder, width, height)
    tag = f"{width}x{height}"
    pipelines = (
        # all files of one size: decoded images batch without a resize
        decode_pipeline(paths, bs, resize=None),
        decode_pipeline(paths, bs, resize=224),
        tlkit_pipeline(paths, bs, stats, "uint8"),
        decode_pipeline(paths, bs, resize=224, out_dtype="float32"),
        tlkit_pipeline(paths, bs, stats, "float32"),
        tlkit_pipeline(paths, bs, stats, "uint8", device="model"),
        whole_decode_augment(paths, bs, four_op_augmenter(stats, output_dtype="uint8")),
    )
    return {f"{tag} {row}": ds for row, ds in zip(JPEG_ROWS, pipelines, strict=True)}


def measure(sources: dict, images, rounds: int, seconds: float) -> tuple[dict, dict]:
    """Images/s and CPU ms per image of every source, in interleaved rounds (lists per round)."""
    rates: dict[str, list[float]] = {name: [] for name in sources}
    cpu_ms: dict[str, list[float]] = {name: [] for name in sources}
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", flush=True)
        for name, ds in sources.items():
            batches = albumentations_loop(images) if ds is None else _images_only(ds)
            rate, cost = harness.time_batches(batches, seconds / rounds)
            rates[name].append(rate)
            cpu_ms[name].append(cost)
    return rates, cpu_ms


def ratio(rates: dict, a: str, b: str, name: str) -> dict:
    """``a`` / ``b`` in images/s: the median of the per-round ratios, and their range."""
    per_round = np.array(rates[a]) / np.array(rates[b])
    return {"name": name, "value": float(np.median(per_round))} | {
        "rounds min": float(per_round.min()),
        "rounds max": float(per_round.max()),
    }


def ratios_of(rates: dict, cpu: dict, sizes) -> list[dict]:
    """tlkit against albumentations and Keras layers; end to end against decoding (the floor)."""
    out = [
        ratio(rates, TLKIT_U8, ALBU, "tlkit uint8 / albumentations, both uint8 out"),
        ratio(rates, TLKIT_F32, ALBU, "tlkit float32 / albumentations"),
        {"name": "CPU per image: albumentations / tlkit uint8", "value": cpu[ALBU] / cpu[TLKIT_U8]},
        {
            "name": "CPU per image: albumentations / tlkit float32",
            "value": cpu[ALBU] / cpu[TLKIT_F32],
        },
        ratio(rates, TLKIT_F32, "keras layers (tf.data, batched)", "tlkit float32 / keras layers"),
        ratio(
            rates,
            "tlkit standalone batched ops (tf.data)",
            ALBU,
            "tlkit batched ops / albumentations",
        ),
        ratio(
            rates, TLKIT_U8, "tlkit Augmenter, pixel_ops=per_batch", "tlkit per_image / per_batch"
        ),
        ratio(
            rates,
            "albumentations via tlkit backend (tf.data)",
            ALBU,
            "albumentations: tlkit backend / loop",
        ),
    ]
    for width, height in sizes:
        tag = f"{width}x{height}"
        pairs = (
            ("tlkit pipeline, uint8", "decode only"),
            ("tlkit pipeline, uint8", "decode + resize, uint8"),
            ("tlkit pipeline, float32", "decode + resize, float32"),
            ("tlkit pipeline, uint8, device: model", "decode + resize, uint8"),
            ("decode + resize, uint8", "decode only"),
            ("whole decode + augment, uint8", "decode + resize, uint8"),
        )
        for a, b in pairs:
            out.append(ratio(rates, f"{tag} {a}", f"{tag} {b}", f"{tag}: {a} / {b}"))
    return out


def tables_of(rates: dict, cpu: dict, in_memory: list[str], sizes, args) -> list[dict]:
    """The in-memory chain (a row per way) and end to end (a row per way, columns per size)."""
    tables = [
        {
            "title": f"Four-op chain, {args.n_images} uint8 256x256 images in memory, batch "
            f"{args.batch_size}; median of {args.rounds} round{'' if args.rounds == 1 else 's'}",
            "columns": ["four-op chain", "images/s", "CPU ms / image"],
            "rows": [[name, rates[name], cpu[name]] for name in in_memory],
        }
    ]
    if sizes:
        tags = [f"{w}x{h}" for w, h in sizes]
        columns = ["JPEG files -> 224x224 batches"]
        columns += [f"{tag} {unit}" for tag in tags for unit in ("img/s", "CPU ms")]
        rows = [
            [row, *(v for tag in tags for v in (rates[f"{tag} {row}"], cpu[f"{tag} {row}"]))]
            for row in JPEG_ROWS
        ]
        tables.append({"title": "End to end", "columns": columns, "rows": rows})
    return tables


def goal_notes(ratios: list[dict], sizes) -> list[str]:
    """The augmentation goals (10x albumentations; end to end within 10% of decoding) as met."""
    value = {r["name"]: r["value"] for r in ratios}

    def verdict(x: float, goal: float) -> str:
        return f"{'met' if x >= goal else 'not met'} ({x:.3g}x)"

    u8 = value["tlkit uint8 / albumentations, both uint8 out"]
    f32 = value["tlkit float32 / albumentations"]
    notes = [
        f"Goal, at least 10x the albumentations chain in images/s: uint8 out {verdict(u8, 10)}, "
        f"float32 out {verdict(f32, 10)} (the chain includes FancyPCA: not like-for-like)."
    ]
    for width, height in sizes:
        tag = f"{width}x{height}"
        cpu_path = value[f"{tag}: tlkit pipeline, uint8 / decode + resize, uint8"]
        model = value[f"{tag}: tlkit pipeline, uint8, device: model / decode + resize, uint8"]
        notes.append(
            f"Goal at {tag}, end to end within 10% of decode + resize: uint8 pipeline "
            f"{verdict(cpu_path, 0.9)}, with device: model {verdict(model, 0.9)}."
        )
    return notes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0, help="Per row, over all rounds.")
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
    stats = pca_stats(images)
    sources = in_memory_sources(images, args.batch_size, stats)
    in_memory = list(sources)
    sizes = [] if args.skip_jpeg else parse_sizes(args.jpeg_sizes)
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in sizes:
            sources |= jpeg_sources(images, Path(tmp), width, height, args.batch_size, stats)
        rates, cpu_ms = measure(sources, images, args.rounds, args.seconds)
    cpu = {name: float(np.median(values)) for name, values in cpu_ms.items()}
    median = {name: float(np.median(values)) for name, values in rates.items()}
    ratios = ratios_of(rates, cpu, sizes)
    tables = tables_of(median, cpu, in_memory, sizes, args)
    return run.finish(tables, ratios, goal_notes(ratios, sizes))


if __name__ == "__main__":
    main()
