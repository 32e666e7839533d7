"""What a latency fit may choose for one model: heads per attention, neurons per FFN (lags per DLinear time
linear) and the model width d_model, and how each choice scales the model's multiply-accumulates.

A choice is a `Widths`: units kept per named layer and one width for every residual stream (width pruning keeps
the streams equally wide, see prune/width.py). The predictor's features come from here: each layer's dense MACs
scaled by the fraction of its units kept (and of d_model, for the MACs that read or write the stream), summed per
layer kind, so that probes pruned uniformly teach the predictor what a non-uniform choice costs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tsprune_edge.prune.analysis import count_macs
from tsprune_edge.prune.structured import (
    ffn_modules,
    graph_attentions,
    hand_attentions,
    kept_after,
    lag_layers,
)
from tsprune_edge.prune.width import kept_width, width_prunable

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
FEATURES = ("per_call", "ffn_mmacs", "projection_mmacs", "attention_core_mmacs", "width_fraction")


@dataclass(frozen=True)
class Layer:
    """One prunable layer: its kind (heads, neurons or lags), dense unit count, step and dense MACs split into the
    part that also scales with d_model and the part that does not."""

    path: str
    kind: str
    units: int
    step: int  # units are kept in multiples of this (1 for heads, round_to otherwise)
    width_macs: int  # MACs that scale with both the units kept and d_model (projections, FFN layers)
    unit_macs: int  # MACs that scale with the units kept only (attention scores, Fourier blocks, time linears)

    @property
    def minimum(self) -> int:
        return self.step


@dataclass(frozen=True)
class Widths:
    units: dict[str, int]  # layer path -> units kept
    width: int | None  # d_model kept (None: the model has no prunable width)

    def record(self) -> dict:
        return {"units": dict(self.units), "width": self.width}


@dataclass(frozen=True)
class Space:
    layers: tuple[Layer, ...]
    d_model: int | None  # None: width is not pruned (DLinear, Crossformer)
    round_to: int
    dense_macs: int

    def dense(self) -> Widths:
        return Widths({layer.path: layer.units for layer in self.layers}, self.d_model)

    def smallest(self) -> Widths:
        return Widths({layer.path: layer.minimum for layer in self.layers}, self.round_to if self.d_model else None)

    def uniform(self, heads: float, ffn: float, width: float) -> Widths:
        """The widths uniform structured pruning leaves at these ratios (the same arithmetic as the pruner)."""
        units = {layer.path: max(layer.minimum, kept_after(layer.units, heads if layer.kind == "heads" else ffn,
                                                         layer.step)) for layer in self.layers}
        kept = max(self.round_to, kept_width(self.d_model, width, self.round_to)) if self.d_model else None
        return Widths(units, kept)

    def features(self, widths: Widths) -> list[float]:
        """[1, FFN MACs, projection MACs, attention-core MACs (millions), kept fraction of d_model]."""
        scale = self.scale(widths.width)
        total = self.fixed_features(widths.width)
        for layer in self.layers:
            for j, value in enumerate(self.layer_features(layer, widths.units[layer.path], scale)):
                total[j] += value
        return total

    def fixed_features(self, width: int | None) -> list[float]:
        """The features no layer's units change: the per-call term and the kept width fraction."""
        return [1.0, 0.0, 0.0, 0.0, self.scale(width)]

    def scale(self, width: int | None) -> float:
        return width / self.d_model if self.d_model else 1.0

    @staticmethod
    def layer_features(layer: Layer, kept: int, scale: float) -> list[float]:
        """One layer's share of the features (no per-call or width term) when it keeps `kept` units: a linear
        predictor's latency is then a sum over layers, which is what lets the search solve a knapsack."""
        fraction = kept / layer.units
        if layer.kind == "heads":
            return [0.0, 0.0, layer.width_macs * fraction * scale / 1e6, layer.unit_macs * fraction / 1e6, 0.0]
        return [0.0, (layer.width_macs * fraction * scale + layer.unit_macs * fraction) / 1e6, 0.0, 0.0, 0.0]

    def check(self, widths: Widths) -> None:
        """A choice the pruner can make: every layer named, within [step, dense], a multiple of its step."""
        for layer in self.layers:
            kept = widths.units[layer.path]
            if not layer.minimum <= kept <= layer.units or (kept % layer.step and kept != layer.units):
                raise ValueError(f"{layer.path}: {kept} {layer.kind} is not a choice (1 step = {layer.step})")
        if self.d_model and not (widths.width % self.round_to == 0 or widths.width == self.d_model):
            raise ValueError(f"width {widths.width} is not a multiple of {self.round_to}")


def pruning_space(model: nn.Module, round_to: int) -> Space:
    """The layers of `model` a fit may narrow, with their dense MACs (one count in the deployment form)."""
    total, per_module = count_macs(model)
    names = {m: n for n, m in model.named_modules()}
    layers = []
    for attention in graph_attentions(model) + hand_attentions(model):
        path = names[attention]
        projections = sum(per_module.get(f"{path}.{p}", 0) for p in PROJECTIONS)
        layers.append(Layer(path, "heads", attention.n_heads, 1, projections, per_module.get(path, 0) - projections))
    for ffn in ffn_modules(model):
        path = names[ffn]
        layers.append(Layer(path, "neurons", ffn.linear1.out_features, round_to, per_module.get(path, 0), 0))
    for block in lag_layers(model):
        path = names[block]
        layers.append(Layer(path, "lags", block.layers[0].in_features, round_to, 0, per_module.get(path, 0)))
    return Space(tuple(layers), model.config.d_model if width_prunable(model) else None, round_to, total)
