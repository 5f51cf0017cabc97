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

    python benchmarks/augment_throughput.py [--n-images 256] [--batch-size 64] [--seconds 4] [--rounds 3]
        [--jpeg-sizes 320x320,500x375,1024x768]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def make_images(n: int, side: int = 256, seed: int = 0) -> np.ndarray:
    """Smooth colourful images (like photos, JPEG-friendly), uint8 ``(n, side, side, 3)``."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 8, 8, 3)).astype(np.float32)
    smooth = tf.image.resize(coarse, [side, side], method="bicubic").numpy()
    noise = rng.normal(0, 8, smooth.shape)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def timed(batches, seconds: float, warmup: int = 2) -> tuple[float, float]:
    """Images per second drawn from an iterator of batches (or single images), and the
    process CPU milliseconds per image (all threads; less sensitive to other processes)."""
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        batch = next(it)
        count += int(batch.shape[0]) if len(batch.shape) == 4 else 1
    return count / elapsed, (time.process_time() - cpu) * 1000 / count


def _images_only(ds):
    return (x[0] if isinstance(x, tuple) else x for x in ds)


def tlkit_batched(images, batch_size, stats):
    import tensorflow as tf

    from tlkit.augment import ops
    from tlkit.augment.augmenter import seed_stream

    def chain(x, seed):
        seeds = ops.split_seed(seed, 4)
        x = ops.flip_left_right(x, 0.5, seeds[0])
        x = ops.random_crop(x, 224, seeds[1])
        n = tf.shape(x)[0]
        offsets = ops.rgb_offsets(n, 20.0, seeds[2]) + ops.pca_offsets(
            n, stats.eigvals, stats.eigvecs, 0.1, seeds[3]
        )
        return ops.clip_pixels(ops.add_channel_offsets(x, offsets))

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
    from tlkit.augment.augmenter import seed_stream

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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0, help="Per row, over all rounds.")
    parser.add_argument(
        "--rounds", type=int, default=3, help="Interleaved rounds; the median is reported."
    )
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--skip-jpeg", action="store_true", help="Skip the end-to-end part.")
    parser.add_argument(
        "--jpeg-sizes", default="320x320,500x375,1024x768", help="WIDTHxHEIGHT,... of the JPEGs."
    )
    args = parser.parse_args(argv)

    import albumentations
    import keras
    import tensorflow as tf

    from tlkit.augment import compute_pca_stats

    images = make_images(args.n_images)
    stats = compute_pca_stats(images)
    bs = args.batch_size
    rows = {
        "tlkit Augmenter, float32 out (default)": tlkit_augmenter(images, bs, stats),
        "tlkit Augmenter, uint8 out": tlkit_augmenter(images, bs, stats, output_dtype="uint8"),
        "tlkit Augmenter, pixel_ops=per_batch": tlkit_augmenter(
            images, bs, stats, pixel_ops="per_batch"
        ),
        "tlkit standalone batched ops (tf.data)": tlkit_batched(images, bs, stats),
        "albumentations Compose, per image": None,
        "albumentations via tlkit backend (tf.data)": albumentations_in_tf_data(images, bs),
        "keras layers (tf.data, batched)": keras_layers(images, bs),
    }
    jpeg_rows = {}
    tmp = tempfile.TemporaryDirectory()
    sizes = [] if args.skip_jpeg else parse_sizes(args.jpeg_sizes)
    for width, height in sizes:
        paths = write_jpegs(images, Path(tmp.name), width, height)
        tag = f"{width}x{height}"
        # all files of one size: decoded images batch without a resize
        jpeg_rows[f"{tag} decode only"] = decode_pipeline(paths, bs, resize=None)
        jpeg_rows[f"{tag} decode + resize, uint8"] = decode_pipeline(paths, bs, resize=224)
        jpeg_rows[f"{tag} tlkit pipeline, uint8"] = tlkit_pipeline(paths, bs, stats, "uint8")
        jpeg_rows[f"{tag} decode + resize, float32"] = decode_pipeline(
            paths, bs, resize=224, out_dtype="float32"
        )
        jpeg_rows[f"{tag} tlkit pipeline, float32"] = tlkit_pipeline(paths, bs, stats, "float32")
        jpeg_rows[f"{tag} tlkit pipeline, uint8, device: model"] = tlkit_pipeline(
            paths, bs, stats, "uint8", device="model"
        )
        jpeg_rows[f"{tag} whole decode + augment, uint8"] = whole_decode_augment(
            paths, bs, four_op_augmenter(stats, output_dtype="uint8")
        )

    def batches(name, ds):
        return albumentations_loop(images) if ds is None else _images_only(ds)

    window = args.seconds / args.rounds
    samples: dict[str, list[float]] = {name: [] for name in (*rows, *jpeg_rows)}
    cpu_ms: dict[str, list[float]] = {name: [] for name in samples}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        for name, ds in (*rows.items(), *jpeg_rows.items()):
            rate, cost = timed(batches(name, ds), window)
            samples[name].append(rate)
            cpu_ms[name].append(cost)
    tmp.cleanup()
    results = {name: float(np.median(values)) for name, values in samples.items()}
    cpu = {name: float(np.median(values)) for name, values in cpu_ms.items()}

    def ratio(a: str, b: str) -> float:
        return float(np.median(np.array(samples[a]) / np.array(samples[b])))

    albu = "albumentations Compose, per image"
    ratios = {
        "tlkit float32 / albumentations": ratio("tlkit Augmenter, float32 out (default)", albu),
        "tlkit uint8 / albumentations (both uint8)": ratio("tlkit Augmenter, uint8 out", albu),
        "tlkit float32 / keras layers": ratio(
            "tlkit Augmenter, float32 out (default)", "keras layers (tf.data, batched)"
        ),
        "tlkit batched ops / albumentations": ratio("tlkit standalone batched ops (tf.data)", albu),
    }
    ratios["CPU per image: albumentations / tlkit float32"] = (
        cpu[albu] / cpu["tlkit Augmenter, float32 out (default)"]
    )
    ratios["CPU per image: albumentations / tlkit uint8"] = (
        cpu[albu] / cpu["tlkit Augmenter, uint8 out"]
    )
    for width, height in sizes:
        tag = f"{width}x{height}"
        ratios[f"{tag}: tlkit uint8 / decode only"] = ratio(
            f"{tag} tlkit pipeline, uint8", f"{tag} decode only"
        )
        for dtype in ("uint8", "float32"):
            ratios[f"{tag}: tlkit {dtype} / decode + resize {dtype}"] = ratio(
                f"{tag} tlkit pipeline, {dtype}", f"{tag} decode + resize, {dtype}"
            )
        ratios[f"{tag}: tlkit uint8 device: model / decode + resize uint8"] = ratio(
            f"{tag} tlkit pipeline, uint8, device: model", f"{tag} decode + resize, uint8"
        )
        ratios[f"{tag}: whole decode + augment / decode + resize"] = ratio(
            f"{tag} whole decode + augment, uint8", f"{tag} decode + resize, uint8"
        )
    print(
        f"\nfour-op chain (flip, crop 256->224, colour shift, PCA colour), {args.n_images} uint8 "
        f"256x256 images, batch {bs}; median of {args.rounds} rounds"
    )
    for name in rows:
        print(f"  {name:<46} {results[name]:9.1f} img/s  {cpu[name]:6.2f} CPU ms/img")
    if jpeg_rows:
        print("end to end: JPEG files -> 224x224 batches (four-op augmentation where named)")
        for name in jpeg_rows:
            print(f"  {name:<46} {results[name]:9.1f} img/s  {cpu[name]:6.2f} CPU ms/img")
    print("ratios")
    for name, value in ratios.items():
        print(f"  {name:<58} {value:6.2f}")
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "load_average": os.getloadavg(),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "albumentations": albumentations.__version__,
            "numpy": np.__version__,
        },
        "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "images_per_second": results,
        "cpu_ms_per_image": cpu,
        "samples": samples,
        "ratios": ratios,
    }
    print(json.dumps({"load_average": report["load_average"], **report["versions"]}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
