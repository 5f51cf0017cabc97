"""Every registered architecture's facts, as plain data: no Keras needed to read them.

One module a family, each with ``MODELS``, its :class:`~tlkit.models.info.ModelInfo` entries
in listing order, and the tables of its paper that the facts are counted from (VGG's Table 1
columns, ResNet's blocks per stage...), which the family's builder in :mod:`tlkit.models`
builds from. Builders are named by reference (``"tlkit.models.vgg:VGG16"``) and imported, with
Keras, when a model is first built. :mod:`tlkit.models.registry` registers them all: the
classic families first, then keras.applications' (:mod:`tlkit.models.facts.applications`,
from :mod:`tlkit.models.applications_data`).
"""
