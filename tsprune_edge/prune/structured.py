"""Structured pruning: physically remove attention heads, FFN neurons and (DLinear) input lags.

Policy here, importance in `importance.py`, graph work in torch-pruning's DepGraph:
- DepGraph finds what must shrink together with each FFN's first layer and each attention's q/k/v projections
  (the second FFN layer's inputs, the output projection's inputs) and slices them; heads are removed whole,
  aligned across q, k, v and the output projection (`num_heads`, `prune_num_heads`, no head-dim pruning).
- The residual width d_model is never pruned: every layer that writes it is ignored, as are bare parameters
  (positions, routers, RevIN, Fourier weights), so embeddings, norms and skip connections keep their widths.
- Blocks whose channel layout DepGraph cannot follow do it by hand: FEDformer's Fourier blocks (`keep_heads`,
  heads through the Fourier transforms) and DLinear's time-linear layers (`keep_lags`, no hidden width to prune).
- Widths are rounded to a multiple of `round_to` (odd widths can run slower than dense ones), and head counts are
  written back into the modules, from which the checkpoint's architecture record is taken.

The graph is traced in each model's deployment form (the form that is exported), so Fourier and
auto-correlation layers are seen as matrix products.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from tsprune_edge.errors import UserError
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.prune.importance import head_importance, lag_importance

PRUNED_LAYER_TYPES = (nn.Linear, nn.Conv1d)
NORM_TYPES = (nn.LayerNorm, nn.BatchNorm1d)


@dataclass(frozen=True)
class StructuredConfig:
    ratio: float  # fraction of the heads of every attention and of the neurons of every FFN to remove
    global_ranking: bool = False  # rank across layers (uneven widths) instead of the same ratio in every layer
    steps: int = 1  # reach `ratio` in this many equal steps (fine-tuning may run between them)
    round_to: int = 8  # kept FFN widths and lag counts are multiples of this


def ffn_layers(model: nn.Module) -> list[nn.Linear]:
    return [m.linear1 for m in model.modules() if hasattr(m, "linear1") and hasattr(m, "linear2")]


def graph_attentions(model: nn.Module) -> list[nn.Module]:
    """Attention modules whose heads DepGraph prunes: q/k/v/out Linear layers and `n_heads`, no hand pruning."""
    return [m for m in model.modules()
            if hasattr(m, "q_proj") and hasattr(m, "n_heads") and not hasattr(m, "keep_heads")]


def hand_attentions(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "keep_heads")]


def lag_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "keep_lags")]


def kept_after(count: int, ratio: float, round_to: int = 1) -> int:
    """Units left of `count` after removing int(count * ratio) of them, rounded down to a multiple of round_to
    (the arithmetic torch-pruning uses for local pruning)."""
    kept = count - int(count * ratio)
    return kept - kept % round_to if round_to > 1 else kept


def check_config(model: nn.Module, config: StructuredConfig) -> None:
    """Refuse, before any work, a ratio that would empty a layer or a model with nothing to prune."""
    if not 0.0 <= config.ratio < 1.0:
        raise UserError(f"--sparsity must be in [0, 1), got {config.ratio}")
    if config.steps < 1:
        raise UserError(f"--steps must be at least 1, got {config.steps}")
    if config.round_to < 1:
        raise UserError(f"--round-to must be at least 1, got {config.round_to}")
    names = {m: n for n, m in model.named_modules()}
    units = [(names[m], "neurons", m.out_features, config.round_to) for m in ffn_layers(model)]
    units += [(names[m], "heads", m.n_heads, 1) for m in graph_attentions(model) + hand_attentions(model)]
    units += [(names[m], "input lags", m.layers[0].in_features, config.round_to) for m in lag_layers(model)]
    if not units:
        raise UserError(f"{model.name} has no heads, neurons or lags that structured pruning can remove")
    for name, what, count, round_to in units:
        if kept_after(count, config.ratio, round_to) < 1:
            rounding = f" rounded to multiples of {round_to}" if round_to > 1 else ""
            raise UserError(f"--sparsity {config.ratio:g} would remove every one of the {count} {what} of {name}"
                            f"{rounding}; choose a lower --sparsity" + (" or --round-to" if rounding else ""))


@contextlib.contextmanager
def _tolerate_unsized_concats() -> Iterator[None]:
    """torch-pruning 1.6 raises TypeError on a concat whose inputs' widths it cannot infer (our moving averages
    pad the time axis by concatenation). Such a concat is not along the feature axis, which is the case the
    library already skips, so it is skipped the same way."""
    from torch_pruning.dependency import index_mapping

    original = index_mapping.update_concat_index_mapping

    def tolerant(graph, node):
        try:
            return original(graph, node)
        except TypeError:
            return None

    index_mapping.update_concat_index_mapping = tolerant
    try:
        yield
    finally:
        index_mapping.update_concat_index_mapping = original


def example_inputs(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.config
    generator = torch.Generator().manual_seed(0)
    history = torch.randn(1, cfg.seq_len, cfg.enc_in, generator=generator)
    calendar = torch.ones(1, cfg.seq_len + cfg.pred_len, len(cfg.calendar_features))
    return history, calendar


class StructuredPruner:
    """Prunes `model` in place in `config.steps` calls of `step()`.

    Each step builds a fresh DepGraph pruner for the widths the step must reach, so fine-tuning may change the
    weights (and so the importance) between steps. In uniform mode each layer's target after step i is its
    original count less int(count * ratio * i / steps), rounded: the same widths as one step to `ratio`.
    """

    def __init__(self, model: nn.Module, config: StructuredConfig) -> None:
        check_config(model, config)
        self.model, self.config = model, config
        self.current_step = 0
        self.head_width = {m: m.q_proj.out_features // m.n_heads for m in graph_attentions(model)}
        self.initial_heads = {m: m.n_heads for m in graph_attentions(model) + hand_attentions(model)}
        self.initial_neurons = {m: m.out_features for m in ffn_layers(model)}
        self.initial_lags = {m: m.layers[0].in_features for m in lag_layers(model)}

    def step(self) -> None:
        if self.current_step >= self.config.steps:
            raise RuntimeError("all pruning steps are done")
        self.current_step += 1
        ratio = self.config.ratio * self.current_step / self.config.steps
        if self.initial_neurons or self.head_width:
            with warnings.catch_warnings(), _tolerate_unsized_concats(), deployment_form(self.model):
                warnings.simplefilter("ignore")
                self._graph_pruner(ratio).step()
            for attention, width in self.head_width.items():
                attention.n_heads = attention.q_proj.out_features // width
        self._prune_hand_heads(ratio)
        for layer, count in self.initial_lags.items():
            keep_count = kept_after(count, ratio, self.config.round_to)
            scores = lag_importance(layer)
            layer.keep_lags(scores.topk(keep_count).indices.sort().values)
        self._check_nothing_emptied()

    def _graph_pruner(self, ratio: float) -> tp.pruner.MetaPruner:
        """A DepGraph pruner that takes the model from its current widths to those of cumulative `ratio`."""
        model, config = self.model, self.config
        roots = set(self.initial_neurons)
        num_heads = {}
        for attention in self.head_width:
            for name in ("q_proj", "k_proj", "v_proj"):
                roots.add(getattr(attention, name))
                num_heads[getattr(attention, name)] = attention.n_heads
        ignored: list = [m for m in model.modules() if isinstance(m, PRUNED_LAYER_TYPES) and m not in roots]
        ignored += [p for m in model.modules() if not isinstance(m, PRUNED_LAYER_TYPES + NORM_TYPES)
                    for p in m.parameters(recurse=False)]
        round_to = config.round_to if config.round_to > 1 else 1
        neuron_ratios = {layer: _neuron_ratio(layer.out_features, kept_after(count, ratio, round_to))
                         for layer, count in self.initial_neurons.items()}
        head_ratios = {}
        for attention in self.head_width:
            step_ratio = _head_ratio(attention.n_heads, kept_after(self.initial_heads[attention], ratio))
            head_ratios.update({getattr(attention, name): step_ratio for name in ("q_proj", "k_proj", "v_proj")})
        previous = config.ratio * (self.current_step - 1) / config.steps
        global_ratio = 1 - (1 - ratio) / (1 - previous)  # of what is left now
        model.eval()
        return tp.pruner.MetaPruner(
            model, example_inputs(model), importance=tp.importance.GroupMagnitudeImportance(p=2),
            global_pruning=config.global_ranking, pruning_ratio=global_ratio, head_pruning_ratio=global_ratio,
            pruning_ratio_dict=None if config.global_ranking else neuron_ratios,
            head_pruning_ratio_dict=None if config.global_ranking else head_ratios,
            ignored_layers=ignored, round_to=round_to if round_to > 1 else None, num_heads=num_heads,
            prune_num_heads=True, prune_head_dims=False, max_pruning_ratio=0.99)

    def _prune_hand_heads(self, ratio: float) -> None:
        blocks = hand_attentions(self.model)
        if not blocks:
            return
        scores = {block: head_importance(block) for block in blocks}
        if self.config.global_ranking:
            total = sum(self.initial_heads[b] for b in blocks)
            target = total - int(total * ratio)
            pooled = sorted(((float(s), i, b) for b in blocks for i, s in enumerate(scores[b])),
                            key=lambda item: item[0], reverse=True)
            keep: dict[nn.Module, list[int]] = {b: [int(scores[b].argmax())] for b in blocks}  # one head each
            budget = target - len(blocks)
            for _, index, block in pooled:
                if budget <= 0:
                    break
                if index not in keep[block]:
                    keep[block].append(index)
                    budget -= 1
        else:
            keep = {b: scores[b].topk(kept_after(self.initial_heads[b], ratio)).indices.tolist() for b in blocks}
        for block in blocks:
            block.keep_heads(torch.tensor(sorted(keep[block]), dtype=torch.int64))

    def _check_nothing_emptied(self) -> None:
        names = {m: n for n, m in self.model.named_modules()}
        for layer in ffn_layers(self.model):
            if layer.out_features < 1:
                raise UserError(f"--sparsity {self.config.ratio:g} removed every neuron of {names[layer]}; "
                                "choose a lower --sparsity")
        for attention in graph_attentions(self.model) + hand_attentions(self.model):
            if attention.n_heads < 1:
                raise UserError(f"--sparsity {self.config.ratio:g} removed every head of {names[attention]}; "
                                "choose a lower --sparsity")


def _neuron_ratio(current: int, target: int) -> float:
    """The ratio torch-pruning turns into exactly `target` kept neurons (it keeps int(current * (1 - ratio)))."""
    return (current - target - 0.5) / current if target < current else 0.0


def _head_ratio(current: int, target: int) -> float:
    """The ratio torch-pruning turns into exactly `current - target` removed heads (it removes
    ceil(ratio * current))."""
    return (current - target - 0.5) / current if target < current else 0.0
