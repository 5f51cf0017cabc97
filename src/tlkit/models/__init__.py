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
"""

from tlkit.layers import LocalResponseNormalization, Preprocessing
from tlkit.models.alexnet import AlexNet, ZFNet
from tlkit.models.applications import BUILDERS as APPLICATIONS
from tlkit.models.applications import register_applications
from tlkit.models.efficientnet_lite import (
    EfficientNetLite,
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
    EfficientNetLite3,
    EfficientNetLite4,
)
from tlkit.models.googlenet import GoogLeNet, strip_auxiliary_classifiers
from tlkit.models.heads import build_transfer_model, inference_model
from tlkit.models.lenet import LeNet5
from tlkit.models.nin import NiN
from tlkit.models.registry import (
    FreezeGroup,
    ModelInfo,
    build_model,
    get_model_info,
    model_ids,
)
from tlkit.models.resnet import (
    PlainNet18,
    PlainNet34,
    PlainNet50,
    PlainNet101,
    PlainNet152,
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
)
from tlkit.models.summary import LayerRow, ModelSummary, count_macs, list_models, summary
from tlkit.models.vgg import VGG, VGG11, VGG13, VGG16, VGG19
from tlkit.weights import OfficialWeights

__all__ = [
    "VGG", "VGG11", "VGG13", "VGG16", "VGG19",
    "AlexNet", "ZFNet", "LeNet5", "NiN", "GoogLeNet", "strip_auxiliary_classifiers",
    "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152",
    "PlainNet18", "PlainNet34", "PlainNet50", "PlainNet101", "PlainNet152",
    "EfficientNetLite", "EfficientNetLite0", "EfficientNetLite1", "EfficientNetLite2",
    "EfficientNetLite3", "EfficientNetLite4", "APPLICATIONS",
    "LocalResponseNormalization", "Preprocessing", "build_transfer_model", "inference_model",
    "FreezeGroup", "ModelInfo", "OfficialWeights",
    "build_model", "get_model_info", "model_ids",
    "LayerRow", "ModelSummary", "count_macs", "list_models", "summary",
]

register_applications()  # after the classic architectures: listings show those first
