"""`tsprune-edge train|evaluate|models`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tsprune_edge.cli import guards
from tsprune_edge.cli.output import table_console
from tsprune_edge.workflow import evaluate_checkpoint, train_to_dir

_console = Console(stderr=True)


def ensure_writable(directory: Path) -> None:
    """Fail before any work if `directory` could not be created or written (kept for callers: see guards)."""
    guards.writable_dir(directory)


def train_command(
    model: str = typer.Option("transformer", help="Model name (see `tsprune-edge models`)."),
    data: str = typer.Option("synthetic", help="Registered dataset name or path to a CSV in the standard format."),
    pred_len: int = typer.Option(96, help="Forecast horizon in steps."),
    preset: str = typer.Option("small", help="Model preset: small (CPU-sized) or paper (the study's widths)."),
    features: str = typer.Option("M", help="M: all to all, S: target to target, MS: all to target."),
    target: str = typer.Option(None, help="Target column (default: the dataset's, usually OT)."),
    seq_len: int = typer.Option(None, help="History length (default: the preset's)."),
    label_len: int = typer.Option(None, help="Decoder start-token length (default: the preset's)."),
    epochs: int = typer.Option(None, help="Maximum epochs (default: the model's published schedule)."),
    batch_size: int = typer.Option(None, help="Batch size (default: the model's published schedule)."),
    lr: float = typer.Option(None, help="Initial learning rate (default: the model's published schedule)."),
    seed: int = typer.Option(2021, help="Seed for weights, shuffling and dropout."),
    strict_dates: bool = typer.Option(False, help="Refuse duplicated timestamps and irregular steps in the CSV "
                                      "(default: keep the rows, warn once)."),
    out: Path = typer.Option(None, help="Output directory (default: runs/<model>-<data>-<pred_len>)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files an earlier run left in OUT."),
) -> None:
    """Train a model; writes OUT/model.pt and OUT/metrics.json (test MSE/MAE on scaled values)."""
    out = out or Path("runs") / f"{model}-{Path(data).stem}-{pred_len}"
    guards.number("--epochs", epochs, 1)
    guards.number("--batch-size", batch_size, 1)
    guards.number("--lr", lr, 0, low_open=True)
    guards.seed(seed)
    guards.model_fits(model, preset, seq_len, label_len, pred_len, data=data, strict_dates=strict_dates)
    guards.output_dir(out, writes=("model.pt", "metrics.json"), inputs=[Path(data)], force=force)
    metrics = train_to_dir(model=model, data=data, pred_len=pred_len, preset=preset, features=features,
                           target=target, seq_len=seq_len, label_len=label_len, epochs=epochs,
                           batch_size=batch_size, lr=lr, seed=seed, strict_dates=strict_dates, out=out,
                           console=_console)
    test = metrics["test"]
    print(f"{model} on {metrics['data']['name']} (pred_len {pred_len}): test MSE {test['mse']:.4f}  "
          f"MAE {test['mae']:.4f}  -> {out / 'model.pt'}")


def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="A model.pt written by `tsprune-edge train`."),
    split: str = typer.Option("test", help="Which split to score: train, val or test."),
    out: Path = typer.Option(None, help="Where to write the metrics JSON (default: beside the checkpoint)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing metrics file at OUT."),
) -> None:
    """Score a checkpoint on its own dataset's split; prints and writes MSE and MAE."""
    out = out or checkpoint.parent / f"evaluation-{split}.json"
    guards.output_file(out, inputs=[checkpoint], force=force)
    result = evaluate_checkpoint(checkpoint, split, out)
    print(f"{result['model']} on {result['data']} {split}: MSE {result['mse']:.4f}  MAE {result['mae']:.4f}  "
          f"({result['windows']} windows) -> {out}")


def models_command() -> None:
    """List the registered models with their presets and training schedules."""
    from tsprune_edge.models import available_models, model_entry

    table = Table(title="models")
    for column in ("name", "presets", "schedule", "description"):
        table.add_column(column)
    for name in available_models():
        entry = model_entry(name)
        s = dataclasses.asdict(entry.schedule)
        schedule = f"lr {s['lr']:g}, batch {s['batch_size']}, <= {s['max_epochs']} epochs, {s['lr_decay']}"
        table.add_row(name, ", ".join(entry.presets), schedule, entry.summary)
    table_console().print(table)
