"""Pruning the model width d_model: every residual stream loses the same channels everywhere it appears.

A residual stream is one DepGraph group: the embedding (or merging projection) that writes it, every attention
output projection and second FFN layer that adds to it, every layer that reads it (q/k/v inputs, first FFN
layers, decomposition trend projections, heads), its norms and the bare parameters added to it (Crossformer's
positions and routers, PatchTST's positions). Each norm is a handle on its stream; the streams of a model are
the distinct groups of its norms (the Transformer has two: encoder and decoder; Informer gains one after each
distilling convolution; Crossformer one per scale).

Head width: the attention's inner width (n_heads * head_dim) is a separate dimension from d_model in every
model here (q/k/v map d_model to it, the output projection maps it back), so width pruning shrinks only the
projections' d_model side and never changes head_dim or n_heads; heads are pruned by the `heads` dimension.

Hand work, where DepGraph cannot follow: the sinusoidal position tables of the Informer family are buffers (not
parameters), sliced here with the stream's kept channels and then stored in the state dict, so the pruned
model's architecture record keeps them. FEDformer's Fourier weights and RevIN's per-variable affine belong to
other dimensions and are ignored. PatchTST's head reads its tokens flattened token-major, which DepGraph maps as
channel-major: its columns are taken by hand (`token_major_readers`). Crossformer is refused (the reason is its
`width_pruning_refused`).
"""

from __future__ import annotations

import warnings

import torch
import torch_pruning as tp
from torch import nn

from tsprune_edge.errors import UserError
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.prune.graph import NORM_TYPES, example_inputs, time_axes_skipped
from tsprune_edge.prune.importance import Importance, MagnitudeL2

# Bare parameters that carry no d_model axis (their last axis is heads' modes or variables).
NOT_WIDTH_MODULES = ("FourierWeights", "RevIN")


def has_width(model: nn.Module) -> bool:
    return hasattr(model.config, "d_model")


def width_prunable(model: nn.Module) -> bool:
    return has_width(model) and not hasattr(model, "width_pruning_refused")


def check_width(model: nn.Module, ratio: float, round_to: int) -> None:
    """Refuse, before any work, a model without d_model or a ratio that would leave no channel."""
    if not has_width(model):
        raise UserError(f"{model.name} has no model width d_model to prune (it maps each series along time "
                        "with linear layers); drop width from --dims")
    if hasattr(model, "width_pruning_refused"):
        raise UserError(f"{model.name}'s width cannot be pruned: {model.width_pruning_refused}; "
                        "drop width from --dims")
    if not 0.0 <= ratio < 1.0:
        raise UserError(f"--width-sparsity must be in [0, 1), got {ratio:g}")
    d_model = model.config.d_model
    if kept_width(d_model, ratio, round_to) < 1:
        raise UserError(f"width sparsity {ratio:g} would remove all {d_model} channels of d_model rounded to "
                        f"multiples of {round_to}; choose a lower sparsity or --round-to")


def kept_width(width: int, ratio: float, round_to: int) -> int:
    kept = width - int(width * ratio)
    return kept - kept % round_to


def dependency_graph(model: nn.Module, example_inputs: tuple) -> tp.DependencyGraph:
    """DepGraph of the deployment form, the bare parameters of other dimensions left out."""
    ignored = [p for m in model.modules() if type(m).__name__ in NOT_WIDTH_MODULES for p in m.parameters()]
    model.eval()
    return tp.DependencyGraph().build_dependency(model, example_inputs, ignored_params=ignored)


def residual_streams(model: nn.Module, graph: tp.DependencyGraph) -> list[nn.Module]:
    """One norm per residual stream (the first of each distinct group), in module order. A stream without a norm
    keeps its width: Crossformer's routers and the cross-dimension sender that writes to them."""
    streams, covered = [], set()
    for norm in (m for m in model.modules() if isinstance(m, NORM_TYPES)):
        if norm in covered:
            continue
        group = stream_group(graph, norm, [0])
        covered.update(dep.target.module for dep, _ in group if isinstance(dep.target.module, nn.Module))
        streams.append(norm)
    return streams


