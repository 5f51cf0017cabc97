"""LeNet-5: the paper's 60,840 parameters, the C3 table, the custom layers, save/load."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tlkit.errors import InputSizeError
from tlkit.models import lenet
from tlkit.models.registry import get_model_info

SIDES = {"c1": 28, "s2": 14, "c3": 10, "s4": 5, "c5": 1}
PAPER_PARAMS = {
    "c1": 156,
    "s2": 12,
    "c3": 1516,
    "s4": 32,
    "c5": 48_120,
    "f6": 10_164,
    "predictions": 840,
}
PLAIN_PARAMS = {
    "c1": 156,
    "s2": 0,
    "c3": 2416,
    "s4": 0,
    "c5": 48_120,
    "f6": 10_164,
    "predictions": 850,
}


@pytest.mark.parametrize(
    "model_id, total, per_layer",
    [("lenet5_paper", 60_840, PAPER_PARAMS), ("lenet5", 61_706, PLAIN_PARAMS)],
)
def test_parameter_counts_and_sizes(model_id, total, per_layer):
    model = get_model_info(model_id).build()
    assert model.name == model_id
    assert model.count_params() == total
    assert {name: model.get_layer(name).count_params() for name in per_layer} == per_layer
    for name, side in SIDES.items():
        assert model.get_layer(name).output.shape[1:3] == (side, side)
    assert model.output.shape == (None, 10)


def test_c3_table_is_the_papers():
    counts = [len(maps) for maps in lenet.C3_CONNECTIONS]
    assert counts == [3] * 6 + [4] * 9 + [6]
    assert sum(counts) == 60
    assert lenet.C3_CONNECTIONS[0] == (0, 1, 2)
    assert lenet.C3_CONNECTIONS[5] == (0, 1, 5)
    assert lenet.C3_CONNECTIONS[6] == (0, 1, 2, 3)
    assert lenet.C3_CONNECTIONS[12] == (0, 1, 3, 4)
    assert lenet.C3_CONNECTIONS[14] == (0, 2, 3, 5)


def test_partial_c3_only_connects_the_tables_maps():
    model = lenet.LeNet5(partial_c3=True)
    c3 = model.get_layer("c3")
    rng = np.random.default_rng(0)
    s2 = rng.normal(size=(1, 14, 14, 6)).astype("float32")
    base = keras.ops.convert_to_numpy(c3(s2))
    for i in range(6):
        bumped = s2.copy()
        bumped[..., i] += rng.normal(size=(1, 14, 14)).astype("float32")
        changed = np.abs(keras.ops.convert_to_numpy(c3(bumped)) - base).max(axis=(0, 1, 2)) > 0
        expected = [i in maps for maps in lenet.C3_CONNECTIONS]
        assert changed.tolist() == expected, f"S2 map {i}"
    full = keras.ops.convert_to_numpy(c3.full_kernel())
    assert full.shape == (5, 5, 6, 16)
    assert np.count_nonzero(np.abs(full).sum(axis=(0, 1))) == 60


def test_trainable_subsampling_is_scaled_average():
    layer = lenet.Subsampling2D(2, activation="tanh")
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 3)).astype("float32")
    layer.build(x.shape)
    layer.coefficient.assign(np.array([1.0, 2.0, -0.5], "float32"))
    layer.bias.assign(np.array([0.0, 0.1, 0.2], "float32"))
    mean = x.reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4))
    expected = np.tanh(mean * [1.0, 2.0, -0.5] + [0.0, 0.1, 0.2])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-6)


def test_rbf_output_is_negative_squared_distance():
    layer = lenet.EuclideanRBF(10)
    x = np.random.default_rng(2).uniform(-1, 1, size=(4, 84)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    centers = layer.centers.numpy()
    expected = -((x[:, :, None] - centers[None]) ** 2).sum(axis=1)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-3)
    assert (y.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_paper_variant_round_trips_through_keras_file(tmp_path):
    model = get_model_info("lenet5_paper").build()
    x = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 1)).astype("float32")
    path = tmp_path / "lenet.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    for name, cls in (
        ("s2", "Subsampling2D"),
        ("c3", "PartialConv2D"),
        ("predictions", "EuclideanRBF"),
    ):
        assert type(restored.get_layer(name)).__name__ == cls
    assert restored.get_layer("c3").connections == lenet.C3_CONNECTIONS
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    assert restored.count_params() == 60_840


def test_paper_variant_trains():
    model = get_model_info("lenet5_paper").build()
    x = np.random.default_rng(4).uniform(-1, 1, (4, 32, 32, 1)).astype("float32")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = model.get_layer("c3").kernel.numpy().copy()
    model.fit(x, np.array([0, 1, 2, 3]), epochs=1, verbose=0)
    assert not np.allclose(before, model.get_layer("c3").kernel.numpy())


def test_features_without_top():
    model = lenet.LeNet5(include_top=False)
    assert model.output.shape == (None, 1, 1, 120)
    pooled = lenet.LeNet5(include_top=False, input_shape=(64, 64, 1), pooling="avg")
    assert pooled.output.shape == (None, 120)


def test_min_size_error():
    with pytest.raises(InputSizeError, match="32x32"):
        lenet.LeNet5(input_shape=(28, 28, 1))


def test_registry_entries():
    for model_id in ("lenet5", "lenet5_paper"):
        info = get_model_info(model_id)
        assert info.default_input_shape == (32, 32, 1)
        assert (info.min_size, info.preprocessing, info.feature_size, info.weight_layers) == (
            32,
            "tf",
            120,
            5,
        )
        assert [g.name for g in info.freeze_groups] == ["c1", "c3", "c5", "f6"]
