"""The cached-feature fast path: same model as the slow path, keyed cache, reuse, mirroring."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import make_image_folder


def _pretend_pretrained(path):
    """A ResNet-18 weights file standing in for a pretrained backbone (seeded random weights:
    a frozen backbone needs weights from somewhere, and these tests are about the cache)."""
    if not path.exists():
        import keras

        from tlkit.models.heads import build_transfer_model
        from tlkit.models.registry import get_model_info

        keras.utils.set_random_seed(3)
        build_transfer_model(get_model_info("resnet18"), 3, image_size=32).save(path)
    return str(path)


def _recipe(data, out, *, feature_cache="auto", epochs=3, **extra):
    from tlkit.recipes.schema import Recipe

    doc = {
        "seed": 3,
        "model": {"backbone": "resnet18", "image_size": 32},
        "weights": {"source": _pretend_pretrained(data.parent / "backbone.keras")},
        "data": {"source": str(data)},
        "freeze": {"policy": "all"},
        "augment": {"preset": "none"},
        "train": {
            "epochs": epochs,
            "batch_size": 16,
            "verbose": 0,
            "feature_cache": feature_cache,
            "optimizer": {"lr": 0.01},
        },
        "output": {"dir": str(out)},
    }
    for key, value in extra.items():
        doc[key] = {**doc.get(key, {}), **value}
    return Recipe.model_validate(doc)


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory):
    """The same small problem trained the slow way and on cached features."""
    from tlkit.finetune import finetune

    root = tmp_path_factory.mktemp("fastpath")
    data = make_image_folder(root / "data", classes=3, per_class=20)
    runs = {}
    for name, cache in (("slow", "off"), ("fast", "auto")):
        lines: list[str] = []
        result = finetune(
            _recipe(data, root / name, feature_cache=cache), progress=False, log=lines.append
        )
        runs[name] = (result, lines)
    return data, runs


def test_fast_path_trains_the_same_model_as_the_slow_path(both_ways):
    _, runs = both_ways
    (slow, slow_log), (fast, fast_log) = runs["slow"], runs["fast"]
    assert fast.fast_path and fast.metrics["fast_path"] is True
    assert not slow.fast_path and slow.metrics["fast_path"] is False
    assert any(line.startswith("fast path: the backbone is frozen") for line in fast_log)
    assert any(
        "not used although the backbone is frozen: train.feature_cache is off" in line
        for line in slow_log
    )
    assert slow.metrics["freeze"] == fast.metrics["freeze"]
    # Same data and frozen backbone: the slow path fits the head by the solver too (the linear
    # probe) and then trains it for 3 epochs on images; the fast path's solver fit is all of it.
    assert slow.metrics["stages"][0].startswith("linear probe")
    assert len(fast.metrics["history"]) == 1 and len(slow.metrics["history"]) == 3
    assert fast.metrics["val"]["top1"] >= 0.8 and slow.metrics["val"]["top1"] >= 0.8  # chance 1/3
    fit = json.loads((fast.run_dir / "head_fit.json").read_text())
    assert fit["converged"] and fit["solver"].startswith("lbfgs")


def test_fast_path_model_is_a_full_image_model(both_ways):
    """model.keras takes images, holds the frozen backbone and predicts as backbone + head."""
    import keras

    from tlkit.data.pipeline import iterate_images
    from tlkit.evaluation.loading import load_trained
    from tlkit.models.heads import build_head_model

    _, runs = both_ways
    fast, slow = runs["fast"][0], runs["slow"][0]
    model = load_trained(fast.run_dir).model
    reference = keras.saving.load_model(slow.run_dir / "model.keras")
    assert model.inputs[0].shape[1:] == (32, 32, 3)
    for layer in model.layers:  # same initialisation, backbone untouched by training
        if layer.weights and not (layer.name.startswith("head_") or layer.name == "predictions"):
            assert not layer.trainable, layer.name
            for a, b in zip(
                layer.get_weights(), reference.get_layer(layer.name).get_weights(), strict=True
            ):
                np.testing.assert_array_equal(a, b)
    folder = fast.run_dir / "feature_cache" / fast.metrics["feature_cache"]
    features, labels = np.load(folder / "val.npy"), np.load(folder / "val_labels.npy")
    bundle_val = _val_split(fast.run_dir)
    images = np.concatenate([x for x, _ in iterate_images(bundle_val, 32)])
    on_images = model.predict(images, verbose=0)
    on_features = build_head_model(model).predict(features, verbose=0)
    # model.keras is the head on the backbone, its logits divided by the temperature the run
    # fitted, then one softmax (a calibrated model's predictions layer gives logits)
    temperature = json.loads((fast.run_dir / "calibration.json").read_text())["temperature"]
    z = on_features / temperature
    expected = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(on_images, expected / expected.sum(1, keepdims=True), atol=1e-5)
    # val is scored out of fold (the head kept saw every image): what the run reports
    out_of_fold = np.load(fast.run_dir / "predictions_val.npy")
    top1 = float(np.mean(out_of_fold.argmax(1) == labels))
    assert top1 == pytest.approx(fast.metrics["val"]["top1"])


def _val_split(run_dir):
    """The run's validation split, from its splits.csv (path, label, split)."""
    from tlkit.data.bundle import Split

    rows = [line.split(",") for line in (run_dir / "splits.csv").read_text().splitlines()[1:]]
    names = json.loads((run_dir / "labels.json").read_text())["class_names"]
    val = [r for r in rows if r[2] == "val"]
    return Split(labels=[names.index(r[1]) for r in val], paths=[r[0] for r in val])


