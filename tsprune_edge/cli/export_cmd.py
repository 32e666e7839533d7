"""`tsprune-edge export`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tsprune_edge.cli.model_cmd import ensure_writable
from tsprune_edge.cli.output import table_console

_console = Console(stderr=True)


def export_command(
    sparsity: float = typer.Option(0.5, help="Pruning sparsity for every --method, in [0, 1)."),
    method: str = typer.Option("structured", help="Pruning method(s), comma-separated: structured, unstructured, "
                               "nm, block, layerwise, random. The dense reference is always exported too."),
    checkpoint: Path = typer.Option(None, help="A dense model.pt to start from (default: train one)."),
    model: str = typer.Option(None, help="Model to train (default transformer; with --checkpoint, a check)."),
    data: str = typer.Option(None, help="Dataset to train on (default: the built-in synthetic, offline)."),
    epochs: int = typer.Option(3, help="Training epochs when no --checkpoint is given."),
    finetune_epochs: int = typer.Option(1, help="Fine-tuning epochs after pruning; the exported dense reference is "
                                        "a copy of dense fine-tuned the same way, so accuracy is compared fairly."),
    device: str = typer.Option(None, help="The board the bundles are for: structured pruning keeps widths that are "
                               "multiples of its profile's round_to (`tsprune-edge devices show NAME`)."),
    round_to: int = typer.Option(None, help="structured: kept widths are multiples of this (default: the --device "
                                 "profile's, else 8)."),
    format: str = typer.Option("onnx,tflite", "--format", help="Artifact formats, comma-separated: onnx, tflite."),
    quantize: str = typer.Option(None, help="int8: also write an int8-weight bundle beside each fp32 one."),
    sparse_kernels: bool = typer.Option(False, help="TFLite: store pruned FULLY_CONNECTED weights for TFLite's "
                                        "builtin sparse kernels (CSR, 1x4 blocks) instead of densifying them at load; "
                                        "they leave XNNPACK, so measure whether that pays on your board."),
    out: Path = typer.Option(Path("export"), help="Bundles go to OUT/<variant>/."),
    runs: Path = typer.Option(Path("runs/export"), help="Where the trained and pruned checkpoints go."),
) -> None:
    """Train (or load), prune, fine-tune and export ONNX and TFLite bundles, validated against torch on real
    windows, with sparsity-aware compression; writes OUT/<variant>/ (model.onnx, model.tflite, manifest.json,
    samples.npz) for the dense model and each pruned variant."""
    from tsprune_edge.cli.device_option import resolve_round_to
    from tsprune_edge.export.bundle import ExportRequest, parse_list
    from tsprune_edge.export_job import ExportJob, run_export_job

    rounding, rounding_source = resolve_round_to(device, round_to)
    job = ExportJob(methods=parse_list(method), sparsity=sparsity, finetune_epochs=finetune_epochs,
                    checkpoint=checkpoint, model=model, data=data, epochs=epochs, round_to=rounding,
                    round_to_source=rounding_source)
    request = ExportRequest(formats=parse_list(format), quantize=quantize, sparse_kernels=sparse_kernels)
    job.prune_requests()
    request.validate()
    ensure_writable(out)
    ensure_writable(runs)
    manifests = run_export_job(job, request, out, runs, console=_console)
    table_console().print(bundle_table(manifests))
    print(f"bundles: {', '.join(str(out / name) for name in manifests)}")


def bundle_table(manifests: dict[str, dict]) -> Table:
    """Per variant and format: torch test MSE (after the same training for all), bytes (raw and zstd) against the
    fp32 dense file, and the validation error."""
    from tsprune_edge.export_job import compared_accuracy

    tests, comparison = compared_accuracy(manifests)
    table = Table(title="export bundles (sizes in KB; error: max |runtime - torch| on the sample windows)",
                  caption=f"test MSE in torch; {comparison}" if comparison else None)
    for column in ("variant", "format", "test MSE", "MACs", "density", "KB", "KB zstd", "unencoded KB",
                   "sparse tensors", "max error"):
        table.add_column(column)
    for name, manifest in manifests.items():
        for fmt, artifact in manifest["artifacts"].items():
            sparse = sum(t["encoding"] != "dense" for t in artifact["tensors"])
            errors = ", ".join(f"{v['max_abs_error']:.1e} ({v['runtime'].split()[0]})" for v in artifact["validation"])
            mse = f"{tests[name]['mse']:.4f}" if name in tests else "-"
            table.add_row(name, fmt, mse, f"{manifest['model']['macs']:,}", f"{manifest['model']['density']:.3f}",
                          f"{artifact['bytes'] / 1000:.0f}", f"{artifact['zstd_bytes'] / 1000:.0f}",
                          f"{artifact['fp32_dense']['bytes'] / 1000:.0f}",
                          f"{sparse}/{len(artifact['tensors'])}" if artifact["tensors"] else "-", errors)
    return table
