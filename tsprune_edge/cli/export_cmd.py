"""`tsprune-edge export`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tsprune_edge.cli import baseline_options, guards, paths
from tsprune_edge.cli import pruning_options as options
from tsprune_edge.cli.lists import comma_list
from tsprune_edge.cli.output import table_console
from tsprune_edge.defaults import (
    DEFAULT_DATA,
    DEFAULT_DISTILL,
    DEFAULT_EPOCHS,
    DEFAULT_FINETUNE_EPOCHS,
    DEFAULT_MODEL,
)

_console = Console(stderr=True)


def export_command(
    sparsity: float = options.sparsity(),
    method: str = options.method(several=True, also="The dense reference is always exported too."),
    dims: str = options.dims(),
    width_sparsity: float = options.width_sparsity(),
    checkpoint: Path = typer.Option(None, help="A dense model.pt to start from (default: train one)."),
    model: str = typer.Option(None, help=f"Model to train (default {DEFAULT_MODEL}; with --checkpoint, a check)."),
    data: str = typer.Option(None, help=f"Dataset to train on (default: the built-in {DEFAULT_DATA}, offline)."),
    epochs: int = typer.Option(DEFAULT_EPOCHS, help="Training epochs when no --checkpoint is given."),
    strict_dates: bool = typer.Option(False, help="Refuse duplicated timestamps and irregular steps in the CSV "
                                      "(default: keep the rows, warn once)."),
    finetune_epochs: int = typer.Option(DEFAULT_FINETUNE_EPOCHS, help="Fine-tuning epochs after pruning; the "
                                        "exported dense reference is a copy of dense fine-tuned the same way, so "
                                        "accuracy is compared fairly."),
    distill: float = typer.Option(DEFAULT_DISTILL, help="Weight of dense's forecast in the pruned models' "
                                  "fine-tuning loss (knowledge distillation; 0: the target alone). Dense is "
                                  "fine-tuned on the target alone."),
    format: str = typer.Option(None, "--format", help="Artifact formats, comma-separated: onnx, tflite (default: "
                               "both, or those the --device's runtimes read)."),
    device: str = options.device(also="The ONNX opset, IR version and sparse weights are what its runtimes read "
                                 "(jetson-nano: opset 13, IR 7, dense, ONNX only)."),
    round_to: int = options.round_to(),
    onnx_opset: int = typer.Option(None, help="ONNX opset to write (13-21; default 20, or the --device's). 13 "
                                   "decomposes LayerNorm and GELU for ONNX Runtime 1.10 and TensorRT 8."),
    quantize: str = typer.Option(None, help="int8: also write an int8-weight bundle beside each fp32 one."),
    sparse_kernels: bool = typer.Option(False, help="TFLite: store pruned FULLY_CONNECTED weights for TFLite's "
                                        "builtin sparse kernels (CSR, 1x4 blocks) instead of densifying them at load; "
                                        "they leave XNNPACK, so measure whether that pays on your board."),
    out: Path = typer.Option(paths.BUNDLES, help="Bundles go to OUT/<variant>/ (what `bench --artifacts` reads by "
                             "default)."),
    baselines: str = baseline_options.baselines(),
    baseline_cache: Path = baseline_options.baseline_cache(),
    runs: Path = typer.Option(paths.EXPORT_CHECKPOINTS, help="Where the trained and pruned checkpoints go."),
    force: bool = typer.Option(False, "--force", help="Replace bundles and checkpoints an earlier export left in "
                               "OUT and RUNS."),
) -> None:
    """Train (or load), prune, fine-tune and export ONNX and TFLite bundles, validated against torch on real
    windows, with sparsity-aware compression; writes OUT/<variant>/ (model.onnx, model.tflite, manifest.json,
    samples.npz) for the dense model and each pruned variant."""
    from tsprune_edge.export.bundle import ExportRequest
    from tsprune_edge.export_job import ExportJob, check_job_baselines, run_export_job

    pruning = options.pruning(method, sparsity, dims, width_sparsity, device, round_to, several=True)
    job = ExportJob(methods=pruning.methods, finetune_epochs=finetune_epochs, distill=distill, checkpoint=checkpoint,
                    model=model, data=data, epochs=epochs, strict_dates=strict_dates, **pruning.fields,
                    **baseline_options.resolve(baselines, baseline_cache))
    request = ExportRequest(quantize=quantize, sparse_kernels=sparse_kernels,
                            **_device_settings(device, None if format is None else comma_list(format), onnx_opset))
    guards.number("--epochs", epochs, 1)
    guards.number("--finetune-epochs", finetune_epochs, 0)
    guards.number("--distill", distill, 0, 1, high_open=True)
    if job.baselines:
        guards.writable_dir(job.baseline_cache, "--baseline-cache")
        check_job_baselines(job)  # before any folder is made: a baseline the data cannot take is one line
    variants = list(job.variants())
    request.validate()
    inputs = [checkpoint, Path(data) if data else None]
    written = ["dense", *variants, *(b.variant for b in job.baselines)]
    names = [n + suffix for n in written for suffix in ("", "-int8" if quantize else "")]
    guards.output_dir(out, inputs=inputs)
    guards.bundle_folders(out, dict.fromkeys(names), force)
    trained = variants if checkpoint else ["dense", *variants]
    guards.output_dir(runs, writes=[f"{n}/model.pt" for n in trained], inputs=inputs, force=force, option="--runs")
    guards.apart(out, runs, names, trained)
    manifests = run_export_job(job, request, out, runs, console=_console)
    table_console().print(bundle_table(manifests))
    print(f"bundles: {', '.join(str(out / name) for name in manifests)}")


def _device_settings(device: str | None, formats: tuple[str, ...] | None, opset: int | None) -> dict:
    """The ExportRequest fields a device profile decides: the formats its runtimes read, and the ONNX level and
    encoding they load. An explicit --format or --onnx-opset wins."""
    from tsprune_edge.export.bundle import FORMATS

    if device is None:
        settings = {"formats": FORMATS if formats is None else formats}
        return settings if opset is None else {**settings, "onnx_opset": opset}
    from tsprune_edge.devices.profiles import load_profile

    profile = load_profile(device)
    readable = profile.readable_formats()
    fields = profile.export_fields() if opset is None else {**profile.export_fields(), "onnx_opset": opset,
                                                            "onnx_ir": None}
    return {"formats": readable if formats is None else formats, **fields}


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
            density = manifest["model"]["density"]  # None for the per-call probe: it has no weights
            mse = f"{tests[name]['mse']:.4f}" if name in tests else "-"
            table.add_row(name, fmt, mse, f"{manifest['model']['macs']:,}",
                          "-" if density is None else f"{density:.3f}",
                          f"{artifact['bytes'] / 1000:.0f}", f"{artifact['zstd_bytes'] / 1000:.0f}",
                          f"{artifact['fp32_dense']['bytes'] / 1000:.0f}",
                          f"{sparse}/{len(artifact['tensors'])}" if artifact["tensors"] else "-", errors)
    return table
