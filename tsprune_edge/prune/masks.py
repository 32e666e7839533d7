"""Unstructured and hardware-shaped sparsity as masks over the prunable weights.

Prunable weights, as in the pruning study: the weights (not biases) of every Linear and Conv1d layer, except
output layers whose width is the number of variables or 1 (the final projection and the decomposition models'
trend projections, which write the forecast itself) and FEDformer's mixture-of-experts gate. FEDformer's
complex Fourier weights, which the study left out, join with `include_fourier`; each complex entry is scored
by its modulus and its real and imaginary parts are pruned together.

Methods:
- `unstructured`: global L1 magnitude, the study's method: the smallest |w| across all prunable layers.
- `layerwise`: L1 magnitude within each layer, every layer at the same sparsity (baseline).
- `random`: global random choice (baseline).
- `nm`: N:M, the N largest of every M consecutive input weights of a row (2:4 is what sparse tensor cores
  run); only Linear layers whose input width is a multiple of M.
- `block`: 1x4 blocks (four consecutive input weights of a row), ranked globally by their L1 norm: the pattern
  TFLite's sparse FULLY_CONNECTED kernel executes; only Linear layers whose input width is a multiple of 4.

Masks are reapplied after every optimiser step while fine-tuning, so pruned weights stay zero; at the end the
weights simply keep their zeros (there is nothing else to fold).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

MASK_METHODS = ("unstructured", "layerwise", "random", "nm", "block")
BLOCK = 4


@dataclass
class Unit:
    """Weights pruned together: one layer's weight, or the real and imaginary parts of a Fourier weight."""

    name: str
    tensors: list[nn.Parameter]
    layer: nn.Module

    @property
    def numel(self) -> int:
        return sum(t.numel() for t in self.tensors)

    def magnitude(self) -> torch.Tensor:
        if len(self.tensors) == 1:
            return self.tensors[0].detach().abs()
        return torch.sqrt(sum(t.detach() ** 2 for t in self.tensors))

    def row_view(self, width: int) -> bool:
        """Whether N:M / 1xK patterns apply: a Linear layer whose input width is a multiple of `width`."""
        return isinstance(self.layer, nn.Linear) and len(self.tensors) == 1 and self.layer.in_features % width == 0


def output_widths(model: nn.Module) -> set[int]:
    cfg = model.config
    return {cfg.enc_in, cfg.c_out, 1}


def prunable_units(model: nn.Module, include_fourier: bool = False) -> list[Unit]:
    """Every weight tensor that unstructured pruning may zero (see the module docstring)."""
    dense_widths = output_widths(model)
    units = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.endswith("gate"):
            continue  # the mixture-of-experts gate picks a moving average: a handful of weights
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            if module.weight.shape[0] in dense_widths:
                continue  # an output layer: its width is the number of variables (or 1)
            units.append(Unit(f"{name}.weight", [module.weight], module))
        elif include_fourier and hasattr(module, "weight_real") and hasattr(module, "weight_imag"):
            units.append(Unit(f"{name}.weight_real+imag", [module.weight_real, module.weight_imag], module))
    return units