def test_a_resumed_run_reuses_the_cached_features(both_ways):
    from tlkit.finetune import finetune

    data, runs = both_ways
    run_dir = runs["fast"][0].run_dir
    folder = run_dir / "feature_cache" / runs["fast"][0].metrics["feature_cache"]
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")}
    state = json.loads((run_dir / "state.json").read_text())
    (run_dir / "state.json").write_text(json.dumps({**state, "finished": False}))  # "crashed"
    lines: list[str] = []
    result = finetune(_recipe(data, run_dir), progress=False, log=lines.append)
    assert result.resumed and result.fast_path
    assert any(line.startswith("feature cache: reusing") for line in lines), lines
    assert not any(line.startswith("feature cache: computed") for line in lines)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")} == stamps
    assert result.metrics["val"]["top1"] == runs["fast"][0].metrics["val"]["top1"]


def test_a_resumed_run_refuses_changed_data(both_ways):
    from tlkit.errors import UserError
    from tlkit.finetune import finetune

    data, runs = both_ways
    run_dir = runs["fast"][0].run_dir
    state = json.loads((run_dir / "state.json").read_text())
    (run_dir / "state.json").write_text(json.dumps({**state, "finished": False}))
    image = sorted(data.rglob("*.png"))[0]
    before = image.stat()
    try:
        os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
        with pytest.raises(UserError, match="other data or backbone weights"):
            finetune(_recipe(data, run_dir), progress=False, log=lambda m: None)
    finally:
        os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
        (run_dir / "state.json").write_text(json.dumps(state))


# --------------------------------------------------------------------------- units


@pytest.fixture(scope="module")
def small():
    """A LeNet-5 transfer model and two tiny in-memory splits."""
    from tlkit.data.bundle import Split
    from tlkit.models import get_model_info
    from tlkit.models.heads import build_transfer_model

    info = get_model_info("lenet5")
    model = build_transfer_model(info, 3, image_size=32)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    splits = {
        "train": Split(labels=np.arange(6) % 3, images=images[:6]),
        "val": Split(labels=np.arange(4) % 3, images=images[6:]),
    }
    return info, model, splits


def _key(model, splits, info, **kw):
    from tlkit.train.feature_store import cache_key, key_parts

    args = {"backbone": info.id, "image_size": 32, "preprocessing": info.preprocessing, **kw}
    return cache_key(key_parts(model, splits, **args))


def test_cache_key_follows_data_and_weights_not_the_head(small):
    from tlkit.data.bundle import Split

    info, model, splits = small
    key = _key(model, splits, info)
    assert _key(model, splits, info) == key
    relabelled = {
        **splits,
        "train": Split(labels=(splits["train"].labels + 1) % 3, images=splits["train"].images),
    }
    assert _key(model, relabelled, info) != key
    pixels = splits["train"].images.copy()
    pixels[0, 0, 0, 0] ^= 1
    assert (
        _key(model, {**splits, "train": Split(labels=splits["train"].labels, images=pixels)}, info)
        != key
    )
    assert _key(model, splits, info, image_size=64) != key
    layer = model.get_layer("c1")
    kernel, bias = layer.get_weights()
    head = model.get_layer("predictions")
    head_weights = head.get_weights()
    try:
        head.set_weights([w + 1 for w in head_weights])
        assert _key(model, splits, info) == key  # the head trains; features do not depend on it
        layer.set_weights([kernel + 1e-3, bias])
        assert _key(model, splits, info) != key
    finally:
        layer.set_weights([kernel, bias])
        head.set_weights(head_weights)


def test_file_data_key_follows_the_files(tmp_path):
    from tlkit.data.bundle import Split
    from tlkit.train.feature_store import data_digest

    data = make_image_folder(tmp_path / "d", classes=2, per_class=2, size=8)
    paths = sorted(str(p) for p in data.rglob("*.png"))
    split = Split(labels=[0, 0, 1, 1], paths=paths)
    before = data_digest(split)
    os.utime(paths[0], ns=(1, 1))
    assert data_digest(split) != before


