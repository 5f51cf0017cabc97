"""tlkit: transfer learning for Keras 3.

The public API lives in the subpackages (``tlkit.models``, ``tlkit.freeze``, ``tlkit.augment``,
``tlkit.data``, ``tlkit.train``, ``tlkit.recipes``, ``tlkit.export``); importing ``tlkit``
itself stays cheap and does not import TensorFlow.

It does make tlkit's few custom layers (AlexNet's LRN, LeNet-5's layers, the older
``Preprocessing`` layer) known to Keras, so that ``import tlkit`` is all a process needs to
``keras.models.load_model`` any tlkit model: at once when Keras is already imported, else the
moment it is (a one-shot import hook; nothing is imported before that). A transfer model's
``model.keras`` needs not even that: its preprocessing is made of Keras' own layers.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

__all__ = ["__version__"]


def _register_layers() -> None:
    import tlkit.layers  # noqa: F401 - registering is importing it


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Imports :mod:`tlkit.layers` right after ``keras`` finishes importing, then goes away."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # find the real spec without us; we run once
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _register_layers()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register_layers()
elif not any(isinstance(f, _AfterKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKeras())
