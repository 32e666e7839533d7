"""Cost analysis: MACs from torch's flop counter, per layer and in total, and what zeros could save."""

from __future__ import annotations

import torch

from tsprune_edge.models import create_model
from tsprune_edge.prune.analysis import count_macs, summarize
from tsprune_edge.prune.masks import Masks


def test_linear_layer_macs_are_rows_times_columns_times_tokens():
    model = create_model("dlinear", "small", enc_in=7, c_out=7)
    total, per_module = count_macs(model)
    # Two Linear(96 -> 96) applied to 7 variables: 2 * 7 * 96 * 96 multiply-accumulates per window.
    assert per_module["seasonal_linear.layers.0"] == 7 * 96 * 96
    assert total == 2 * 7 * 96 * 96


def test_summary_counts_parameters_zeros_and_per_layer_macs():
    torch.manual_seed(0)
    model = create_model("transformer", "small")
    dense = summarize(model)
    assert dense["parameters"] == sum(p.numel() for p in model.parameters())
    assert dense["density"] > 0.99 and dense["macs_if_sparse"] == dense["macs"]  # only zero-initialised biases
    rows = {row["layer"]: row for row in dense["layers"]}
    # encoder FFN: 96 tokens through Linear(64 -> 256)
    assert rows["encoder.0.ffn.linear1"]["macs"] == 96 * 64 * 256
    assert sum(row["macs"] for row in dense["layers"]) < dense["macs"]  # attention products are not layers

    masks = Masks(model, "unstructured")
    masks.compute(0.5)
    masks.apply()
    sparse = summarize(model)
    assert sparse["macs"] == dense["macs"]  # zeros are still multiplied by dense kernels
    assert sparse["macs_if_sparse"] < dense["macs"] - 0.4 * sum(row["macs"] for row in dense["layers"])
    assert 0.5 < sparse["density"] < 0.6
