"""Importance: how much each prunable unit matters, as a strategy the structured and width pruners take (they are
policy only: how many units each layer keeps; the importance says which).

An `Importance` scores the units of one layer, higher kept first: the heads of an attention, the hidden neurons
of an FFN, the input lags of a DLinear time linear, the channels of a residual stream (a DepGraph group). The
default, `MagnitudeL2`, is the group L2 norm of every weight that goes with the unit: the magnitude
torch-pruning's GroupMagnitudeImportance(p=2) ranks by (weights only, biases left out), so the units it keeps
are the ones the library's own importance keeps. The fit's data-driven sensitivity (fit/sensitivity.py) scores
per-layer widths rather than units; a strategy ranking units by data would implement this same protocol.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch_pruning as tp
from torch import nn


class Importance(Protocol):
    """One score per unit, higher kept first."""

    def heads(self, block: nn.Module) -> torch.Tensor:
        """[n_heads] of an attention (q/k/v projections, out_proj, FEDformer's Fourier weights)."""
        ...

    def neurons(self, ffn: nn.Module) -> torch.Tensor:
        """[d_ff] of an FFN (linear1, linear2)."""
        ...

    def lags(self, block: nn.Module) -> torch.Tensor:
        """[n_lags] of a DLinear time linear (its per-variable layers)."""
        ...

    def channels(self, group: tp.dependency.Group) -> torch.Tensor:
        """[width] of a residual stream: the DepGraph group of every layer that reads or writes it."""
        ...


class MagnitudeL2:
    """The L2 norm of each unit's weights, summed over every layer that holds a slice of the unit."""

    @torch.no_grad()
    def heads(self, block: nn.Module) -> torch.Tensor:
        n_heads = block.n_heads
        width = block.q_proj.out_features // n_heads
        total = torch.zeros(n_heads)
        for name in ("q_proj", "k_proj", "v_proj"):
            projection = getattr(block, name, None)
            if projection is not None:
                total += projection.weight.reshape(n_heads, width, -1).pow(2).sum(dim=(1, 2))
        total += block.out_proj.weight.reshape(-1, n_heads, width).pow(2).sum(dim=(0, 2))
        if hasattr(block, "weights"):
            for weight in (block.weights.weight_real, block.weights.weight_imag):
                total += weight.pow(2).sum(dim=(1, 2, 3))
        return total.sqrt()

    @torch.no_grad()
    def neurons(self, ffn: nn.Module) -> torch.Tensor:
        return (ffn.linear1.weight.pow(2).sum(dim=1) + ffn.linear2.weight.pow(2).sum(dim=0)).sqrt()

    @torch.no_grad()
    def lags(self, block: nn.Module) -> torch.Tensor:
        return torch.stack([layer.weight.pow(2).sum(dim=0) for layer in block.layers]).sum(dim=0).sqrt()

    @torch.no_grad()
    def channels(self, group: tp.dependency.Group) -> torch.Tensor:
        """A stream's group spans dozens of layers of every kind: torch-pruning's group magnitude walks them."""
        return tp.importance.GroupMagnitudeImportance(p=2)(group)
