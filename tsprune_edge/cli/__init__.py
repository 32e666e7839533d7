"""The `tsprune-edge` command line: thin commands over library functions; UserError becomes one line and exit 2."""

from __future__ import annotations

import sys

import typer

from tsprune_edge.cli import (
    bench_cmd,
    data_cmd,
    devices_cmd,
    export_cmd,
    model_cmd,
    pipeline_cmd,
    prune_cmd,
    report_cmd,
    sweep_cmd,
)
from tsprune_edge.errors import UserError

app = typer.Typer(
    name="tsprune-edge",
    help="Train, prune, export and benchmark Transformer forecasters on edge boards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # never print locals (hosts, keys) in a traceback
    add_completion=False,
)
app.add_typer(data_cmd.app, name="data")
app.command("train")(model_cmd.train_command)
app.command("evaluate")(model_cmd.evaluate_command)
app.command("models")(model_cmd.models_command)
app.command("prune")(prune_cmd.prune_command)
app.command("export")(export_cmd.export_command)
app.command("bench")(bench_cmd.bench_command)
app.add_typer(devices_cmd.app, name="devices")
app.command("report")(report_cmd.report_command)
app.command("sweep")(sweep_cmd.sweep_command)
app.command("pipeline")(pipeline_cmd.pipeline_command)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="tsprune-edge")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; nothing half-written was kept", file=sys.stderr)
        sys.exit(130)
