import numpy as np
import pytest
import tensorflow as tf

A = pytest.importorskip("albumentations")

from tlkit.augment import AugmentConfig, build_augmenter, build_compose  # noqa: E402
from tlkit.errors import UnknownNameError, UserError  # noqa: E402


def _config(pipeline, load_size=20):
    return AugmentConfig.model_validate(
        {
            "backend": "albumentations",
            "albumentations": {"pipeline": pipeline, "load_size": load_size},
            "mirror": {"enabled": True},
        }
    )


PIPELINE = [
    {"name": "RandomCrop", "params": {"height": 16, "width": 16}},
    {"name": "RGBShift", "params": {"p": 1.0}},
]


def test_runs_in_tf_data_reproducibly():
    aug = build_augmenter(_config(PIPELINE), image_size=16, seed=2)
    assert aug.load_size() == 20
    images = np.random.default_rng(0).integers(0, 256, [6, 20, 20, 3], dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, tf.one_hot(np.arange(6) % 2, 2)))

    def run():
        return np.concatenate([x.numpy() for x, _ in aug.apply(ds, batch_size=4)])

    first = run()
    assert first.shape == (6, 16, 16, 3)
    assert np.array_equal(first, run())


def test_output_resized_to_image_size():
    aug = build_augmenter(_config([{"name": "HorizontalFlip"}], load_size=None), image_size=12)
    image = tf.random.uniform([30, 30, 3], 0, 255, seed=1)
    assert aug.per_image(image, [0, 1]).shape == (12, 12, 3)


def test_saved_pipeline_file(tmp_path):
    path = tmp_path / "pipeline.json"
    A.save(A.Compose([A.HorizontalFlip(p=1.0)]), str(path))
    compose = build_compose(str(path))
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(compose(image=image)["image"], image[:, ::-1])


def test_bad_pipelines_are_user_errors():
    with pytest.raises(UnknownNameError, match="HorizontalFlip"):
        build_compose([{"name": "HorizontalFlipp"}])
    with pytest.raises(UserError, match="RandomCrop"):
        build_compose([{"name": "RandomCrop", "params": {"size": 3}}])
    with pytest.raises(UserError, match="not found"):
        build_compose("/no/such/pipeline.json")
