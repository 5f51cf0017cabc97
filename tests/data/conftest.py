"""Fixtures for the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_testlib import make_class_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 classes x 8 images, 32x32 PNG, no split folders."""
    return make_class_folder(tmp_path / "images", {"cat": 8, "dog": 8, "fox": 8})
