"""Training with each model's published schedule, early stopping on validation loss, and test metrics."""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from tsprune_edge.data.forecast import ForecastData
from tsprune_edge.models.registry import TrainSchedule


@dataclass
class Metrics:
    mse: float
    mae: float
    windows: int


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int
    seconds_per_epoch: float
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def learning_rate(schedule: TrainSchedule, epoch: int) -> float:
    """The lr for 1-based `epoch`."""
    if schedule.lr_decay == "halve":
        return schedule.lr * 0.5 ** (epoch - 1)
    if schedule.lr_decay == "hold3":
        return schedule.lr if epoch <= 3 else schedule.lr * 0.9 ** (epoch - 3)
    raise ValueError(f"unknown lr decay {schedule.lr_decay!r}")


@torch.no_grad()
def evaluate(model: nn.Module, data: ForecastData, split: str = "test", batch_size: int = 256) -> Metrics:
    """MSE and MAE over every window of `split`, on scaled values, as the literature reports them."""
    model.eval()
    sq = ab = 0.0
    count = 0
    for history, calendar, target in data.batches(split, batch_size):
        error = model(history, calendar) - target
        sq += float((error.double() ** 2).sum())
        ab += float(error.double().abs().sum())
        count += error.numel()
    return Metrics(mse=sq / count, mae=ab / count, windows=data.n_windows(split))


@torch.no_grad()
def evaluate_naive(data: ForecastData, split: str = "test", batch_size: int = 1024) -> Metrics:
    """The "repeat the last observed value" forecast: the yardstick every model must beat."""
    positions = [data.input_columns.index(c) for c in data.target_columns]
    sq = ab = 0.0
    count = 0
    for history, _, target in data.batches(split, batch_size):
        error = history[:, -1:, positions] - target
        sq += float((error.double() ** 2).sum())
        ab += float(error.double().abs().sum())
        count += error.numel()
    return Metrics(mse=sq / count, mae=ab / count, windows=data.n_windows(split))


def train(model: nn.Module, data: ForecastData, schedule: TrainSchedule, seed: int = 2021,
          console: Console | None = None, *, after_step: Callable[[], None] | None = None,
          before_epoch: Callable[[int], None] | None = None, keep_best: bool = True,
          teacher: nn.Module | None = None, distill: float = 0.0) -> TrainResult:
    """Adam on MSE; keeps the weights of the best validation epoch and stops after `patience` worse ones.

    Distillation (fine-tuning a pruned model): with a `teacher`, the loss is (1 - distill) * MSE(target) +
    distill * MSE(teacher's forecast), the teacher frozen in eval mode; validation and early stopping still use
    the target alone.

    Fine-tuning hooks: `after_step` runs after every optimiser step (pruning masks are reapplied there),
    `before_epoch(epoch)` before each epoch (a sparsity schedule steps there). With `keep_best=False` every
    epoch runs and the last weights are kept (a schedule that ends at its target must not be undone)."""
    console = console or Console(stderr=True)
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    loss_fn = nn.MSELoss()
    if teacher is not None:
        teacher.eval()
    best_val, best_state, best_epoch, waited = float("inf"), None, 0, 0
    result = TrainResult(epochs_run=0, best_epoch=0, seconds_per_epoch=0.0)
    steps = -(-data.n_windows("train") // schedule.batch_size)
    train_seconds = 0.0
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        for epoch in range(1, schedule.max_epochs + 1):
            if before_epoch is not None:
                before_epoch(epoch)
            lr = learning_rate(schedule, epoch)
            for group in optimiser.param_groups:
                group["lr"] = lr
            task = progress.add_task(f"epoch {epoch}/{schedule.max_epochs}", total=steps, loss=float("nan"))
            model.train()
            started = time.perf_counter()
            total, batches = 0.0, 0
            for history, calendar, target in data.batches("train", schedule.batch_size, shuffle=True, rng=rng):
                optimiser.zero_grad(set_to_none=True)
                forecast = model(history, calendar)
                loss = loss_fn(forecast, target)
                if teacher is not None and distill:
                    with torch.no_grad():
                        taught = teacher(history, calendar)
                    loss = (1 - distill) * loss + distill * loss_fn(forecast, taught)
                loss.backward()
                optimiser.step()
                if after_step is not None:
                    after_step()
                total, batches = total + loss.item(), batches + 1
                progress.update(task, advance=1, loss=total / batches)
            train_seconds += time.perf_counter() - started
            progress.remove_task(task)
            val = evaluate(model, data, "val").mse
            record = {"epoch": epoch, "lr": lr, "train_loss": total / batches, "val_loss": val,
                      "seconds": round(time.perf_counter() - started, 3)}
            result.history.append(record)
            result.epochs_run = epoch
            console.print(f"epoch {epoch:3d}  lr {lr:.2e}  train {record['train_loss']:.4f}  "
                          f"val {val:.4f}  {record['seconds']:.1f}s")
            if not keep_best:
                best_epoch = epoch
            elif val < best_val:
                best_val, best_epoch, waited = val, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if waited >= schedule.patience:
                    console.print(f"early stop: validation loss has not improved for {waited} epochs")
                    break
    if keep_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.best_epoch = best_epoch
    result.seconds_per_epoch = train_seconds / max(result.epochs_run, 1)
    return result