class Masks:
    """0/1 masks over the prunable units, recomputed for a target sparsity and applied to the weights."""

    def __init__(self, model: nn.Module, method: str, include_fourier: bool = False, n: int = 2, m: int = 4,
                 seed: int = 0) -> None:
        if method not in MASK_METHODS:
            raise ValueError(f"unknown mask method {method!r}")
        self.method, self.n, self.m = method, n, m
        self.units = prunable_units(model, include_fourier)
        if method == "nm":
            self.units = [u for u in self.units if u.row_view(m)]
        elif method == "block":
            self.units = [u for u in self.units if u.row_view(BLOCK)]
        generator = torch.Generator().manual_seed(seed)
        # Random scores are drawn once, so a growing sparsity (gradual schedule) only ever adds zeros.
        self.random_scores = ({u.name: torch.rand(u.tensors[0].shape, generator=generator) for u in self.units}
                              if method == "random" else {})
        self.masks: dict[str, torch.Tensor] = {}

    def scores(self, unit: Unit) -> torch.Tensor:
        if self.method == "random":
            # Pruned weights keep the lowest score, so a later, larger sparsity never revives them.
            return torch.where(unit.magnitude() == 0, -1.0, self.random_scores[unit.name])
        return unit.magnitude()

    @torch.no_grad()
    def compute(self, sparsity: float) -> None:
        """Masks for `sparsity` from the current weights."""
        if self.method == "nm":
            self.masks = {u.name: nm_mask(u.magnitude(), self.n, self.m) for u in self.units}
        elif self.method == "block":
            self.masks = _global_masks({u.name: _block_scores(u.magnitude()) for u in self.units},
                                       {u.name: float(BLOCK * len(u.tensors)) for u in self.units}, sparsity)
            self.masks = {name: mask.repeat_interleave(BLOCK, dim=1) for name, mask in self.masks.items()}
        elif self.method == "layerwise":
            self.masks = {u.name: _lowest_fraction_mask(u.magnitude(), sparsity) for u in self.units}
        else:
            self.masks = _global_masks({u.name: self.scores(u) for u in self.units},
                                       {u.name: float(len(u.tensors)) for u in self.units}, sparsity)

    @torch.no_grad()
    def apply(self) -> None:
        for unit in self.units:
            mask = self.masks.get(unit.name)
            if mask is not None:
                for tensor in unit.tensors:
                    tensor.mul_(mask)

    def achieved(self, all_units: list[Unit] | None = None) -> dict:
        """Zeros among the weights this method may prune, and among every prunable weight."""
        def zeros(units: list[Unit]) -> tuple[int, int]:
            return (sum(int((t == 0).sum()) for u in units for t in u.tensors), sum(u.numel for u in units))

        eligible_zeros, eligible = zeros(self.units)
        result = {"eligible_weights": eligible,
                  "sparsity_of_eligible": round(eligible_zeros / max(eligible, 1), 6)}
        if all_units is not None:
            all_zeros, total = zeros(all_units)
            result.update(prunable_weights=total, sparsity_of_prunable=round(all_zeros / max(total, 1), 6))
        return result


def cubic_ramp(target: float, epoch: int, epochs: int) -> float:
    """Sparsity for 1-based `epoch` of `epochs` on the gradual schedule of Zhu & Gupta (2017): fast at first,
    flat at the end, reaching `target` at the last epoch."""
    return target * (1 - (1 - epoch / epochs) ** 3)


def nm_mask(magnitude: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n largest of every m consecutive entries along the rows of a [out, in] weight."""
    rows, width = magnitude.shape
    groups = magnitude.reshape(rows, width // m, m)
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups).scatter_(-1, keep, 1.0)
    return mask.reshape(rows, width)


def _block_scores(magnitude: torch.Tensor) -> torch.Tensor:
    """L1 norm of each 1x4 block of a [out, in] weight: [out, in / 4]."""
    return magnitude.reshape(magnitude.shape[0], -1, BLOCK).sum(dim=-1)


def _lowest_fraction_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    count = int(round(scores.numel() * sparsity))
    mask = torch.ones(scores.numel())
    if count:
        mask[scores.reshape(-1).argsort(stable=True)[:count]] = 0.0
    return mask.reshape(scores.shape)


def _global_masks(scores: dict[str, torch.Tensor], weight_per_score: dict[str, float],
                  sparsity: float) -> dict[str, torch.Tensor]:
    """Zero the globally lowest scores until `sparsity` of the weights they stand for are zero. Each score
    stands for `weight_per_score` weights (a block of 4, or a complex pair)."""
    names = list(scores)
    flat = torch.cat([scores[n].reshape(-1).float() for n in names])
    weights = torch.cat([torch.full((scores[n].numel(),), weight_per_score[n]) for n in names])
    target = sparsity * float(weights.sum())
    order = flat.argsort(stable=True)
    cumulative = weights[order].cumsum(0)
    count = int((cumulative <= target + 0.5).sum())
    keep = torch.ones_like(flat)
    keep[order[:count]] = 0.0
    masks, start = {}, 0
    for name in names:
        size = scores[name].numel()
        masks[name] = keep[start : start + size].reshape(scores[name].shape)
        start += size
    return masks
