"""`tsprune-edge pipeline`: the main job on the built-in default, as far as the pipeline goes today."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tsprune_edge.cli.model_cmd import ensure_writable
from tsprune_edge.workflow import train_to_dir

_console = Console(stderr=True)


def pipeline_command(
    model: str = typer.Option("transformer", help="Model name (see `tsprune-edge models`)."),
    data: str = typer.Option("synthetic", help="Dataset name or CSV path; the default needs no download."),
    epochs: int = typer.Option(3, help="Training epochs for the default job (the full schedule: `train`)."),
    out: Path = typer.Option(Path("runs/pipeline"), help="Where every stage writes its files."),
) -> None:
    """Train the default model on the built-in dataset and show its test accuracy beside a naive forecast."""
    ensure_writable(out)
    metrics = train_to_dir(model=model, data=data, pred_len=96, preset="small", epochs=epochs,
                           out=out / "dense", console=_console)
    table = Table(title=f"{model} (small preset) on {metrics['data']['name']}, pred_len 96")
    for column in ("split", "MSE", "MAE", "windows"):
        table.add_column(column)
    for label, key in (("val", "val"), ("test", "test"), ("test, repeat last value", "naive_test")):
        m = metrics[key]
        table.add_row(label, f"{m['mse']:.4f}", f"{m['mae']:.4f}", str(m["windows"]))
    Console().print(table)
    print(f"checkpoint: {out / 'dense' / 'model.pt'}")
