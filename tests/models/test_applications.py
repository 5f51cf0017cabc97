"""keras.applications' modern families as tlkit backbones: the registry's facts against the
installed Keras, official-layout weight files loading as Keras loads them (same outputs), freeze
groups that cover every layer, names that do not depend on the session, and the whole job
(`tlkit summary`, `tlkit finetune --weights FILE --freeze 10`, `weights: imagenet` from Keras'
cache, a `model.keras` that a process without tlkit loads)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import installed_file_or_skip
from tlkit.cli.main import cli
from tlkit.errors import WeightsError
from tlkit.freeze import apply_freeze, freeze_groups
from tlkit.models import build_transfer_model, get_model_info, model_ids
from tlkit.models.applications_data import FAMILIES
from tlkit.weights import load_backbone_weights
from tlkit.weights.official import file_digest

ONE_PER_FAMILY = [family.members[0].id for family in FAMILIES]
#: The issue's six: `tlkit summary` counts, a one-epoch run on a real folder, a fresh process.
SIX = ["efficientnetb0", "efficientnetv2b0", "mobilenetv3small", "densenet121", "convnexttiny",
       "inceptionv3"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def keras_model(model_id: str, size: int, include_top: bool = False) -> keras.Model:
    """keras.applications' own model with random weights whose BatchNorm statistics are those
    of random images (one training-mode pass at momentum 0), so its features are well scaled
    and depend on the input, as a pretrained network's do: a wrong or missing load shows."""
    info = get_model_info(model_id)
    model = getattr(keras.applications, info.builder.__name__)(
        include_top=include_top, weights=None, input_shape=(size, size, 3),
        pooling=None if include_top else "avg")
    norms = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    momenta = [la.momentum for la in norms]
    for layer in norms:
        layer.momentum = 0.0
    x = np.random.default_rng(0).uniform(0, 255, (16, size, size, 3)).astype("float32")
    if info.preprocessing != "none":
        x = keras.applications.imagenet_utils.preprocess_input(x, mode=info.preprocessing)
    if info.family == "efficientnet":  # keras' ImageNet graph, as tlkit builds it (below)
        imagenet_normalization(model, scaled=True)
        x = x * STDDEV_SCALE
    model(x, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    if info.family == "efficientnet":
        imagenet_normalization(model, scaled=False)
    return model


#: keras' EfficientNet with ImageNet weights multiplies the normalized input by 1/sqrt(std).
STDDEV_SCALE = 1 / np.sqrt([0.229, 0.224, 0.225])


def imagenet_normalization(model: keras.Model, *, scaled: bool) -> None:
    """Set keras' EfficientNet's Normalization to ImageNet's mean and variance as its files
    hold them. ``scaled``: the mean times 1/sqrt(std), so that the model on ``x / sqrt(std)``
    computes what keras' ImageNet graph (and tlkit's) computes on ``x``:
    ``(x/255 - m) / sqrt(v) * c == (x*c/255 - m*c) / sqrt(v)``."""
    norm = next(la for la in model.layers if isinstance(la, keras.layers.Normalization))
    mean = np.array([0.485, 0.456, 0.406]) * (STDDEV_SCALE if scaled else 1)
    norm.set_weights([mean, np.array([0.229, 0.224, 0.225]), np.array(0)])
    norm.finalize_state()


def official_layout(model: keras.Model, path):
    """Write ``model``'s weights as keras.applications' files are laid out (legacy HDF5:
    one group a top-level layer, a nested model as one, in the model's order)."""
    from keras.src.legacy.saving import legacy_h5_format  # test-only: Keras' own writer

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


# --------------------------------------------------------------------------- registry facts


def test_every_keras_applications_member_is_registered_under_its_lower_case_name():
    ids = model_ids()
    for family in FAMILIES:
        for member in family.members:
            assert member.id == member.function.lower() and member.id in ids
            assert callable(getattr(keras.applications, member.function))
            assert get_model_info(member.function).id == member.id  # EfficientNetB0 works too
    assert get_model_info("convnext_tiny").id == "convnexttiny"  # Keras' model name


def test_official_files_and_hashes_are_the_ones_keras_publishes():
    """Every URL folder and hash appears in the installed keras.applications' source
    (MobileNetV2: Keras publishes no hash, and the registry has none)."""
    for family in FAMILIES:
        for member in family.members:
            function = getattr(keras.applications, member.function)
            source = inspect.getsource(sys.modules[function.__module__])
            source = re.sub(r'"\s*\n\s*f?"', "", source)  # "a/" "b/" -> "a/b/"
            assert get_model_info(member.id).official_weights.base_url in source, member.id
            for fname, digest in (member.top, member.notop):
                if digest is None:
                    assert member.id == "mobilenetv2" and "file_hash" not in source
                    assert fname.replace("1.0_224", "{float(alpha)}_{rows}") in source
                else:
                    assert f'"{digest}"' in source, (member.id, fname)


@pytest.mark.parametrize("model_id", ONE_PER_FAMILY)
def test_official_layout_file_loads_as_keras_loads_it(model_id, tmp_path):
    """A file written in the official layout from keras.applications' own model loads into
    tlkit's transfer model by position, every layer, and the backbone's features equal
    keras' model's (EfficientNet: keras' ImageNet graph, with its extra 1/sqrt(std) scaling).
    Every layer with weights is in a freeze group or the head; names are fixed."""
    info = get_model_info(model_id)
    size = max(64, info.min_size)
    reference = keras_model(model_id, size)
    path = official_layout(reference, tmp_path / "notop.h5")
    model = build_transfer_model(info, 3, image_size=size)
    head = ["head_dropout", "predictions"]
    report = load_backbone_weights(model, str(path), official=info.official_weights,
                                   model_id=model_id, include_top=False, head_layers=head)
    assert report.complete and not report.unused
    assert len(report.loaded) == sum(1 for la in model.layers if la.weights) - 1

    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    ours = keras.Model(model.input, model.get_layer("head_dropout").input)(x).numpy()
    from tlkit.layers import preprocessing  # test-only: the transfer model's own front

    if info.family == "efficientnet":  # keras' ImageNet graph: normalize, then * 1/sqrt(std)
        imagenet_normalization(reference, scaled=True)
        x = x * STDDEV_SCALE
    image = keras.Input((size, size, 3))
    theirs = keras.Model(image, reference(preprocessing(image, info.preprocessing)))
    expected = theirs(x).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())

    groups = {g.name: g for g in freeze_groups(model, info)}
    in_head = [la.name for la in groups["head"].weighted_layers]
    assert in_head == ["predictions"], in_head  # every backbone layer is in a group
    assert not [la.name for la in model.layers if re.search(r"(^|_)(conv2d|batch_normalization|"
                                                           r"layer_normalization)(_\d+)?$",
                                                           la.name)
                and not re.match(r"^(input|stem|mixed|block|top)", la.name)]


