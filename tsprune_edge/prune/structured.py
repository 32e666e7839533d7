"""Structured pruning: physically remove attention heads, FFN neurons, the model width d_model and (DLinear)
input lags.

Policy here (how many units each layer keeps), importance given (which units: an `Importance` from
`importance.py`, L2 magnitude by default), graph work in torch-pruning's DepGraph:
- DepGraph finds what must shrink together with each FFN's first layer and each attention's q/k/v projections
  (the second FFN layer's inputs, the output projection's inputs) and slices them; heads are removed whole,
  aligned across q, k, v and the output projection (`num_heads`, `prune_num_heads`, no head-dim pruning).
- Heads and FFN neurons leave the residual width d_model alone: every layer that writes it is ignored, as are
  bare parameters (positions, routers, RevIN, Fourier weights).
- The width (dimension `width`, see `width.py`) is pruned per residual stream, a DepGraph group that holds the
  embedding, every layer that reads or writes the stream, its norms, positions and routers.
- Blocks whose channel layout DepGraph cannot follow do it by hand: FEDformer's Fourier blocks (`keep_heads`,
  heads through the Fourier transforms) and DLinear's time-linear layers (`keep_lags`, no hidden width to prune).
- Widths are rounded to a multiple of `round_to` (odd widths can run slower than dense ones), and head counts are
  written back into the modules, from which the checkpoint's architecture record is taken.

The graph is traced in each model's deployment form (the form that is exported), so Fourier and
auto-correlation layers are seen as matrix products.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from tsprune_edge.errors import UserError
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.prune.dimensions import DEFAULT_DIMENSIONS, DEFAULT_ROUND_TO, DIMENSIONS
from tsprune_edge.prune.graph import NORM_TYPES, PRUNED_LAYER_TYPES, example_inputs, time_axes_skipped
from tsprune_edge.prune.importance import Importance, MagnitudeL2
from tsprune_edge.prune.width import check_width, prune_width


@dataclass(frozen=True)
class StructuredConfig:
    ratio: float  # fraction of the heads of every attention and of the neurons of every FFN to remove
    global_ranking: bool = False  # rank across layers (uneven widths) instead of the same ratio in every layer
    steps: int = 1  # reach `ratio` in this many equal steps (fine-tuning may run between them)
    round_to: int = DEFAULT_ROUND_TO  # kept FFN widths, model widths and lag counts are multiples of this
    dims: tuple[str, ...] = DEFAULT_DIMENSIONS  # the dimensions pruned
    width_ratio: float | None = None  # fraction of d_model removed; None: `ratio`
    # Units each named layer keeps (attention path -> heads, FFN path -> neurons, time-linear path -> lags),
    # replacing the counts `ratio` gives: a latency fit chooses them layer by layer (tsprune_edge/fit).
    layer_targets: tuple[tuple[str, int], ...] | None = None

    @property
    def width(self) -> float:
        return self.ratio if self.width_ratio is None else self.width_ratio


def ffn_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "linear1") and hasattr(m, "linear2")]


def ffn_layers(model: nn.Module) -> list[nn.Linear]:
    return [m.linear1 for m in ffn_modules(model)]


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
    unknown = [d for d in config.dims if d not in DIMENSIONS]
    if unknown or not config.dims:
        raise UserError(f"--dims takes a comma-separated subset of {','.join(DIMENSIONS)}; "
                        f"got {','.join(config.dims)!r}")
    if config.width_ratio is not None and "width" not in config.dims:
        raise UserError("--width-sparsity needs width among --dims, for example --dims heads,ffn,width")
    names = {m: n for n, m in model.named_modules()}
    units = []
    if "ffn" in config.dims:
        units += [(names[m], "neurons", m.out_features, config.round_to) for m in ffn_layers(model)]
        units += [(names[m], "input lags", m.layers[0].in_features, config.round_to) for m in lag_layers(model)]
    if "heads" in config.dims:
        units += [(names[m], "heads", m.n_heads, 1) for m in graph_attentions(model) + hand_attentions(model)]
    if "width" in config.dims:
        check_width(model, config.width, config.round_to)
    elif not units:
        raise UserError(f"{model.name} has no {' or '.join(config.dims)} that structured pruning can remove")
    for name, what, count, round_to in units:
        if kept_after(count, config.ratio, round_to) < 1:
            rounding = f" rounded to multiples of {round_to}" if round_to > 1 else ""
            raise UserError(f"--sparsity {config.ratio:g} would remove every one of the {count} {what} of {name}"
                            f"{rounding}; choose a lower --sparsity" + (" or --round-to" if rounding else ""))


class StructuredPruner:
    """Prunes `model` in place in `config.steps` calls of `step()`.

    Each step first decides how many heads, neurons and lags every layer keeps: uniform, each layer's original
    count less int(count * ratio) (rounded down to `round_to`); global, the units with the largest importance
    across all layers of a kind, at least one head and `round_to` neurons per layer. torch-pruning then removes
    the least important units of each layer down to its count (a fresh DepGraph pruner per step, since
    fine-tuning between steps changes the importance), and the hand-pruned blocks do the same. `importance`
    ranks the units everywhere: the global counts, DepGraph's choice within each layer, the hand-pruned blocks
    and the width.
    """

    def __init__(self, model: nn.Module, config: StructuredConfig, importance: Importance | None = None) -> None:
        check_config(model, config)
        self.model, self.config = model, config
        self.importance = importance or MagnitudeL2()
        self.current_step = 0
        self.head_width = {m: m.q_proj.out_features // m.n_heads for m in graph_attentions(model)}
        self.initial = {m: m.n_heads for m in graph_attentions(model) + hand_attentions(model)}
        self.initial.update({m: m.linear1.out_features for m in ffn_modules(model)})
        self.initial.update({m: m.layers[0].in_features for m in lag_layers(model)})

    def step(self) -> None:
        if self.current_step >= self.config.steps:
            raise RuntimeError("all pruning steps are done")
        self.current_step += 1
        fraction = self.current_step / self.config.steps
        targets = self.targets(self.config.ratio * fraction)
        if any(m in targets for m in [*self.head_width, *ffn_modules(self.model)]):
            with warnings.catch_warnings(), time_axes_skipped(), deployment_form(self.model):
                warnings.simplefilter("ignore")
                self._graph_pruner(targets).step()
            for attention, width in self.head_width.items():
                attention.n_heads = attention.q_proj.out_features // width
        for block in (b for b in hand_attentions(self.model) if b in targets):
            block.keep_heads(self.importance.heads(block).topk(targets[block]).indices.sort().values)
        for layer in lag_layers(self.model):
            if layer in targets:
                layer.keep_lags(self.importance.lags(layer).topk(targets[layer]).indices.sort().values)
        if "width" in self.config.dims:
            prune_width(self.model, self.config.width * fraction, self.config.round_to, self.importance)
        self._check_nothing_emptied()

    def targets(self, ratio: float) -> dict[nn.Module, int]:
        """Units each layer keeps at cumulative `ratio` (or, given, the config's per-layer targets)."""
        dims, model, importance = self.config.dims, self.model, self.importance
        if self.config.layer_targets is not None:
            return named_targets(model, dict(self.config.layer_targets))
        kinds = {
            "heads": ({m: importance.heads(m) for m in graph_attentions(model) + hand_attentions(model)}
                      if "heads" in dims else {}, 1),
            "neurons": ({m: importance.neurons(m) for m in ffn_modules(model)} if "ffn" in dims else {},
                        self.config.round_to),
            "lags": ({m: importance.lags(m) for m in lag_layers(model)} if "ffn" in dims else {}, self.config.round_to),
        }
        targets = {}
        for scores, round_to in kinds.values():
            if self.config.global_ranking and scores:
                targets.update(global_targets(scores, {m: self.initial[m] for m in scores}, ratio, round_to))
            else:
                targets.update({m: kept_after(self.initial[m], ratio, round_to) for m in scores})
        return targets

    def _graph_pruner(self, targets: dict[nn.Module, int]) -> tp.pruner.MetaPruner:
        """A DepGraph pruner that removes, per layer, the units above its target (local ranking in each layer)."""
        model = self.model
        neuron_ratios = {m.linear1: _neuron_ratio(m.linear1.out_features, targets[m])
                         for m in ffn_modules(model) if m in targets}
        roots, num_heads, head_ratios = set(neuron_ratios), {}, {}
        for attention in (a for a in self.head_width if a in targets):
            for name in ("q_proj", "k_proj", "v_proj"):
                projection = getattr(attention, name)
                roots.add(projection)
                num_heads[projection] = attention.n_heads
                head_ratios[projection] = _head_ratio(attention.n_heads, targets[attention])
        ignored: list = [m for m in model.modules() if isinstance(m, PRUNED_LAYER_TYPES) and m not in roots]
        ignored += [p for m in model.modules() if not isinstance(m, PRUNED_LAYER_TYPES + NORM_TYPES)
                    for p in m.parameters(recurse=False)]
        model.eval()
        # torch-pruning only visits a group whose width ratio is positive, also when it removes whole heads and
        # no head dimensions (prune_head_dims=False), so the attention projections carry their head ratio there.
        width_ratios = {**neuron_ratios, **head_ratios}
        return tp.pruner.MetaPruner(
            model, example_inputs(model), importance=_GroupScores(self.importance, model),
            pruning_ratio=0.0, pruning_ratio_dict=width_ratios, head_pruning_ratio_dict=head_ratios,
            ignored_layers=ignored, round_to=self.config.round_to if self.config.round_to > 1 else None,
            num_heads=num_heads, prune_num_heads=True, prune_head_dims=False, max_pruning_ratio=1.0)

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


class _GroupScores(tp.importance.Importance):
    """An `Importance` as torch-pruning asks for it: per-channel scores of a DepGraph group. An FFN's group holds
    its linear1 (one channel per neuron); an attention's holds its projections (one channel per head dimension:
    each head's score repeated over its width, which torch-pruning averages back per head)."""

    def __init__(self, importance: Importance, model: nn.Module) -> None:
        self.importance = importance
        self.ffns = {m.linear1: m for m in ffn_modules(model)}
        self.attentions = {getattr(m, name): m for m in graph_attentions(model)
                           for name in ("q_proj", "k_proj", "v_proj", "out_proj") if hasattr(m, name)}

    def __call__(self, group: tp.dependency.Group) -> torch.Tensor:
        members = [dep.target.module for dep, _ in group]
        ffn = next((self.ffns[m] for m in members if m in self.ffns), None)
        if ffn is not None:
            return self.importance.neurons(ffn)
        attention = next((self.attentions[m] for m in members if m in self.attentions), None)
        if attention is None:
            raise RuntimeError("a DepGraph group holds neither an FFN nor an attention: a root was not ignored")
        return self.importance.heads(attention).repeat_interleave(attention.q_proj.out_features // attention.n_heads)


def global_targets(scores: dict[nn.Module, torch.Tensor], initial: dict[nn.Module, int], ratio: float,
                   round_to: int) -> dict[nn.Module, int]:
    """Per-layer counts that keep the globally most important units, int(total * (1 - ratio)) of the original
    total, each layer keeping at least `round_to` (and a multiple of it)."""
    budget = sum(initial.values()) - int(sum(initial.values()) * ratio)
    pooled = torch.cat([s for s in scores.values()])
    owners = [m for m, s in scores.items() for _ in range(len(s))]
    counts = dict.fromkeys(scores, 0)
    for index in pooled.argsort(descending=True, stable=True)[:budget].tolist():
        counts[owners[index]] += 1
    return {m: max(round_to, c - c % round_to) for m, c in counts.items()}


def named_targets(model: nn.Module, counts: dict[str, int]) -> dict[nn.Module, int]:
    """{module: units kept} from {module path: units kept}; a path that is no prunable layer is a bug upstream."""
    prunable = {*graph_attentions(model), *hand_attentions(model), *ffn_modules(model), *lag_layers(model)}
    modules = dict(model.named_modules())
    unknown = [path for path in counts if modules.get(path) not in prunable]
    if unknown:
        raise ValueError(f"no prunable layer at {', '.join(unknown)}")
    return {modules[path]: count for path, count in counts.items()}


def _neuron_ratio(current: int, target: int) -> float:
    """The ratio torch-pruning turns into exactly `target` kept neurons (it keeps int(current * (1 - ratio)))."""
    return (current - target - 0.5) / current if target < current else 0.0


def _head_ratio(current: int, target: int) -> float:
    """The ratio torch-pruning turns into exactly `current - target` removed heads (it removes
    ceil(ratio * current))."""
    return (current - target - 0.5) / current if target < current else 0.0
