import numpy as np
import pytest


@pytest.fixture
def coord_images():
    """Batch whose pixels encode their own (row, column, image index)."""

    def make(n=4, height=12, width=10):
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        return np.stack(
            [np.stack([rows, cols, np.full_like(rows, b)], axis=-1) for b in range(n)]
        ).astype(np.int32)

    return make