def test_names_do_not_depend_on_what_the_process_built_before():
    """Keras names InceptionV3's layers from a session counter; tlkit's are the same in a
    model built first and one built after others."""
    info = get_model_info("inceptionv3")
    first = [la.name for la in build_transfer_model(info, 3, image_size=75).layers]
    keras.applications.Xception(weights=None, include_top=False, input_shape=(71, 71, 3))
    second = [la.name for la in build_transfer_model(info, 3, image_size=75).layers]
    assert first == second
    assert "mixed3_conv2d_2" in first and "stem_batch_normalization_4" in first


def test_convnext_is_flat_with_keras_weight_names():
    model = build_transfer_model(get_model_info("convnexttiny"), 3, image_size=64)
    assert not [la for la in model.layers if isinstance(la, keras.Model)]
    names = [la.name for la in model.layers]
    assert "convnext_tiny_stem_conv" in names and "convnext_tiny_downsampling_conv_2" in names
    # the layers keep keras.applications' names; their weights are named by them
    assert model.get_layer("convnext_tiny_stem_conv").kernel.path == \
        "convnext_tiny_stem_conv/kernel"
    # each layer is called once, in this graph: its output is this model's tensor
    layer = model.get_layer("convnext_tiny_stage_3_block_2_identity")
    keras.Model(model.input, [layer.output, model.output])