def test_features_are_computed_once_then_reused(small, tmp_path, monkeypatch):
    import tlkit.train.feature_store as fc

    info, model, splits = small
    lines: list[str] = []
    first = fc.cached_features(
        model,
        splits,
        run_dir=tmp_path,
        key="k",
        image_size=32,
        batch_size=4,
        mirror=True,
        log=lines.append,
    )
    assert first.computed and first.train.shape == (6, 120) and first.val.shape == (4, 120)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "feature_cache/k").glob("*.npy")}
    assert set(stamps) == {
        "train.npy",
        "train_flipped.npy",
        "train_labels.npy",
        "val.npy",
        "val_flipped.npy",
        "val_labels.npy",
    }

    def refuse(*args, **kwargs):
        raise AssertionError("features recomputed")

    monkeypatch.setattr(fc, "compute_features", refuse)
    again = fc.cached_features(
        model,
        splits,
        run_dir=tmp_path,
        key="k",
        image_size=32,
        batch_size=4,
        mirror=True,
        log=lines.append,
    )
    assert again.reused and lines[-1].startswith("feature cache: reusing")
    np.testing.assert_array_equal(again.train_flipped, first.train_flipped)
    assert {
        p.name: p.stat().st_mtime_ns for p in (tmp_path / "feature_cache/k").glob("*.npy")
    } == stamps
    assert fc.active_key(tmp_path) == "k"


def test_flipped_features_are_the_mirrored_images_features(small, tmp_path):
    from tlkit.models.heads import feature_extractor
    from tlkit.train.feature_store import cached_features

    _, model, splits = small
    cached = cached_features(
        model,
        splits,
        run_dir=tmp_path,
        key="m",
        image_size=32,
        batch_size=4,
        mirror=True,
        log=lambda m: None,
    )
    images = splits["train"].images.astype(np.float32)
    extractor = feature_extractor(model)
    np.testing.assert_allclose(cached.train, extractor.predict(images, verbose=0), atol=1e-5)
    np.testing.assert_allclose(
        cached.train_flipped, extractor.predict(images[:, :, ::-1], verbose=0), atol=1e-5
    )
    assert not np.allclose(cached.train, cached.train_flipped)


@pytest.mark.parametrize(
    ("change", "use", "frozen", "needle"),
    [
        ({}, True, True, "computed once"),
        ({"augment": {"mirror": {"enabled": True, "p": 0.3}}}, True, True, "p=0.3"),
        ({"augment": {"crop": {"enabled": True}}}, False, True, "crop"),
        ({"model": {"head": {"type": "paper"}}}, False, True, "avg and max"),
        ({"train": {"feature_cache": "off"}}, False, True, "feature_cache is off"),
        ({"freeze": {"policy": "c5"}}, True, True, "computed once"),  # through the last block
        ({"freeze": {"policy": "c3"}}, False, False, "backbone layers train"),
    ],
)
def test_plan_says_when_and_why(change, use, frozen, needle):
    import tensorflow as tf

    from tlkit.freeze import Freezer
    from tlkit.models import get_model_info
    from tlkit.models.heads import build_transfer_model
    from tlkit.recipes.schema import Recipe
    from tlkit.train.plan import TrainPlan
    from tlkit.train.routes import plan_feature_cache

    doc = {"model": {"backbone": "lenet5", "image_size": 32}, "freeze": {"policy": "all"}}
    for key, value in change.items():
        doc[key] = {**doc.get(key, {}), **value}
    recipe = Recipe.model_validate(doc)
    info = get_model_info("lenet5")
    model = build_transfer_model(info, 3, image_size=32, head=recipe.model.head)
    plan = plan_feature_cache(
        model,
        Freezer(model, info, recipe.freeze, train_images_per_class=10),
        TrainPlan.from_recipe(recipe, train_images=30).stages,
        head_type=recipe.model.head.type,
        augment=recipe.augment,
        feature_cache=recipe.train.feature_cache,
        strategy=tf.distribute.get_strategy(),
    )
    assert (plan.use, plan.frozen) == (use, frozen)
    assert needle in plan.reason
    if "mirror" in change.get("augment", {}):
        assert plan.mirror_p == pytest.approx(0.3)


def test_a_run_restarted_before_its_first_epoch_keeps_its_feature_cache(tmp_path):
    from tlkit.finetune import resolve_run_dir

    run = tmp_path / "run"
    (run / "feature_cache" / "k").mkdir(parents=True)
    (run / "feature_cache" / "k" / "train.npy").write_bytes(b"x")
    (run / "recipe.yaml").write_text("name: run\n")
    (run / "labels.json").write_text("{}")
    recipe = _recipe(tmp_path / "data", run)
    assert resolve_run_dir(recipe.output, recipe.name) == (run, False)
    assert sorted(p.name for p in run.iterdir()) == ["feature_cache"]
    assert (run / "feature_cache" / "k" / "train.npy").exists()
    assert resolve_run_dir(recipe.output, recipe.name) == (run, False)  # only the cache left: still a run directory


def test_feature_batch_grows_for_small_images_within_a_pixel_budget():
    from tlkit.train.feature_store import FEATURE_BATCH_PIXELS, feature_batch_size

    assert feature_batch_size(32, 64) == 128  # capped
    assert feature_batch_size(32, 224) == 64  # the budget: 64 images at 224x224
    assert feature_batch_size(16, 299) == 32  # a power of two under the budget
    assert feature_batch_size(256, 64) == 256  # never below training's batch
    for side in (32, 96, 160, 224, 331, 512):
        batch = feature_batch_size(1, side)
        assert batch == 1 or batch * side * side <= FEATURE_BATCH_PIXELS
