"""Pipeline stages as functions: each reads the previous stage's file and writes its own."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from rich.console import Console

from tsprune_edge.atomic import write_json_atomic
from tsprune_edge.checkpoint import Checkpoint, load_checkpoint, make_checkpoint, save_checkpoint
from tsprune_edge.data.forecast import SPLITS, ForecastData, WindowSpec, load_forecast_data
from tsprune_edge.errors import UserError
from tsprune_edge.models import create_model, model_entry, resolve_config
from tsprune_edge.train import evaluate, evaluate_naive, seed_everything, train


def train_to_dir(*, model: str, data: str, pred_len: int, preset: str, out: Path, features: str = "M",
                 target: str | None = None, seq_len: int | None = None, label_len: int | None = None,
                 epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                 seed: int = 2021, strict_dates: bool = False, console: Console | None = None) -> dict:
    """Train `model` on `data`, write out/model.pt and out/metrics.json, and return the metrics. What the data
    layer notices about the file is said once here (one stderr line each) and kept in metrics["data"]["notices"]."""
    entry = model_entry(model)
    base = resolve_config(model, preset, seq_len=seq_len, label_len=label_len, pred_len=pred_len)
    if epochs is not None and epochs <= 0:
        raise UserError(f"epochs must be positive, got {epochs}")
    forecast = load_forecast_data(data, WindowSpec(base.seq_len, base.label_len, pred_len), features, target,
                                  strict_dates=strict_dates)
    for notice in forecast.notices:
        print(f"warning: {notice}", file=sys.stderr)
    targets = forecast.target_columns
    seed_everything(seed)  # the initial weights too, not only shuffling and dropout
    net = create_model(model, preset, seq_len=base.seq_len, label_len=base.label_len, pred_len=pred_len,
                       enc_in=len(forecast.input_columns), c_out=len(targets),
                       calendar_features=forecast.calendar_names,
                       target_index=forecast.input_columns.index(targets[0]) if len(targets) == 1 else -1)
    schedule = dataclasses.replace(entry.schedule, **{k: v for k, v in
                                   {"max_epochs": epochs, "batch_size": batch_size, "lr": lr}.items() if v is not None})
    started = time.perf_counter()
    result = train(net, forecast, schedule, seed=seed, console=console)
    test, val = evaluate(net, forecast, "test"), evaluate(net, forecast, "val")
    training = {"preset": preset, "seed": seed, "schedule": dataclasses.asdict(schedule),
                **dataclasses.asdict(result), "seconds_total": round(time.perf_counter() - started, 2)}
    metrics = {
        "model": model,
        "parameters": sum(p.numel() for p in net.parameters()),
        "data": forecast.describe(),
        "training": training,
        "val": dataclasses.asdict(val),
        "test": dataclasses.asdict(test),
        "naive_test": dataclasses.asdict(evaluate_naive(forecast, "test")),
    }
    save_checkpoint(make_checkpoint(net, forecast.describe(), forecast.scaling(), training), out / "model.pt")
    write_json_atomic(out / "metrics.json", metrics)
    return metrics


def checkpoint_data(checkpoint: Checkpoint) -> ForecastData:
    """The windows a checkpoint was trained on, refused if the dataset changed since."""
    d = checkpoint.data
    return load_forecast_data(d["path"] or d["name"], WindowSpec(d["seq_len"], d["label_len"], d["pred_len"]),
                              d["features"], d["target"], expected_sha256=d["sha256"])


def evaluate_checkpoint(path: Path, split: str, out: Path) -> dict:
    """Re-score a checkpoint on its recorded dataset and write the metrics JSON."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    checkpoint = load_checkpoint(path)
    d = checkpoint.data
    forecast = checkpoint_data(checkpoint)
    metrics = evaluate(checkpoint.build_model(), forecast, split)
    result = {"model": checkpoint.model_name, "data": d["name"], "split": split, "checkpoint": str(path),
              **dataclasses.asdict(metrics)}
    write_json_atomic(out, result)
    return result


def training_budget(training: dict) -> dict:
    """How much training a checkpoint had (its dense training epochs, then fine-tuning epochs at which learning
    rate): what a fair accuracy comparison holds equal between a pruned model and its dense reference."""
    finetune = training.get("finetune") or {}
    runs = finetune.get("runs") or []
    budget = {"epochs": training.get("epochs_run"), "finetune_epochs": finetune.get("epochs", 0),
              "finetune_lr": runs[0]["schedule"]["lr"] if runs else None}
    return {**budget, "text": budget_text(budget)}


def budget_text(budget: dict) -> str:
    """'3 epochs + 1 fine-tune epoch'."""
    def plural(n: int | None, what: str) -> str:
        return f"{n} {what}" + ("" if n == 1 else "s")

    text = plural(budget["epochs"], "epoch")
    return text + (f" + {plural(budget['finetune_epochs'], 'fine-tune epoch')}" if budget["finetune_epochs"] else "")