def test_freeze_by_group_name_and_preprocessing_never_trains():
    info = get_model_info("efficientnetb0")
    model = build_transfer_model(info, 3, image_size=64)
    decision = apply_freeze(model, info, "block3")
    assert decision.frozen_groups == ["stem", "block1", "block2", "block3"]
    assert not model.get_layer("input_normalization").trainable
    assert model.get_layer("block4a_expand_conv").trainable
    scratch = apply_freeze(model, info, "auto", pretrained=False)
    assert scratch.policy == "none" and model.get_layer("stem_conv").trainable


def test_imagenet_from_keras_cache_offline_and_the_message_when_missing(tmp_path, monkeypatch):
    """`weights: imagenet` reads Keras' cache: MobileNetV2's file (no published hash) loads as
    it is; ConvNeXt's sha256 is checked; a missing file names the file and the folder."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    models = tmp_path / "models"
    models.mkdir()
    info = get_model_info("convnexttiny")
    with pytest.raises(WeightsError) as err:
        info.build(include_top=False, weights="imagenet", input_shape=(64, 64, 3))
    assert "convnext_tiny_notop.h5" in str(err.value) and str(models) in str(err.value)

    v2 = get_model_info("mobilenetv2")
    reference = keras_model("mobilenetv2", 64)
    official_layout(reference, models / v2.official_weights.notop[0])
    ours = v2.build(include_top=False, weights="imagenet", input_shape=(64, 64, 3),
                    pooling="avg")
    x = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(ours(x), reference(x), rtol=1e-4, atol=1e-6)

    official_layout(keras_model("convnexttiny", 64), models / info.official_weights.notop[0])
    with pytest.raises(WeightsError, match="sha256 differs"):
        info.build(include_top=False, weights="imagenet", input_shape=(64, 64, 3))
    # with the file's own sha256 as the published one, the run's path (load_backbone_weights,
    # as `tlkit finetune` calls it) takes it from the cache
    digest = file_digest(models / info.official_weights.notop[0], "sha256")
    official = dataclasses.replace(
        info.official_weights, notop=(info.official_weights.notop[0], digest))
    model = build_transfer_model(info, 3, image_size=64)
    report = load_backbone_weights(model, "imagenet", official=official, model_id=info.id,
                                   include_top=False, head_layers=["head_dropout", "predictions"])
    assert report.complete and report.source.endswith("convnext_tiny_notop.h5 (by position)")


# --------------------------------------------------------------------------- the whole job


@pytest.mark.parametrize("model_id", SIX)
def test_tlkit_summary_counts_keras_parameters(model_id):
    result = invoke("summary", model_id)
    assert result.exit_code == 0, result.output
    total = int(re.search(r"total: ([\d,]+) parameters", result.output).group(1).replace(",", ""))
    info = get_model_info(model_id)
    assert total == getattr(keras.applications, info.builder.__name__)(weights=None).count_params()


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A real folder: 40 of scikit-image's face crops and 40 non-face crops, as JPEG files."""
    source = installed_file_or_skip("scikit-image", "skimage/data/lfw_subset.npy")
    crops = (np.load(source) * 255).round().astype(np.uint8)
    root = tmp_path_factory.mktemp("faces") / "photos"
    for name, images in (("face", crops[:40]), ("non-face", crops[100:140])):
        (root / name).mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image).resize((50, 50), Image.BICUBIC).save(root / name / f"{i:03d}.jpg")
    return root


