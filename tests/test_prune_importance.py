"""Importance is a strategy the structured and width pruners take: a custom one decides which heads, neurons,
lags and channels are kept, and the default ranks units as torch-pruning's own group magnitude does."""

from __future__ import annotations

import copy
import warnings

import torch
import torch_pruning as tp
from torch import nn

from tsprune_edge.models import create_model
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.prune.graph import example_inputs, time_axes_skipped
from tsprune_edge.prune.importance import MagnitudeL2
from tsprune_edge.prune.structured import (
    StructuredConfig,
    StructuredPruner,
    ffn_modules,
    graph_attentions,
    hand_attentions,
)
from tsprune_edge.prune.width import NORM_TYPES


class FirstUnitsKept(MagnitudeL2):
    """Scores each unit by its index, the first highest: the units kept are known before pruning."""

    def heads(self, block: nn.Module) -> torch.Tensor:
        return -torch.arange(block.n_heads, dtype=torch.float)

    def neurons(self, ffn: nn.Module) -> torch.Tensor:
        return -torch.arange(ffn.linear1.out_features, dtype=torch.float)

    def lags(self, block: nn.Module) -> torch.Tensor:
        return -torch.arange(block.layers[0].in_features, dtype=torch.float)

    def channels(self, group: tp.dependency.Group) -> torch.Tensor:
        return -torch.arange(len(group[0][1]), dtype=torch.float)


def random_model(name: str) -> nn.Module:
    """A small model with every parameter drawn at random (norms included), so that kept rows identify units."""
    torch.manual_seed(0)
    model = create_model(name, "small", pred_len=96).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter))
    return model


def prune(dense: nn.Module, importance=None, **config) -> nn.Module:
    pruned = copy.deepcopy(dense)
    StructuredPruner(pruned, StructuredConfig(0.5, **config), importance).step()
    return pruned


def module_path(model: nn.Module, module: nn.Module) -> str:
    return next(path for path, m in model.named_modules() if m is module)


def kept_rows(full: torch.Tensor, part: torch.Tensor) -> list[int]:
    return [int(((full - row).abs().sum(dim=1) == 0).nonzero()[0]) for row in part]


def test_a_custom_importance_chooses_the_heads_and_neurons_kept():
    dense = random_model("transformer")
    chosen, magnitude = prune(dense, FirstUnitsKept()), prune(dense)
    for ffn in ffn_modules(dense):
        path, half = module_path(dense, ffn), list(range(ffn.linear1.out_features // 2))
        assert kept_rows(ffn.linear1.weight, chosen.get_submodule(path).linear1.weight) == half
        assert kept_rows(ffn.linear1.weight, magnitude.get_submodule(path).linear1.weight) != half
    for attention in graph_attentions(dense):
        path, width = module_path(dense, attention), attention.q_proj.out_features // attention.n_heads
        assert chosen.get_submodule(path).n_heads == attention.n_heads // 2
        for name in ("q_proj", "k_proj", "v_proj"):
            full, part = getattr(attention, name).weight, getattr(chosen.get_submodule(path), name).weight
            assert kept_rows(full, part) == list(range(attention.n_heads // 2 * width)), (path, name)


def test_a_custom_importance_chooses_the_hand_pruned_heads_and_lags():
    fedformer = random_model("fedformer")
    pruned = prune(fedformer, FirstUnitsKept())
    for block in hand_attentions(fedformer):
        kept, width = pruned.get_submodule(module_path(fedformer, block)), block.q_proj.out_features // block.n_heads
        assert kept.n_heads == block.n_heads // 2
        assert kept_rows(block.q_proj.weight, kept.q_proj.weight) == list(range(kept.n_heads * width))
    dense = random_model("dlinear")
    lags = dense.seasonal_linear.layers[0].in_features
    assert prune(dense, FirstUnitsKept()).seasonal_linear.lags.tolist() == list(range(lags // 2 - lags // 2 % 8))


def test_a_custom_importance_chooses_the_channels_of_the_width():
    dense = random_model("transformer")
    chosen = prune(dense, FirstUnitsKept(), dims=("width",))
    names = [n for n, m in dense.named_modules() if isinstance(m, NORM_TYPES)]
    for name in names:
        full, part = dense.get_submodule(name).weight, chosen.get_submodule(name).weight
        assert kept_rows(full[:, None], part[:, None]) == list(range(dense.config.d_model // 2)), name


def test_the_default_ranks_as_torch_prunings_group_magnitude():
    """MagnitudeL2 orders every FFN's neurons and every attention's heads as GroupMagnitudeImportance(p=2) orders
    the DepGraph group that removes them (weights only): the default keeps the units torch-pruning would."""
    model = random_model("transformer")
    library, ours = tp.importance.GroupMagnitudeImportance(p=2), MagnitudeL2()
    with warnings.catch_warnings(), time_axes_skipped(), deployment_form(model):
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs(model))
        for ffn in ffn_modules(model):
            group = graph.get_pruning_group(ffn.linear1, tp.prune_linear_out_channels, list(range(256)))
            assert torch.equal(library(group).argsort(), ours.neurons(ffn).argsort())
        for attention in graph_attentions(model):
            group = graph.get_pruning_group(attention.out_proj, tp.prune_linear_in_channels, list(range(64)))
            per_head = library(group).view(attention.n_heads, -1).mean(dim=1)
            assert torch.equal(per_head.argsort(), ours.heads(attention).argsort())
