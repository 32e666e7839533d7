"""What a model costs: parameters (total, nonzero), density, and multiply-accumulates per forecast.

MACs are counted by `torch.utils.flop_counter` (FLOPs / 2) on one window in the deployment form, the
computation the exported artifacts run. They count dense arithmetic: zeros left by unstructured pruning are
still multiplied unless a runtime has a sparse kernel, so `macs_if_sparse` adds what skipping every zero weight
of the pruned layers would save, the most unstructured sparsity could buy.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.prune.graph import example_inputs


def count_macs(model: nn.Module) -> tuple[int, dict[str, int]]:
    """(total MACs for one window, MACs per module path) in the deployment form, eval mode. Runs with autograd
    on: FlopCounterMode's module tracker fails under no_grad on views of parameters (Crossformer's routers)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with deployment_form(model), counter:
        model(*example_inputs(model))
    model.train(was_training)
    root = type(model).__name__  # the counter names modules "<root class>.<path>"
    per_module = {}
    for path, counts in counter.get_flop_counts().items():
        if path == root or path.startswith(root + "."):
            per_module[path[len(root) + 1:]] = sum(counts.values()) // 2
    return counter.get_total_flops() // 2, per_module


def layer_table(model: nn.Module, macs: dict[str, int], prunable: set[str] | None = None) -> list[dict]:
    """One row per Linear/Conv1d layer: shape, parameters, nonzero weights, density, MACs, whether pruned."""
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv1d)):
            continue
        weight = module.weight.detach()
        nonzero = int(torch.count_nonzero(weight))
        rows.append({
            "layer": name,
            "type": type(module).__name__,
            "shape": list(weight.shape),
            "weights": weight.numel(),
            "nonzero": nonzero,
            "density": round(nonzero / weight.numel(), 6),
            "macs": macs.get(name, 0),
            "pruned": prunable is not None and name in prunable,
        })
    return rows


def summarize(model: nn.Module, prunable: set[str] | None = None) -> dict:
    """Totals and the per-layer table, as written into pruning.json."""
    total_macs, per_module = count_macs(model)
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    layers = layer_table(model, per_module, prunable)
    skippable = sum(row["macs"] * (1 - row["density"]) for row in layers)
    return {
        "parameters": params,
        "nonzero_parameters": nonzero,
        "density": round(nonzero / params, 6),
        "macs": total_macs,
        "macs_if_sparse": int(round(total_macs - skippable)),
        "layers": layers,
    }
