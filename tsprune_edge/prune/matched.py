"""Two structured prunings compared at the same cost: the ratio at which a wider set of dimensions removes the same
multiply-accumulates as the default set (heads and FFN neurons) removes at a given sparsity.

Comparing `heads,ffn` with `heads,ffn,width` at one nominal sparsity would compare models of different cost (the
width takes MACs out of every layer); the study asks which costs less time *per MAC removed*, so it prunes the
wider set to the MACs the default set reached. Uniform pruning keeps a count per layer that depends only on the
ratio, never on the weights, so the ratio found on a copy of the model holds for the model itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from tsprune_edge.prune.analysis import count_macs
from tsprune_edge.prune.structured import DEFAULT_DIMENSIONS, StructuredConfig, StructuredPruner

RESOLUTION = 0.005  # the ratio is searched to this step; widths move in multiples of round_to anyway


@dataclass(frozen=True)
class MatchedRatio:
    ratio: float  # the ratio the wider set of dimensions is pruned at
    target_macs: int  # MACs of the default set at the nominal sparsity
    macs: int  # MACs of the wider set at `ratio`
    dense_macs: int

    def record(self) -> dict:
        return {"ratio": self.ratio, "target_macs": self.target_macs, "macs": self.macs,
                "dense_macs": self.dense_macs, "target_mac_reduction": round(1 - self.target_macs / self.dense_macs, 6),
                "mac_reduction": round(1 - self.macs / self.dense_macs, 6)}


def pruned_macs(model: nn.Module, config: StructuredConfig) -> int:
    pruned = copy.deepcopy(model)
    pruner = StructuredPruner(pruned, config)
    for _ in range(config.steps):
        pruner.step()
    return count_macs(pruned)[0]


def matched_ratio(model: nn.Module, sparsity: float, dims: tuple[str, ...], round_to: int) -> MatchedRatio:
    """The ratio in [0, sparsity] at which `dims` leaves the MACs closest to what the default dimensions leave at
    `sparsity` (ties: the lower ratio). MACs fall as the ratio rises (in steps, from rounding), so a bisection for
    the first ratio at or under the target, then the better of it and its neighbour below, finds it."""
    target = pruned_macs(model, StructuredConfig(sparsity, round_to=round_to, dims=DEFAULT_DIMENSIONS))
    dense = count_macs(model)[0]

    def macs_at(ratio: float) -> int:
        return pruned_macs(model, StructuredConfig(ratio, round_to=round_to, dims=dims)) if ratio else dense

    low, high = 0, round(sparsity / RESOLUTION)  # in steps of RESOLUTION; macs_at(high) <= target
    cache = {high: macs_at(high * RESOLUTION)}
    while high - low > 1:
        middle = (low + high) // 2
        cache[middle] = macs_at(middle * RESOLUTION)
        if cache[middle] <= target:
            high = middle
        else:
            low = middle
    cache.setdefault(low, macs_at(low * RESOLUTION))
    best = min((low, high), key=lambda step: (abs(cache[step] - target), step))
    return MatchedRatio(round(best * RESOLUTION, 6), target, cache[best], dense)
