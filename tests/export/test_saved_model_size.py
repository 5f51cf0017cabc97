"""The SavedModel export stores each weight once and still answers like the Keras model in a
fresh TensorFlow process (Keras' own ``model.export`` writes every weight twice,
keras-team/keras#23553)."""

from __future__ import annotations

import numpy as np


def _weight_bytes(model) -> int:
    return sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)


def test_saved_model_stores_each_weight_once_and_runs_in_a_fresh_process(tmp_path):
    import tensorflow as tf

    from tlkit.export import convert
    from tlkit.export.run import GATES, run_in_fresh_process
    from tlkit.models import build_transfer_model, get_model_info, inference_model

    # ResNet-18 at 32 px: trainable kernels and BatchNorm's non-trainable statistics.
    model = inference_model(build_transfer_model(get_model_info("resnet18"), 3, image_size=32))
    saved = convert.saved_model(model, tmp_path / "saved_model")

    weights = _weight_bytes(model)
    stored = convert.size_bytes(saved / "variables")
    assert stored <= 1.2 * weights, f"variables {stored:,} bytes for {weights:,} bytes of weights"
    values = [name for name, _ in tf.train.list_variables(str(saved / "variables" / "variables"))
              if name.endswith("VARIABLE_VALUE")]
    assert len(values) == len(model.variables)  # the weights and the dropout's seed, once each

    images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "inputs.npy", images)
    probs, _ = run_in_fresh_process(saved, tmp_path / "inputs.npy", tmp_path)
    reference = np.asarray(model(images, training=False))
    assert probs.shape == reference.shape
    assert np.abs(probs - reference).max() <= GATES["float"]["max_abs_diff"]
