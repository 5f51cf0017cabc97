"""Training throughput: tlkit's trainer vs keras.applications with plain ``fit``.

Images per second of full fine-tuning steps (forward, backward, SGD with momentum) on
synthetic data, one run, one machine, for ResNet-50 and VGG16:

* ``keras``: ``keras.applications.ResNet50`` / ``VGG16`` (``include_top=False``,
  ``pooling="avg"``) with a dropout + dense softmax head (float32 output), ``compile`` +
  ``fit`` -- what a Keras user writes;
* ``tlkit``: the same architecture from tlkit's builder with its transfer head, trained by
  :class:`tlkit.train.trainer.Trainer` (freeze engine, per-step learning-rate callback, NaN
  guard, strategy scope) for one epoch.

Each in float32 and mixed precision (``mixed_float16`` on a GPU, ``mixed_bfloat16`` on a CPU,
which has no fast float16 arithmetic), with XLA (``jit_compile``) off and on. Timing starts
after ``--warmup`` steps (tracing and XLA compilation), forces the loss to the host every step
and reports the batch size over the median step time. Tiny sizes on a CPU by default (64x64,
batch 8, 6 steps); 224x224, batch 64, 30 steps when a GPU is present. Results go to
benchmarks/results/train_throughput.json (``--json PATH``, ``--no-save``); ``--quick`` is a
smoke test (VGG16 at 32x32, 3 steps, float32 without XLA).

    python benchmarks/train_throughput.py [--models resnet50,vgg16] [--size 64] [--batch 8]
        [--steps 6] [--warmup 2] [--precisions float32,mixed] [--xla off,on]
        [--runners keras,tlkit] [--configs float32:off,...] [--quick] [--json PATH] [--no-save]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # harness, however this is run

import harness  # noqa: E402
import numpy as np  # noqa: E402

NAME = "train_throughput"
QUICK = {"models": "vgg16", "size": 32, "batch": 4, "steps": 3, "warmup": 1}
QUICK |= {"configs": "float32:off"}
CLASSES = 10


def step_timer():
    """A Keras callback recording when each training step ended (after syncing on the loss)."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                float(logs["loss"])  # wait for the step to finish
            self.ends.append(time.perf_counter())

    return StepTimer()


