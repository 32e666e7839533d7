"""The search: per-layer widths with the least predicted loss of accuracy whose predicted latency is within the target.

A knapsack, as in HALP: each layer picks one of its levels (fit/sensitivity.py), each level has a cost (the rise
of the validation MSE when that layer alone is narrowed to it) and a latency (its share of the linear predictor,
fit/predictor.py). For each width the model may keep (the width scales every projection and FFN, so it is
enumerated outside), the layers' choices are solved exactly by dynamic programming over the remaining latency,
discretised finely and rounded up (a choice never looks cheaper than predicted); the width with the least total
cost wins. Ties (levels that cost nothing measurable) go to the choice that keeps more units, so the budget is
spent rather than left unused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tsprune_edge.fit.sensitivity import Sensitivity, layer_levels, width_levels
from tsprune_edge.fit.space import FEATURES, Space, Widths

BINS = 2000  # the latency grid of the knapsack: 0.05% of the target
KEEP_MORE = 1e-9  # per unit fraction removed: breaks ties towards the wider choice


@dataclass(frozen=True)
class Choice:
    kept: int
    ms: float
    cost: float


def search(space: Space, sensitivity: Sensitivity, predict: Callable[[list[float]], float],
           target_ms: float) -> Widths:
    """The widths chosen for `target_ms` (predicted); the smallest model if even it is predicted above target.
    `predict` maps the space's features to milliseconds and must be linear (the predictor is)."""
    best: tuple[float, float, Widths] | None = None  # (cost, -predicted ms, widths)
    widths = [space.d_model, *width_levels(space)] if space.d_model else [None]
    zero = predict([0.0] * len(FEATURES))  # linear: a layer's latency is predict(its features) - predict(0)
    for width in widths:
        scale = space.scale(width)
        fixed = predict(space.fixed_features(width))
        options = [[Choice(kept, predict(space.layer_features(layer, kept, scale)) - zero,
                           sensitivity.cost(layer.path, kept) + KEEP_MORE * (1 - kept / layer.units))
                    for kept in [layer.units, *layer_levels(layer)]] for layer in space.layers]
        picked = _knapsack(options, target_ms - fixed)
        if picked is None:
            continue
        choice = Widths({layer.path: c.kept for layer, c in zip(space.layers, picked, strict=True)}, width)
        cost = sum(c.cost for c in picked) + sensitivity.width_cost(width) \
            + (KEEP_MORE * (1 - width / space.d_model) if width else 0.0)
        ms = fixed + sum(c.ms for c in picked)
        if best is None or (cost, -ms) < best[:2]:
            best = (cost, -ms, choice)
    return best[2] if best else space.smallest()


def _knapsack(options: list[list[Choice]], capacity_ms: float) -> list[Choice] | None:
    """One choice per layer with the least total cost and total ms <= capacity (None: nothing fits)."""
    if capacity_ms <= 0:
        return None if options else []
    unit = capacity_ms / BINS
    # cost[b]: the least cost of the layers so far using b bins; back[i][b]: the choice of layer i there
    cost = np.full(BINS + 1, np.inf)
    cost[0] = 0.0
    back = []
    for layer in options:
        new, pick = np.full(BINS + 1, np.inf), np.full(BINS + 1, -1)
        for index, choice in enumerate(layer):
            size = int(np.ceil(max(choice.ms, 0.0) / unit - 1e-9))
            if size > BINS:
                continue
            shifted = np.full(BINS + 1, np.inf)
            shifted[size:] = cost[:BINS + 1 - size] + choice.cost
            better = shifted < new
            new[better], pick[better] = shifted[better], index
        cost = new
        back.append(pick)
    if not np.isfinite(cost).any():
        return None
    end = int(np.flatnonzero(cost == cost[np.isfinite(cost)].min())[-1])  # the cheapest; on a tie the most ms
    chosen = []
    for layer, pick in zip(reversed(options), reversed(back), strict=True):
        choice = layer[int(pick[end])]
        chosen.append(choice)
        end -= int(np.ceil(max(choice.ms, 0.0) / unit - 1e-9))
    return list(reversed(chosen))
