"""`tsprune-edge pipeline`: the main job on the built-in default, as far as the pipeline goes today (train, prune,
export, bench on this machine, report)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tsprune_edge.cli import baseline_options, guards, paths
from tsprune_edge.cli import pruning_options as options
from tsprune_edge.cli.output import table_console
from tsprune_edge.defaults import (
    DEFAULT_DATA,
    DEFAULT_EPOCHS,
    DEFAULT_MODEL,
    MAIN_JOB_DISTILL,
    MAIN_JOB_FINETUNE_EPOCHS,
)
from tsprune_edge.devices.runs import DEFAULT_ROUNDS

_console = Console(stderr=True)
DEVICE = "desktop"  # the main job measures on this machine, and prunes for its profile's round_to


def pipeline_command(
    model: str = typer.Option(DEFAULT_MODEL, help="Model name (see `tsprune-edge models`)."),
    data: str = typer.Option(DEFAULT_DATA, help="Dataset name or CSV path; the default needs no download."),
    epochs: int = typer.Option(DEFAULT_EPOCHS, help="Training epochs for the default job (the full schedule: "
                               "`train`)."),
    strict_dates: bool = typer.Option(False, help="Refuse duplicated timestamps and irregular steps in the CSV "
                                      "(default: keep the rows, warn once)."),
    method: str = options.method(several=True),
    sparsity: float = options.sparsity(),
    dims: str = options.dims(),
    width_sparsity: float = options.width_sparsity(),
    round_to: int = options.round_to(default_from=f"the {DEVICE} profile's"),
    finetune_epochs: int = typer.Option(MAIN_JOB_FINETUNE_EPOCHS, help="Fine-tuning epochs after pruning; dense "
                                        "gets the same, so the accuracy comparison is fair."),
    distill: float = typer.Option(MAIN_JOB_DISTILL, help="Weight of dense's forecast in the pruned models' "
                                  "fine-tuning loss (knowledge distillation; 0: the target alone). Dense is "
                                  "fine-tuned on the target alone."),
    rounds: int = typer.Option(DEFAULT_ROUNDS, help="Bench rounds on this machine (each variant once per round)."),
    control: bool = typer.Option(False, help="Also bench an A/A control: a byte-different copy of dense, which "
                                 "the report warns about unless EQUIVALENT."),
    baselines: str = baseline_options.baselines(),
    baseline_cache: Path = baseline_options.baseline_cache(),
    out: Path = typer.Option(paths.PIPELINE, help="Where every stage writes its files."),
    force: bool = typer.Option(False, "--force", help="Overwrite what an earlier pipeline left in OUT."),
) -> None:
    """Train the default model on the built-in dataset, prune it (structured by default, widths for this machine's
    profile), fine-tune it and a copy of dense the same way, export dense and pruned ONNX and TFLite bundles
    validated against torch, measure them on this machine, table accuracy, size, MACs and latency of both beside a
    naive forecast, and end with the verdict: real speedup or not, with confidence intervals."""
    from tsprune_edge.devices.bench import BenchRequest, bench
    from tsprune_edge.export.bundle import ExportRequest
    from tsprune_edge.export_job import ExportJob, check_job_baselines, run_export_job
    from tsprune_edge.models import model_entry
    from tsprune_edge.report.cells import answer_lines
    from tsprune_edge.report.render import PAGE, verdict_table, write_report
    from tsprune_edge.report.verdict import verdict_rows

    pruning = options.pruning(method, sparsity, dims, width_sparsity, DEVICE, round_to, several=True,
                              dense_allowed=False)
    job = ExportJob(methods=pruning.methods, finetune_epochs=finetune_epochs, distill=distill, model=model, data=data,
                    epochs=epochs, strict_dates=strict_dates, **pruning.fields,
                    **baseline_options.resolve(baselines, baseline_cache))
    guards.number("--epochs", epochs, 1)
    guards.number("--finetune-epochs", finetune_epochs, 0)
    guards.number("--distill", distill, 0, 1, high_open=True)
    if job.baselines:
        guards.writable_dir(job.baseline_cache, "--baseline-cache")
        check_job_baselines(job)  # before any folder is made: a baseline the data cannot take is one line
    guards.number("--rounds", rounds, 1)
    model_entry(model)
    variants = list(job.variants())
    guards.output_dir(out, writes=["dense", "dense-finetuned", *variants, "export", "report"], inputs=[Path(data)],
                      force=force, keep_finished=True)  # Ctrl-C keeps the trained model and the measurements
    manifests = run_export_job(job, ExportRequest(), out / "export", out, console=_console)
    measured = bench(BenchRequest(device=DEVICE, artifacts=out / "export", results=out / "results", rounds=rounds,
                                  accuracy=True, control=control),  # the board's own test MSE beside torch's
                     console=_console)
    metrics = json.loads((out / "dense" / "metrics.json").read_text())
    rows = verdict_rows(out / "results" / measured["run_id"])
    write_report(rows, out / "report")
    for line in answer_lines(rows):  # the answer first: speed and accuracy against dense, one line per variant
        print(line)
    table_console().print(summary_table(manifests, metrics, measured))
    table_console().print(verdict_table(rows))
    print(f"bundles: {', '.join(str(out / 'export' / name) for name in manifests)}; "
          f"measurements: {out / 'results' / measured['run_id'] / 'bench.json'}; report: {out / 'report' / PAGE}")


def summary_table(manifests: dict[str, dict], metrics: dict, measured: dict) -> Table:
    """Dense and pruned side by side after the same training: test accuracy, parameters, MACs, artifact sizes,
    validation errors and the median latency on this machine (1 thread, batch 1)."""
    from tsprune_edge.export_job import compared_accuracy

    tests, comparison = compared_accuracy(manifests)
    table = Table(title=f"{metrics['model']} (small preset) on {metrics['data']['name']}, "
                        f"pred_len {metrics['data']['pred_len']}, test split; latency: p50 on this machine, "
                        "1 thread, median of rounds", caption=comparison)
    for column in ("variant", "MSE", "MAE", "parameters", "MACs per window", "ONNX KB", "TFLite KB",
                   "max |runtime - torch|", "ONNX ms", "TFLite ms"):
        table.add_column(column)
    latency = {(i["bundle"], i["format"]): i for i in measured["items"] if i["threads"] == 1}
    for name, manifest in manifests.items():
        if manifest.get("probe"):  # the per-call probe has no accuracy to table
            continue
        test = tests.get(name, metrics["test"])
        artifacts = manifest["artifacts"]
        error = max(v["max_abs_error"] for a in artifacts.values() for v in a["validation"])
        p50 = [latency.get((name, fmt), {}).get("p50_s") for fmt in ("onnx", "tflite")]
        table.add_row(name + (", fine-tuned" if manifest["training"]["finetune_epochs"] else ""),
                      f"{test['mse']:.4f}", f"{test['mae']:.4f}", f"{manifest['model']['parameters']:,}",
                      f"{manifest['model']['macs']:,}", f"{artifacts['onnx']['bytes'] / 1000:.0f}",
                      f"{artifacts['tflite']['bytes'] / 1000:.0f}", f"{error:.1e}",
                      *(f"{p * 1e3:.3f}" if p else "-" for p in p50))
    naive = metrics["naive_test"]
    table.add_row("repeat last value", f"{naive['mse']:.4f}", f"{naive['mae']:.4f}", *["-"] * 7)
    return table
