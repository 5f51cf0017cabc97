"""Fixtures of the freeze tests (helpers live in freeze_helpers.py)."""

from __future__ import annotations

import keras
import pytest
from freeze_helpers import build_finetune_model, changed_layers, snapshot, train_one_step

_CACHE: dict[str, keras.Model] = {}


@pytest.fixture(scope="session")
def finetune_model():
    """Factory: one fine-tune model per id for the whole session (policies reset every flag)."""

    def get(model_id: str) -> keras.Model:
        if model_id not in _CACHE:
            _CACHE[model_id] = build_finetune_model(model_id)
        return _CACHE[model_id]

    return get


@pytest.fixture
def trained_changes():
    """Run one training step on ``model``; return the names of layers whose weights moved."""

    def run(model: keras.Model, **kwargs) -> set[str]:
        before = snapshot(model)
        train_one_step(model, **kwargs)
        return changed_layers(model, before)

    return run
