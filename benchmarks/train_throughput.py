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
and reports the batch size over the median step time. Tiny sizes on a CPU by default (64x64, batch 8, 6 steps); 224x224, batch 64, 30 steps
when a GPU is present.

    python benchmarks/train_throughput.py [--models resnet50,vgg16] [--size 64] [--batch 8]
        [--steps 6] [--warmup 2] [--precisions float32,mixed] [--xla off,on]
        [--runners keras,tlkit] [--json results.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

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


def images_per_second(ends: list[float], batch: int, warmup: int) -> float:
    """Throughput from step end times: ``batch`` over the median step after ``warmup`` steps.

    The median, not the mean, so a burst of load from another process on a shared machine
    moves the figure less.
    """
    steps = np.diff(ends)[max(warmup, 1) - 1 :]
    if warmup < 1 or len(steps) < 1:
        raise ValueError(
            f"need at least 1 warm-up step and 1 timed step; got {len(ends)} steps, "
            f"{warmup} warm-up"
        )
    return batch / float(np.median(steps))


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

    from tlkit.models import get_model_info
    from tlkit.models.heads import build_transfer_model
    from tlkit.recipes.schema import Recipe
    from tlkit.train.strategy import resolve_strategy
    from tlkit.train.trainer import Trainer

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
            info=info,
            recipe=recipe,
            strategy=strategy,
            run_dir=run_dir,
            train_ds=synthetic(size, batch, steps),
            val_ds=None,
            steps_per_epoch=steps,
            train_images_per_class=1e9,
            log=lambda m: None,
            callbacks=[timer],
        ).run(resume=False)
    return timer.ends


RUNNERS = {"keras": run_keras, "tlkit": run_tlkit}


def machine() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"{len(gpus)}x {details.get('device_name', 'GPU')}"
    else:
        device = f"CPU only, {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    import keras

    return (
        f"{device}; Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}; {datetime.date.today().isoformat()}"
    )


def measure(runner: str, model_id: str, precision: str, xla: bool, args) -> dict:
    """One configuration in a fresh Keras session; a failure is reported, not raised."""
    import keras

    keras.backend.clear_session()
    started = time.perf_counter()
    try:
        ends = RUNNERS[runner](model_id, args.size, args.batch, args.steps, precision, xla)
        ips, error = images_per_second(ends, args.batch, args.warmup), None
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


def main(argv: list[str] | None = None) -> None:
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
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args(argv)
    mixed = "mixed_float16" if gpu else "mixed_bfloat16"
    if args.configs:
        pairs = [c.split(":") for c in args.configs.split(",")]
    else:
        pairs = [(p, x) for p in args.precisions.split(",") for x in args.xla.split(",")]
    configs = [(mixed if p == "mixed" else p, x == "on") for p, x in pairs]
    print(f"# {machine()}")
    print(
        f"# {args.size}x{args.size}, batch {args.batch}, {args.steps} steps "
        f"({args.warmup} warm-up steps not timed), synthetic data, SGD momentum 0.9"
    )
    rows = []
    for model_id in args.models.split(","):
        for precision, xla in configs:
            for runner in args.runners.split(","):
                rows.append(measure(runner, model_id, precision, xla, args))
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "args": vars(args), "rows": rows}, fh, indent=2)


def format_table(rows: list[dict]) -> str:
    """Markdown table; ratios against plain Keras float32 without XLA, and tlkit / Keras."""

    def find(model, runner, precision, xla):
        for r in rows:
            if (r["model"], r["runner"], r["precision"], r["xla"]) == (
                model,
                runner,
                precision,
                xla,
            ):
                return r["images_per_s"]
        return float("nan")

    lines = [
        "| model | runner | precision | XLA | images/s | vs keras float32 | tlkit / keras |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        base = find(r["model"], "keras", "float32", False)
        same = find(r["model"], "keras", r["precision"], r["xla"])
        versus = r["images_per_s"] / same if r["runner"] == "tlkit" else float("nan")
        lines.append(
            f"| {r['model']} | {r['runner']} | {r['precision']} | {'on' if r['xla'] else 'off'} "
            f"| {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f}x | "
            + (f"{versus:.2f}" if versus == versus else "")
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