@pytest.fixture(scope="module")
def runs(faces, tmp_path_factory):
    """`tlkit finetune --backbone ID --weights OFFICIAL_LAYOUT_FILE --freeze 10`, one epoch,
    for each of the six."""
    out = {}
    for model_id in SIX:
        size = max(32, get_model_info(model_id).min_size)
        folder = tmp_path_factory.mktemp(model_id)
        weights = official_layout(keras_model(model_id, size), folder / "notop.h5")
        run = folder / "run"
        result = invoke("finetune", "--backbone", model_id, "--weights", weights, "--freeze",
                        "10", "--data", faces, "--image-size", size, "--epochs", "1",
                        "--output", run)
        out[model_id] = (run, result, size)
        keras.backend.clear_session()
    return out


@pytest.mark.parametrize("model_id", SIX)
def test_finetune_one_epoch_with_an_official_layout_file(runs, model_id):
    run, result, _ = runs[model_id]
    assert result.exit_code == 0, result.output[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backbone"] == model_id and [h["epoch"] for h in metrics["history"]] == [1]
    report = json.loads((run / "weights_report.json").read_text())
    assert "(by position)" in report["source"] and not report["missing"]
    assert "froze the first" in result.output


def test_model_keras_loads_and_predicts_in_a_process_without_tlkit(runs, tmp_path):
    """One fresh process loads every run's model.keras with Keras alone and predicts the same
    probabilities as this process."""
    x = np.random.default_rng(3).uniform(0, 255, (2, 75, 75, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected, jobs = {}, {}
    for model_id, (run, _, size) in runs.items():
        model = keras.saving.load_model(run / "model.keras", compile=False)
        expected[model_id] = model.predict(x[:, :size, :size], verbose=0).tolist()
        jobs[model_id] = (str(run / "model.keras"), size)
    code = (
        "import json, sys, numpy as np, keras\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"jobs = {jobs!r}\n"
        "out = {k: keras.saving.load_model(p, compile=False).predict(x[:, :s, :s], verbose=0)"
        ".tolist() for k, (p, s) in jobs.items()}\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'tlkit']\n"
        "print('RESULT' + json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.split("RESULT", 1)[1])
    for model_id in runs:
        np.testing.assert_allclose(got[model_id], expected[model_id], atol=1e-5)


def test_default_run_on_mobilenetv3_then_every_export_through_its_gate(faces, tmp_path):
    """The defaults (`freeze: auto`, `bn: auto`) on MobileNetV3Small with an official-layout
    file: the frozen backbone's features are cached, the head fitted on them; then every
    export format passes its parity gate, and `tlkit predict` runs the SavedModel after
    tlkit's check of its ops."""
    weights = official_layout(keras_model("mobilenetv3small", 64), tmp_path / "notop.h5")
    run = tmp_path / "run"
    result = invoke("finetune", "--backbone", "mobilenetv3small", "--weights", weights,
                    "--data", faces, "--image-size", 64, "--epochs", 2, "--output", run)
    assert result.exit_code == 0, result.output[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    # auto decided on evidence (or its prior) and chose the frozen backbone: the fast path
    assert metrics["fast_path"] and metrics["freeze"] == [
        "froze the whole backbone (52 weight layers); only the head trains"]
    assert "auto" in result.output
    exported = invoke("export", run, "--format", "saved_model,tflite,tflite_fp16,tflite_int8,onnx")
    assert exported.exit_code == 0, exported.output[-3000:]
    report = json.loads((run / "export" / "export_report.json").read_text())
    checks = {c["format"]: c for c in report["checks"]}
    assert set(checks) == {"saved_model", "tflite", "tflite_fp16", "tflite_int8", "onnx"}
    assert all(c["passed"] for c in checks.values()), checks
    assert checks["onnx"]["max_abs_diff"] <= 1e-4 and checks["tflite"]["max_abs_diff"] <= 1e-4
    image = sorted((faces / "face").glob("*.jpg"))[0]
    predicted = invoke("predict", run / "export" / "saved_model", image, "--json")
    assert predicted.exit_code == 0, predicted.output[-2000:]
