"""keras.applications' modern families as tlkit backbones, built by keras.applications itself.

EfficientNetB0-B7, EfficientNetV2B0-B3/S/M/L, MobileNetV2, MobileNetV3Small/Large,
DenseNet121/169/201, ConvNeXtTiny...XLarge, Xception, InceptionV3 and InceptionResNetV2, under
their keras.applications function names in lower case (``efficientnetb0``, ``convnext_tiny`` is
``convnexttiny``). Nothing is re-implemented: each builder calls the keras.applications function
with ``weights=None`` and gives tlkit's engine what it needs, without changing a weight:

* **Fixed names.** Keras names some layers from a session counter (InceptionV3's ``conv2d_17``,
  Xception's residual ``conv2d_2``), so the same layer has another name in another process.
  Those are renamed by position (:func:`fix_names`, ``AppFamily.rename``): ``mixed3_conv2d_2``,
  ``block2_conv2d``, ``stem_batch_normalization_3``, ``input_normalization``. Freeze groups then
  match by name, and a run's ``model.keras`` loads into a fresh model by name.
* **One flat graph.** ConvNeXt's stem and downsampling blocks are nested ``Sequential`` models;
  the builder calls their layers in the outer graph instead (same layer names, so files still
  load: an official file's nested group fills its layers in turn), so the freeze engine sees
  every layer.
* **keras.applications' ImageNet graph.** With ImageNet weights keras' EfficientNet adds a
  ``Rescaling`` by 1/sqrt(std) after its normalization (tensorflow/tensorflow#49930); tlkit's
  EfficientNet always has it (``input_rescaling_stddev``, no weights), so a file gives the same
  outputs as keras.applications' model with ``weights="imagenet"``.
* **Weights as Keras loads them.** The official files are matched to the layers by order, as
  keras.applications loads them (their counter names are the saving session's); every shape is
  checked (:func:`tlkit.weights.load_builder_weights`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import keras

from tlkit.errors import InputSizeError, TlkitError
from tlkit.models._common import check_top_args
from tlkit.models.applications_data import FAMILIES, AppFamily, AppMember
from tlkit.models.facts.applications import official_weights
from tlkit.weights import OfficialWeights, load_builder_weights

#: keras.applications' EfficientNet: ``IMAGENET_STDDEV_RGB`` (the extra rescaling's values).
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
#: Layer classes that are preprocessing when Keras leaves them unnamed.
PREPROCESSING_CLASSES = (keras.layers.Rescaling, keras.layers.Normalization)


def _snake(class_name: str) -> str:
    """Keras' own ``to_snake_case`` (the base of a counter name: ``BatchNormalization`` ->
    ``batch_normalization``)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def counter_base(layer) -> str | None:
    """The class-derived base of ``layer``'s name if Keras named it from a counter
    (``conv2d_17`` -> ``conv2d``), else None."""
    base = _snake(type(layer).__name__)
    return base if re.fullmatch(rf"{re.escape(base)}(_\d+)?", layer.name) else None


def fix_names(model: keras.Model, family: AppFamily) -> dict[str, str]:
    """Rename the counter-named layers of a keras.applications model by their position.

    ``previous``: after the named layer before it (its ``module`` when the family has one);
    ``next``: the module of the next named layer matching ``module``, and ``stem`` for the
    first ``stem_convs`` convolutions and what goes with them. Unnamed preprocessing layers
    are ``input_*``. Returns ``{old: new}``.
    """
    layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    bases = [counter_base(la) for la in layers]
    named = [None if base else la.name for la, base in zip(layers, bases, strict=True)]
    module = re.compile(family.module) if family.module else None

    def module_of(name: str | None) -> str | None:
        if name is None or module is None:
            return name
        match = module.search(name)
        return match.group(1) if match else None

    following: list[str | None] = [None] * len(layers)
    upcoming = None
    for i in range(len(layers) - 1, -1, -1):
        following[i] = upcoming
        found = module_of(named[i]) if family.rename == "next" else named[i]
        upcoming = found or upcoming
    convs, previous, counts, renamed = 0, None, {}, {}
    for i, (layer, base) in enumerate(zip(layers, bases, strict=True)):
        if isinstance(layer, keras.layers.Conv2D):
            convs += 1
        if base is None:
            previous = module_of(layer.name) or previous if module else layer.name
            continue
        if isinstance(layer, PREPROCESSING_CLASSES) and convs == 0:
            prefix = "input"
        elif family.rename == "next":
            in_stem = convs <= family.stem_convs and family.stem_convs
            prefix = "stem" if in_stem else (following[i] or "top")
        else:
            prefix = previous or following[i] or "input"
        key = (prefix, base)
        counts[key] = counts.get(key, 0) + 1
        new = f"{prefix}_{base}" + (f"_{counts[key] - 1}" if counts[key] > 1 else "")
        renamed[layer.name] = new
        layer.name = new
    names = [la.name for la in layers]
    if len(set(names)) != len(names):
        raise TlkitError(f"tlkit gave two layers of {model.name} the same name; please report")
    return renamed


