"""tlkit: transfer learning for Keras 3.

The public API lives in the subpackages (``tlkit.models``, ``tlkit.freeze``, ``tlkit.augment``,
``tlkit.data``, ``tlkit.train``, ``tlkit.recipes``); importing ``tlkit`` itself stays cheap and
does not import TensorFlow.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
