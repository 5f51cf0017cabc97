import keras
import numpy as np
import tensorflow as tf

from tlkit.augment import AugmentationLayer, augment_preset, with_augmentation


def _config():
    return augment_preset(
        "paper_alexnet", pca_colour={"enabled": True, "stats": "imagenet"}, device="model"
    )


def test_identity_at_inference_augments_in_training():
    layer = AugmentationLayer(_config(), image_size=8, seed=1)
    images = tf.random.uniform([16, 8, 8, 3], 20, 230, seed=1)
    assert np.array_equal(layer(images, training=False), images)
    assert np.array_equal(layer(images), images)  # training unset means inference
    trained = layer(images, training=True)
    assert trained.shape == images.shape
    assert not np.allclose(trained, images)
    assert not np.allclose(trained, layer(images, training=True))  # a new seed every call


def test_config_round_trip_and_saved_wrapper(tmp_path):
    layer = AugmentationLayer(_config(), image_size=8, seed=3)
    clone = AugmentationLayer.from_config(layer.get_config())
    assert clone.augment_config == layer.augment_config
    assert np.allclose(clone.augmenter.pca.eigvecs, layer.augmenter.pca.eigvecs)

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, outputs, name="tiny")
    training_model = with_augmentation(model, layer)
    x = np.random.default_rng(0).uniform(0, 255, [4, 8, 8, 3]).astype("float32")
    assert np.allclose(training_model.predict(x, verbose=0), model.predict(x, verbose=0))
    # the inference model (what runs save) has no augmentation layer in it
    assert not any(isinstance(lyr, AugmentationLayer) for lyr in model.layers)
    path = tmp_path / "wrapper.keras"
    training_model.save(path)
    loaded = keras.models.load_model(path)
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_trains_inside_fit():
    layer = AugmentationLayer(_config(), image_size=8, seed=0)
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    )
    model = with_augmentation(keras.Model(inputs, outputs), layer)
    model.compile("sgd", "categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, [8, 8, 8, 3]).astype("float32")
    y = np.eye(2)[np.arange(8) % 2]
    history = model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
