"""`tsprune-edge pipeline`: the main job on the built-in default, as far as the pipeline goes today (train, prune,
export)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tsprune_edge.cli.model_cmd import ensure_writable
from tsprune_edge.cli.output import table_console

_console = Console(stderr=True)


def pipeline_command(
    model: str = typer.Option("transformer", help="Model name (see `tsprune-edge models`)."),
    data: str = typer.Option("synthetic", help="Dataset name or CSV path; the default needs no download."),
    epochs: int = typer.Option(3, help="Training epochs for the default job (the full schedule: `train`)."),
    sparsity: float = typer.Option(0.5, help="Structured pruning ratio (heads and FFN neurons removed)."),
    finetune_epochs: int = typer.Option(1, help="Fine-tuning epochs after pruning."),
    out: Path = typer.Option(Path("runs/pipeline"), help="Where every stage writes its files."),
) -> None:
    """Train the default model on the built-in dataset, prune it (structured), fine-tune, export dense and pruned
    ONNX and TFLite bundles validated against torch, and table accuracy, size and MACs of both beside a naive
    forecast."""
    from tsprune_edge.export.bundle import ExportRequest
    from tsprune_edge.export_job import ExportJob, run_export_job

    job = ExportJob(methods=("structured",), sparsity=sparsity, finetune_epochs=finetune_epochs, model=model,
                    data=data, epochs=epochs)
    job.prune_requests()
    ensure_writable(out)
    manifests = run_export_job(job, ExportRequest(), out / "export", out, console=_console)
    metrics = json.loads((out / "dense" / "metrics.json").read_text())
    table_console().print(summary_table(manifests, metrics))
    print(f"bundles: {', '.join(str(out / 'export' / name) for name in manifests)}")


def summary_table(manifests: dict[str, dict], metrics: dict) -> Table:
    """Dense and pruned side by side: test accuracy, parameters, MACs, artifact sizes and validation errors."""
    table = Table(title=f"{metrics['model']} (small preset) on {metrics['data']['name']}, "
                        f"pred_len {metrics['data']['pred_len']}, test split")
    for column in ("variant", "MSE", "MAE", "parameters", "MACs per window", "ONNX KB", "TFLite KB",
                   "max |runtime - torch|"):
        table.add_column(column)
    for name, manifest in manifests.items():
        pruning = manifest["pruning"]
        test = metrics["test"] if pruning is None else (pruning["test"]["finetuned"] or pruning["test"]["pruned"])
        artifacts = manifest["artifacts"]
        error = max(v["max_abs_error"] for a in artifacts.values() for v in a["validation"])
        table.add_row(name + (", fine-tuned" if pruning and pruning["test"]["finetuned"] else ""),
                      f"{test['mse']:.4f}", f"{test['mae']:.4f}", f"{manifest['model']['parameters']:,}",
                      f"{manifest['model']['macs']:,}", f"{artifacts['onnx']['bytes'] / 1000:.0f}",
                      f"{artifacts['tflite']['bytes'] / 1000:.0f}", f"{error:.1e}")
    naive = metrics["naive_test"]
    table.add_row("repeat last value", f"{naive['mse']:.4f}", f"{naive['mae']:.4f}", "-", "-", "-", "-", "-")
    return table
