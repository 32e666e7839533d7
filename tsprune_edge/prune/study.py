"""`--method study`: the pruning study's structured method as its code ran (NicholasKiefer/pruning_time_series,
pruning/tp_prune_fed.py), on this project's models.

What is the study's: torch-pruning's MetaPruner with magnitude importance (L2, group mean; Linear, Conv1d,
BatchNorm and LayerNorm weights all scored), one global ranking over every prunable group (attention head dims,
FFN neurons, the residual width with its norms, embeddings and positions), the channel ratio ramped linearly over
iterative steps (50 by default), only output layers ignored (a layer whose outputs are forecast values), head
dims pruned alike in every head (the heads stay, each narrower), no rounding of widths.

What is added so that a requested parameter sparsity is met: the study stepped its ratio to 1.0 and measured
each of the 50 steps; here each step's channel ratio is set by a secant on the parameters measured so far so the
parameter count follows a linear ramp to (1 - sparsity) of the dense count, and small extra steps finish it.

Hand work as in `width.py`: position buffers, PatchTST's token-major head. FEDformer's Fourier blocks keep their
inner width (DepGraph cannot follow channels through the transforms), their inputs and outputs are pruned with
the width.
"""

from __future__ import annotations

import warnings

import torch
import torch_pruning as tp
from torch import nn

from tsprune_edge.errors import UserError
from tsprune_edge.models.deployment import deployment_form
from tsprune_edge.prune.graph import example_inputs, time_axes_skipped
from tsprune_edge.prune.structured import graph_attentions, hand_attentions
from tsprune_edge.prune.width import (
    NOT_WIDTH_MODULES,
    restore_token_major,
    slice_position_tables,
    token_major_state,
)

EXTRA_STEPS = 10  # finishing steps after the ramp, each closing the remaining gap to the target
TOLERANCE = 0.002  # stop once the parameter sparsity is within this of the target
MISSED = 0.02  # farther than this from the target: refused (nothing useful was reached)


def output_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose outputs are forecast values (the study ignored Linear/Conv1d layers of width c_out or 1)."""
    cfg = model.config
    forecast_widths = {1, cfg.c_out, cfg.enc_in, cfg.pred_len, getattr(cfg, "seg_len", 1)}
    return [m for m in model.modules()
            if (isinstance(m, nn.Linear) and m.out_features in forecast_widths)
            or (isinstance(m, nn.Conv1d) and m.out_channels in forecast_widths)]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class StudyPruner:
    """Prunes `model` in place to `sparsity` of its parameters in `steps` global magnitude steps."""

    def __init__(self, model: nn.Module, sparsity: float, steps: int = 50) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise UserError(f"--sparsity must be in [0, 1), got {sparsity:g}")
        if steps < 1:
            raise UserError(f"--steps must be at least 1, got {steps}")
        if hasattr(model, "width_pruning_refused"):  # the study's method prunes the width too
            raise UserError(f"the study's method cannot prune {model.name}: {model.width_pruning_refused}")
        self.model, self.sparsity, self.steps = model, sparsity, steps
        self.dense_parameters = parameter_count(model)
        ignored: list = output_layers(model)
        for block in hand_attentions(model):  # inner width through Fourier transforms: not followed by DepGraph
            ignored += [getattr(block, n) for n in ("q_proj", "k_proj", "v_proj") if hasattr(block, n)]
        ignored += [p for m in model.modules() if type(m).__name__ in NOT_WIDTH_MODULES for p in m.parameters()]
        ignored += [m for m in model.modules() if hasattr(m, "keep_lags")]
        num_heads = {getattr(a, n): a.n_heads for a in graph_attentions(model) for n in ("q_proj", "k_proj", "v_proj")}
        model.eval()
        total = steps + EXTRA_STEPS
        with warnings.catch_warnings(), time_axes_skipped(), deployment_form(model):
            warnings.simplefilter("ignore")
            self.pruner = tp.pruner.MetaPruner(
                model, example_inputs(model), importance=tp.importance.MagnitudeImportance(
                    p=2, target_types=[nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm,
                                       nn.LayerNorm]),
                global_pruning=True, pruning_ratio=1.0, iterative_steps=total, ignored_layers=ignored,
                num_heads=num_heads, prune_num_heads=False, prune_head_dims=True)
        self.pruner.per_step_pruning_ratio = [0.0] * (total + 1)
        self.history: list[tuple[float, float]] = [(0.0, 0.0)]  # (channel ratio, parameter sparsity)
        with time_axes_skipped(), deployment_form(model):
            prunable = any(True for _ in self._prunable_groups())
        if not prunable:
            raise UserError(f"{model.name} has nothing the study's method can prune (only output layers)")

    def _prunable_groups(self):
        return self.pruner.DG.get_all_groups(ignored_layers=self.pruner.ignored_layers,
                                             root_module_types=self.pruner.root_module_types)

    def achieved_sparsity(self) -> float:
        return 1 - parameter_count(self.model) / self.dense_parameters

    def run(self) -> None:
        """The ramp, then finishing steps (each closing half the remaining gap, so that the last removed
        channels overshoot little) until the sparsity is within TOLERANCE of the target."""
        for step in range(1, self.steps + 1):
            self._step(self.sparsity * step / self.steps)
        for _ in range(EXTRA_STEPS):
            gap = self.sparsity - self.achieved_sparsity()
            if gap <= TOLERANCE:
                break
            self._step(self.achieved_sparsity() + gap / 2)
        if abs(self.sparsity - self.achieved_sparsity()) > MISSED:
            raise UserError(f"the study's method reached parameter sparsity {self.achieved_sparsity():.3f} of "
                            f"{self.model.name}, not {self.sparsity:g}: too few of its parameters are in groups it "
                            "can prune (FEDformer's Fourier weights are not); use --method structured")

    def _step(self, target: float) -> None:
        """One global step whose channel ratio should bring the parameter sparsity to `target`: the first from
        parameters falling with the square of the kept channels, later ones by the mean slope of the last ten
        steps (single steps are too coarse to estimate it)."""
        ratio, sparsity = self.history[-1]
        if len(self.history) == 1:
            ratio = 1 - (1 - target) ** 0.5
        else:
            (r0, s0) = self.history[max(0, len(self.history) - 11)]
            slope = (sparsity - s0) / (ratio - r0) if ratio > r0 and sparsity > s0 else 1.0
            ratio = min(0.99, ratio + max(target - sparsity, 0.0) / slope)
        self.pruner.per_step_pruning_ratio[self.pruner.current_step + 1] = ratio
        with warnings.catch_warnings(), time_axes_skipped(), deployment_form(self.model):
            warnings.simplefilter("ignore")
            with torch.no_grad():
                for group in self.pruner.step(interactive=True):
                    self._prune_group(group)
        self.history.append((ratio, self.achieved_sparsity()))

    def _prune_group(self, group) -> None:
        root = group[0].dep.target.module
        removed = [int(i) for i in group[0].idxs]
        width = root.out_features if isinstance(root, nn.Linear) else root.out_channels
        slice_position_tables(self.model, group, removed)
        flattened = token_major_state(self.model, group)
        group.prune()
        restore_token_major(flattened, width, sorted(set(range(width)) - set(removed)))
