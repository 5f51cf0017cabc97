"""Builders for the classic CNNs (Keras 3 functional API) and the registry that describes them.

Every builder has keras.applications' signature::

    from tlkit.models import VGG16, ResNet50, GoogLeNet
    model = VGG16(include_top=False, input_shape=(96, 96, 3), pooling="avg")

keras.applications' modern families (EfficientNet, EfficientNetV2, MobileNetV2/V3, DenseNet,
ConvNeXt, Xception, InceptionV3, InceptionResNetV2) are registered too, built by
keras.applications itself (:mod:`tlkit.models.applications`); ``APPLICATIONS`` maps their
keras.applications names to tlkit's builders (``APPLICATIONS["EfficientNetB0"]``).

String ids (``vgg16``, ``resnet50``, ``googlenet``) work through :func:`build_model` and
:func:`get_model_info`; :func:`list_models` and :func:`summary` describe them.

Importing this package does not import Keras: the registry's facts are plain data
(:mod:`tlkit.models.facts`), and a builder, head or layer is imported from its module (with
Keras) the first time it is used.
"""

from tlkit.models.info import resolve
from tlkit.models.registry import (
    FreezeGroup,
    ModelInfo,
    build_model,
    get_model_info,
    model_ids,
)
from tlkit.models.summary import LayerRow, ModelSummary, count_macs, list_models, summary
from tlkit.weights import OfficialWeights


def _names(module: str, *names: str) -> dict[str, str]:
    return {name: f"{module}:{name}" for name in names}


#: The names that need Keras -> where they are (``module:attribute``), imported on first use.
_KERAS_NAMES = {
    **_names("tlkit.models.vgg", "VGG", "VGG11", "VGG13", "VGG16", "VGG19"),
    **_names("tlkit.models.alexnet", "AlexNet", "ZFNet"),
    **_names("tlkit.models.lenet", "LeNet5"),
    **_names("tlkit.models.nin", "NiN"),
    **_names("tlkit.models.googlenet", "GoogLeNet", "strip_auxiliary_classifiers"),
    **_names("tlkit.models.resnet", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152",
             "PlainNet18", "PlainNet34", "PlainNet50", "PlainNet101", "PlainNet152"),
    **_names("tlkit.models.resnet_cifar", "CifarResNet", "ResNet20", "ResNet32", "ResNet44",
             "ResNet56", "ResNet110", "PlainNet20", "PlainNet32", "PlainNet44", "PlainNet56",
             "PlainNet110"),
    **_names("tlkit.models.efficientnet_lite", "EfficientNetLite", "EfficientNetLite0",
             "EfficientNetLite1", "EfficientNetLite2", "EfficientNetLite3", "EfficientNetLite4"),
    "APPLICATIONS": "tlkit.models.applications:BUILDERS",
    **_names("tlkit.layers", "LocalResponseNormalization", "Preprocessing"),
    **_names("tlkit.models.heads", "build_transfer_model", "inference_model"),
}

__all__ = [
    *_KERAS_NAMES,
    "FreezeGroup", "ModelInfo", "OfficialWeights",
    "build_model", "get_model_info", "model_ids",
    "LayerRow", "ModelSummary", "count_macs", "list_models", "summary",
]


def __getattr__(name: str):
    if name in _KERAS_NAMES:
        return resolve(_KERAS_NAMES[name])  # Keras only once a builder is asked for
    raise AttributeError(f"module 'tlkit.models' has no attribute {name!r}")
