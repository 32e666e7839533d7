"""`tsprune-edge sweep`: the study end to end, resumable."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import typer
from rich.console import Console

from tsprune_edge.cli import baseline_options, guards, paths, ssh_options
from tsprune_edge.cli import pruning_options as options
from tsprune_edge.cli.bench_cmd import parse_threads
from tsprune_edge.cli.lists import comma_list
from tsprune_edge.cli.output import table_console
from tsprune_edge.cli.pruning_options import METHODS_HELP
from tsprune_edge.cli.report_cmd import check_min_effect, min_effect_option
from tsprune_edge.defaults import DEFAULT_MODEL
from tsprune_edge.devices.runs import DEFAULT_MAX_ROUNDS, DEFAULT_MIN_TIME, DEFAULT_ROUNDS
from tsprune_edge.errors import UserError
from tsprune_edge.sweep.spec import SweepSpec

_console = Console(stderr=True, soft_wrap=True)  # one line per event, whatever the width
_SPEC = SweepSpec(models=(DEFAULT_MODEL,))  # the option defaults are the spec's


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--sparsities takes comma-separated numbers, for example 0.5,0.8; got {text!r}") from None


def _data(data: str) -> str:
    """A CSV path is made absolute: workers run in their own folders."""
    path = Path(data)
    return str(path.resolve()) if path.suffix.lower() == ".csv" and path.exists() else data


def sweep_command(
    models: str = typer.Option(DEFAULT_MODEL, help="Comma-separated models, or `all` (see `tsprune-edge models`)."),
    methods: str = typer.Option(",".join(_SPEC.methods), help=f"Pruning methods, comma-separated: {METHODS_HELP}."),
    sparsities: str = typer.Option(",".join(f"{x:g}" for x in _SPEC.sparsities), help="Comma-separated sparsities "
                                   "(the dense model is always in)."),
    data: str = typer.Option(_SPEC.data, help="Dataset name or CSV path."),
    strict_dates: bool = typer.Option(False, help="Refuse duplicated timestamps and irregular steps in the CSV "
                                      "(default: keep the rows, warn once)."),
    preset: str = typer.Option(_SPEC.preset, help="Model size preset."),
    epochs: int = typer.Option(None, help="Training epochs (default: each model's published schedule)."),
    finetune_epochs: int = typer.Option(_SPEC.finetune_epochs, help="Fine-tuning epochs after pruning."),
    format: str = typer.Option(",".join(_SPEC.formats), "--format", help="Artifact formats to export and measure."),
    device: str = typer.Option(_SPEC.device, help="Device profile to measure on (see `tsprune-edge devices list`)."),
    host: str = ssh_options.host(),
    port: int = ssh_options.port(),
    identity: Path = ssh_options.identity(),
    threads: str = typer.Option("1", help="Thread counts to measure, e.g. 1,4."),
    rounds: int = typer.Option(DEFAULT_ROUNDS, help="Interleaved bench rounds per model."),
    max_rounds: int = typer.Option(DEFAULT_MAX_ROUNDS, help="Add rounds, one at a time, up to this many while a "
                                   "variant's verdict is FASTER, SLOWER or INCONCLUSIVE (equal to --rounds: never)."),
    min_time: float = typer.Option(DEFAULT_MIN_TIME, help="Minimum timed seconds per measurement (a round "
                                   "measures each item twice: forward and mirrored order)."),
    min_iters: int = typer.Option(100, help="Minimum timed iterations per measurement."),
    profile: bool = typer.Option(_SPEC.profile, help="Record ONNX Runtime per-operator times for the profile diff."),
    accuracy: bool = typer.Option(_SPEC.accuracy, help="Run the test split through every artifact on the device."),
    width_matched: bool = typer.Option(_SPEC.width_matched, help="Also prune heads, FFN and the model width "
                                       "d_model, at the ratio that removes the MACs each structured variant removes "
                                       "(structured_width-S)."),
    round_to: int = options.round_to(),
    workers: int = typer.Option(None, help="Local worker processes (default: one per CPU core)."),
    ray: str = typer.Option(None, "--ray", help="Run the compute cells as tasks on this existing Ray cluster "
                            "(address, e.g. 10.0.0.5:6379) instead of local processes."),
    min_effect: float = min_effect_option(),
    baselines: str = baseline_options.baselines(),
    baseline_cache: Path = baseline_options.baseline_cache(),
    out: Path = typer.Option(paths.SWEEP, help="The sweep folder; re-run with the same options to resume."),
) -> None:
    """Train each model once, prune it at every method x sparsity, fine-tune, export, measure every variant against
    its dense model on the device, and report the verdict. Finished cells are kept: run the same command again
    after an interruption and only what is missing is done."""
    from tsprune_edge.data.forecast import check_dates
    from tsprune_edge.devices.profiles import load_profile
    from tsprune_edge.models import available_models
    from tsprune_edge.report.render import verdict_table, write_report
    from tsprune_edge.report.verdict import verdict_rows
    from tsprune_edge.sweep.executors import LocalExecutor, RayExecutor
    from tsprune_edge.sweep.runner import run_sweep
    from tsprune_edge.sweep.spec import SPEC_FILE

    names = available_models() if models.strip() == "all" else comma_list(models)
    spec = SweepSpec(models=tuple(names), methods=comma_list(methods), sparsities=_floats(sparsities),
                     data=_data(data), preset=preset, pred_len=96, epochs=epochs, finetune_epochs=finetune_epochs,
                     formats=comma_list(format), device=device, host=host, port=port,
                     identity=str(identity) if identity else None, threads=parse_threads(threads) or (1,),
                     rounds=rounds, max_rounds=max_rounds, min_time=min_time, min_iters=min_iters, profile=profile,
                     accuracy=accuracy, width_matched=width_matched, round_to=round_to, min_effect=min_effect,
                     baselines=comma_list(baselines), baseline_cache=str(baseline_cache) if baseline_cache else None)
    for option, value, low in (("--epochs", epochs, 1), ("--finetune-epochs", finetune_epochs, 0),
                               ("--rounds", rounds, 1), ("--max-rounds", max_rounds, 1), ("--min-iters", min_iters, 1),
                               ("--workers", workers, 1)):
        guards.number(option, value, low)
    guards.number("--min-time", min_time, 0, low_open=True)
    ssh_options.check(port)
    guards.threads(spec.threads)
    for sparsity in spec.sparsities:
        guards.number("--sparsities", sparsity, 0, 1, low_open=True, high_open=True)
    if models.strip() == "all":  # every model the methods apply to: a tiny forecaster has no heads to prune
        refused = {name: spec.structured_refusal(name) for name in spec.models}
        spec = dataclasses.replace(spec, models=tuple(name for name, why in refused.items() if why is None))
        for name, why in refused.items():
            if why:
                _console.print(f"note: {name} left out of --models all: {why}")
    spec.validate()
    if spec.baselines:
        guards.writable_dir(baseline_options.resolve(baselines, baseline_cache)["baseline_cache"], "--baseline-cache")
    load_profile(device).destination(host)  # an unknown device, or a board without a host, fails now
    if ray is not None and workers is not None:
        raise UserError("--workers sets local processes; a Ray cluster decides its own: pass one of them")
    check_min_effect(min_effect)
    guards.sweep_folder(out, spec_file=SPEC_FILE)
    if strict_dates:
        check_dates(spec.data, strict=True)
    guards.output_dir(out, inputs=[Path(spec.data)], keep_finished=True)
    count = workers or os.cpu_count() or 1
    cluster = RayExecutor(ray) if ray else None  # joined before the sweep folder is written
    try:
        summary = run_sweep(spec, out, (lambda: cluster) if cluster else (lambda: LocalExecutor(count)), _console)
    finally:
        if cluster:
            cluster.close()
    rows = [row for run in summary["runs"] for row in verdict_rows(run, min_effect)]
    if rows:
        written = write_report(rows, out / "report")
        for run in summary["runs"]:
            table_console().print(verdict_table([r for r in rows if r["run"] == run.name]))
        print(f"report: {', '.join(map(str, written))}")
    if summary["failed"]:
        lines = "; ".join(f"{cell}: {error}" for cell, error in summary["failed"].items())
        raise UserError(f"{len(summary['failed'])} cells failed ({lines}); the finished ones are kept: fix the "
                        "cause and run the same command again")
