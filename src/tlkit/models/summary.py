"""The papers' kind of table: per layer kernel/stride, output size, parameters, MACs, receptive field.

Multiply-accumulates are counted for convolutions and dense layers (what the ResNet paper calls
FLOPs); the receptive field follows ``r_out = r_in + (k - 1) * j_in``, ``j_out = j_in * s``
along the path with the largest field, so three stacked 3x3 convolutions see 7x7.

Importing it does not import Keras (``tlkit models`` lists the registry's facts with
:func:`list_models` without it); the functions that build or read a model do.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlkit import __version__
from tlkit.io import atomic_write_text
from tlkit.models.info import ModelInfo
from tlkit.models.registry import get_model_info, model_ids

if TYPE_CHECKING:
    import keras

GLOBAL = -1  # receptive field of a layer that sees the whole input


@dataclass
class LayerRow:
    """One line of a model summary."""

    name: str
    kind: str
    kernel: str
    output: tuple
    params: int
    macs: int
    receptive_field: int

    @property
    def receptive_field_text(self) -> str:
        if self.receptive_field == GLOBAL:
            return "all"
        return f"{self.receptive_field}x{self.receptive_field}" if self.receptive_field else ""


@dataclass
class ModelSummary:
    """A per-layer table with totals (see :func:`summary`)."""

    name: str
    input_shape: tuple
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0
    description: str = ""
    paper: str = ""

    def format(self, all_layers: bool = False) -> str:
        """Render as a text table; by default only layers with a kernel or weights."""
        rows = [r for r in self.rows if all_layers or r.kernel or r.params]
        header = ("layer", "type", "kernel/stride", "output", "params", "MACs", "RF")
        body = [
            (
                r.name,
                r.kind,
                r.kernel,
                "x".join("?" if d is None else str(d) for d in r.output),
                f"{r.params:,}",
                f"{r.macs:,}",
                r.receptive_field_text,
            )
            for r in rows
        ]
        widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [f"{self.name}  input {'x'.join(map(str, self.input_shape))}"]
        for label, text in (("", self.description), ("paper: ", self.paper)):
            if text:
                out += textwrap.wrap(f"{label}{text}", 100, subsequent_indent="    ",
                                     break_on_hyphens=False)
        out.append(line.format(*header).rstrip())
        out.append("  ".join("-" * w for w in widths))
        out += [line.format(*b).rstrip() for b in body]
        out.append(
            f"total: {self.total_params:,} parameters ({self.trainable_params:,} trainable), "
            f"{self.total_macs:,} multiply-adds ({self.total_macs / 1e9:.2f} GMACs)"
        )
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "total_macs": self.total_macs,
            "description": self.description,
            "paper": self.paper,
            "layers": [
                {**asdict(r), "output": list(r.output), "receptive_field": r.receptive_field_text}
                for r in self.rows
            ],
        }


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _kernel_stride(layer) -> tuple[int, int] | None:
    """(kernel, stride) along height for layers that move the receptive field."""
    if hasattr(layer, "kernel_size") and hasattr(layer, "strides"):
        k = _pair(layer.kernel_size)[0]
        d = _pair(getattr(layer, "dilation_rate", 1))[0]
        return d * (k - 1) + 1, _pair(layer.strides)[0]
    if hasattr(layer, "pool_size") and hasattr(layer, "strides"):
        return _pair(layer.pool_size)[0], _pair(layer.strides or layer.pool_size)[0]
    return None


def _is_global(layer) -> bool:
    import keras

    return isinstance(
        layer,
        (
            keras.layers.GlobalAveragePooling2D,
            keras.layers.GlobalMaxPooling2D,
            keras.layers.Flatten,
        ),
    )


def _shape(tensor_or_list) -> tuple:
    t = tensor_or_list[0] if isinstance(tensor_or_list, (list, tuple)) else tensor_or_list
    return tuple(t.shape[1:])


def layer_macs(layer, input_shape: tuple, output_shape: tuple) -> int:
    """Multiply-accumulates of one layer for one example (convolutions and dense layers)."""
    import keras

    if hasattr(layer, "count_macs"):
        return int(layer.count_macs(input_shape, output_shape))
    if isinstance(layer, keras.layers.SeparableConv2D):  # depthwise, then pointwise 1x1
        kh, kw = _pair(layer.kernel_size)
        depthwise = input_shape[-1] * layer.depth_multiplier
        return math.prod(output_shape[:-1]) * depthwise * (kh * kw + output_shape[-1])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = _pair(layer.kernel_size)
        return math.prod(output_shape) * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = _pair(layer.kernel_size)
        in_channels = input_shape[-1] // getattr(layer, "groups", 1)
        return math.prod(output_shape) * kh * kw * in_channels
    if isinstance(layer, keras.layers.Dense):
        return math.prod(output_shape) * input_shape[-1]
    return 0


def _parents(layer) -> list:
    nodes = getattr(layer, "_inbound_nodes", [])
    return [p.operation for p in nodes[0].parent_nodes] if nodes else []


def summarize_model(model: keras.Model) -> ModelSummary:
    """Summarize a built functional model (every layer, in topological order)."""
    import keras

    fields: dict[str, tuple[int, int]] = {}  # layer name -> (receptive field, jump)
    rows = []
    for layer in model.layers:
        parents = _parents(layer)
        if not parents:
            rf, jump = 1, 1
        else:
            rf, jump = max((fields[p.name] for p in parents if p.name in fields), default=(1, 1))
        ks = _kernel_stride(layer)
        kernel = ""
        if rf != GLOBAL and ks is not None:
            k, s = ks
            kernel = f"{k}x{k}/{s}"
            rf, jump = rf + (k - 1) * jump, jump * s
        elif _is_global(layer) or (isinstance(layer, keras.layers.Dense) and rf != GLOBAL):
            rf = GLOBAL
        fields[layer.name] = (rf, jump)
        if isinstance(layer, keras.layers.InputLayer):
            in_shape = out_shape = _shape(layer.output)
        else:
            in_shape, out_shape = _shape(layer.input), _shape(layer.output)
        rows.append(
            LayerRow(
                name=layer.name,
                kind=type(layer).__name__,
                kernel=kernel,
                output=out_shape,
                params=int(layer.count_params()) if layer.weights else 0,
                macs=layer_macs(layer, in_shape, out_shape),
                receptive_field=rf if (ks is not None or rf == GLOBAL) else 0,
            )
        )
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return ModelSummary(
        name=model.name,
        input_shape=_shape(model.inputs),
        rows=rows,
        total_params=int(model.count_params()),
        trainable_params=int(trainable),
        total_macs=sum(r.macs for r in rows),
    )


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass of ``model`` for one example."""
    return summarize_model(model).total_macs


