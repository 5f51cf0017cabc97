"""The preprocessing contract: one geometry and one decoder from training to prediction."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tlkit.augment import augment_preset, build_augmenter
from tlkit.contract import Contract, PreprocessConfig
from tlkit.data import DataConfig, prepare_data
from tlkit.data.images import decode_for_model, load_for_model
from tlkit.data.pipeline import make_dataset
from tlkit.errors import UserError
from tlkit.imageops import decode_window, fit_square, view_region


def _banded(h=40, w=80) -> np.ndarray:
    """Red left quarter, blue right quarter, green in between (the central h x h square)."""
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 4] = (255, 0, 0)
    image[:, w // 4 : 3 * w // 4] = (0, 255, 0)
    image[:, 3 * w // 4 :] = (0, 0, 255)
    return image


def test_resize_policies_on_a_wide_image():
    image = _banded()
    centre = fit_square(image, 32, "centre_crop").numpy().astype(int)
    assert (centre[..., 1] > 250).all() and (centre[..., [0, 2]] < 5).all()  # only the centre
    squash = fit_square(image, 32, "squash").numpy().astype(int)
    assert (squash[:, :6, 0] > 250).all() and (squash[:, -6:, 2] > 250).all()  # stretched
    pad = fit_square(image, 32, "pad").numpy().astype(int)
    assert (pad[:7] == 0).all() and (pad[-7:] == 0).all()  # 32 x 16 content, black bands
    assert (pad[10:22, :6, 0] > 250).all() and (pad[10:22, -6:, 2] > 250).all()


def test_train_crops_and_evaluation_share_one_geometry():
    """light preset at 32: training crops 32 windows of a 37 square (8/7, AlexNet's 256 for
    224); evaluation sees the centre 32 of the same 37 square."""
    augmenter = build_augmenter(augment_preset("light"), image_size=32)
    contract = Contract.for_run(PreprocessConfig(), augmenter, 32, "tf")
    assert (contract.resize, contract.train_size, contract.eval_size) == ("centre_crop", 37, 37)
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    view = contract.view(image).numpy()
    assert view.shape == (32, 32, 3)
    np.testing.assert_array_equal(view, contract.fit(image, 37).numpy()[2:34, 2:34])


def test_defaults_without_crops_and_with_scale_jitter():
    assert Contract.for_run(None, None, 64, "caffe").eval_size == 64
    mirror = build_augmenter(augment_preset("light", crop={"enabled": False}), image_size=64)
    assert Contract.for_run(None, mirror, 64, "tf").train_size == 64
    jitter = build_augmenter(augment_preset("paper_vgg"), image_size=224)
    contract = Contract.for_run(None, jitter, 224, "caffe")
    assert contract.eval_size == 384  # VGG: Q = (S_min + S_max) / 2 = (256 + 512) / 2
    with pytest.raises(UserError, match="below the image size"):
        Contract.for_run(PreprocessConfig(eval_size=30), None, 32, "tf")


def test_contract_round_trips_and_old_runs_squash(tmp_path):
    contract = Contract(32, "pad", 40, 40, "torch")
    contract.save(tmp_path)
    (tmp_path / "model.keras").write_bytes(b"")
    assert Contract.find(tmp_path / "model.keras", 32) == contract
    with pytest.raises(UserError, match="32px inputs"):
        Contract.find(tmp_path / "model.keras", 64)
    assert Contract.find(tmp_path / "elsewhere" / "model.keras", 48) == Contract(48, "squash")


def test_fused_decode_window_shows_what_the_view_shows():
    data = tf.constant(_jpeg(_banded(90, 150) // 2 + np.random.default_rng(1).integers(
        0, 100, (90, 150, 3), dtype=np.uint8)))
    contract = Contract(32, "centre_crop", 40)
    view = contract.view(tf.io.decode_jpeg(data, channels=3)).numpy().astype(float)
    fused = decode_window(data, lambda hw: view_region(hw, "centre_crop", 40, 32),
                          resize_to=32).numpy()
    assert np.abs(fused - view).mean() < 6.0  # the same window; only the resampling differs


def _jpeg(array, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90, **kwargs)
    return buffer.getvalue()


@pytest.fixture()
def mixed_folder(tmp_path):
    """Non-square JPEGs and PNGs, and one EXIF-rotated JPEG, in two classes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(4):
            array = rng.integers(0, 256, (40 + 6 * i, 64, 3), dtype=np.uint8)
            if i % 2:
                Image.fromarray(array).save(root / f"c{c}" / f"{i}.png")
            else:
                (root / f"c{c}" / f"{i}.jpg").write_bytes(_jpeg(array))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    array = rng.integers(0, 256, (30, 60, 3), dtype=np.uint8)
    (root / "c1" / "rotated.jpg").write_bytes(_jpeg(array, exif=exif.tobytes()))
    return root


def test_predict_decodes_and_shapes_exactly_as_validation(mixed_folder, tmp_path):
    """The files' pixels at prediction (load_for_model) equal the validation pipeline's, bit
    for bit: the same TensorFlow decoder, the same EXIF handling, the same geometry."""
    bundle = prepare_data(DataConfig(source=str(mixed_folder), val_split=0.3, test_split=0.0),
                          seed=0, run_dir=tmp_path / "run", progress=False)
    assert [c["reason"] for c in bundle.report.converted] == ["EXIF-rotated"]
    contract = Contract(32, "centre_crop", 36)
    seen = 0
    for split in (bundle.train, bundle.val):
        ds = make_dataset(split, num_classes=2, image_size=32, batch_size=64, training=False,
                          seed=0, contract=contract, image_dtype="uint8")
        pipeline = np.concatenate([x.numpy() for x, _ in ds])
        arrays, kept, skipped = load_for_model(split.origins, contract)
        assert not skipped and len(kept) == len(pipeline)
        np.testing.assert_array_equal(np.stack(arrays), pipeline)
        seen += len(kept)
    assert seen == 9
    rotated = decode_for_model(mixed_folder / "c1" / "rotated.jpg")
    assert rotated.shape == (60, 30, 3)  # orientation applied
    jpeg = mixed_folder / "c0" / "0.jpg"
    np.testing.assert_array_equal(decode_for_model(jpeg), tf.io.decode_jpeg(jpeg.read_bytes()))


def test_the_documented_recipe_for_feeding_an_export_is_the_contract(tmp_path, monkeypatch):
    """docs/deployment.md shows how to shape an image without tlkit; run that very snippet and
    compare it with Contract.view."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "deployment.md").read_text()
    start = text.index("```python\n", text.index("To feed an exported model")) + len("```python\n")
    snippet = text[start : text.index("```", start)]
    contract = Contract(32, "centre_crop", 36)
    (tmp_path / "runs/digits-demo/export").mkdir(parents=True)
    contract.save(tmp_path / "runs/digits-demo/export")
    image = np.random.default_rng(3).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "some.png")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "docs/deployment.md", "exec"), scope)  # noqa: S102 - our own docs
    np.testing.assert_array_equal(scope["batch"][0], contract.view(image).numpy())
