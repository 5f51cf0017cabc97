"""Introspection: output sizes, receptive fields, MACs and the listing."""

from __future__ import annotations

import keras
import pytest

from tlkit.models import count_macs, list_models, summary
from tlkit.models.summary import summarize_model


def _stack(n: int) -> keras.Model:
    inputs = keras.Input((32, 32, 8))
    x = inputs
    for i in range(n):
        x = keras.layers.Conv2D(8, 3, padding="same", name=f"conv{i + 1}")(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize(("n", "field"), [(1, 3), (2, 5), (3, 7)])
def test_stacked_3x3_receptive_field(n, field):
    rows = {r.name: r for r in summarize_model(_stack(n)).rows}
    assert rows[f"conv{n}"].receptive_field == field


def test_three_3x3_cost_27c2_against_49c2_for_one_7x7():
    c = 8
    three = sum(r.params for r in summarize_model(_stack(3)).rows) - 3 * c  # without biases
    assert three == 27 * c * c
    one = keras.Sequential([keras.Input((32, 32, c)), keras.layers.Conv2D(c, 7, use_bias=False)])
    assert one.count_params() == 49 * c * c


def test_output_size_formula_alexnet_conv1():
    # O = (I - K + 2P) / S + 1 = (227 - 11) / 4 + 1 = 55
    s = summary("alexnet")
    rows = {r.name: r for r in s.rows}
    assert rows["conv1"].output[:2] == (55, 55)
    assert rows["conv1"].kernel == "11x11/4"
    assert rows["conv1"].receptive_field == 11


def test_vgg16_summary_totals_and_macs():
    s = summary("vgg16")
    assert s.total_params == 138_357_544
    # VGG-16 is about 15.5 GMACs at 224x224
    assert 15.0e9 < s.total_macs < 15.8e9
    text = s.format()
    assert "block5_conv3" in text and "138,357,544" in text


@pytest.mark.parametrize(
    ("model_id", "paper"),
    [("resnet18", 1.8e9), ("resnet34", 3.6e9), ("resnet50", 3.8e9), ("resnet101", 7.6e9),
     ("resnet152", 11.3e9)],
)
def test_resnet_flops_row_within_5_percent(model_id, paper):
    from tlkit.models import build_model

    macs = count_macs(build_model(model_id))
    assert abs(macs - paper) / paper < 0.05, macs


def test_list_models_without_stats_is_cheap_and_complete():
    rows = list_models(with_stats=False)
    ids = {r["id"] for r in rows}
    assert {"vgg16", "googlenet", "resnet50", "lenet5"} <= ids
    vgg = next(r for r in rows if r["id"] == "vgg16")
    assert vgg["official_weights"] is True and vgg["input"] == "224x224x3"


def test_lenet5_paper_macs_count_only_connected_c3_kernels():
    from tlkit.models import build_model

    # C1 117,600 + C3 (60 connected 5x5 kernels at 10x10) 150,000 + C5 48,000 + F6 10,080
    # + RBF 840 = 326,520
    assert count_macs(build_model("lenet5_paper")) == 326_520
    assert count_macs(build_model("lenet5")) == 416_520  # full C3: 240,000


def test_architectures_doc_lists_every_model():
    from pathlib import Path

    from tlkit.models import model_ids

    doc = (Path(__file__).resolve().parents[2] / "docs" / "architectures.md").read_text()
    assert all(f"`{m}`" in doc for m in model_ids())
