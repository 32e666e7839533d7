"""`tsprune-edge fit`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from tsprune_edge.cli import baseline_options, guards, ssh_options
from tsprune_edge.devices.runs import DEFAULT_MIN_TIME, DEFAULT_ROUNDS
from tsprune_edge.errors import UserError
from tsprune_edge.fit import DEFAULT_FIT_ROUNDS

_console = Console(stderr=True, soft_wrap=True)  # a line per message, as logs and greps read them


def fit_command(
    checkpoint: Path = typer.Argument(..., help="A dense model.pt written by `tsprune-edge train`."),
    budget_ms: float = typer.Option(None, help="Latency budget per forecast in milliseconds, measured on --device."),
    speedup: float = typer.Option(None, help="Instead of --budget-ms: at least this speedup against dense, measured in "
                                "the same run as each candidate."),
    device: str = typer.Option("desktop", help="Device profile (see `tsprune-edge devices list`)."),
    host: str = ssh_options.host(),
    port: int = ssh_options.port(),
    identity: Path = ssh_options.identity(),
    runtime: str = typer.Option("onnxruntime", help="onnxruntime or tflite (the board's TFLite runtime)."),
    threads: int = typer.Option(None, help="Threads the runtime uses (default: the profile's first)."),
    finetune_epochs: int = typer.Option(1, help="Fine-tuning epochs for the fitted model (dense gets the same)."),
    max_rounds: int = typer.Option(DEFAULT_FIT_ROUNDS, help="Prune, fine-tune and bench at most this many times "
                                   "while the measured median is over the budget or uses less than 85% of it."),
    rounds: int = typer.Option(DEFAULT_ROUNDS, help="Interleaved bench rounds per measurement."),
    min_time: float = typer.Option(DEFAULT_MIN_TIME, help="Minimum timed seconds per measurement (a round "
                                   "measures each item twice: forward and mirrored order)."),
    min_iters: int = typer.Option(100, help="Minimum timed iterations per measurement."),
    cache: Path = typer.Option(None, help="Latency tables, sensitivity tables and fine-tuned dense references, "
                               "reused by later fits (default ~/.cache/tsprune-edge/latency)."),
    seed: int = typer.Option(2021, help="Seed for fine-tuning."),
    uniform: str = typer.Option("", help="Also measure uniform structured models at these ratios (heads+ffn, and "
                                "with width), fine-tuned the same, in one run with the fitted model: is it on the "
                                "(latency, MSE) Pareto front? e.g. 0.25,0.5,0.75"),
    baselines: str = baseline_options.baselines(),
    baseline_cache: Path = baseline_options.baseline_cache(),
    accept_new_host_key: bool = ssh_options.accept_new_host_key(),
    ssh_config: Path = ssh_options.ssh_config(),
    out: Path = typer.Option(..., help="Output folder: model.pt, candidates/, export/, results/, fit.json."),
    force: bool = typer.Option(False, "--force", help="Start over in an OUT that holds a finished fit."),
) -> None:
    """Prune to the per-layer widths that lose the least validation accuracy within a latency budget measured on
    the board; writes the pruned checkpoint, its bundle beside dense's, the bench results and OUT/fit.json."""
    from tsprune_edge.fit.loop import FitRequest, final_line, run_fit
    from tsprune_edge.fit.measure import Target
    from tsprune_edge.fit.state import FIT_FILE
    from tsprune_edge.fit.table import DEFAULT_CACHE

    guards.number("--budget-ms", budget_ms, 0, low_open=True)
    guards.number("--speedup", speedup, 0, low_open=True)
    guards.number("--finetune-epochs", finetune_epochs, 0)
    guards.number("--max-rounds", max_rounds, 1)
    guards.number("--rounds", rounds, 2)
    guards.number("--min-time", min_time, 0, low_open=True)
    guards.number("--min-iters", min_iters, 1)
    guards.threads([threads] if threads is not None else None)
    guards.seed(seed)
    ssh_options.check(port)
    target = Target(device=device, host=host, runtime=runtime, threads=threads, rounds=rounds, min_time=min_time,
                    min_iters=min_iters, accept_new_host_key=accept_new_host_key, ssh_config=ssh_config, port=port,
                    identity=identity)
    request = FitRequest(checkpoint=checkpoint, target=target, out=out, budget_ms=budget_ms, speedup=speedup,
                         finetune_epochs=finetune_epochs, max_rounds=max_rounds, cache=cache or DEFAULT_CACHE,
                         seed=seed, uniform=_ratios(uniform), **baseline_options.resolve(baselines, baseline_cache))
    request.validate()  # the board as asked (--host), before anything is loaded, exported or measured
    guards.output_dir(out, writes=("model.pt",), inputs=[checkpoint], force=True, keep_finished=True)  # rounds stay
    guards.writable_dir(request.cache, "--cache")
    guards.not_an_input([request.cache], [checkpoint], "--cache", replaced=False)
    if request.baselines:
        guards.writable_dir(request.baseline_cache, "--baseline-cache")
    record = run_fit(request, console=_console, force=force)
    print(final_line(record) + f" -> {out / FIT_FILE}")
    chosen = next(c for c in record["candidates"] if c["round"] == record["chosen"])
    print(json.dumps({"width": chosen["widths"]["width"], "units": chosen["widths"]["units"]}))
    comparison = record["comparison"]
    if comparison:
        beaten = f" (dominated by {', '.join(comparison['dominated_by'])})" if comparison["dominated_by"] else ""
        print(f"against {'uniform pruning' if request.uniform else 'the baselines'} (one run): "
              f"{'on' if comparison['on_pareto_front'] else 'NOT on'} the (latency, MSE) Pareto front{beaten}; "
              f"nearest uniform within budget: {comparison['nearest_uniform']}, "
              f"fitted MSE not worse: {comparison['mse_not_worse_than_nearest_uniform']}")


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--uniform takes comma-separated ratios, for example 0.25,0.5; got {text!r}") from None