def summary(
    model_or_id: str | keras.Model,
    input_size: int | None = None,
    *,
    include_top: bool = True,
    classes: int | None = None,
) -> ModelSummary:
    """Per-layer table for a registered architecture (by id) or a built model.

    Args:
        model_or_id: A registry id such as ``"vgg16"``, or a Keras model.
        input_size: Square input side; default the architecture's own.
        include_top: Include the classifier.
        classes: Classifier width; default the builder's (1000, or 10 for LeNet-5).
    """
    import keras

    if isinstance(model_or_id, keras.Model):
        return summarize_model(model_or_id)
    info = get_model_info(model_or_id)
    size = input_size or info.default_size
    extra = {} if classes is None else {"classes": classes}
    model = info.build(include_top=include_top, input_shape=(size, size, info.channels), **extra)
    result = summarize_model(model)
    result.name, result.description, result.paper = info.id, info.description, info.paper
    return result


# --------------------------------------------------------------------------- listing


def _stats_cache_path() -> Path:
    import keras

    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tlkit"
    return base / f"model-stats-v3-{__version__}-keras{keras.__version__}.json"


def _model_stats(info: ModelInfo, cache: dict) -> dict:
    key = info.id
    if key not in cache:
        import keras

        s = summary(info.id)
        cache[key] = {"params": s.total_params, "macs": s.total_macs}
        keras.backend.clear_session()
    return cache[key]


def model_facts(info: ModelInfo) -> dict[str, Any]:
    """The facts ``tlkit models`` lists for one architecture (no build, no Keras)."""
    return {
        "id": info.id,
        "family": info.family,
        "paper": info.paper,
        "input": f"{info.default_size}x{info.default_size}x{info.channels}",
        "min_input": info.min_size,
        "preprocessing": info.preprocessing,
        "official_weights": info.official_weights is not None,
        "weights_from": info.official_weights.describe() if info.official_weights else "",
        "description": info.description,
    }


def list_models(with_stats: bool = True, progress=None) -> list[dict[str, Any]]:
    """Describe every registered architecture.

    Parameters and multiply-adds are computed by building each model at its default size with
    its builder's default classes (1000; LeNet-5: 10), and cached (``~/.cache/tlkit``) since
    big models take a while to build. Without them nothing is built and Keras is not imported.

    Args:
        with_stats: Include ``params`` and ``gmacs`` (builds uncached models).
        progress: Optional callable taking the id being built.
    """
    rows = [model_facts(get_model_info(model_id)) for model_id in model_ids()]
    if not with_stats:
        return rows
    path = _stats_cache_path()
    cache: dict = {}
    if path.exists():
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
    dirty = False
    for row in rows:
        if row["id"] not in cache:
            dirty = True
            if progress:
                progress(row["id"])
        stats = _model_stats(get_model_info(row["id"]), cache)
        row["params"] = stats["params"]
        row["gmacs"] = float(f"{stats['macs'] / 1e9:.4g}")
    if dirty:
        try:
            atomic_write_text(path, json.dumps(cache, indent=1))
        except OSError:
            pass  # a read-only home only costs the next listing some time
    return rows
