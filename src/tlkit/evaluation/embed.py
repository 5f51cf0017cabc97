"""What report pages embed: escaped text and images as ``data:`` URIs (the page is one file)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np


def e(value: Any) -> str:
    """``value`` as HTML text (attribute-safe)."""
    return html.escape(str(value), quote=True)


def png_uri(array: np.ndarray) -> str:
    """A uint8 image array as a ``data:image/png;base64,...`` URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