def stream_group(graph: tp.DependencyGraph, norm: nn.Module, idxs: list[int]) -> tp.dependency.Group:
    handler = graph.get_pruner_of_module(norm).prune_out_channels
    return graph.get_pruning_group(norm, handler, idxs)


def stream_width(norm: nn.Module) -> int:
    return norm.weight.shape[0]


def prune_width(model: nn.Module, ratio: float, round_to: int, importance: Importance | None = None) -> None:
    """Shrink every residual stream to kept_width(d_model, ratio, round_to) channels (Crossformer's merging norms
    to win_size times that), keeping the channels `importance` ranks highest (group L2 magnitude by default)."""
    with warnings.catch_warnings(), time_axes_skipped(), deployment_form(model):
        warnings.simplefilter("ignore")
        _prune_streams(model, ratio, round_to, importance or MagnitudeL2())


def _prune_streams(model: nn.Module, ratio: float, round_to: int, importance: Importance) -> None:
    graph = dependency_graph(model, example_inputs(model))
    for norm in residual_streams(model, graph):
        width = stream_width(norm)
        target = kept_width(model.config.d_model, ratio, round_to)
        if target >= width:
            continue
        with torch.no_grad():
            scores = importance.channels(stream_group(graph, norm, list(range(width))))
        removed = scores.argsort()[: width - target].sort().values.tolist()
        group = stream_group(graph, norm, removed)
        with torch.no_grad():
            slice_position_tables(model, group, removed)
            flattened = token_major_state(model, group)
            group.prune()
            restore_token_major(flattened, width, sorted(set(range(width)) - set(removed)))


def token_major_state(model: nn.Module, group: tp.dependency.Group) -> dict[nn.Module, dict[str, torch.Tensor]]:
    """The weights, before pruning, of the group's layers that read [tokens, width] flattened token-major
    (PatchTST's head, Crossformer's segment merging: `token_major_readers`)."""
    members = {dep.target.module for dep, _ in group}
    readers = [model.get_submodule(path) for path in getattr(model, "token_major_readers", ())]
    return {layer: {name: p.detach().clone() for name, p in layer.named_parameters(recurse=False)
                    if isinstance(layer, nn.LayerNorm) or name == "weight"}
            for layer in readers if layer in members}


def restore_token_major(state: dict[nn.Module, dict[str, torch.Tensor]], width: int, keep: list[int]) -> None:
    """DepGraph maps a token-major flatten as if the channels were the major axis, so these layers' last axes are
    taken here instead: channel c of token n is n*width + c."""
    for layer, tensors in state.items():
        for name, tensor in tensors.items():
            kept = tensor.reshape(*tensor.shape[:-1], -1, width)[..., keep]
            setattr(layer, name, nn.Parameter(kept.reshape(*tensor.shape[:-1], -1).contiguous()))
        if isinstance(layer, nn.Linear):
            layer.in_features = layer.weight.shape[1]
        else:
            layer.normalized_shape = tuple(layer.weight.shape)


def slice_position_tables(model: nn.Module, group: tp.dependency.Group, removed: list[int]) -> None:
    """Embeddings whose value projection is in the group lose the same channels of their position buffer."""
    members = {dep.target.module for dep, _ in group}
    for embedding in model.modules():
        position = getattr(embedding, "position", None)
        value = getattr(embedding, "value", None)
        if isinstance(position, torch.Tensor) and not isinstance(position, nn.Parameter) and value is not None \
                and value.conv in members:
            keep = sorted(set(range(position.shape[-1])) - set(removed))
            # persistent from now on: the pruned table is no longer what the constructor computes
            embedding.register_buffer("position", position[..., keep].contiguous())