def synthetic(size: int, batch: int, steps: int, seed: int = 0):
    """The same random batch ``steps`` times: measures training, not the input pipeline."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, batch)]
    return tf.data.Dataset.from_tensors((x, y)).repeat(steps)


def run_keras(model_id: str, size: int, batch: int, steps: int, precision: str, xla: bool):
    import keras

    apps = {"resnet50": keras.applications.ResNet50, "vgg16": keras.applications.VGG16}
    keras.config.set_dtype_policy(precision)
    base = apps[model_id](
        include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg"
    )
    x = keras.layers.Dropout(0.2)(base.output)
    out = keras.layers.Dense(CLASSES, activation="softmax", dtype="float32")(x)
    model = keras.Model(base.input, out)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=xla,
    )
    timer = step_timer()
    model.fit(synthetic(size, batch, steps), epochs=1, callbacks=[timer], verbose=0)
    return timer.ends


def run_tlkit(model_id: str, size: int, batch: int, steps: int, precision: str, xla: bool):
    import keras

    from tlkit.freeze import Freezer
    from tlkit.models import get_model_info
    from tlkit.models.heads import build_transfer_model
    from tlkit.recipes.schema import Recipe
    from tlkit.train.hooks import standard_hooks
    from tlkit.train.plan import TrainPlan
    from tlkit.train.strategy import resolve_strategy
    from tlkit.train.trainer import Datasets, Trainer

    recipe = Recipe.model_validate(
        {
            "name": "throughput",
            "model": {"backbone": model_id, "image_size": size},
            "weights": {"source": "none"},
            "freeze": {"policy": "none", "bn": "train"},  # as Keras: every layer, BN in training
            "augment": {"preset": "none"},
            "train": {
                "epochs": 1,
                "batch_size": batch,
                "precision": precision,
                "jit_compile": xla,
                "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
                "verbose": 0,
            },
        }
    )
    info = get_model_info(model_id)
    strategy = resolve_strategy("auto")
    keras.config.set_dtype_policy(precision)
    with strategy.scope():
        model = build_transfer_model(info, CLASSES, image_size=size, head=recipe.model.head)
    timer = step_timer()
    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(
            model,
            TrainPlan.from_recipe(recipe, train_images=steps * batch),
            Datasets(synthetic(size, batch, steps)),
            run_dir,
            [*standard_hooks(), timer],
            strategy=strategy,
            freezer=Freezer(model, info, recipe.freeze),
            log=lambda m: None,
        ).run(resume=False)
    return timer.ends


RUNNERS = {"keras": run_keras, "tlkit": run_tlkit}


def measure(runner: str, model_id: str, precision: str, xla: bool, args) -> dict:
    """One configuration in a fresh Keras session; a failure is reported, not raised."""
    import keras

    keras.backend.clear_session()
    started = time.perf_counter()
    try:
        ends = RUNNERS[runner](model_id, args.size, args.batch, args.steps, precision, xla)
        ips, error = harness.rate_from_ends(ends, args.batch, args.warmup), None
    except Exception as exc:  # noqa: BLE001 - report and go on
        ips, error = float("nan"), f"{type(exc).__name__}: {exc}"[:120]
    finally:
        keras.config.set_dtype_policy("float32")
    row = {
        "model": model_id,
        "runner": runner,
        "precision": precision,
        "xla": xla,
        "images_per_s": ips,
        "error": error,
        "wall_s": time.perf_counter() - started,
    }
    print(
        f"#   {model_id} {runner} {precision} xla={'on' if xla else 'off'}: {ips:.1f} img/s "
        f"({row['wall_s']:.0f}s)" + (f" [{error}]" if error else ""),
        flush=True,
    )
    return row


def configurations(args, gpu: bool) -> list[tuple[str, bool]]:
    """(precision, XLA) pairs: ``--configs``, else every precision x XLA combination."""
    mixed = "mixed_float16" if gpu else "mixed_bfloat16"
    if args.configs:
        pairs = [c.split(":") for c in args.configs.split(",")]
    else:
        pairs = [(p, x) for p in args.precisions.split(",") for x in args.xla.split(",")]
    return [(mixed if p == "mixed" else p, x == "on") for p, x in pairs]


def results_table(rows: list[dict]) -> dict:
    """Images per second, against plain Keras float32 without XLA, and tlkit / Keras."""
    speed = {(r["model"], r["runner"], r["precision"], r["xla"]): r["images_per_s"] for r in rows}
    table = []
    for r in rows:
        base = speed.get((r["model"], "keras", "float32", False), float("nan"))
        same = speed.get((r["model"], "keras", r["precision"], r["xla"]), float("nan"))
        versus = r["images_per_s"] / same if r["runner"] == "tlkit" else None
        xla = "on" if r["xla"] else "off"
        cells = [r["images_per_s"], r["images_per_s"] / base, versus]
        table.append([r["model"], r["runner"], r["precision"], xla, *cells])
    columns = [
        "model",
        "runner",
        "precision",
        "XLA",
        "images/s",
        "vs keras float32",
        "tlkit / keras",
    ]
    return {"title": "Training throughput", "columns": columns, "rows": table}


def ratios_and_notes(rows: list[dict], gpu: bool) -> tuple[list[dict], list[str]]:
    """tlkit / Keras per configuration, Keras' XLA and mixed-precision gains; failures."""
    speed = {(r["model"], r["runner"], r["precision"], r["xla"]): r["images_per_s"] for r in rows}
    mixed = "mixed_float16" if gpu else "mixed_bfloat16"
    ratios = []
    for (model, runner, precision, xla), ips in speed.items():
        keras_ips = speed.get((model, "keras", precision, xla))
        if runner == "tlkit" and keras_ips:
            name = f"{model} {precision} XLA {'on' if xla else 'off'}: tlkit / keras"
            ratios.append({"name": name, "value": ips / keras_ips})
    for model in dict.fromkeys(r["model"] for r in rows):
        base = speed.get((model, "keras", "float32", False))
        for key, name in (
            ((model, "keras", "float32", True), "XLA on / off, float32"),
            ((model, "keras", mixed, False), f"{mixed} / float32, XLA off"),
        ):
            if base and key in speed:
                ratios.append({"name": f"{model} keras: {name}", "value": speed[key] / base})
    trainer = [r["value"] for r in ratios if r["name"].endswith("tlkit / keras")]
    trainer = [v for v in trainer if v == v]
    notes = (
        [
            f"tlkit's trainer ran at {min(trainer):.2f}-{max(trainer):.2f} of plain Keras' "
            f"throughput over {len(trainer)} configuration{'s' if len(trainer) > 1 else ''}."
        ]
        if trainer
        else []
    )
    for r in rows:
        if r["error"]:
            xla = "on" if r["xla"] else "off"
            notes.append(
                f"{r['model']} {r['runner']} {r['precision']} XLA {xla} failed: {r['error']}"
            )
    return ratios, notes


def main(argv: list[str] | None = None) -> dict:
    import tensorflow as tf

    gpu = bool(tf.config.list_physical_devices("GPU"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet50,vgg16")
    parser.add_argument("--size", type=int, default=224 if gpu else 64)
    parser.add_argument("--batch", type=int, default=64 if gpu else 8)
    parser.add_argument("--steps", type=int, default=30 if gpu else 6)
    parser.add_argument("--warmup", type=int, default=5 if gpu else 2)
    parser.add_argument("--precisions", default="float32,mixed")
    parser.add_argument("--xla", default="off,on")
    parser.add_argument("--runners", default="keras,tlkit")
    parser.add_argument(
        "--configs",
        help="PRECISION:XLA pairs to run instead of every precision x XLA combination, "
        "e.g. float32:off,float32:on,mixed:off",
    )
    args = harness.parse_args(parser, argv, QUICK)
    run = harness.Run(NAME, args, argv)
    print(
        f"# {args.size}x{args.size}, batch {args.batch}, {args.steps} steps "
        f"({args.warmup} warm-up steps not timed), synthetic data, SGD momentum 0.9"
    )
    rows = [
        measure(runner, model_id, precision, xla, args)
        for model_id in args.models.split(",")
        for precision, xla in configurations(args, gpu)
        for runner in args.runners.split(",")
    ]
    ratios, notes = ratios_and_notes(rows, gpu)
    return run.finish([results_table(rows)], ratios, notes)


if __name__ == "__main__":
    main()
