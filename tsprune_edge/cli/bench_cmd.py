"""`tsprune-edge bench`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tsprune_edge.cli import guards, paths, ssh_options
from tsprune_edge.cli.lists import comma_list
from tsprune_edge.cli.output import table_console
from tsprune_edge.devices.runs import DEFAULT_MAX_ROUNDS, DEFAULT_MIN_TIME, DEFAULT_ROUNDS

_console = Console(stderr=True)


def parse_threads(text: str | None) -> tuple[int, ...] | None:
    from tsprune_edge.errors import UserError

    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--threads takes comma-separated integers, for example 1,4; got {text!r}") from None


def bench_command(
    device: str = typer.Option("desktop", help="Device profile (see `tsprune-edge devices list`)."),
    host: str = ssh_options.host(),
    port: int = ssh_options.port(),
    identity: Path = ssh_options.identity(),
    artifacts: Path = typer.Option(paths.BUNDLES, help="Folder of export bundles (`tsprune-edge export --out`)."),
    runtime: str = typer.Option("onnxruntime,tflite", help="onnxruntime and/or tflite (the board's TFLite runtime)."),
    threads: str = typer.Option(None, help="Thread counts to measure, e.g. 1,4 (default: the profile's)."),
    rounds: int = typer.Option(DEFAULT_ROUNDS, help="Interleaved rounds: every variant once per round, fresh process "
                               "each."),
    max_rounds: int = typer.Option(DEFAULT_MAX_ROUNDS, help="Add rounds, one at a time, up to this many while a "
                                   "variant's verdict is FASTER, SLOWER or INCONCLUSIVE (equal to --rounds: never)."),
    min_time: float = typer.Option(DEFAULT_MIN_TIME, help="Minimum timed seconds per measurement (a round "
                                   "measures each item twice: forward and mirrored order)."),
    min_iters: int = typer.Option(100, help="Minimum timed iterations per measurement."),
    cooldown: float = typer.Option(0.0, help="Wait up to this many seconds before each measurement until the "
                                   "board is back within 2 C of its starting temperature."),
    profile: bool = typer.Option(False, help="Also record ONNX Runtime's per-operator times (first round, in a "
                                 "separate session): the report's where-the-time-goes diff."),
    accuracy: bool = typer.Option(False, help="Also run each bundle's test split through the artifact on the "
                                  "board (first round): MSE and MAE beside the torch model's."),
    control: bool = typer.Option(False, help="Also measure an A/A control: a byte-different copy of dense (the "
                                 "same model), judged against dense like a variant; the report warns when it is not "
                                 "EQUIVALENT."),
    results: Path = typer.Option(paths.RESULTS, help="Results go to RESULTS/<device>-<time>/."),
    resume: bool = typer.Option(False, help="Finish this device's latest unfinished run instead of starting anew."),
    keep: bool = typer.Option(False, help="Keep the run folder on the board."),
    accept_new_host_key: bool = ssh_options.accept_new_host_key(),
    ssh_config: Path = ssh_options.ssh_config(),
) -> None:
    """Copy the bundles to the device, measure every variant there (latency percentiles, memory, correctness) and
    bring the results back as JSON."""
    from tsprune_edge.devices.bench import BenchRequest, bench
    from tsprune_edge.report.verdict import undecided

    request = BenchRequest(device=device, host=host, artifacts=artifacts, runtimes=comma_list(runtime),
                           threads=parse_threads(threads), rounds=rounds, max_rounds=max_rounds, min_time=min_time,
                           min_iters=min_iters, control=control,
                           cooldown_s=cooldown, profile=profile, accuracy=accuracy, results=results, resume=resume,
                           keep=keep, accept_new_host_key=accept_new_host_key, ssh_config=ssh_config, port=port,
                           identity=identity)
    ssh_options.check(port)
    guards.number("--rounds", rounds, 1)
    guards.number("--min-time", min_time, 0, low_open=True)
    guards.number("--min-iters", min_iters, 1)
    guards.number("--cooldown", cooldown, 0)
    guards.threads(request.threads)
    request.validate()
    guards.bundle_folder(artifacts)
    guards.output_dir(results, inputs=[artifacts], option="--results", keep_finished=True)
    summary = bench(request, console=_console, more_rounds=undecided)
    table_console().print(bench_table(summary))
    print(f"results: {Path(results) / summary['run_id'] / 'bench.json'}")


def bench_table(summary: dict) -> Table:
    table = Table(title=f"{summary['device']['name']} ({summary['machine']}), {summary['timing_label']}; "
                        "latency per window, median over rounds")
    for column in ("variant", "format", "runtime", "threads", "rounds", "p50 ms", "p90 ms", "p99 ms",
                   "p50 spread", "peak RSS MB", "load ms", "max error", "correct"):
        table.add_column(column)
    for item in summary["items"]:
        if not item["rounds"]:
            table.add_row(item["bundle"], item["format"], item["runtime"], str(item["threads"]), "0",
                          *["-"] * 7, "; ".join(item["errors"])[:60])
            continue
        precision = f" {item['precision']}" if item.get("precision") else ""  # TensorRT: tensorrt 8.2.1 fp16
        variant = item["bundle"] + (" (per-call probe)" if item.get("probe") else "")
        table.add_row(variant, item["format"], f"{item['runtime']} {item['runtime_version']}{precision}",
                      str(item["threads"]), str(item["rounds"]), f"{item['p50_s'] * 1e3:.3f}",
                      f"{item['p90_s'] * 1e3:.3f}", f"{item['p99_s'] * 1e3:.3f}", f"{item['p50_spread']:.1%}",
                      f"{item['peak_rss_kib'] / 1024:.0f}",
                      f"{item['load_s'] * 1e3:.1f}" if item["load_s"] is not None else "-",
                      f"{item['max_abs_error']:.1e}", "yes" if item["correct"] else "NO")
    return table
