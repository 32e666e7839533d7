"""`tsprune-edge report`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tsprune_edge.cli import guards, paths
from tsprune_edge.cli.output import table_console
from tsprune_edge.devices.runs import latest_run
from tsprune_edge.errors import UserError
from tsprune_edge.report.accuracy import DEFAULT_MAX_MSE_RISE, check_max_rise
from tsprune_edge.report.verdict import DEFAULT_MIN_EFFECT

UNBOUNDED = 10_000  # columns to measure a table's natural width in


def min_effect_option():
    """`--min-effect` of `report` and `sweep`."""
    return typer.Option(DEFAULT_MIN_EFFECT, help=f"Smallest speedup or slowdown that counts ({DEFAULT_MIN_EFFECT:g} "
                        f"= {DEFAULT_MIN_EFFECT:.0%}).")


def check_min_effect(min_effect: float) -> None:
    if not 0 <= min_effect < 1:
        raise UserError(f"--min-effect must be in [0, 1), got {min_effect:g}")


def find_runs(folders: list[Path]) -> list[Path]:
    """Each folder is a bench run folder, or a results folder whose latest run is taken (devices/runs.py knows
    the run folder)."""
    found = []
    for path in folders:
        run = latest_run(path)
        if run is None:
            raise UserError(f"no finished bench run in {path}; run `tsprune-edge bench` first")
        found.append(run)
    return found


def report_command(
    results: list[Path] = typer.Argument(None, help="Bench run folders, or results folders (their latest run); "
                                         f"default: the latest run under {paths.RESULTS}/ (`bench`'s default)."),
    out: Path = typer.Option(paths.REPORT, help="Writes report.md, report.json, report.csv, a self-contained "
                             "report.html and plots/*.png here."),
    min_effect: float = min_effect_option(),
    max_mse_rise: float = typer.Option(DEFAULT_MAX_MSE_RISE, help="Largest test-MSE rise against dense that still "
                                       f"holds accuracy ({DEFAULT_MAX_MSE_RISE:g} = {DEFAULT_MAX_MSE_RISE:.0%}, as "
                                       "MLPerf gates accuracy at 99% of the reference)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the report files an earlier report left in OUT."),
    wide: bool = typer.Option(False, "--wide", help="Show every column in the terminal table (p50, p90 and p99, "
                              "MACs, efficiency, memory and file ratios, MSEs, flags), not only the answer that fits "
                              "100 columns; report.md, .html, .csv and .json always hold them all."),
    tails: bool = typer.Option(False, "--tails", help="Add the p90 and p99 speedups with their 95% intervals "
                               "(paired per round, as the median's) to the terminal table."),
) -> None:
    """The verdict: each pruned variant against the dense model measured in the same run, paired round by round:
    the speedup as the geometric mean of the per-round latency ratios with a 95% t interval over the rounds, the
    speedup the MACs predict, and memory and size ratios; plots of latency and MSE against sparsity, the Pareto
    front and predicted vs achieved speedup; and, for runs benched with --profile, where the time goes in ONNX
    variants that fall short of their predicted speedup."""
    from tsprune_edge.report.cells import answer_lines
    from tsprune_edge.report.render import verdict_table, write_report
    from tsprune_edge.report.verdict import verdict_rows

    check_min_effect(min_effect)
    check_max_rise(max_mse_rise)
    runs = find_runs(results or [paths.RESULTS])
    guards.output_dir(out, writes=("report.md", "report.json", "report.csv", "report.html", "plots"), inputs=runs,
                      force=force)
    for run in runs:  # a run the report cannot judge (no dense, a latency of 0) is one line before any row
        guards.read_back(lambda run=run: guards.measured_run(run), run)
    rows = [row for run in runs for row in guards.read_back(lambda run=run: verdict_rows(run, min_effect, max_mse_rise),
                                                              run)]
    for line in answer_lines(rows):  # the answer first: speed and accuracy against dense, one line per variant
        print(line)
    for run in runs:
        table = verdict_table([r for r in rows if r["run"] == run.name], wide=wide, tails=tails)
        console = table_console()
        if wide or tails:  # every column at its full width: the terminal wraps lines rather than rich folding cells
            natural = console.measure(table, options=console.options.update_width(UNBOUNDED)).maximum
            console = Console(width=max(console.width, natural))
        console.print(table)
    written = write_report(rows, out)
    print(f"report: {', '.join(map(str, written))}")
