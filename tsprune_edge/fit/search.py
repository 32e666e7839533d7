"""The search: per-layer widths that keep the most importance with a predicted latency within the target.

Importance is magnitude (prune/importance.py: the L2 norm of every weight that goes with a head, a neuron, a lag;
a d_model channel's group norm over every layer of its residual streams, as width pruning ranks them). Scores of
different layers are not on one scale, so each layer counts the fraction of its own importance it keeps (the units
it keeps are always its most important ones), through its logarithm: halving any layer costs the same, emptying one
costs without bound, and where every layer buys the same time per unit the optimum is uniform pruning (a plain sum
of fractions emptied the layer with the most MACs first). The width counts as much as all layers together plus
one, since every layer and the embeddings read it.

Greedy, in two passes (NetAdapt-like removal, then a knapsack-style refill):
1. from dense, repeatedly take the step (one head, `round_to` neurons, lags or channels from one layer) that buys
   the most predicted latency per importance lost, until the prediction is within the target;
2. then give back, while the prediction stays within the target, the step that restores the most importance per
   predicted latency it costs (removal can overshoot; this spends what is left of the budget).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from tsprune_edge.fit.space import Space, Widths
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.prune.importance import head_importance, lag_importance, neuron_importance
from tsprune_edge.prune.structured import _skip_time_axis_mappings, example_inputs
from tsprune_edge.prune.width import dependency_graph, residual_streams, stream_group, stream_width

WIDTH = "d_model"  # the key of the width's scores


@dataclass(frozen=True)
class Importance:
    """Per layer path (and WIDTH): scores sorted high to low, normalised to sum to the layer's weight."""

    sorted_scores: dict[str, list[float]]

    def kept(self, widths: Widths) -> float:
        """Sum over layers (and the width) of weight * log(fraction of the layer's importance kept); 0 for dense."""
        counts = dict(widths.units)
        if widths.width is not None:
            counts[WIDTH] = widths.width
        total = 0.0
        for path, count in counts.items():
            scores = self.sorted_scores[path]
            weight = sum(scores)
            total += weight * math.log(max(sum(scores[:count]) / weight, 1e-12))
        return total


def magnitude_importance(model: nn.Module, space: Space) -> Importance:
    modules = dict(model.named_modules())
    scores = {}
    for layer in space.layers:
        module = modules[layer.path]
        raw = {"heads": head_importance, "neurons": neuron_importance, "lags": lag_importance}[layer.kind](module)
        scores[layer.path] = _normalised(raw, 1.0)
    if space.d_model is not None:
        scores[WIDTH] = _normalised(width_scores(model), len(space.layers) + 1.0)
    return Importance(scores)


def _normalised(raw: torch.Tensor, weight: float) -> list[float]:
    values = raw.double().sort(descending=True).values
    return (values / values.sum() * weight).tolist() if values.sum() > 0 else [weight / len(values)] * len(values)


def width_scores(model: nn.Module) -> torch.Tensor:
    """[d_model]: each channel's group L2 magnitude, summed over the residual streams."""
    with warnings.catch_warnings(), _skip_time_axis_mappings(), deployment_form(model):
        warnings.simplefilter("ignore")
        graph = dependency_graph(model, example_inputs(model))  # traced with autograd on
        importance = tp.importance.GroupMagnitudeImportance(p=2)
        d_model = model.config.d_model
        streams = [n for n in residual_streams(model, graph) if stream_width(n) == d_model]
        with torch.no_grad():
            return sum(importance(stream_group(graph, norm, list(range(d_model)))) for norm in streams)


def search(space: Space, importance: Importance, predict: Callable[[Widths], float], target_ms: float) -> Widths:
    """The widths chosen for `target_ms` (predicted); the smallest model if even it is predicted above target."""
    current = space.dense()
    while predict(current) > target_ms:
        best = _best(current, _removals(space, current), importance, predict, remove=True)
        if best is None:
            break
        current = best
    while True:
        fitting = [w for w in _additions(space, current) if predict(w) <= target_ms]
        best = _best(current, fitting, importance, predict, remove=False)
        if best is None:
            return current
        current = best


def _best(current: Widths, moves: Iterator[Widths], importance: Importance, predict: Callable[[Widths], float],
          remove: bool) -> Widths | None:
    """Removal: the most latency saved per importance lost; addition: the most importance per latency spent."""
    base_ms, base_kept = predict(current), importance.kept(current)
    best, best_value = None, -1.0
    for move in moves:
        saved = base_ms - predict(move) if remove else predict(move) - base_ms
        changed = abs(base_kept - importance.kept(move)) + 1e-12
        if remove and saved <= 0:
            continue  # costs importance and buys no time
        value = saved / changed if remove else changed / max(saved, 1e-12)
        if value > best_value:
            best, best_value = move, value
    return best


def _removals(space: Space, current: Widths) -> Iterator[Widths]:
    for layer in space.layers:
        kept = current.units[layer.path]
        if kept > layer.minimum:
            step = kept % layer.step or layer.step  # off-grid dense counts first reach the grid
            yield Widths({**current.units, layer.path: kept - step}, current.width)
    if current.width is not None and current.width > space.round_to:
        step = current.width % space.round_to or space.round_to
        yield Widths(current.units, current.width - step)


def _additions(space: Space, current: Widths) -> Iterator[Widths]:
    for layer in space.layers:
        kept = current.units[layer.path]
        if kept < layer.units:
            yield Widths({**current.units, layer.path: min(layer.units, kept + layer.step)}, current.width)
    if current.width is not None and current.width < space.d_model:
        yield Widths(current.units, min(space.d_model, current.width + space.round_to))