def _replay(model: keras.Model, tensor, after: dict[str, Callable]):
    """``model``'s graph called on ``tensor`` with fresh copies of its layers (same names and
    configs; nested ``Sequential`` models' layers copied and called one by one in the outer
    graph), and ``after[name]`` applied to the output of the layer ``name``.

    The copies are called once, on ``tensor``'s graph only: a layer called in two graphs has
    two ``output`` tensors, and Keras' ``layer.output`` (Grad-CAM's feature map, for one) is
    the first. The weights are the copies' own, initialized as keras.applications
    initializes them (the builder loads files afterwards). Reads Keras' private
    ``Functional._run_through_graph`` (the graph walk of ``Functional.call``)."""
    run = getattr(model, "_run_through_graph", None)
    if run is None:
        raise TlkitError(
            f"Keras {keras.__version__} has no Functional._run_through_graph, which tlkit uses "
            f"to flatten {model.name}'s nested models; tlkit is tested on Keras >= 3.15.1"
        )
    copies: dict[int, Any] = {}

    def copy(op):
        if not isinstance(op, keras.layers.Layer) or isinstance(op, keras.Sequential):
            return op  # keras.ops operations hold no weights; a Sequential is expanded below
        if id(op) not in copies:
            copies[id(op)] = type(op).from_config(op.get_config())
        return copies[id(op)]

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.Sequential):
            y = args[0]
            for sub in layer.layers:
                y = copy(sub)(y)
        else:
            y = layer(*args, **kwargs)
        return after[layer.name](y) if layer.name in after else y

    return run(tensor, operation_fn=copy, call_fn=call)


def _input(input_tensor, input_shape, member: AppMember, family: AppFamily):
    shape = tuple(input_shape) if input_shape is not None else (
        tuple(input_tensor.shape[1:]) if input_tensor is not None
        else (member.size, member.size, 3))
    for side in shape[:2]:
        if side is not None and side < family.min_size:
            raise InputSizeError(
                f"{member.id} needs inputs of at least {family.min_size}x{family.min_size} "
                f"pixels; got {shape[0]}x{shape[1]}. Resize your images or pick a larger "
                f"input size (keras.applications uses {member.size}x{member.size})."
            )
    if input_tensor is None:
        return keras.Input(shape=shape, name="input_layer"), shape
    if not keras.backend.is_keras_tensor(input_tensor):
        return keras.Input(tensor=input_tensor, shape=shape, name="input_layer"), shape
    return input_tensor, shape


def build(
    member: AppMember,
    family: AppFamily,
    official: OfficialWeights,
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str | None = None,
    drop_connect_rate: float | None = None,
    **keras_kwargs: Any,
) -> keras.Model:
    """Build ``member`` with keras.applications (``weights=None``), fix its names, flatten it,
    then load ``weights`` (``"imagenet"`` through Keras' cache, or a file) as Keras would.

    ``drop_connect_rate`` (EfficientNet, EfficientNetV2): the rate of the blocks' stochastic
    depth (their ``*_drop`` Dropout layers); None keeps keras.applications' 0.2. tlkit's
    transfer models use 0 (``AppFamily.kwargs``)."""
    check_top_args(weights, include_top, classes, True)
    tensor, shape = _input(input_tensor, input_shape, member, family)
    function = getattr(keras.applications, member.function)
    args = dict(include_top=include_top, weights=None, pooling=pooling, classes=classes,
                classifier_activation=classifier_activation, **keras_kwargs)
    if name is not None:
        args["name"] = name
    on_tensor = input_tensor is not None and not family.replay
    model = function(input_tensor=tensor, input_shape=shape, **args) if on_tensor else function(
        input_shape=shape, **args)
    fix_names(model, family)
    if family.last_norm and not include_top:
        model.layers[-1].name = family.last_norm.replace("{name}", model.name)
    if drop_connect_rate is not None:
        for layer in model.layers:
            if isinstance(layer, keras.layers.Dropout) and re.match(r"^block\w+_drop$",
                                                                     layer.name):
                layer.rate = float(drop_connect_rate)
    if family.replay:
        after = {}
        if family.stddev_rescaling:
            after["input_normalization"] = keras.layers.Rescaling(
                [1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB], name="input_rescaling_stddev")
        out = _replay(model, tensor, after)  # a fresh Input when the caller gave no tensor
        inputs = keras.utils.get_source_inputs(tensor)
        model = keras.Model(inputs[0] if len(inputs) == 1 else inputs, out, name=model.name)
    if weights is not None:
        load_builder_weights(model, weights, official=official, model_id=member.id,
                             include_top=include_top)
    return model


def _entry(member: AppMember, family: AppFamily, official: OfficialWeights) -> Callable:
    def builder(
        include_top: bool = True,
        weights: str | None = None,
        input_tensor: Any = None,
        input_shape: tuple | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation: str | None = "softmax",
        name: str | None = None,
        **keras_kwargs: Any,
    ) -> keras.Model:
        return build(member, family, official, include_top=include_top, weights=weights,
                     input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                     classes=classes, classifier_activation=classifier_activation, name=name,
                     **keras_kwargs)

    builder.__name__ = builder.__qualname__ = member.function
    builder.__doc__ = (
        f"keras.applications.{member.function} as a tlkit backbone ({member.size}px): fixed "
        "layer names, one flat graph; keras.applications' arguments."
    )
    return builder


#: keras.applications function name -> tlkit's builder (``BUILDERS["EfficientNetB0"]``); the
#: registry's entries (:mod:`tlkit.models.facts.applications`) name these.
BUILDERS: dict[str, Callable] = {
    member.function: _entry(member, family, official_weights(member, family))
    for family in FAMILIES
    for member in family.members
}
