"""Frozen-backbone fine-tune: tlkit (cached features) vs the Keras transfer-learning guide.

One run, one machine, the same images and the same backbone weights:

* the Keras guide's recipe (https://keras.io/guides/transfer_learning/): a keras.applications
  ``VGG16(include_top=False)`` base with ``base.trainable = False``, ``inputs ->
  preprocess_input -> base(x, training=False) -> GlobalAveragePooling2D -> Dropout(0.2) ->
  Dense(softmax)``, compiled with Adam and fitted for E epochs with validation, every step
  running the whole VGG16 forward pass;
* ``tlkit.finetune`` on the same images (a ``train/`` and ``val/`` folder of PNGs), freeze
  policy ``all``, no augmentation, the same head, optimizer, batch size and epochs: the fast
  path computes the backbone's features once and trains the head on them. Timed end to end:
  reading and checking the images, building, loading weights, features, training,
  checkpoints, the saved full model and the reports.

Both start from the same VGG16 weights: a seeded random initialisation of keras.applications'
VGG16 (``weights=None``; this machine cannot download the ImageNet file), written in the
official ``.h5`` layout that tlkit loads by name. Data: 256 synthetic 96x96 images of 10
classes (a hue each, heavy pixel noise; 200 train / 56 val, stratified). Both heads train with
Adam at 0.01 (``--lr``): at the guide's default 0.001 a random VGG16's small, all-positive
features need far more than 10 epochs.

Results go to benchmarks/results/frozen_finetune.json (``--json PATH``, ``--no-save``);
``--quick`` is a smoke test (40 images at 32x32, 1 epoch, 2 noise seeds).

    python benchmarks/frozen_finetune.py [--epochs 10] [--images 256] [--size 96]
        [--batch-size 32] [--lr 0.01] [--noise-seeds 20] [--quick] [--json PATH] [--no-save]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # harness, however this is run

import harness  # noqa: E402
import numpy as np  # noqa: E402

NAME = "frozen_finetune"
QUICK = {"epochs": 1, "images": 40, "size": 32, "batch_size": 16, "noise_seeds": 2}


def synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of 10 classes: each class a hue, every pixel with heavy noise (std 90).

    A random VGG16's features separate them (its ImageNet weights cannot be downloaded here),
    so the two recipes' accuracies say something; uint8 ``(n, size, size, 3)`` and labels.
    """
    import colorsys

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    hues = np.array([colorsys.hsv_to_rgb(c / 10, 1.0, 1.0) for c in range(10)]) * 255
    noisy = hues[labels][:, None, None, :] + rng.normal(0, 90, (n, size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8), labels.astype(np.int64)


def split(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0):
    """Stratified train / val indices."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, round(len(idx) * val_fraction))
        val += idx[:k].tolist()
        train += idx[k:].tolist()
    return np.array(sorted(train)), np.array(sorted(val))


def write_folder(root: Path, images, labels, train, val) -> Path:
    from PIL import Image

    for name, indices in (("train", train), ("val", val)):
        for i in indices:
            folder = root / name / f"class_{labels[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{i:04d}.png")
    return root


def vgg16_weights(path: Path, size: int, seed: int) -> Path:
    """A seeded keras.applications VGG16 (no top) saved in the official ``.h5`` layout."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(seed)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    return path


def keras_guide(weights: Path, x_train, y_train, x_val, y_val, *, size, epochs, batch, seed, lr):
    """The guide's recipe; returns (timer, history, validation features)."""
    import keras
    import tensorflow as tf

    with harness.Timer() as timer:
        keras.utils.set_random_seed(seed)
        base = keras.applications.VGG16(
            weights=None, include_top=False, input_shape=(size, size, 3)
        )
        base.load_weights(weights)
        base.trainable = False
        inputs = keras.Input((size, size, 3))
        x = keras.applications.vgg16.preprocess_input(inputs)
        x = base(x, training=False)
        pooled = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dropout(0.2)(pooled)
        outputs = keras.layers.Dense(10, activation="softmax")(x)
        model = keras.Model(inputs, outputs)
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )

        def dataset(x, y, shuffle):
            ds = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), tf.one_hot(y, 10)))
            if shuffle:
                ds = ds.shuffle(len(x), seed=seed)
            return ds.batch(batch).prefetch(tf.data.AUTOTUNE)

        history = model.fit(
            dataset(x_train, y_train, True),
            epochs=epochs,
            validation_data=dataset(x_val, y_val, False),
            verbose=0,
        )
    features = keras.Model(inputs, pooled).predict(x_val.astype(np.float32), verbose=0)
    return timer, history.history, features


