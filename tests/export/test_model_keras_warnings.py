"""A run's ``model.keras`` loads and runs in plain Keras without Keras' warning that the
inputs' structure does not match (a one-input model saved with ``model.inputs``, a list of one,
expects ``[x]`` and warns when called with ``x``, which is how everyone calls it)."""

from __future__ import annotations

import numpy as np
import pytest

STRUCTURE_WARNING = r"The structure of `inputs` doesn't match"

def _saved_model(tmp_path, calibrated: bool):
    from tlkit.evaluation.calibration import with_temperature
    from tlkit.models import build_transfer_model, get_model_info, inference_model

    model = inference_model(build_transfer_model(get_model_info("lenet5"), 3, image_size=32))
    if calibrated:
        model = with_temperature(model, 1.5)  # what a run saves as model.keras
    path = tmp_path / "model.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("calibrated", [False, True], ids=["inference_model", "calibrated"])
def test_saved_model_keras_loads_and_runs_without_the_structure_warning(tmp_path, calibrated):
    import warnings

    import keras

    path = _saved_model(tmp_path, calibrated)
    images = np.zeros((2, 32, 32, 3), "float32")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=STRUCTURE_WARNING)
        loaded = keras.models.load_model(path)
        probs = np.asarray(loaded(images))
        loaded.predict(images, verbose=0)
    assert probs.shape == (2, 3)
