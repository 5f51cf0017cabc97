"""Augmentation as a Keras layer, for ``device: model`` (the batched ops on the accelerator).

The layer runs RandAugment / TrivialAugment (one draw per image), mirror, colour shift and PCA
colour when ``training=True`` and is the identity
otherwise. It is never part of the saved inference model: the trainer wraps the model for
training with :func:`with_augmentation` and saves the inner model. The layer is still registered
as serializable (``tlkit>AugmentationLayer``), so a saved training wrapper loads too. It uses
TensorFlow ops, so it needs the TensorFlow backend.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tlkit.augment.augmenter import Augmenter, resolve_pca_stats
from tlkit.augment.config import AugmentConfig
from tlkit.augment.pca import PCAStats


@keras.saving.register_keras_serializable(package="tlkit")
class AugmentationLayer(keras.layers.Layer):
    """Batched pixel augmentation and the per-image policies (0..255 images in, float32 0..255
    out) while training.

    Args:
        config: The ``augment`` section (or its dict). Mixing ops (mixup, cutmix) need labels
            and stay in the tf.data pipeline.
        image_size: The model's input side.
        pca: PCA statistics (a :class:`PCAStats` or its dict) when PCA colour is on.
        seed: Seed of the layer's own seed generator (one fresh seed per training step).
    """

    def __init__(
        self,
        config: AugmentConfig | dict,
        image_size: int,
        pca: PCAStats | dict | None = None,
        seed: int = 0,
        **kwargs: Any,
    ):
        kwargs.setdefault("dtype", "float32")  # augment in float32 under mixed precision too
        super().__init__(**kwargs)
        if not isinstance(config, AugmentConfig):
            config = AugmentConfig.model_validate(config)
        self.augment_config = config
        self.image_size = int(image_size)
        self.seed = int(seed)
        stats = resolve_pca_stats(config, pca)
        self.augmenter = Augmenter(config, image_size=image_size, pca=stats, seed=seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False
        #: :func:`tlkit.models.inference_model` leaves the layer out of saved models.
        self.training_only = True

    def call(self, inputs, training=None):
        if not training:
            return inputs
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        return self.augmenter.per_batch_pixels(inputs, seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            config=self.augment_config.model_dump(mode="json"),
            image_size=self.image_size,
            pca=self.augmenter.pca.to_dict() if self.augmenter.pca is not None else None,
            seed=self.seed,
        )
        return config


def with_augmentation(model: keras.Model, layer: AugmentationLayer) -> keras.Model:
    """A training model ``layer -> model`` sharing ``model``'s weights.

    Train the returned model; save and export ``model`` itself, so augmentation never reaches
    the saved inference model.
    """
    inputs = keras.Input(shape=model.input_shape[1:], name="augment_input")
    outputs = model(layer(inputs))
    return keras.Model(inputs, outputs, name=f"{model.name}_with_augmentation")


def augmentation_layer(augmenter: Augmenter | None) -> AugmentationLayer | None:
    """The :class:`AugmentationLayer` for an augmenter with ``device: model``; None otherwise
    (no augmenter, or ``device: pipeline``, where the tf.data pipeline augments)."""
    if augmenter is None or augmenter.config.device != "model":
        return None
    return AugmentationLayer(
        augmenter.config,
        augmenter.image_size,
        pca=augmenter.pca,
        seed=augmenter.seed,
        name="augmentation",
    )
