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

Then an end-to-end JPEG pipeline: decode + resize to the model input (224) without
augmentation, against decode + augmentation to 224 (the Augmenter fuses the resize to the load
size, 256, into its crop), with float32 and uint8 batches; and decode + resize to 256 + augment.

    python benchmarks/augment_throughput.py [--n-images 256] [--batch-size 64] [--seconds 4] [--rounds 3]
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


def four_op_augmenter(stats, **kwargs):
    """flip, crop 256 -> 224, colour shift (+-20), PCA colour (sigma 0.1)."""
    from tlkit.augment import augment_preset, build_augmenter

    config = augment_preset("paper_alexnet", colour_shift={"enabled": True, "max_offset": 20})
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


def write_jpegs(images, folder: Path) -> list[str]:
    from PIL import Image

    paths = []
    for i, image in enumerate(images):
        big = Image.fromarray(image).resize((320, 320), Image.BILINEAR)  # decode then resize
        path = folder / f"{i:05d}.jpg"
        big.save(path, quality=90)
        paths.append(str(path))
    return paths


def jpeg_pipeline(paths, batch_size, out_dtype, augmenter=None, *, pre_resize=False):
    """JPEG -> decode -> resize to 224 (no augmenter), or decode -> augment to 224.

    With an augmenter the decoded image goes to ``per_image`` as is (its resize to the load
    size is fused into the crop), or, with ``pre_resize``, after a resize to the load size.
    """
    import tensorflow as tf

    def decode(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        if augmenter is None:
            image = tf.image.resize(image, [224, 224])
            if out_dtype == "uint8":
                image = tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)
        elif pre_resize:
            side = augmenter.load_size()
            image = tf.image.resize(image, [side, side])
        return image

    ds = tf.data.Dataset.from_tensor_slices(paths).repeat()
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is None:
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    labels = tf.data.Dataset.from_tensors(tf.zeros([1])).repeat()
    return augmenter.apply(
        tf.data.Dataset.zip((ds, labels)), batch_size, seed=0, resize=False
    ).prefetch(tf.data.AUTOTUNE)


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
    if not args.skip_jpeg:
        paths = write_jpegs(images, Path(tmp.name))
        for dtype in ("float32", "uint8"):
            aug = four_op_augmenter(stats, output_dtype=dtype)
            jpeg_rows[f"decode + resize, {dtype}"] = jpeg_pipeline(paths, bs, dtype)
            jpeg_rows[f"decode + augment (fused resize), {dtype}"] = jpeg_pipeline(
                paths, bs, dtype, aug
            )
        jpeg_rows["decode + resize 256 + augment, float32"] = jpeg_pipeline(
            paths, bs, "float32", four_op_augmenter(stats), pre_resize=True
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
    if jpeg_rows:
        for dtype in ("float32", "uint8"):
            ratios[f"end to end {dtype} CPU per image: plain / augmented"] = (
                cpu[f"decode + resize, {dtype}"] / cpu[f"decode + augment (fused resize), {dtype}"]
            )
        for dtype in ("float32", "uint8"):
            ratios[f"end to end {dtype}: augmented / plain"] = ratio(
                f"decode + augment (fused resize), {dtype}", f"decode + resize, {dtype}"
            )
        ratios["end to end float32, two-pass resize / plain"] = ratio(
            "decode + resize 256 + augment, float32", "decode + resize, float32"
        )

    print(
        f"\nfour-op chain (flip, crop 256->224, colour shift, PCA colour), {args.n_images} uint8 "
        f"256x256 images, batch {bs}; median of {args.rounds} rounds"
    )
    for name in rows:
        print(f"  {name:<46} {results[name]:9.1f} img/s  {cpu[name]:6.2f} CPU ms/img")
    if jpeg_rows:
        print("end to end: JPEG 320x320 -> decode -> resize to 224 | augment to 224")
        for name in jpeg_rows:
            print(f"  {name:<46} {results[name]:9.1f} img/s  {cpu[name]:6.2f} CPU ms/img")
    print("ratios")
    for name, value in ratios.items():
        print(f"  {name:<46} {value:9.2f}")
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
