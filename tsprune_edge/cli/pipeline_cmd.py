"""`tsprune-edge pipeline`: the main job on the built-in default, as far as the pipeline goes today (train, prune)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tsprune_edge.cli.model_cmd import ensure_writable
from tsprune_edge.prune.stage import PruneRequest, prune_to_dir
from tsprune_edge.workflow import train_to_dir

_console = Console(stderr=True)


def pipeline_command(
    model: str = typer.Option("transformer", help="Model name (see `tsprune-edge models`)."),
    data: str = typer.Option("synthetic", help="Dataset name or CSV path; the default needs no download."),
    epochs: int = typer.Option(3, help="Training epochs for the default job (the full schedule: `train`)."),
    sparsity: float = typer.Option(0.5, help="Structured pruning ratio (heads and FFN neurons removed)."),
    finetune_epochs: int = typer.Option(1, help="Fine-tuning epochs after pruning."),
    out: Path = typer.Option(Path("runs/pipeline"), help="Where every stage writes its files."),
) -> None:
    """Train the default model on the built-in dataset, prune it (structured) and fine-tune, and show test
    accuracy, parameters and MACs of both beside a naive forecast."""
    request = PruneRequest(method="structured", sparsity=sparsity, finetune_epochs=finetune_epochs)
    request.validate()
    ensure_writable(out)
    metrics = train_to_dir(model=model, data=data, pred_len=96, preset="small", epochs=epochs,
                           out=out / "dense", console=_console)
    pruning = prune_to_dir(out / "dense" / "model.pt", request, out / "structured", console=_console)
    table = Table(title=f"{model} (small preset) on {metrics['data']['name']}, pred_len 96, test split")
    for column in ("model", "MSE", "MAE", "parameters", "MACs per window"):
        table.add_column(column)
    before, after, test = pruning["before"], pruning["after"], pruning["test"]
    table.add_row("dense", f"{test['dense']['mse']:.4f}", f"{test['dense']['mae']:.4f}",
                  f"{before['parameters']:,}", f"{before['macs']:,}")
    tuned = test["finetuned"] or test["pruned"]
    table.add_row(f"structured {sparsity:g}" + (", fine-tuned" if test["finetuned"] else ""),
                  f"{tuned['mse']:.4f}", f"{tuned['mae']:.4f}", f"{after['parameters']:,}", f"{after['macs']:,}")
    naive = metrics["naive_test"]
    table.add_row("repeat last value", f"{naive['mse']:.4f}", f"{naive['mae']:.4f}", "-", "-")
    Console().print(table)
    print(f"checkpoints: {out / 'dense' / 'model.pt'}, {out / 'structured' / 'model.pt'}")
