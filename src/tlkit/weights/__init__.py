"""Where weights come from: official keras.applications files, checkpoints of other
frameworks converted once into Keras' cache, local files, earlier tlkit runs.

* :mod:`tlkit.weights.official`: Keras' cache and keras.applications' ImageNet files
  (:class:`OfficialWeights`, :func:`official_weights_path`);
* :mod:`tlkit.weights.converted`: ImageNet weights converted from a PyTorch ``.pth`` in an
  installed package or a TensorFlow checkpoint (:class:`ConvertedWeights`);
* :mod:`tlkit.weights.loading`: loading any of them, or a file of the user's, into a model by
  layer name with every shape checked (:func:`load_weights_file`, :class:`LoadReport`).

Importing this package does not import Keras (the model registry's facts hold
:class:`OfficialWeights` and :class:`ConvertedWeights`); :mod:`tlkit.weights.loading` loads it,
imported when one of its names is first used.
"""

from tlkit.weights.converted import WEIGHTS_EXTRA, ConvertedWeights, PackagedFile, write_legacy_h5
from tlkit.weights.official import OfficialWeights, keras_cache_dir, offline
from tlkit.weights.sources import ImageNetWeights, official_weights_path

__all__ = [
    "WEIGHTS_EXTRA", "ConvertedWeights", "ImageNetWeights", "LoadReport", "OfficialWeights",
    "PackagedFile", "keras_cache_dir", "load_backbone_weights", "load_builder_weights",
    "load_weights_file", "offline", "official_weights_path", "read_weights_file",
    "write_legacy_h5",
]

#: What :mod:`tlkit.weights.loading` gives, imported with Keras on first use.
_LOADING = ("LoadReport", "load_backbone_weights", "load_builder_weights", "load_weights_file",
            "read_weights_file")


def __getattr__(name: str):
    if name in _LOADING:
        from tlkit.weights import loading  # Keras only once weights are loaded

        return getattr(loading, name)
    raise AttributeError(f"module 'tlkit.weights' has no attribute {name!r}")
