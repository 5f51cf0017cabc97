"""Facts about keras.applications' modern families, as plain data: no Keras needed to read them.

One :class:`AppFamily` per family (EfficientNet, EfficientNetV2, MobileNetV2, MobileNetV3,
DenseNet, ConvNeXt, Xception, InceptionV3, InceptionResNetV2), one :class:`AppMember` per
keras.applications function. :mod:`tlkit.models.applications` builds them with
keras.applications itself, :mod:`tlkit.models.facts.applications` makes their registry entries;
this module only says what tlkit's engine needs:

* the official weight files and their hashes, copied from keras.applications' source (the tests
  check them against the installed Keras); MobileNetV2's files have no published hash;
* where the preprocessing lives: ``preprocessing`` is keras.applications' ``preprocess_input``
  mode when it is outside the model (tlkit puts it in front as a layer), ``none`` when the model
  has its own, described by ``inside``;
* freeze groups and units by layer name. The names are Keras' own where Keras gives one; the
  layers Keras leaves to a session counter (``conv2d_17``) are renamed by position
  (``rename``: after the named layer before them, or into the ``mixedN``/``blockN_M`` module
  they feed), so a name means the same layer in every process;
* the papers' stage structure as group names: EfficientNet's ``block1``-``block7`` are its
  Table 1 stages; Inception's ``block35``/``block17``/``block8`` are the 35x35, 17x17 and 8x8
  grids, as keras' InceptionResNetV2 names them.

NASNet is left out: its cells are all counter-named and it accepts only 224 or 331 px with
ImageNet weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KERAS_BUCKET = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class AppMember:
    """One keras.applications function.

    Attributes:
        function: Its name in ``keras.applications`` (the tlkit id is this in lower case).
        size: Its default input side.
        features: Channels of the feature map the head sees.
        weight_layers: Conv/dense layers on the deepest path of the ``include_top`` model.
        top, notop: (file name, hash) of the official files; the hash is md5 or sha256 as
            Keras publishes it (None: Keras publishes none).
        keras_name: The model's default name in Keras, where layer names start with it
            (ConvNeXt: ``convnext_tiny``).
        groups: Freeze groups of this member where they differ from the family's.
    """

    function: str
    size: int
    features: int
    weight_layers: int
    top: tuple[str, str | None]
    notop: tuple[str, str | None]
    keras_name: str = ""
    groups: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return self.function.lower()


@dataclass(frozen=True)
class AppFamily:
    """A keras.applications family and what tlkit's engine needs to know about it.

    Attributes:
        id: Family id (``efficientnet``, ``convnext``...).
        paper: Short citation.
        base_url: Folder URL of the official files.
        preprocessing: keras.applications' ``preprocess_input`` mode put in front of the
            model, or ``none`` when the preprocessing is inside it (``inside`` says what).
        inside: The preprocessing layers inside the model (no weights that train; they join
            the ``preprocessing`` group, which no policy trains).
        min_size: Smallest input side keras.applications accepts without the top.
        groups: (name, regex) freeze groups, input to output; ``{name}`` in a regex is the
            member's ``keras_name``.
        unit: Regex whose group 1 names a block that ``--freeze N`` never splits.
        rename: How counter-named layers get a fixed name: ``previous`` (after the named
            layer before them, or the ``module`` it belongs to) or ``next`` (the ``module``
            of the next named layer matching it; the first ``stem_convs`` convolutions and
            what goes with them are ``stem``).
        module: Regex whose group 1 is the module a named layer belongs to (for ``rename``).
        stem_convs: Convolutions of the stem (``rename: next``).
        replay: The builder calls keras' graph again on its input: to call a nested
            model's layers in the outer graph (ConvNeXt) or to add keras' ImageNet rescaling.
        stddev_rescaling: Add the ``Rescaling`` by 1/sqrt(std) that keras' EfficientNet puts
            after its normalization with ImageNet weights.
        last_norm: The name for the normalization Keras leaves unnamed after the pooling
            without the top (``{name}``: the member's ``keras_name``), so files load by name.
        kwargs: Arguments of tlkit's builder for the transfer models. Stochastic depth is
            off (``drop_connect_rate: 0``, which sets the blocks' ``*_drop`` rates): a frozen
            block would still drop its branch in training, so a frozen backbone's features
            would be noisy and could not be cached.
        members: The functions of the family.
    """

    id: str
    paper: str
    base_url: str
    preprocessing: str
    min_size: int
    groups: tuple[tuple[str, str], ...]
    unit: str
    members: tuple[AppMember, ...]
    inside: str = ""
    rename: str = "previous"
    module: str | None = None
    stem_convs: int = 0
    replay: bool = False
    stddev_rescaling: bool = False
    last_norm: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


PREPROCESSING_GROUP = ("preprocessing", r"^input_|_prestem_normalization$")


def _stages(prefix: str, stages: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"block{i}", rf"^{prefix}{i}[a-z]_") for i in range(1, stages + 1))


def _effnet(function: str, size: int, features: int, depth: int, md5: tuple[str, str]):
    name = function.lower()
    return AppMember(function, size, features, depth, (f"{name}.h5", md5[0]),
                     (f"{name}_notop.h5", md5[1]))


def _effnet_v2(function: str, size: int, features: int, depth: int, md5: tuple[str, str]):
    name = "efficientnetv2-" + function.removeprefix("EfficientNetV2").lower()
    seven = function.endswith(("M", "L"))
    return AppMember(function, size, features, depth, (f"{name}.h5", md5[0]),
                     (f"{name}_notop.h5", md5[1]),
                     groups=_effnet_v2_groups(7) if seven else ())


def _effnet_v2_groups(stages: int) -> tuple[tuple[str, str], ...]:
    """EfficientNetV2's groups: B0-B3 and S have six stages, M and L seven."""
    return (PREPROCESSING_GROUP, ("stem", r"^stem_"), *_stages("block", stages),
            ("top", r"^top_(conv|bn|activation)$"))


def _tf_kernels(stem: str, function: str, size: int, features: int, depth: int,
                md5: tuple[str, str]) -> AppMember:
    return AppMember(function, size, features, depth,
                     (f"{stem}_weights_tf_dim_ordering_tf_kernels.h5", md5[0]),
                     (f"{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5", md5[1]))


def _convnext(size_name: str, features: int, depth: int, sha256: tuple[str, str]):
    name = f"convnext_{size_name}"
    return AppMember(f"ConvNeXt{size_name.capitalize().replace('Xlarge', 'XLarge')}", 224,
                     features, depth, (f"{name}.h5", sha256[0]),
                     (f"{name}_notop.h5", sha256[1]), keras_name=name)


def _mobilenet_v3_groups(*stages: str) -> tuple[tuple[str, str], ...]:
    """Stem, one group per output grid (the blocks of each, as regexes of their numbers;
    block 0 is ``expanded_conv``), top."""
    blocks = tuple(
        (f"stage{i}", r"^expanded_conv_(depthwise|squeeze|project)" if numbers == "0"
         else rf"^expanded_conv_{numbers}_")
        for i, numbers in enumerate(stages, start=1)
    )
    return (PREPROCESSING_GROUP, ("stem", r"^conv(_bn)?$"), *blocks,
            ("top", r"^(conv_1|conv_1_bn)$"))


_CONVNEXT_GROUPS = (
    PREPROCESSING_GROUP,
    ("stem", r"^{name}_stem_"),
    ("stage1", r"^{name}_stage_0_"),
    ("stage2", r"^{name}_(downsampling_(layernorm|conv)_0|stage_1_)"),
    ("stage3", r"^{name}_(downsampling_(layernorm|conv)_1|stage_2_)"),
    ("stage4", r"^{name}_(downsampling_(layernorm|conv)_2|stage_3_)"),
    ("top", r"^{name}_head_layernorm$"),
)

FAMILIES: tuple[AppFamily, ...] = (
    AppFamily(
        id="efficientnet",
        paper="Tan & Le, EfficientNet: Rethinking Model Scaling for CNNs, ICML 2019",
        base_url="https://storage.googleapis.com/keras-applications/",
        preprocessing="none",
        inside="rescaling 1/255, ImageNet mean/variance normalization (weights from the file), "
        "rescaling by 1/sqrt(std) as keras.applications does with ImageNet weights",
        min_size=32,
        groups=(PREPROCESSING_GROUP, ("stem", r"^stem_"), *_stages("block", 7),
                ("top", r"^top_(conv|bn|activation)$")),
        unit=r"^(block\d[a-z])_",
        replay=True,
        stddev_rescaling=True,
        kwargs={"drop_connect_rate": 0.0},
        members=(
            _effnet("EfficientNetB0", 224, 1280, 82,
                    ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d")),
            _effnet("EfficientNetB1", 240, 1280, 116,
                    ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432")),
            _effnet("EfficientNetB2", 260, 1408, 116,
                    ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39")),
            _effnet("EfficientNetB3", 300, 1536, 131,
                    ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226")),
            _effnet("EfficientNetB4", 380, 1792, 161,
                    ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba")),
            _effnet("EfficientNetB5", 456, 2048, 195,
                    ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f")),
            _effnet("EfficientNetB6", 528, 2304, 225,
                    ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743")),
            _effnet("EfficientNetB7", 600, 2560, 274,
                    ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a")),
        ),
    ),
    AppFamily(
        id="efficientnetv2",
        paper="Tan & Le, EfficientNetV2: Smaller Models and Faster Training, ICML 2021",
        base_url=KERAS_BUCKET + "efficientnet_v2/",
        preprocessing="none",
        inside="B0-B3: rescaling 1/255 and ImageNet mean/std normalization; S/M/L: rescaling "
        "to [-1, 1]",
        min_size=32,
        groups=_effnet_v2_groups(6),
        unit=r"^(block\d[a-z])_",
        kwargs={"drop_connect_rate": 0.0},
        members=(
            _effnet_v2("EfficientNetV2B0", 224, 1280, 92,
                       ("21ecbf6da12460d5c40bb2f29ceb2188", "893217f2bb855e2983157299931e43ff")),
            _effnet_v2("EfficientNetV2B1", 240, 1280, 112,
                       ("069f0534ff22adf035c89e2d9547a9dc", "0e80663031ca32d657f9caa404b6ec37")),
            _effnet_v2("EfficientNetV2B2", 260, 1408, 117,
                       ("424e49f28180edbde1e94797771950a7", "1dfe2e7a5d45b6632553a8961ea609eb")),
            _effnet_v2("EfficientNetV2B3", 300, 1536, 137,
                       ("1f1fc43bd98a6e4fd8fdfd551e02c7a0", "f6abf7b5849ac99a89b50dd3fd532856")),
            _effnet_v2("EfficientNetV2S", 384, 1280, 171,
                       ("e1d88a8495beba45748fedd0cecbe016", "af0682fb74e8c54910f2d4393339c070")),
            _effnet_v2("EfficientNetV2M", 480, 1280, 246,
                       ("a3bf6aa3276309f4fc6a34aa114c95cd", "1b8dc055df72dde80d614482840fe342")),
            _effnet_v2("EfficientNetV2L", 480, 1280, 340,
                       ("27e6d408b53c7ebc868fefa357689935", "b0b66b5c863aef5b46e8608fe1711615")),
        ),
    ),
    AppFamily(
        id="mobilenetv2",
        paper="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018",
        base_url=KERAS_BUCKET + "mobilenet_v2/",
        preprocessing="tf",
        min_size=32,
        groups=(
            ("stem", r"^(Conv1|bn_Conv1|Conv1_relu)$"),
            ("stage1", r"^expanded_conv_"),
            ("stage2", r"^block_[12]_"),
            ("stage3", r"^block_[345]_"),
            ("stage4", r"^block_[6789]_"),
            ("stage5", r"^block_1[012]_"),
            ("stage6", r"^block_1[345]_"),
            ("stage7", r"^block_16_"),
            ("top", r"^(Conv_1|Conv_1_bn|out_relu)$"),
        ),
        unit=r"^(expanded_conv|block_\d+)_",
        members=(
            AppMember(
                "MobileNetV2", 224, 1280, 53,
                ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", None),
                ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", None),
            ),
        ),
    ),
    AppFamily(
        id="mobilenetv3",
        paper="Howard et al., Searching for MobileNetV3, ICCV 2019",
        base_url=KERAS_BUCKET + "mobilenet_v3/",
        preprocessing="none",
        inside="rescaling to [-1, 1]",
        min_size=32,
        groups=(),
        unit=r"^(expanded_conv(?:_\d+)?)_",
        members=(
            AppMember("MobileNetV3Small", 224, 576, 54,
                      ("weights_mobilenet_v3_small_224_1.0_float.h5",
                       "8768d4c2e7dee89b9d02b2d03d65d862"),
                      ("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                       "d3e8ec802a04aa4fc771ee12a9a9b836"),
                      groups=_mobilenet_v3_groups("0", "[12]", "[3-7]", "([89]|10)")),
            AppMember("MobileNetV3Large", 224, 960, 64,
                      ("weights_mobilenet_v3_large_224_1.0_float.h5",
                       "59e551e166be033d707958cf9e29a6a7"),
                      ("weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
                       "07fb09a5933dd0c8eaafa16978110389"),
                      groups=_mobilenet_v3_groups("0", "[12]", "[345]", "([6-9]|1[01])",
                                                  "1[234]")),
        ),
    ),
    AppFamily(
        id="densenet",
        paper="Huang et al., Densely Connected Convolutional Networks, CVPR 2017",
        base_url=KERAS_BUCKET + "densenet/",
        preprocessing="torch",
        min_size=32,
        groups=(
            ("conv1", r"^conv1_"),
            ("conv2", r"^(conv2_|pool2_)"),
            ("conv3", r"^(conv3_|pool3_)"),
            ("conv4", r"^(conv4_|pool4_)"),
            ("conv5", r"^(conv5_|bn$)"),
        ),
        unit=r"^(conv\d_block\d+)_",
        members=(
            _tf_kernels("densenet121", "DenseNet121", 224, 1024, 121,
                        ("9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738")),
            _tf_kernels("densenet169", "DenseNet169", 224, 1664, 169,
                        ("d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b")),
            _tf_kernels("densenet201", "DenseNet201", 224, 1920, 201,
                        ("1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1")),
        ),
    ),
    AppFamily(
        id="convnext",
        paper="Liu et al., A ConvNet for the 2020s, CVPR 2022",
        base_url=KERAS_BUCKET + "convnext/",
        preprocessing="none",
        inside="ImageNet mean/std normalization on 0..255 (a Normalization layer with fixed "
        "values)",
        min_size=32,
        groups=_CONVNEXT_GROUPS,
        unit=r"^(convnext_\w+_stage_\d_block_\d+)_",
        replay=True,
        last_norm="{name}_head_layernorm",
        members=(
            _convnext("tiny", 768, 59, (
                "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
                "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1")),
            _convnext("small", 768, 113, (
                "ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c",
                "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab")),
            _convnext("base", 1024, 113, (
                "52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6",
                "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45")),
            _convnext("large", 1536, 113, (
                "070c5ed9ed289581e477741d3b34beffa920db8cf590899d6d2c67fba2a198a6",
                "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd")),
            _convnext("xlarge", 2048, 113, (
                "c1f5ccab661354fc3a79a10fa99af82f0fbf10ec65cb894a3ae0815f17a889ee",
                "de3f8a54174130e0cecdc71583354753d557fcf1f4487331558e2a16ba0cfe05")),
        ),
    ),
    AppFamily(
        id="xception",
        paper="Chollet, Xception: Deep Learning with Depthwise Separable Convolutions, CVPR 2017",
        base_url=KERAS_BUCKET + "xception/",
        preprocessing="tf",
        min_size=71,
        groups=(
            ("entry", r"^block[1-4]_"),
            ("middle", r"^block([5-9]|1[012])_"),
            ("exit", r"^block1[34]_"),
        ),
        unit=r"^(block\d+)_",
        module=r"^(block\d+)_",
        members=(
            _tf_kernels("xception", "Xception", 299, 2048, 37,
                        ("0a58e3b7378bc2990ea3b43d5981f1f6", "b0042744bf5b25fce3cb969f33bebb97")),
        ),
    ),
    AppFamily(
        id="inceptionv3",
        paper="Szegedy et al., Rethinking the Inception Architecture, CVPR 2016",
        base_url=KERAS_BUCKET + "inception_v3/",
        preprocessing="tf",
        min_size=75,
        groups=(
            ("stem", r"^stem_"),
            ("block35", r"^mixed[0-2](_|$)"),
            ("block17", r"^mixed[3-7](_|$)"),
            ("block8", r"^mixed([89]|10)(_|$)"),
        ),
        unit=r"^(mixed\d+)(?:_|$)",
        rename="next",
        module=r"^(mixed\d+)$",
        stem_convs=5,
        members=(
            _tf_kernels("inception_v3", "InceptionV3", 299, 2048, 48,
                        ("9a0d58056eeedaa3f26cb7ebd46da564", "bcbd6486424b2319ff4ef7d526e38f63")),
        ),
    ),
    AppFamily(
        id="inceptionresnetv2",
        paper="Szegedy et al., Inception-v4, Inception-ResNet and the Impact of Residual "
        "Connections on Learning, AAAI 2017",
        base_url=KERAS_BUCKET + "inception_resnet_v2/",
        preprocessing="tf",
        min_size=75,
        groups=(
            ("stem", r"^stem_"),
            ("block35", r"^(mixed_5b|block35_)"),
            ("block17", r"^(mixed_6a|block17_)"),
            ("block8", r"^(mixed_7a|block8_|conv_7b)"),
        ),
        unit=r"^(block\d+_\d+|mixed_\d[a-z])(?:_|$)",
        rename="next",
        module=r"^(mixed_\d[a-z]|block\d+_\d+|conv_7b)(?:_ac|_conv)?$",
        stem_convs=5,
        members=(
            _tf_kernels("inception_resnet_v2", "InceptionResNetV2", 299, 1536, 176,
                        ("e693bd0210a403b3192acc6073ad2e96", "d19885ff4a710c122648d3b5c3b684e4")),
        ),
    ),
)
