"""Regenerate docs/architectures.md (every registered architecture, our figures beside the
paper's) and src/tlkit/model_catalog.json (the same rows, which `tlkit models` prints without
importing TensorFlow).

Run: python scripts/make_architectures_doc.py  (builds each model once at its default size).
"""

from __future__ import annotations

import json
from pathlib import Path

from tlkit.models import get_model_info, list_models

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
}


def main() -> None:
    rows = list_models(with_stats=True, progress=lambda i: print("building", i))
    out = [
        "# Architectures",
        "",
        "Every architecture tlkit builds, with the paper's figures next to ours. Parameters count",
        "weights and biases with 1000 classes (LeNet-5: 10) at the default input; MACs are multiply-adds of",
        "convolutions and dense layers for one image (the ResNet paper's \"FLOPs\"). Regenerate with",
        "`python scripts/make_architectures_doc.py`; the tests assert the exact figures.",
        "",
        "| id | family | paper | input | min input | parameters | GMACs | paper figures | ImageNet weights |",
        "| --- | --- | --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        out.append(
            f"| `{r['id']}` | {r['family']} | {r['paper']} | {r['input']} | {r['min_input']} | "
            f"{r['params']:,} | {r['gmacs']:.3g} | {PAPER.get(r['id'], '')} | "
            f"{'official keras.applications file' if r['official_weights'] else '-'} |"
        )
    out += ["", "## Notes per architecture", ""]
    for r in rows:
        info = get_model_info(r["id"])
        groups = ", ".join(g.name for g in info.freeze_groups)
        out.append(f"- **`{info.id}`** — {info.description.rstrip('.')}. Freeze groups: {groups}. "
                   f"Preprocessing: `{info.preprocessing}`. Counted weight layers: "
                   f"{info.weight_layers}.")
    out += ["", "See `tlkit summary ID` for the per-layer table (kernel/stride, output size, parameters,",
            "MACs, receptive field) of any of them.", ""]
    root = Path(__file__).resolve().parents[1]
    root.joinpath("docs", "architectures.md").write_text("\n".join(out))
    catalog = {"generated_by": "scripts/make_architectures_doc.py", "models": rows}
    root.joinpath("src", "tlkit", "model_catalog.json").write_text(json.dumps(catalog, indent=1) + "\n")


if __name__ == "__main__":
    main()
