"""A `Widths` choice as the structured pruner takes it: per-layer targets, the width as an exact ratio."""

from __future__ import annotations

import copy

from torch import nn

from tsprune_edge.fit.space import Space, Widths
from tsprune_edge.prune.dimensions import DEFAULT_DIMENSIONS
from tsprune_edge.prune.structured import StructuredConfig, StructuredPruner


def pruner_fields(space: Space, widths: Widths) -> dict:
    """PruneRequest / StructuredConfig fields that prune to exactly `widths`. `sparsity` is the fraction of the
    prunable units removed (heads, neurons, lags), what the report shows beside the method."""
    space.check(widths)
    dims = DEFAULT_DIMENSIONS
    width_ratio = None
    if space.d_model is not None and widths.width < space.d_model:
        dims = (*DEFAULT_DIMENSIONS, "width")
        # kept_width(d, r, round_to) keeps d - int(d * r): the half channel makes int() land on d - width exactly
        width_ratio = (space.d_model - widths.width + 0.5) / space.d_model
    units = sum(layer.units for layer in space.layers)
    removed = sum(layer.units - widths.units[layer.path] for layer in space.layers)
    return {"sparsity": round(removed / units, 6) if units else 0.0, "dims": dims, "width_sparsity": width_ratio,
            "layer_targets": tuple(sorted(widths.units.items()))}


def pruned_copy(model: nn.Module, space: Space, widths: Widths) -> nn.Module:
    """A copy of `model` pruned to `widths` (no fine-tuning: a latency probe, whose weights do not change time)."""
    fields = pruner_fields(space, widths)
    pruned = copy.deepcopy(model)
    StructuredPruner(pruned, StructuredConfig(0.0, round_to=space.round_to, dims=fields["dims"],
                                              width_ratio=fields["width_sparsity"],
                                              layer_targets=fields["layer_targets"])).step()
    pruned.eval()
    return pruned