def head_noise(folder: Path, *, epochs: int, batch: int, lr: float, seeds: int = 20) -> list[float]:
    """Final val accuracy of the same head trained on the same cached features, ``seeds`` times."""
    import keras

    train, val = np.load(folder / "train.npy"), np.load(folder / "val.npy")
    y_train, y_val = np.load(folder / "train_labels.npy"), np.load(folder / "val_labels.npy")
    finals = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        head = keras.Sequential(
            [
                keras.Input(train.shape[1:]),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        head.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        history = head.fit(
            train, y_train, batch_size=batch, epochs=epochs, validation_data=(val, y_val), verbose=0
        )
        finals.append(round(history.history["val_accuracy"][-1], 4))
    return finals


def tlkit_val_order(run_dir: Path) -> list[int]:
    """Image indices of the run's validation split, in its order (from splits.csv)."""
    rows = [line.split(",") for line in (run_dir / "splits.csv").read_text().splitlines()[1:]]
    return [int(Path(r[0]).stem) for r in rows if r[2] == "val"]


def tlkit_run(weights: Path, data: Path, out: Path, *, size, epochs, batch, seed, lr):
    """``tlkit.finetune`` end to end; returns (timer, metrics, log lines)."""
    from tlkit.finetune import finetune
    from tlkit.recipes.schema import Recipe

    recipe = Recipe.model_validate(
        {
            "name": "frozen-benchmark",
            "seed": seed,
            "model": {"backbone": "vgg16", "image_size": size},
            "weights": {"source": str(weights)},
            "data": {"source": str(data)},
            "freeze": {"policy": "all"},
            "augment": {"preset": "none"},
            "train": {
                "epochs": epochs,
                "batch_size": batch,
                "verbose": 0,
                "optimizer": {"name": "adam", "lr": lr},
            },
            "output": {"dir": str(out)},
        }
    )
    lines: list[str] = []
    with harness.Timer() as timer:
        result = finetune(recipe, progress=False, log=lines.append)
    return timer, result.metrics, lines


def tlkit_outputs(run_dir: Path, metrics: dict, lines: list[str]) -> dict:
    """What this benchmark reads from a tlkit run: its metrics, log and run-directory files."""
    feature_line = next(line for line in lines if line.startswith("feature cache:"))
    return {
        "fast_path": metrics["fast_path"],
        "cache": run_dir / "feature_cache" / metrics["feature_cache"],  # train.npy, val.npy...
        "val_order": tlkit_val_order(run_dir),
        "features_seconds": float(re.search(r"once in ([0-9.]+)s", feature_line).group(1)),
        "val_accuracy": [h["val_accuracy"] for h in metrics["history"]],
        "model_keras_val_top1": metrics["val"]["top1"],
    }


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report(args, sizes, guide, guide_accuracy, tl, out, features, noise):
    """The results table, the speed-ups, and notes on where tlkit's time goes and on accuracy."""
    rows = [
        ["Keras guide", guide.wall, guide.cpu, None, guide_accuracy[-1], max(guide_accuracy)],
        ["tlkit, fast path", tl.wall, tl.cpu, out["features_seconds"]]
        + [out["val_accuracy"][-1], max(out["val_accuracy"])],
    ]
    columns = ["recipe", "wall s", "CPU s", "of which features once, s"]
    columns += ["val accuracy (last epoch)", "val accuracy (best)"]
    title = (
        f"Frozen VGG16 at {args.size}x{args.size}, {sizes[0]} train / {sizes[1]} val images, "
        f"{plural(args.epochs, 'epoch')}, batch {args.batch_size}"
    )
    speedup = guide.wall / tl.wall
    ratios = [
        {"name": "speed-up, wall-clock (Keras guide / tlkit)", "value": speedup},
        {"name": "speed-up, CPU seconds (Keras guide / tlkit)", "value": guide.cpu / tl.cpu},
    ]
    low, high = min(noise), max(noise)
    inside = all(low <= round(a[-1], 4) <= high for a in (guide_accuracy, out["val_accuracy"]))
    goal = ("met" if speedup >= 10 else "not met") if args.epochs == 10 else "not tested"
    notes = [
        f"tlkit's {tl.wall:.1f} s: {out['features_seconds']:.1f} s computing the features once "
        f"(every image through VGG16 once, as one epoch of the guide does), "
        f"{tl.wall - out['features_seconds']:.1f} s the rest; the guide took "
        f"{guide.wall / args.epochs:.1f} s per epoch.",
        f"Goal, at least 10x at 10 epochs: {goal} "
        f"({speedup:.1f}x wall-clock at {plural(args.epochs, 'epoch')}).",
        f"Validation features, tlkit's cache vs the guide's base: max |difference| "
        f"{features[0]:.2g} (features up to {features[1]:.2f}).",
        f"Noise: the same head on the same cached features, {len(noise)} seeds: final val "
        f"accuracy {low:.2f}-{high:.2f} (mean {np.mean(noise):.2f}); the guide's "
        f"{guide_accuracy[-1]:.2f} and tlkit's {out['val_accuracy'][-1]:.2f} "
        + ("both fall in that range." if inside else "do not both fall in that range."),
        f"tlkit's saved model.keras on the validation images: top-1 "
        f"{out['model_keras_val_top1']:.2f}.",
    ]
    return [{"title": title, "columns": columns, "rows": rows}], ratios, notes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's rate, both recipes.")
    parser.add_argument("--noise-seeds", type=int, default=20, help="Head-only noise runs.")
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notes from the small head fits
    images, labels = synthetic(args.images, args.size, args.seed)
    train, val = split(labels, seed=args.seed)
    common = {"size": args.size, "epochs": args.epochs, "batch": args.batch_size}
    common |= {"seed": args.seed, "lr": args.lr}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = vgg16_weights(
            root / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", args.size, args.seed
        )
        data = write_folder(root / "images", images, labels, train, val)
        tl, metrics, lines = tlkit_run(weights, data, root / "run", **common)
        out = tlkit_outputs(root / "run", metrics, lines)
        assert out["fast_path"], "\n".join(lines)
        print(f"# tlkit (fast path) {tl.wall:.1f} s ({tl.cpu:.1f} CPU s)", flush=True)
        guide, history, guide_features = keras_guide(
            weights, images[train], labels[train], images[val], labels[val], **common
        )
        print(f"# Keras guide {guide.wall:.1f} s ({guide.cpu:.1f} CPU s)", flush=True)
        position = {index: row for row, index in enumerate(val)}
        cached = np.load(out["cache"] / "val.npy")
        gap = np.max(np.abs(cached - guide_features[[position[i] for i in out["val_order"]]]))
        features = (float(gap), float(np.max(np.abs(cached))))
        noise = head_noise(
            out["cache"],
            epochs=args.epochs,
            batch=args.batch_size,
            lr=args.lr,
            seeds=args.noise_seeds,
        )
    sizes = (len(train), len(val))
    tables, ratios, notes = report(
        args, sizes, guide, history["val_accuracy"], tl, out, features, noise
    )
    return run.finish(tables, ratios, notes)


if __name__ == "__main__":
    main()
