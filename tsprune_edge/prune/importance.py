"""Importance of the units structured pruning removes: the L2 norm of every weight that goes with the unit, the
same group magnitude torch-pruning's GroupMagnitudeImportance(p=2) uses to rank within a layer. These scores set
how many units each layer keeps under global ranking and which units the hand-pruned blocks keep."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def head_importance(block: nn.Module) -> torch.Tensor:
    """[n_heads]: L2 norm over the head's q/k/v rows (and biases), out_proj columns and, in FEDformer's blocks,
    Fourier weights."""
    n_heads = block.n_heads
    width = block.q_proj.out_features // n_heads
    total = torch.zeros(n_heads)
    for name in ("q_proj", "k_proj", "v_proj"):
        projection = getattr(block, name, None)
        if projection is not None:
            total += projection.weight.reshape(n_heads, width, -1).pow(2).sum(dim=(1, 2))
            if projection.bias is not None:
                total += projection.bias.reshape(n_heads, width).pow(2).sum(dim=1)
    total += block.out_proj.weight.reshape(-1, n_heads, width).pow(2).sum(dim=(0, 2))
    if hasattr(block, "weights"):
        for weight in (block.weights.weight_real, block.weights.weight_imag):
            total += weight.pow(2).sum(dim=(1, 2, 3))
    return total.sqrt()


@torch.no_grad()
def neuron_importance(ffn: nn.Module) -> torch.Tensor:
    """[d_ff]: L2 norm over each hidden neuron's row of linear1 (and bias) and column of linear2."""
    total = ffn.linear1.weight.pow(2).sum(dim=1) + ffn.linear2.weight.pow(2).sum(dim=0)
    if ffn.linear1.bias is not None:
        total += ffn.linear1.bias.pow(2)
    return total.sqrt()


@torch.no_grad()
def lag_importance(block: nn.Module) -> torch.Tensor:
    """[n_lags]: L2 norm of each input step's column over every per-variable layer of a DLinear time linear."""
    return torch.stack([layer.weight.pow(2).sum(dim=0) for layer in block.layers]).sum(dim=0).sqrt()
