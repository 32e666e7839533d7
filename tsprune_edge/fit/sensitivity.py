"""What each choice costs in accuracy: the validation loss with one layer (or the width) alone narrowed.

The fit's importance is data-driven, not magnitude: for every prunable layer and every width the search may give it,
the dense model is pruned at that layer only (by the same pruner, so the very units the fit would remove go) and its
MSE is measured on a fixed subset of the validation split, without fine-tuning. A choice's cost is how much the loss
rises over dense (a fall is counted as no cost: it is noise at this size, not a reason to prune). Costs of
different layers are on one scale, the validation MSE, so they can be added and compared; the search treats the
cost of a combination as the sum of its layers' costs (the usual first-order assumption of per-layer sensitivity
analysis, as in NetAdapt's and HALP's tables; the joint loss is measured later, after fine-tuning, on the test split).

Levels: every head count; neurons, lags and the width at each eighth of the dense count (on the round_to grid).
The table depends on the weights and the validation data only, not on the board: it is cached per checkpoint
(sha256) beside the latency tables, so another budget or another board reuses it; a damaged entry is set aside and
measured again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from tsprune_edge.atomic import write_json_atomic
from tsprune_edge.data.fetch import sha256_of
from tsprune_edge.data.forecast import ForecastData
from tsprune_edge.fit.cache_files import read_entry
from tsprune_edge.fit.choice import pruned_copy
from tsprune_edge.fit.space import Layer, Space, Widths

SENSITIVITY_VERSION = 1
VALIDATION_WINDOWS = 1024  # evenly spaced over the validation split: the whole split costs 3x as long, same ranks
EIGHTHS = 8
WIDTH = "d_model"  # the width's levels, measured with the layers' in one progress


@dataclass(frozen=True)
class Sensitivity:
    dense_mse: float
    layers: dict[str, dict[int, float]]  # layer path -> units kept -> validation MSE with only this layer narrowed
    width: dict[int, float]  # d_model kept -> validation MSE with only the width narrowed (empty: no width)

    def cost(self, path: str, kept: int) -> float:
        """The rise of the validation MSE when layer `path` keeps `kept` units (0 for its dense count)."""
        return max(0.0, self.layers[path].get(kept, self.dense_mse) - self.dense_mse)

    def width_cost(self, kept: int | None) -> float:
        return 0.0 if kept is None else max(0.0, self.width.get(kept, self.dense_mse) - self.dense_mse)

    def total(self, widths: Widths) -> float:
        """The predicted rise of the validation MSE for a whole choice: the sum of its layers' and width's costs."""
        return sum(self.cost(path, kept) for path, kept in widths.units.items()) + self.width_cost(widths.width)

    def record(self) -> dict:
        return {"dense_val_mse": self.dense_mse, "windows": VALIDATION_WINDOWS,
                "layers": {path: {str(k): v for k, v in levels.items()} for path, levels in self.layers.items()},
                "width": {str(k): v for k, v in self.width.items()}}

    @classmethod
    def from_record(cls, record: dict) -> Sensitivity:
        return cls(record["dense_val_mse"],
                   {path: {int(k): v for k, v in levels.items()} for path, levels in record["layers"].items()},
                   {int(k): v for k, v in record["width"].items()})


def layer_levels(layer: Layer) -> list[int]:
    """Units a layer may keep, dense excluded: every head count; eighths of the dense count on the step grid."""
    if layer.kind == "heads":
        return list(range(1, layer.units))
    return _eighths(layer.units, layer.step)


def width_levels(space: Space) -> list[int]:
    return _eighths(space.d_model, space.round_to) if space.d_model else []


def _eighths(units: int, step: int) -> list[int]:
    kept = {max(step, round(units * k / EIGHTHS / step) * step) for k in range(1, EIGHTHS)}
    return sorted(k for k in kept if k < units)


def validation_subset(data: ForecastData) -> tuple[torch.Tensor, ...]:
    total = data.n_windows("val")
    starts = np.unique(np.linspace(0, total - 1, min(total, VALIDATION_WINDOWS)).round().astype(int))
    return tuple(torch.from_numpy(a) for a in data.window_arrays("val", starts))


@torch.no_grad()
def validation_mse(model: nn.Module, subset: tuple[torch.Tensor, ...], batch_size: int = 256) -> float:
    model.eval()
    history, calendar, target = subset
    squared, count = 0.0, 0
    for first in range(0, len(history), batch_size):
        batch = slice(first, first + batch_size)
        error = model(history[batch], calendar[batch]) - target[batch]
        squared += float((error.double() ** 2).sum())
        count += error.numel()
    return squared / count


def measure_sensitivity(model: nn.Module, space: Space, data: ForecastData, console: Console) -> Sensitivity:
    subset = validation_subset(data)
    dense = space.dense()
    dense_mse = validation_mse(model, subset)
    jobs = [(layer.path, kept, Widths({**dense.units, layer.path: kept}, dense.width))
            for layer in space.layers for kept in layer_levels(layer)]
    jobs += [(WIDTH, kept, Widths(dense.units, kept)) for kept in width_levels(space)]
    console.print(f"sensitivity: validation MSE of {len(jobs)} one-layer prunings on {len(subset[0])} windows")
    measured: dict[str, dict[int, float]] = {}
    began = time.monotonic()
    with Progress(TextColumn("sensitivity {task.fields[layer]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("sensitivity", total=len(jobs), layer="")
        for number, (path, kept, widths) in enumerate(jobs, 1):
            progress.update(task, layer=f"{path} keeping {kept}")
            measured.setdefault(path, {})[kept] = validation_mse(pruned_copy(model, space, widths), subset)
            progress.advance(task)
            last_of_layer = number == len(jobs) or jobs[number][0] != path
            if last_of_layer and not console.is_terminal:  # a log gets one line per layer instead of the bar
                console.print(f"sensitivity: [{number}/{len(jobs)}] {path} done, {time.monotonic() - began:.0f} s")
    width = measured.pop(WIDTH, {})
    layers = {layer.path: measured.get(layer.path, {}) for layer in space.layers}
    return Sensitivity(dense_mse, layers, width)


def cached_sensitivity(checkpoint_path: Path, model: nn.Module, space: Space, data: ForecastData, cache: Path,
                       console: Console) -> Sensitivity:
    """The table for this checkpoint and round_to, measured now if not cached."""
    digest = sha256_of(checkpoint_path)
    path = Path(cache) / f"sensitivity-{model.name}-{digest[:12]}-r{space.round_to}.json"
    key = {"version": SENSITIVITY_VERSION, "checkpoint_sha256": digest, "round_to": space.round_to,
           "windows": VALIDATION_WINDOWS}
    stored = read_entry(path, lambda stored: _checked(stored, key, space), "sensitivity table", console)
    if stored is not None:
        return stored
    table = measure_sensitivity(model, space, data, console)
    write_json_atomic(path, {"key": key, "table": table.record()})
    return table


def _checked(stored: object, key: dict, space: Space) -> Sensitivity:
    """A stored table as the search reads it (ValueError/KeyError/TypeError otherwise): its key, a number for
    every level of every layer and of the width."""
    if not isinstance(stored, dict) or stored["key"] != key:
        raise ValueError("not the table of this checkpoint")
    table = Sensitivity.from_record(stored["table"])
    expected = {layer.path: set(layer_levels(layer)) for layer in space.layers}
    if {path: set(levels) for path, levels in table.layers.items()} != expected \
            or set(table.width) != set(width_levels(space)):
        raise ValueError("levels")
    values = [table.dense_mse, *table.width.values(), *(v for levels in table.layers.values() for v in levels.values())]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values):
        raise TypeError("values")
    return table
